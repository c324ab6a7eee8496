"""Measure the drift detector: false alarms when nothing changed, detection of a 20-point win-rate drop.

Part 1, the baseline estimated (what the bot faces): the baseline win rate is itself measured on the gate's
n_b out-of-sample trades. For each n_b in `--baseline-sizes` (30, 70, 200: the gate's minimum, a typical pair,
a long history) and each true win rate, `--runs` (2,000) runs each draw their own baseline of n_b trades and
then live trades at the same true rate (false alarm: any HIGH within 100 trades, checked after every trade) or
at the true rate less 0.20 (detection within 50 trades). Beside them: the false alarm of the former calibration,
which took the baseline rate as exact, on the same runs; and the bound (below). Target: false alarm <= 5 %.

Part 2, the baseline taken as the truth (the former benchmark): baselines are synthetic out-of-sample R samples
of `--baseline-n` trades (default 200) with an exact win count: wins pay about `payoff` R (normal, sd 0.3 x
payoff, at least +0.1R), 95 % of the rest lose -1R minus a small fee (|normal(0, 0.03)|), 5 % are scratch trades
within +-0.02R (breakevens: not wins). Grid: win rates 0.25 to 0.55 at about 2R, and 0.55 and 0.60 at about 1R.
Per baseline, with `engine.drift`'s default `DriftConfig`:

* false alarm: `--sequences` (1,000) sequences of 100 trades drawn with replacement from the baseline,
  checked after every trade (`assess` on all trades so far, from min_trades on); the fraction with any check
  at HIGH or above. Target: at most 5 %.
* detection: `--sequences` degraded sequences of 50 trades (a win with probability baseline win rate - 0.20,
  drawn from the baseline's wins, otherwise from its non-wins: same payoff, lower win rate); the fraction
  with a check at HIGH or above within the 50 trades. Target: at least 90 %. Median delay: the median over
  all degraded sequences of the trade count at the first HIGH check, checking up to 100 trades ("-" when
  fewer than half alarm by then).
* bound: the power of the most powerful fixed-size test (randomised Neyman-Pearson binomial test) at level
  5 % on the first 50 trades, the baseline rate known. Any detector whose alarms within 100 trades stay at or
  below 5 % is such a test on its first 50 trades, so no honest detector beats this column.
* naive: the kind of rule it replaces, "alarm when the win rate over the last 20 trades is more than 15 %
  below the baseline's", checked after every trade from the 20th, on the same sequences.

The HIGH checks come from `engine.drift.first_high_checks` (the detector path, vectorised); unless
`--verify 0`, the first `--verify` sequences of each kind per baseline are also graded by calling `assess` on
every prefix, and any disagreement is reported.

Usage: python scripts/bench_drift.py [--runs 2000] [--baseline-sizes 30,70,200] [--sequences 1000]
                                    [--baseline-n 200] [--verify 5] [--seed 7] [--design-drop 0.15]
                                    [--head-start 0.5]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.drift import (  # noqa: E402
    DEFAULT_CONFIG,
    WIN_R,
    DriftConfig,
    FloatArray,
    Severity,
    assess,
    detector_rates,
    detector_threshold,
    first_high_checks,
)
from engine.drift_simulation import (  # noqa: E402
    bootstrap_sequences,
    degraded_sequences,
    fixed_sample_power_bound,
    simulate_estimated_detection,
    simulate_estimated_false_alarms,
)
from engine.performance import TradeStats  # noqa: E402

FA_TARGET = 0.05
DETECTION_TARGET = 0.90
DROP = 0.20
LENGTH = 100
WITHIN = 50
NAIVE_WINDOW = 20
NAIVE_DROP = 0.15
ESTIMATED_RATES = (0.25, 0.35, 0.45, 0.55)
GRID = (
    *((win_rate, 2.0) for win_rate in (0.25, 0.30, 0.35, 0.40, 0.45, 0.50, 0.55)),
    (0.55, 1.0),
    (0.60, 1.0),
)


@dataclass(frozen=True, slots=True)
class Row:
    """One baseline's measured figures."""

    win_rate: float
    payoff: float
    h: float
    false_alarm: float
    detection: float
    median_delay: float
    bound: float
    naive_false_alarm: float
    naive_detection: float
    mismatches: int


def synthetic_baseline(win_rate: float, payoff: float, n: int, seed: int) -> tuple[float, ...]:
    """Return n R multiples with round(win_rate x n) wins of about `payoff` R, the rest losses and scratches."""
    rng = np.random.default_rng(seed)
    wins = round(win_rate * n)
    scratches = round(0.05 * (n - wins))
    losses = n - wins - scratches
    r = np.concatenate(
        [
            np.maximum(rng.normal(payoff, 0.3 * payoff, wins), 0.1),
            -1.0 - np.abs(rng.normal(0.0, 0.03, losses)),
            rng.uniform(-0.02, 0.02, scratches),
        ]
    )
    rng.shuffle(r)
    return tuple(float(x) for x in r)


def naive_first_alarm(sequences: FloatArray, baseline_win_rate: float) -> FloatArray:
    """Return per row the first trade count at which the last-20 win rate is 15 % below baseline (inf if none)."""
    wins = np.cumsum(sequences >= WIN_R, axis=1)
    padded = np.concatenate([np.zeros((len(wins), 1)), wins], axis=1)
    recent = (padded[:, NAIVE_WINDOW:] - padded[:, :-NAIVE_WINDOW]) / NAIVE_WINDOW  # windows ending at 20, 21, ...
    hit = recent < baseline_win_rate * (1 - NAIVE_DROP)
    first = np.full(len(sequences), np.inf)
    any_hit = hit.any(axis=1)
    first[any_hit] = np.argmax(hit[any_hit], axis=1) + NAIVE_WINDOW
    return first


def assess_first_high(sequence: FloatArray, baseline: tuple[float, ...], config: DriftConfig) -> float:
    """Grade every prefix with `assess` and return the first trade count at HIGH or above (inf if none)."""
    for t in range(1, len(sequence) + 1):
        if assess(sequence[:t].tolist(), baseline, config).severity >= Severity.HIGH:
            return float(t)
    return float("inf")


def measure(win_rate: float, payoff: float, config: DriftConfig, args: argparse.Namespace) -> Row:
    baseline = synthetic_baseline(win_rate, payoff, args.baseline_n, args.seed)
    stats = TradeStats.of(baseline)
    assert stats.win_rate is not None
    null = bootstrap_sequences(baseline, args.sequences, LENGTH, seed=args.seed + 1)
    worse = degraded_sequences(baseline, DROP, args.sequences, LENGTH, seed=args.seed + 2)
    null_first = first_high_checks(null, baseline, config)
    worse_first = first_high_checks(worse, baseline, config)
    mismatches = 0
    for kind, first in ((null, null_first), (worse, worse_first)):
        for i in range(min(args.verify, len(kind))):
            mismatches += assess_first_high(kind[i], baseline, config) != first[i]
    p0 = detector_rates(stats.win_rate, config)[0]
    return Row(
        win_rate=stats.win_rate,
        payoff=payoff,
        h=detector_threshold(stats.win_rate, config, args.baseline_n),
        false_alarm=float(np.mean(np.isfinite(null_first))),
        detection=float(np.mean(worse_first <= WITHIN)),
        median_delay=float(np.median(worse_first)),
        bound=fixed_sample_power_bound(p0, max(p0 - DROP, 0.0), WITHIN, FA_TARGET),
        naive_false_alarm=float(np.mean(np.isfinite(naive_first_alarm(null, stats.win_rate)))),
        naive_detection=float(np.mean(naive_first_alarm(worse, stats.win_rate) <= WITHIN)),
        mismatches=mismatches,
    )


def estimated(cfg: DriftConfig, args: argparse.Namespace) -> bool:
    """Part 1: every run draws its own baseline of n_b trades; print false alarm and detection per n_b."""
    sizes = [int(n) for n in args.baseline_sizes.split(",")]
    print(f"Part 1: the baseline rate estimated from n_b trades, {args.runs} runs per figure (target FA <= 5 %)")
    header = f"{'n_b':>4} {'win':>5} | {'FA@100':>6} {'ok':>3} {'exact-p FA':>10} | {'det@50':>6} {'bound':>6}"
    print(header)
    print("-" * len(header))
    exact = replace(cfg, estimated_baseline=False)
    all_ok = True
    for n in sizes:
        for rate in ESTIMATED_RATES:
            fa = simulate_estimated_false_alarms(rate, n, cfg, runs=args.runs, seed=args.seed + n)
            old = simulate_estimated_false_alarms(rate, n, exact, runs=args.runs, seed=args.seed + n)
            det = simulate_estimated_detection(
                rate, n, cfg, DROP, runs=args.runs, within=WITHIN, seed=args.seed + 2 * n
            )
            p0 = detector_rates(rate, cfg)[0]
            bound = fixed_sample_power_bound(p0, max(p0 - DROP, 0.0), WITHIN, FA_TARGET)
            ok = fa <= FA_TARGET
            all_ok &= ok
            print(f"{n:4d} {rate:5.2f} | {fa:6.1%} {'yes' if ok else 'NO':>3} {old:10.1%} | {det:6.1%} {bound:6.1%}")
    print(f"false alarm within target for every baseline size and win rate: {'PASS' if all_ok else 'FAIL'}")
    return all_ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2000, help="runs per figure with an estimated baseline")
    parser.add_argument("--baseline-sizes", default="30,70,200", help="n_b: baseline trades the rate is measured on")
    parser.add_argument("--sequences", type=int, default=1000)
    parser.add_argument("--baseline-n", type=int, default=200)
    parser.add_argument("--verify", type=int, default=5, help="sequences per kind and baseline graded by assess")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--design-drop", type=float, default=DEFAULT_CONFIG.win_rate_drop, help="detector design")
    parser.add_argument("--head-start", type=float, default=DEFAULT_CONFIG.head_start, help="fraction of h")
    args = parser.parse_args()
    cfg = replace(DEFAULT_CONFIG, win_rate_drop=args.design_drop, head_start=args.head_start)
    started = time.perf_counter()
    estimated_ok = estimated(cfg, args)
    print(f"({time.perf_counter() - started:.1f} s)\n\nPart 2: the baseline taken as the truth")
    print(
        f"detector: Bernoulli CUSUM designed for a {cfg.win_rate_drop:.2f} drop, head start {cfg.head_start}, "
        f"h for any-time false alarm <= {cfg.false_alarm} over {cfg.horizon} trades at "
        f"{cfg.calibration_confidence:.0%} confidence ({cfg.simulations} simulations)"
    )
    print(
        f"{args.sequences} sequences per figure; baseline {args.baseline_n} trades; true drop {DROP:.2f}; "
        f"targets: false alarm <= {FA_TARGET:.0%}, detection within {WITHIN} >= {DETECTION_TARGET:.0%}"
    )
    header = (
        f"{'win':>5} {'payoff':>6} {'h':>5} | {'FA@100':>6} {'ok':>3} | {'det@50':>6} {'ok':>3} {'median':>6} "
        f"{'bound':>6} | {'naive FA':>8} {'naive det':>9} | {'assess':>6}"
    )
    print(header)
    print("-" * len(header))
    started = time.perf_counter()
    met_both = 0
    mismatches = 0
    for win_rate, payoff in GRID:
        row = measure(win_rate, payoff, cfg, args)
        fa_ok = row.false_alarm <= FA_TARGET
        det_ok = row.detection >= DETECTION_TARGET
        met_both += fa_ok and det_ok
        mismatches += row.mismatches
        median = "-" if np.isinf(row.median_delay) else f"{row.median_delay:.0f}"
        print(
            f"{row.win_rate:5.2f} {row.payoff:5.1f}R {row.h:5.2f} | "
            f"{row.false_alarm:6.1%} {'yes' if fa_ok else 'NO':>3} | "
            f"{row.detection:6.1%} {'yes' if det_ok else 'NO':>3} {median:>6} {row.bound:6.1%} | "
            f"{row.naive_false_alarm:8.1%} {row.naive_detection:9.1%} | "
            f"{'agrees' if row.mismatches == 0 else f'{row.mismatches} off':>6}"
        )
    print(f"both targets met on {met_both} of {len(GRID)} baselines; {time.perf_counter() - started:.1f} s")
    if args.verify:
        print(f"assess() on every prefix of {args.verify} sequences per kind and baseline: {mismatches} disagreements")
    return 0 if mismatches == 0 and estimated_ok else 1


if __name__ == "__main__":
    sys.exit(main())
