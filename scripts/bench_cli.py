"""Benchmark how fast the `tradebot` command line starts: `--help`, `--version` and the light commands.

Each is run as a trader runs it (`python -m bot.cli ...` in a fresh process, `--runs` times), in turn with the
reference: a bare interpreter that starts and exits (`python -c pass`), the floor no Python command goes below.
Medians; the figure's peak RSS (ru_maxrss of the child), how many modules it imported (`-X importtime`) and which
analysis libraries among them (pandas, TA-Lib, matplotlib, scipy, scikit-learn, exchange_calendars). The light
commands (`pause`, `resume`, `audit`) read their settings and flag or read a database in a temporary folder;
`health` also reads the watchlist's exchange calendars, kept in that folder's cache by an untimed first run (it
answers "unhealthy" here, with no bot running: exit code 1 is expected); `report` reads the profit summary
through the bot's own services (its runtime, read only) from the same database.

Goals: `tradebot --help` within 0.3 s; `--help`, `--version` and the light commands import no analysis library.

    .venv/bin/python scripts/bench_cli.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 0.3
COMMANDS = (
    ("tradebot --help", ["-m", "bot.cli", "--help"]),
    ("tradebot --version", ["-m", "bot.cli", "--version"]),
    ("tradebot pause", ["-m", "bot.cli", "pause"]),
    ("tradebot resume", ["-m", "bot.cli", "resume"]),
    ("tradebot audit", ["-m", "bot.cli", "audit", "-n", "5"]),
    ("tradebot health", ["-m", "bot.cli", "health"]),
    ("tradebot report", ["-m", "bot.cli", "report"]),
)
EXPECTED_CODES = {"tradebot health": (0, 1)}  # unhealthy without a running bot
REFERENCE = ("python -c pass", ["-c", "pass"])
ANALYSIS_LIBRARIES = frozenset({"pandas", "talib", "matplotlib", "scipy", "sklearn", "exchange_calendars"})
DB_DIR = Path(tempfile.mkdtemp(prefix="tradebot-bench-cli-"))


def run(args: Sequence[str]) -> float:
    """Seconds of one fresh process running `python args`."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=environment(), capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode not in EXPECTED_CODES.get(name_of(args), (0,)):
        raise SystemExit(f"python {' '.join(args)} exited {done.returncode}: {done.stderr.decode()[-2000:]}")
    return elapsed


def name_of(args: Sequence[str]) -> str:
    return next((name for name, argv in COMMANDS if list(argv) == list(args)), "")


def modules(args: Sequence[str]) -> list[str]:
    """The modules `python args` imports."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode not in EXPECTED_CODES.get(name_of(args), (0,)):
        raise SystemExit(f"python {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    return [line.split("|")[-1].strip() for line in lines[1:]]  # the first is the header


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEBOT_", "TELEGRAM_"))}
    return env | {"TRADEBOT_DB_PATH": str(DB_DIR / "bot.db")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    for _, argv in COMMANDS:  # a first start fills the OS page cache, .pyc files and the calendar cache: not timed
        run(argv)
    times: dict[str, list[float]] = {name: [] for name, _ in (*COMMANDS, REFERENCE)}
    peaks: dict[str, float] = {}
    for _ in range(args.runs):  # in turn: the commands and the reference see the same machine load
        for name, argv in (*COMMANDS, REFERENCE):
            times[name].append(run(argv))
    for name, argv in (*COMMANDS, REFERENCE):  # peak RSS one by one (ru_maxrss keeps the largest child so far)
        peaks[name] = peak_mb(argv)
    floor = statistics.median(times[REFERENCE[0]])
    print(
        f"{'command':20s} {'median':>9s} {'vs bare python':>15s} {'peak RSS':>10s} {'modules':>8s}  analysis libraries"
    )
    heavy_anywhere = False
    for name, argv in (*COMMANDS, REFERENCE):
        median = statistics.median(times[name])
        loaded = modules(argv)
        heavy = sorted({m.split(".")[0] for m in loaded} & ANALYSIS_LIBRARIES)
        heavy_anywhere = heavy_anywhere or bool(heavy)
        print(
            f"{name:20s} {median:8.3f}s {median / floor:14.1f}x {peaks[name]:8.1f} MB {len(loaded):8d}"
            f"  {', '.join(heavy) or 'none'}  (median of {args.runs}, in turn)"
        )
    shutil.rmtree(DB_DIR, ignore_errors=True)
    help_s = statistics.median(times[COMMANDS[0][0]])
    ok = help_s <= GOAL_S
    print(f"{'PASS' if ok else 'FAIL'}: tradebot --help {help_s:.3f} s, goal <= {GOAL_S} s")
    print(f"{'FAIL' if heavy_anywhere else 'PASS'}: no analysis library in --help, --version or the light commands")
    return 0 if ok and not heavy_anywhere else 1


def peak_mb(argv: Sequence[str]) -> float:
    """Peak RSS of one run of `python argv`, measured in a child of its own (ru_maxrss is per process tree)."""
    code = (
        "import resource, subprocess, sys; "
        f"subprocess.run([sys.executable, *{list(argv)!r}], capture_output=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment(), capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip()) / 1024


if __name__ == "__main__":
    raise SystemExit(main())
