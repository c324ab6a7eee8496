"""Benchmark the report commands over a long closed book: the figures, and that computing them never stalls the loop.

The real runtime (`open_runtime`, the CSV source, paper) with `--closed-trades` (2,000: a year of history) closed
paper trades in its book. Each report command's figures (/report, /profit, /daily, /performance, /trades,
/balance) and the web dashboard's view (its page reloads every 30 s) are computed as the running bot computes
them (`bot.services.reporting.Reporting`, `bot.services.dashboard.Dashboard`), while a ticker on the event loop
measures how late it wakes every millisecond: the delay a button press would see (the start-up heap frozen out
of the cyclic collector's full passes and the GIL's switch interval set, as `tradebot run` does). Reference in
the same run: the same figures computed on the event loop's own thread from the book already read (what the bot
did before: the store's decoding of the rows is left out of it, in its favour). Runs alternate A B A B; medians.
The protections' fold of the closed book is made before, as `tradebot run` makes it at start (about 20 ms of it on
the loop for 2,000 trades; again whenever a conversion price in its key moves).

Goal: the loop's worst wake-up delay while a command computes stays under 10 ms (a click is answered in
milliseconds).

    .venv/bin/python scripts/bench_commands.py [--runs 5] [--closed-trades 2000] [--market-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_bot import WARM_AT, seed_closed_trades  # noqa: E402

from bot.bootstrap import open_runtime  # noqa: E402
from bot.config import load_settings  # noqa: E402
from bot.ops.clock import BotClock  # noqa: E402
from bot.ops.memory import freeze_heap  # noqa: E402
from bot.services.book import REAL_KINDS, TRADED_KINDS  # noqa: E402
from bot.services.dashboard import Dashboard  # noqa: E402
from bot.services.reporting import Reporting  # noqa: E402
from bot.services.reports import Period, by_period, performance_rows, profit  # noqa: E402
from bot.services.runtime import BotRuntime  # noqa: E402
from bot.telegram.app import GIL_SWITCH_SECONDS  # noqa: E402
from engine.performance import summarize  # noqa: E402
from engine.trading import TradeKind  # noqa: E402

GOAL_LAG_MS = 10.0
Work = Callable[[], Awaitable[Any]]


async def ticker(stop: asyncio.Event, lags: list[float]) -> None:
    """Sleep 1 ms at a time and record how late each wake-up came (ms)."""
    while not stop.is_set():
        asked = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append((time.perf_counter() - asked) * 1000 - 1.0)


async def measure(work: Work) -> tuple[float, float]:
    """(ms the work took, the loop's worst wake-up delay in ms meanwhile)."""
    stop, lags = asyncio.Event(), []  # type: ignore[var-annotated]
    tick = asyncio.create_task(ticker(stop, lags))
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    await work()
    took = (time.perf_counter() - started) * 1000
    stop.set()
    await tick
    return took, max(lags, default=0.0)


def commands(rt: BotRuntime, book: dict[str, Any]) -> dict[str, tuple[Work, Work]]:
    """Each command: (as the bot computes it, the same figures on the loop from the book read before)."""
    reporting = Reporting(rt)
    money, desk = rt.desk.account_pnl, rt.desk
    closed, shadow, real = book["closed"], book["shadow"], book["real"]
    today = rt.clock.now().date()

    async def report_here() -> None:
        summarize(closed, money)
        for name in sorted({t.strategy for t in closed}):
            summarize([t for t in closed if t.strategy == name], money)
        summarize(shadow, money)

    async def profit_here() -> None:
        profit(closed, money, {}, desk.policy.equity, reporting.currency)

    async def daily_here() -> None:
        by_period(closed, money, Period.DAY, 7, today)

    async def performance_here() -> None:
        performance_rows(closed, money, book["systems"], rt.clock.now())

    async def trades_here() -> None:
        ended = sorted(closed, key=lambda t: (t.exit_time, t.trade_id), reverse=True)
        [money(t) for t in ended[:10]]

    async def balance_here() -> None:
        sum((money(t) for t in real), 0)

    async def dashboard_here() -> None:  # its equity curve: the part over the whole closed book
        equity = peak = desk.policy.equity
        for trade in real:
            equity += money(trade)
            peak = max(peak, equity)

    return {
        "/report": (reporting.overview, report_here),
        "/profit": (reporting.profit, profit_here),
        "/daily": (lambda: reporting.periods(Period.DAY, 7), daily_here),
        "/performance": (reporting.performance, performance_here),
        "/trades": (lambda: reporting.trades(10), trades_here),
        "/balance": (reporting.balance, balance_here),
        "dashboard": (Dashboard(rt).view, dashboard_here),
    }


async def bench(args: argparse.Namespace) -> int:
    sys.setswitchinterval(GIL_SWITCH_SECONDS)  # as `tradebot run` sets it
    work = Path(tempfile.mkdtemp(prefix="tradebot-bench-commands-"))
    settings = load_settings(
        {}, data_source=f"csv:{args.market_dir}", db_path=work / "bot.db", TELEGRAM_ALLOWED_USERS="42"
    )
    async with open_runtime(settings, BotClock(WARM_AT)) as rt:
        await asyncio.to_thread(seed_closed_trades, work / "bot.db", list(rt.instruments.values()), args.closed_trades)
        book = {
            "closed": await rt.store.trades(TRADED_KINDS),
            "shadow": await rt.store.trades([TradeKind.SHADOW]),
            "real": await rt.store.trades(list(REAL_KINDS)),
            "systems": await rt.desk.systems.refresh(rt.store),
        }
        await rt.desk.warm(rt.clock.now())  # the protections' folds of the closed book, as the bot makes them at start
        freeze_heap()  # as the running bot does once it has started
        print(
            f"{len(book['closed']):,} closed trades in the book; {args.runs} runs of each, in turn with the reference"
        )
        print(f"{'command':13s} {'took':>9s} {'loop delay':>11s} {'worst':>8s}   {'reference on the loop':>22s}")
        worst_of_all = 0.0
        for name, (bot_way, on_loop) in commands(rt, book).items():
            mine, theirs = [], []
            for _ in range(args.runs):
                mine.append(await measure(bot_way))
                theirs.append(await measure(on_loop))
            worst = max(lag for _, lag in mine)
            worst_of_all = max(worst_of_all, worst)
            took, lag = statistics.median(t for t, _ in mine), statistics.median(d for _, d in mine)
            their_took, their_lag = statistics.median(t for t, _ in theirs), statistics.median(d for _, d in theirs)
            print(
                f"{name:13s} {took:7.1f}ms {lag:9.1f}ms {worst:6.1f}ms   "
                f"took {their_took:6.1f} ms, loop delay {their_lag:6.1f} ms"
            )
    ok = worst_of_all <= GOAL_LAG_MS
    print(f"{'PASS' if ok else 'FAIL'}: the loop's worst delay {worst_of_all:.1f} ms, goal <= {GOAL_LAG_MS:g} ms")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--closed-trades", type=int, default=2000)
    parser.add_argument("--market-dir", type=Path, default=ROOT.parent / "shared" / "data" / "market")
    args = parser.parse_args()
    if not args.market_dir.is_dir():
        print(f"market data not found at {args.market_dir}", file=sys.stderr)
        return 2
    return asyncio.run(bench(args))


if __name__ == "__main__":
    raise SystemExit(main())
