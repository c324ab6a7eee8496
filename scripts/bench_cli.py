"""Benchmark how fast the `tradebot` command line starts: `tradebot --help` and `tradebot --version`.

Each is run as a trader runs it (`python -m bot.cli ...` in a fresh process, `--runs` times), in turn with the
reference: a bare interpreter that starts and exits (`python -c pass`), the floor no Python command goes below.
Medians; the figure's peak RSS (ru_maxrss of the child) and how many modules it imported (`-X importtime`).

Goal: `tradebot --help` within 0.3 s.

    .venv/bin/python scripts/bench_cli.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 0.3
COMMANDS = (("tradebot --help", ["-m", "bot.cli", "--help"]), ("tradebot --version", ["-m", "bot.cli", "--version"]))
REFERENCE = ("python -c pass", ["-c", "pass"])


def run(args: Sequence[str]) -> float:
    """Seconds of one fresh process running `python args`."""
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=ROOT, env=environment(), capture_output=True, check=True)
    return time.perf_counter() - started


def modules(args: Sequence[str]) -> int:
    """How many modules `python args` imports."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        cwd=ROOT,
        env=environment(),
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    return len(lines) - 1  # the first is the header


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("TRADEBOT_", "TELEGRAM_"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    run(COMMANDS[0][1])  # a first start fills the OS page cache and writes .pyc files: not timed
    times: dict[str, list[float]] = {name: [] for name, _ in (*COMMANDS, REFERENCE)}
    peaks: dict[str, float] = {}
    for _ in range(args.runs):  # in turn: the commands and the reference see the same machine load
        for name, argv in (*COMMANDS, REFERENCE):
            times[name].append(run(argv))
    for name, argv in (*COMMANDS, REFERENCE):  # peak RSS one by one (ru_maxrss keeps the largest child so far)
        peaks[name] = peak_mb(argv)
    floor = statistics.median(times[REFERENCE[0]])
    print(f"{'command':20s} {'median':>9s} {'vs bare python':>15s} {'peak RSS':>10s} {'modules':>8s}")
    for name, argv in (*COMMANDS, REFERENCE):
        median = statistics.median(times[name])
        print(
            f"{name:20s} {median:8.3f}s {median / floor:14.1f}x {peaks[name]:8.1f} MB {modules(argv):8d}"
            f"  (median of {args.runs}, in turn)"
        )
    help_s = statistics.median(times[COMMANDS[0][0]])
    ok = help_s <= GOAL_S
    print(f"{'PASS' if ok else 'FAIL'}: tradebot --help {help_s:.3f} s, goal <= {GOAL_S} s")
    return 0 if ok else 1


def peak_mb(argv: Sequence[str]) -> float:
    """Peak RSS of one run of `python argv`, measured in a child of its own (ru_maxrss is per process tree)."""
    code = (
        "import resource, subprocess, sys; "
        f"subprocess.run([sys.executable, *{list(argv)!r}], capture_output=True, check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment(), capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip()) / 1024


if __name__ == "__main__":
    raise SystemExit(main())
