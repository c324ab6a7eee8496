from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bot.brokers.resilience import BreakerState, CircuitBreaker, RetryPolicy, with_retries
from engine.domain import Side
from engine.ports import BrokerError, BrokerErrorKind, fill_from_status
from engine.trading import OrderRequest, OrderState, OrderStatus
from tests.fakes.clock import SteppingClock

T0 = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def transient(message: str = "timeout", retry_after: float | None = None) -> BrokerError:
    return BrokerError(message, BrokerErrorKind.TRANSIENT, retry_after)


class Script:
    """An async call that raises the scripted errors in turn, then returns "ok"."""

    def __init__(self, *errors: BrokerError) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


# ------------------------------------------------------------------------------------------------- retries


async def test_backoff_doubles_with_jitter_from_a_seeded_rng() -> None:
    policy = RetryPolicy(attempts=5, base_delay=0.2, max_delay=1.0, jitter=0.5)
    call, sleeps = Script(*(transient() for _ in range(4))), Sleeps()
    assert await with_retries(call, policy, sleep=sleeps, rng=random.Random(7).random) == "ok"
    draws = random.Random(7)
    expected = [b * (1 - 0.5 * draws.random()) for b in (0.2, 0.4, 0.8, 1.0)]  # the last one capped at max_delay
    assert sleeps.delays == pytest.approx(expected)
    assert call.calls == 5
    assert all(b / 2 <= d <= b for d, b in zip(sleeps.delays, (0.2, 0.4, 0.8, 1.0), strict=True))


async def test_without_jitter_the_sequence_is_exact() -> None:
    sleeps = Sleeps()
    policy = RetryPolicy(attempts=4, base_delay=0.1, max_delay=5.0, jitter=0.0)
    await with_retries(Script(transient(), transient(), transient()), policy, sleep=sleeps)
    assert sleeps.delays == pytest.approx([0.1, 0.2, 0.4])


async def test_retry_after_is_a_floor() -> None:
    sleeps = Sleeps()
    call = Script(transient("429", retry_after=3.0), transient("503"))
    assert await with_retries(call, RetryPolicy(base_delay=0.2, jitter=0.0), sleep=sleeps) == "ok"
    assert sleeps.delays == pytest.approx([3.0, 0.4])


async def test_rejection_is_raised_at_once() -> None:
    sleeps = Sleeps()
    call = Script(BrokerError("insufficient margin", BrokerErrorKind.REJECTED))
    with pytest.raises(BrokerError, match="insufficient margin"):
        await with_retries(call, RetryPolicy(), sleep=sleeps)
    assert call.calls == 1
    assert sleeps.delays == []


async def test_unavailable_is_not_retried() -> None:
    call = Script(BrokerError("circuit open", BrokerErrorKind.UNAVAILABLE))
    with pytest.raises(BrokerError, match="circuit open"):
        await with_retries(call, RetryPolicy(), sleep=Sleeps())
    assert call.calls == 1


async def test_the_last_error_is_raised_after_the_last_attempt() -> None:
    sleeps = Sleeps()
    call = Script(transient("one"), transient("two"), transient("three"), transient("four"), transient("five"))
    with pytest.raises(BrokerError, match="three"):
        await with_retries(call, RetryPolicy(attempts=3), sleep=sleeps, rng=lambda: 0.0)
    assert call.calls == 3
    assert len(sleeps.delays) == 2


def test_policy_checks_its_values() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=1.5)


# ------------------------------------------------------------------------------------------------- breaker


class Changes:
    def __init__(self) -> None:
        self.seen: list[tuple[BreakerState, str]] = []

    async def __call__(self, state: BreakerState, reason: str) -> None:
        self.seen.append((state, reason))


async def fail() -> str:
    raise transient("HTTP 503")


async def ok() -> str:
    return "ok"


async def test_breaker_opens_after_consecutive_transient_failures_and_refuses_fast() -> None:
    clock, changes = SteppingClock(T0), Changes()
    breaker = CircuitBreaker("oanda", failure_threshold=3, cool_down=timedelta(seconds=60), clock=clock)
    breaker.on_change = changes
    for _ in range(3):
        with pytest.raises(BrokerError, match="503"):
            await breaker.call(fail)
    assert breaker.state is BreakerState.OPEN
    called = Script()
    with pytest.raises(BrokerError) as refused:
        await breaker.call(called)
    assert refused.value.kind is BrokerErrorKind.UNAVAILABLE
    assert str(refused.value) == "broker oanda circuit open after 3 failures; retrying at 12:01 UTC"
    assert called.calls == 0
    snap = breaker.snapshot()
    assert (snap.state, snap.failures, snap.opened_at, snap.retry_at) == (
        BreakerState.OPEN,
        3,
        T0,
        T0 + timedelta(seconds=60),
    )
    assert [s for s, _ in changes.seen] == [BreakerState.OPEN]


async def test_a_rejection_resets_the_failure_count() -> None:
    breaker = CircuitBreaker("oanda", failure_threshold=2, clock=SteppingClock(T0))
    with pytest.raises(BrokerError):
        await breaker.call(fail)
    with pytest.raises(BrokerError):
        await breaker.call(Script(BrokerError("market halted", BrokerErrorKind.REJECTED)))
    assert breaker.snapshot().failures == 0
    with pytest.raises(BrokerError):
        await breaker.call(fail)
    assert breaker.state is BreakerState.CLOSED


async def test_after_cool_down_one_probe_goes_through_and_success_closes() -> None:
    clock, changes = SteppingClock(T0), Changes()
    breaker = CircuitBreaker("oanda", failure_threshold=1, cool_down=timedelta(seconds=30), clock=clock)
    breaker.on_change = changes
    with pytest.raises(BrokerError):
        await breaker.call(fail)
    clock.advance(timedelta(seconds=29))
    with pytest.raises(BrokerError, match="circuit open"):
        await breaker.call(ok)
    clock.advance(timedelta(seconds=1))

    release = asyncio.Event()

    async def slow_probe() -> str:
        await release.wait()
        return "probed"

    probe = asyncio.create_task(breaker.call(slow_probe))
    await asyncio.sleep(0)
    assert breaker.state is BreakerState.HALF_OPEN
    with pytest.raises(BrokerError, match="probe is running") as refused:
        await breaker.call(ok)
    assert refused.value.kind is BrokerErrorKind.UNAVAILABLE
    release.set()
    assert await probe == "probed"
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot().failures == 0
    assert await breaker.call(ok) == "ok"
    assert [s for s, _ in changes.seen] == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


async def test_a_failed_probe_reopens_for_another_cool_down() -> None:
    clock = SteppingClock(T0)
    breaker = CircuitBreaker("oanda", failure_threshold=2, cool_down=timedelta(seconds=60), clock=clock)
    for _ in range(2):
        with pytest.raises(BrokerError):
            await breaker.call(fail)
    clock.advance(timedelta(seconds=60))
    with pytest.raises(BrokerError, match="503"):
        await breaker.call(fail)
    snap = breaker.snapshot()
    assert snap.state is BreakerState.OPEN
    assert snap.retry_at == clock.now() + timedelta(seconds=60)
    with pytest.raises(BrokerError, match="after 3 failures; retrying at 12:02 UTC"):
        await breaker.call(ok)


async def test_a_rejected_probe_closes_the_circuit() -> None:
    clock = SteppingClock(T0)
    breaker = CircuitBreaker("oanda", failure_threshold=1, cool_down=timedelta(seconds=10), clock=clock)
    with pytest.raises(BrokerError):
        await breaker.call(fail)
    clock.advance(timedelta(seconds=10))
    with pytest.raises(BrokerError, match="margin"):
        await breaker.call(Script(BrokerError("insufficient margin", BrokerErrorKind.REJECTED)))
    assert breaker.state is BreakerState.CLOSED


async def test_an_on_change_callback_that_fails_does_not_break_calls() -> None:
    async def broken(state: BreakerState, reason: str) -> None:
        raise RuntimeError("telegram down")

    breaker = CircuitBreaker("oanda", failure_threshold=1, clock=SteppingClock(T0), on_change=broken)
    with pytest.raises(BrokerError, match="503"):
        await breaker.call(fail)
    assert breaker.state is BreakerState.OPEN


async def test_retries_stop_as_soon_as_the_breaker_opens() -> None:
    breaker = CircuitBreaker("oanda", failure_threshold=2, clock=SteppingClock(T0))
    calls, sleeps = Script(*(transient() for _ in range(10))), Sleeps()
    with pytest.raises(BrokerError) as raised:
        await with_retries(lambda: breaker.call(calls), RetryPolicy(attempts=5), sleep=sleeps)
    assert raised.value.kind is BrokerErrorKind.UNAVAILABLE
    assert calls.calls == 2


# ------------------------------------------------------------------------------------------------- lookups


def test_fill_from_status_returns_the_existing_fill_or_says_why_not() -> None:
    request = OrderRequest("sig-1", "EURUSD", Side.LONG, Decimal("0.10"))
    filled = OrderStatus("sig-1", OrderState.FILLED, Decimal("0.10"), Decimal("1.09000"), Decimal("0.50"), filled_at=T0)
    fill = fill_from_status(filled, request)
    assert (fill.quantity, fill.price, fill.fees, fill.filled_at) == (
        Decimal("0.10"),
        Decimal("1.09000"),
        Decimal("0.50"),
        T0,
    )
    with pytest.raises(BrokerError, match="not settled") as pending:
        fill_from_status(OrderStatus("sig-1", OrderState.PENDING), request)
    assert pending.value.transient
    cancelled = OrderStatus("sig-1", OrderState.CANCELLED, reason="insufficient margin")
    with pytest.raises(BrokerError, match="cancelled by the broker: insufficient margin") as refused:
        fill_from_status(cancelled, request)
    assert refused.value.kind is BrokerErrorKind.REJECTED
