"""Benchmark the memory of the real `tradebot run` process: RSS over repeated full analyses, and its flatness.

The bot runs as its own process (`python -m bot.cli run`, paper broker, the CSV source on the shared data, the
default 16-instrument watchlist, the malloc arena limit of trading-bot.service) against the Bot API server
built into tradebot (in this process, so its records do not count). The trader sends /signal `--runs` times;
after each run's summary the bot process's VmRSS is read from /proc. Half way, the trader sends /learn: the
learning run the bot makes once a day (backtests of every watchlist pair over `[learning] backtest_bars` of
history), whose memory a bot running for days carries. Before the bot starts, its database gets `--closed-trades`
closed paper trades (2,000 by default, a year of history: the book `bench_bot.py` seeds), as a bot that has traded
has: the statistics the bot shows of them (the posteriors in the /learn message, drift) are part of what it holds.
Reference in the same run: the RSS of a bare interpreter that only imports what `tradebot run` imports before it
serves (the floor the bot cannot go below).

Goal: at most 150 MB after the runs, and flat (growth from the 5th run to the last at most 5 MB). Also printed:
the RSS of the bot's child processes (its worker) and the PSS of the bot and its children together (what the
machine gives them, each shared library page counted once), which the goal does not cover. `--python` runs the
bot (and the reference) with another interpreter: a venv with `pip install .` only is what a server runs (the
development extras add packages, cryptography and tornado, that python-telegram-bot imports when present).

    .venv/bin/python scripts/bench_rss.py [--runs 40] [--data ../shared/data/market] [--python VENV/bin/python]
                                          [--closed-trades 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.sandbox.botapi import BotApiServer  # noqa: E402
from data.sqlite.store import SqliteStore  # noqa: E402
from engine.catalog import DEFAULT_WATCHLIST  # noqa: E402

TOKEN = "123456789:AAHbenchTokenForRssOnly_abcdefghijkl"
TRADER = 42
GOAL_MB, FLAT_MB = 150.0, 5.0
IMPORTS = "import bot.bootstrap, bot.telegram.app, bot.telegram.handlers, bot.cli.commands"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def pss_mb(pid: int) -> float:
    """Proportional set size: resident pages with each shared page divided among the processes mapping it."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no Pss for process {pid}")


def family_pss_mb(pid: int) -> float:
    """PSS of a process and all its descendants: what they take from the machine together (shared libraries
    counted once)."""
    total = pss_mb(pid)
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                total += family_pss_mb(int(child))
            except (FileNotFoundError, RuntimeError):
                continue  # it ended meanwhile
    return total


def children_mb(pid: int) -> float:
    """RSS of the bot's child processes and theirs (the fork server and the worker forked from it: the scan's and
    the charts' CPU work; the multiprocessing resource tracker), summed: pages they share are counted in each."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                total += rss_mb(int(child)) + children_mb(int(child))
            except (FileNotFoundError, RuntimeError):
                continue  # it ended meanwhile
    return total


def floor_mb(python: str) -> float:
    """RSS of an interpreter that imported what the bot imports at start, and nothing else."""
    code = f"{IMPORTS}\nimport os\nprint(open(f'/proc/{{os.getpid()}}/status').read())"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    line = next(x for x in out.splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/market")
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="the interpreter that runs the bot (default: this one); e.g. a venv with `pip install .` only, as a "
        "server has it: the development extras add packages python-telegram-bot imports when present",
    )
    parser.add_argument("--closed-trades", type=int, default=2000, help="closed paper trades in the book first")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"no market data folder at {args.data}", file=sys.stderr)
        return 2
    samples: list[float] = []
    children: list[float] = []
    together: list[float] = []
    with tempfile.TemporaryDirectory() as work:
        if args.closed_trades:
            from bench_bot import seed_closed_trades  # noqa: PLC0415 - the book bench_bot seeds

            async with await SqliteStore.open(Path(work) / "bot.db"):
                pass  # its schema
            seed_closed_trades(Path(work) / "bot.db", DEFAULT_WATCHLIST, args.closed_trades)
        async with BotApiServer(token=TOKEN) as tg:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEBOT_", "TELEGRAM_"))}
            env |= tg.env() | {
                "TELEGRAM_ALLOWED_USERS": str(TRADER),
                "TRADEBOT_DATA_SOURCE": f"csv:{args.data}",
                "TRADEBOT_DB_PATH": str(Path(work) / "bot.db"),
                "TRADEBOT_CLOCK_START": "2025-06-12T09:40:00Z",
                "TRADEBOT_METRICS__ENABLED": "false",
                "TRADEBOT_BACKTEST__VALIDATE_IN_BACKGROUND": "false",
                "MALLOC_ARENA_MAX": "2",  # as trading-bot.service runs it
            }
            proc = await asyncio.create_subprocess_exec(
                args.python, "-m", "bot.cli", "run", cwd=work, env=env, stderr=asyncio.subprocess.DEVNULL
            )
            try:
                await tg.wait_for_polling(timeout=60)
                for run in range(1, args.runs + 1):
                    since = len(tg.sent)
                    tg.user_message(TRADER, "/signal")
                    await tg.wait_for_message(lambda m: m.body.startswith("Run "), since=since, timeout=120)
                    samples.append(rss_mb(proc.pid))
                    children.append(children_mb(proc.pid))
                    together.append(family_pss_mb(proc.pid))
                    if run == args.runs // 2:
                        before = rss_mb(proc.pid)
                        since = len(tg.sent)
                        tg.user_message(TRADER, "/learn")
                        await tg.wait_for_message(lambda m: "learned model" in m.body, since=since, timeout=600)
                        learned = rss_mb(proc.pid)
                        print(f"  /learn after run {run}: RSS {before:6.1f} MB before, {learned:6.1f} MB after")
                    if run % 10 == 0 or run == 1:
                        print(f"  run {run:4d}: RSS {samples[-1]:6.1f} MB; its child processes {children[-1]:6.1f} MB")
            finally:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), timeout=30)
    floor = floor_mb(args.python)
    last, early = samples[-1], samples[min(4, len(samples) - 1)]
    growth = last - early
    print(f"interpreter: {args.python}")
    print(f"tradebot run RSS after {len(samples)} analyses: {last:.1f} MB (peak sampled {max(samples):.1f} MB)")
    print(f"reference, the start-up imports alone: {floor:.1f} MB; ratio {last / floor:.2f}x")
    print(f"growth from run 5 to run {len(samples)}: {growth:+.1f} MB")
    print(
        f"its child processes (the fork server, the worker, the resource tracker): {children[-1]:.1f} MB more "
        f"({last + children[-1]:.1f} MB in all; not in the goal, which is the bot's own process)"
    )
    print(f"the bot and its child processes together, PSS (shared pages counted once): {together[-1]:.1f} MB")
    ok = last <= GOAL_MB and growth <= FLAT_MB
    print(f"{'PASS' if ok else 'FAIL'}: goal <= {GOAL_MB:.0f} MB and flat (growth <= {FLAT_MB:.0f} MB)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
