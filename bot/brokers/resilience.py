"""Broker resilience: retries with backoff, a circuit breaker, and a Broker that wraps another in both.

`with_retries` retries only TRANSIENT `BrokerError`s (timeouts, 5xx, 429), waiting an exponentially growing,
jittered delay that is never shorter than the broker's `retry_after`. A REJECTED answer is final at once.

`CircuitBreaker` guards each attempt: after `failure_threshold` consecutive TRANSIENT failures it opens and
refuses calls fast (BrokerError UNAVAILABLE) until `cool_down` has passed; then exactly one probe goes through
(HALF_OPEN) and its outcome closes or re-opens the circuit. A REJECTED answer proves the broker is up.

`ResilientBroker` puts both around every Broker call. Retrying `place_order` first asks the broker whether the
order already exists (a timeout may hide an accepted order), so a retry never places a second order.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TypeVar

from bot.ops.clock import WallClock
from engine.domain import Instrument
from engine.ports import (
    BreakerSnapshot,
    BreakerState,
    Broker,
    BrokerError,
    BrokerErrorKind,
    Clock,
    fill_from_status,
)

__all__ = ["BreakerSnapshot", "BreakerState", "CircuitBreaker", "ResilientBroker", "RetryPolicy", "with_retries"]
from engine.trading import BrokerExit, Fill, OrderRequest, OrderStatus, Quote, Trade

log = logging.getLogger(__name__)

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[object]]
Rng = Callable[[], float]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a transient broker failure is retried."""

    attempts: int = 4  # calls in all, the first included
    base_delay: float = 0.2  # seconds before the first retry; doubles each retry
    max_delay: float = 5.0  # cap of the backoff (a longer Retry-After is still honoured)
    jitter: float = 0.5  # up to this fraction of the backoff is taken off at random

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"retry attempts must be >= 1, was {self.attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("retry delays must be >= 0")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"retry jitter must be within [0, 1], was {self.jitter}")

    def delay(self, retry: int, rng: Rng = random.random, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `retry` (1-based), at least `retry_after`."""
        backoff = min(self.max_delay, self.base_delay * 2.0 ** (retry - 1))
        wait = backoff * (1 - self.jitter * rng())
        return max(wait, retry_after or 0.0)


async def with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Sleep = asyncio.sleep,
    rng: Rng = random.random,
    what: str = "broker call",
) -> T:
    """Await `call()`, retrying TRANSIENT BrokerErrors with backoff; re-raise anything else at once."""
    for attempt in range(1, policy.attempts + 1):
        try:
            return await call()
        except BrokerError as exc:
            if exc.kind is not BrokerErrorKind.TRANSIENT or attempt == policy.attempts:
                raise
            wait = policy.delay(attempt, rng, exc.retry_after)
            log.warning("%s failed (%s); retry %d of %d in %.2f s", what, exc, attempt, policy.attempts - 1, wait)
            await sleep(wait)
    raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover


OnChange = Callable[[BreakerState, str], Awaitable[None]]


class CircuitBreaker:
    """Stops calling a broker that keeps failing, and lets one probe through after a cool-down."""

    def __init__(
        self,
        name: str,
        failure_threshold: int = 5,
        cool_down: timedelta = timedelta(seconds=60),
        clock: Clock | None = None,
        on_change: OnChange | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, was {failure_threshold}")
        if cool_down <= timedelta(0):
            raise ValueError(f"cool_down must be positive, was {cool_down}")
        self.name = name
        self.failure_threshold = failure_threshold
        self.cool_down = cool_down
        self.clock: Clock = clock if clock is not None else WallClock()
        self.on_change = on_change
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at: datetime | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def retry_at(self) -> datetime | None:
        return None if self._opened_at is None else self._opened_at + self.cool_down

    def snapshot(self) -> BreakerSnapshot:
        """Return the state, consecutive failures and, when not closed, when it opened and when it probes."""
        return BreakerSnapshot(self.name, self._state, self._failures, self._opened_at, self.retry_at)

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Await `fn()` if the circuit allows it, recording its outcome; refuse fast while open."""
        probe = self._admit()
        if probe:
            await self._notify(BreakerState.HALF_OPEN, f"broker {self.name}: cool-down over, probing")
        try:
            result = await fn()
        except BrokerError as exc:
            if exc.kind is BrokerErrorKind.TRANSIENT:
                await self._failed(probe, str(exc))
            elif exc.kind in (BrokerErrorKind.REJECTED, BrokerErrorKind.PENDING, BrokerErrorKind.SESSION):
                await self._succeeded(probe)  # the broker answered: it is up
            raise
        finally:
            if probe:
                self._probing = False
        await self._succeeded(probe)
        return result

    def _admit(self) -> bool:
        """Let the call through (True when it is the half-open probe) or raise UNAVAILABLE."""
        if self._state is BreakerState.CLOSED:
            return False
        retry_at = self.retry_at
        if self._state is BreakerState.OPEN and retry_at is not None and self.clock.now() >= retry_at:
            self._state = BreakerState.HALF_OPEN
        if self._state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        when = "a probe is running" if self._state is BreakerState.HALF_OPEN else f"retrying at {retry_at:%H:%M} UTC"
        raise BrokerError(
            f"broker {self.name} circuit open after {self._failures} failures; {when}", BrokerErrorKind.UNAVAILABLE
        )

    async def _failed(self, probe: bool, error: str) -> None:
        self._failures += 1
        if probe or (self._state is BreakerState.CLOSED and self._failures >= self.failure_threshold):
            self._state = BreakerState.OPEN
            self._opened_at = self.clock.now()
            reason = (
                f"broker {self.name} circuit open after {self._failures} failures "
                f"(last: {error}); retrying at {self.retry_at:%H:%M} UTC"
            )
            log.warning("%s", reason)
            await self._notify(BreakerState.OPEN, reason)

    async def _succeeded(self, probe: bool) -> None:
        self._failures = 0
        if self._state is not BreakerState.CLOSED and (probe or self._state is BreakerState.OPEN):
            self._state = BreakerState.CLOSED
            self._opened_at = None
            reason = f"broker {self.name} answered again; circuit closed"
            log.info("%s", reason)
            await self._notify(BreakerState.CLOSED, reason)

    async def _notify(self, state: BreakerState, reason: str) -> None:
        if self.on_change is None:
            return
        try:
            await self.on_change(state, reason)
        except Exception:  # an alert that cannot be sent must not break trading
            log.exception("circuit breaker %s: on_change callback failed", self.name)


class ResilientBroker:
    """A Broker that calls `inner` through a circuit breaker, retrying transient failures."""

    def __init__(
        self,
        inner: Broker,
        breaker: CircuitBreaker,
        retry_policy: RetryPolicy | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
        rng: Rng = random.random,
    ) -> None:
        self.inner = inner
        self.breaker = breaker
        self.retry_policy = retry_policy if retry_policy is not None else RetryPolicy()
        self.name = inner.name
        self._sleep = sleep
        self._rng = rng

    async def _run(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        return await with_retries(
            lambda: self.breaker.call(fn),
            self.retry_policy,
            sleep=self._sleep,
            rng=self._rng,
            what=f"{self.name} {what}",
        )

    async def quote(self, instrument: Instrument) -> Quote:
        return await self._run(f"quote {instrument.symbol}", lambda: self.inner.quote(instrument))

    async def place_order(self, instrument: Instrument, request: OrderRequest) -> Fill:
        """Place once; each retry first looks the order up by client id and returns its fill if it exists."""
        attempts = 0

        async def attempt() -> Fill:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                status = await self.inner.order_status(request.client_order_id)
                if status is not None:
                    return fill_from_status(status, request)
            return await self.inner.place_order(instrument, request)

        return await self._run(f"order {request.client_order_id}", attempt)

    async def order_status(self, client_order_id: str) -> OrderStatus | None:
        return await self._run(f"status of {client_order_id}", lambda: self.inner.order_status(client_order_id))

    async def cancel(self, client_order_id: str) -> None:
        await self._run(f"cancel {client_order_id}", lambda: self.inner.cancel(client_order_id))

    async def close_trade(self, instrument: Instrument, trade: Trade) -> BrokerExit:
        """Close, retrying transient failures: a close that already happened is returned, never repeated."""
        return await self._run(f"close {trade.signal_id}", lambda: self.inner.close_trade(instrument, trade))

    async def move_stop(self, instrument: Instrument, trade: Trade, stop: Decimal) -> None:
        await self._run(f"stop of {trade.signal_id}", lambda: self.inner.move_stop(instrument, trade, stop))

    async def positions(self) -> list[Trade]:
        return await self._run("positions", self.inner.positions)

    async def equity(self) -> Decimal:
        return await self._run("equity", self.inner.equity)

    async def trade_exit(self, client_order_id: str) -> BrokerExit | None:
        return await self._run(f"exit of {client_order_id}", lambda: self.inner.trade_exit(client_order_id))
