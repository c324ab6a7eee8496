"""Benchmark the order path: 1,000 approvals against the fake OANDA server with 10 % injected transient faults.

Each approval is the real desk path a click takes: re-check (expiry, pause, protections, a fresh quote over
HTTP), the approval and its order intent committed in one SQLite transaction, the order sent through the
OANDA adapter behind retries and the circuit breaker, the fill recorded with its trade. Before an approval,
with probability `--fault-rate`, one transient fault is queued on the order route, drawn evenly from: a 503,
a 429 with Retry-After 0, a timeout (the client gives up at 0.2 s), and "accept then 503" (the broker took the
order but the answer was lost: the duplicate-order trap).

Printed: orders at the broker, duplicates (client order ids with more than one order: must be 0), lost
(approved signals that are neither filled nor failed with a reason, or filled without an order at the
broker: must be 0), and click-to-acknowledged latency p50/p99, for clean and faulted approvals. Reference in
the same run: one bare HTTP round trip to the fake server (GET pricing), p50/p99.

Usage: python scripts/bench_orders.py [--approvals 1000] [--fault-rate 0.1] [--seed 7]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import random
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pydantic import SecretStr  # noqa: E402

from bot.brokers.oanda import OandaBroker, OandaSettings  # noqa: E402
from bot.brokers.resilience import CircuitBreaker, ResilientBroker, RetryPolicy  # noqa: E402
from bot.services.desk import DeskPolicy, SignalDesk  # noqa: E402
from bot.services.state import BotState  # noqa: E402
from bot.telegram.notifier import Notifier  # noqa: E402
from data.sqlite.store import SqliteStore  # noqa: E402
from engine.catalog import default_instrument  # noqa: E402
from engine.domain import QualityScore, ScoredSetup, Setup, Side, SignalStatus  # noqa: E402
from engine.exposure import ExposureLimits  # noqa: E402
from engine.ports import FixedClock  # noqa: E402
from engine.protections import ProtectionConfig  # noqa: E402
from engine.sizing import Sizing  # noqa: E402
from engine.trading import ExecutionMode, TradeKind  # noqa: E402
from tests.fakes.oanda_server import FakeOanda, Fault, Route  # noqa: E402

NOW = datetime(2025, 6, 12, 9, 40, tzinfo=UTC)
TRADER = 42
TOKEN = "bench-token"
ACCOUNT = "101-004-0000000-001"
FAULTS = (Fault.unavailable(), Fault.rate_limited(0), Fault.timeout(0.5), Fault.accept_then_fail())
OPEN = ProtectionConfig(
    max_open_positions=10**6,
    one_position_per_symbol=False,
    max_trades_per_day=None,
    daily_loss_fraction=None,
    max_consecutive_losses=None,
    max_drawdown_fraction=None,
    symbol_cooldown=timedelta(0),
    correlation_threshold=None,
)


# A thousand positions stay open here: the notional caps must not refuse them (each is sized as the desk does).
ROOMY = Sizing(exposure=ExposureLimits(max_total_leverage=Decimal(10**6)))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(p / 100 * len(ordered)) - 1, 0)] if ordered else float("nan")


def setups(count: int) -> list[ScoredSetup]:
    """`count` GBPUSD longs with distinct signal ids (bar times a second apart), all priced like the fake's quote."""
    out = []
    for k in range(count):
        bar = NOW - timedelta(hours=1, seconds=k)
        setup = Setup(
            "bench",
            "GBPUSD",
            Side.LONG,
            Decimal("1.35651"),
            Decimal("1.35347"),
            (Decimal("1.36259"),),
            bar,
            default_instrument("GBPUSD").interval,
        )
        out.append(ScoredSetup(setup, QualityScore(70.0, ())))
    return out


async def run(approvals: int, fault_rate: float, seed: int, workdir: Path) -> int:
    rng = random.Random(seed)
    instrument = default_instrument("GBPUSD")
    clock = FixedClock(NOW)
    async with FakeOanda(token=TOKEN, account_id=ACCOUNT) as oanda:
        oanda.set_price("GBP_USD", "1.35645", "1.35657")
        store = await SqliteStore.open(workdir / "bench.db")
        oanda_broker = OandaBroker(
            OandaSettings(ACCOUNT, SecretStr(TOKEN), base_url=oanda.base_url, timeout_s=0.2), {"GBPUSD": instrument}
        )
        breaker = CircuitBreaker("oanda", 5, timedelta(seconds=1), clock)
        broker = ResilientBroker(oanda_broker, breaker, RetryPolicy(attempts=5, base_delay=0.005, max_delay=0.05))
        state = BotState(store, ExecutionMode.MANUAL)
        notifier = Notifier(store, [TRADER], {"GBPUSD": instrument}, clock)
        policy = DeskPolicy(
            protections=OPEN,
            cooldown=timedelta(0),
            max_signals_per_run=10**6,
            digest_threshold=10**6,
            ttl_bars=10**4,
            sizing=ROOMY,
        )
        desk = SignalDesk(store, broker, notifier, state, clock, {"GBPUSD": instrument}, policy, TradeKind.LIVE)
        ids: list[str] = []
        all_setups = setups(approvals)
        for start in range(0, approvals, 200):
            chunk = all_setups[start : start + 200]
            run_id = await store.start_run(NOW, NOW, "bench", ["GBPUSD"])
            await store.finish_run(run_id, NOW, chunk, [], [])
            decisions = await desk.offer(chunk)
            ids += [d.signal_id for d in decisions if d.status is SignalStatus.PENDING]
        if len(ids) != approvals:
            print(f"only {len(ids)} of {approvals} signals were offered", file=sys.stderr)
            return 2

        async with httpx.AsyncClient(base_url=oanda.base_url, headers={"Authorization": f"Bearer {TOKEN}"}) as raw:
            reference = []
            for _ in range(200):
                t0 = time.perf_counter()
                (await raw.get(f"/v3/accounts/{ACCOUNT}/pricing", params={"instruments": "GBP_USD"})).raise_for_status()
                reference.append(time.perf_counter() - t0)

        clean, faulted, outcomes, injected = [], [], Counter[str](), Counter[str]()
        for signal_id in ids:
            fault = FAULTS[rng.randrange(len(FAULTS))] if rng.random() < fault_rate else None
            if fault is not None:
                oanda.inject(Route.ORDERS, fault)
                injected[fault.kind.value] += 1
            t0 = time.perf_counter()
            outcome = await desk.approve(signal_id, TRADER)
            (faulted if fault is not None else clean).append(time.perf_counter() - t0)
            outcomes[outcome.kind.value] += 1

        by_id = Counter(o["clientExtensions"]["id"] for o in oanda.orders)
        duplicates = sum(1 for n in by_id.values() if n > 1)
        statuses = Counter[str]()
        lost = 0
        for signal_id in ids:
            record = await store.signal(signal_id)
            assert record is not None
            statuses[record.status.value] += 1
            done = record.status is SignalStatus.FILLED and signal_id in by_id
            failed = record.status is SignalStatus.FAILED and bool(record.reason)
            lost += not (done or failed)
        trades = len(await store.open_trades([TradeKind.LIVE]))
        await oanda_broker.aclose()
        await store.close()

    ms = 1000.0
    print(f"approvals: {approvals}; transient faults injected: {sum(injected.values())} ({dict(injected)})")
    print(f"outcomes: {dict(outcomes)}; signal statuses: {dict(statuses)}")
    print(f"orders at the broker: {len(oanda.orders)}; open trades recorded: {trades}")
    print(f"duplicates: {duplicates} (must be 0); lost: {lost} (must be 0)")
    print(
        f"click to acknowledged, clean   : p50 {percentile(clean, 50) * ms:6.1f} ms  p99 "
        f"{percentile(clean, 99) * ms:6.1f} ms  ({len(clean)})"
    )
    print(
        f"click to acknowledged, faulted : p50 {percentile(faulted, 50) * ms:6.1f} ms  p99 "
        f"{percentile(faulted, 99) * ms:6.1f} ms  ({len(faulted)})"
    )
    print(
        f"reference, bare HTTP round trip to the fake: p50 {percentile(reference, 50) * ms:5.2f} ms  "
        f"p99 {percentile(reference, 99) * ms:5.2f} ms"
    )
    ok = duplicates == 0 and lost == 0 and len(oanda.orders) == statuses.get("filled", 0)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--approvals", type=int, default=1000)
    parser.add_argument("--fault-rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(run(args.approvals, args.fault_rate, args.seed, Path(tmp)))


if __name__ == "__main__":
    raise SystemExit(main())
