"""Monte Carlo over a sequence of trade R multiples: how bad could the same edge have looked?

Decisions, so every number means one thing:

* Equity compounds fixed-fractionally from 1.0: each trade multiplies it by `1 + r x risk_fraction`. A trade
  with `r x risk_fraction < -1` would lose more than the whole account and is rejected.
* SHUFFLE permutes the order of the given trades in every run: the multiset is the same, so the final return
  is the same in every run (up to floating-point rounding) while drawdowns and streaks vary. BOOTSTRAP draws
  the same number of trades with replacement, so the final return varies too.
* Max drawdown of a run is the largest fall from a running peak, as a fraction 0..1 of that peak; the
  starting equity 1.0 counts as the first peak, so a first losing trade is already a drawdown.
* A loss is a trade of at most -0.05R, the breakeven band of `engine.performance`: a scratch trade is not a
  loss and ends a losing streak. The longest losing streak counts consecutive losses.
* Ruin is a run whose max drawdown reaches `ruin_drawdown` (at or beyond it) at any point; its probability is
  the fraction of runs that did. A deeper ruin level can never be more likely than a shallower one.
* Percentiles use numpy's "inverted_cdf": each reported value is an outcome some run actually produced (no
  interpolation between runs, so a streak percentile is a whole number of trades).
* Zero trades give a report with `is_empty` true and None for every statistic: there is nothing to resample.
* Runs are vectorised (a runs x trades matrix per chunk of runs), deterministic for a given seed.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import numpy as np
import numpy.typing as npt

from engine.performance import BREAKEVEN_BAND

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

LOSS_THRESHOLD_R: Final = -float(BREAKEVEN_BAND)
PERCENTILES: Final = (5, 25, 50, 75, 95)
_CHUNK_CELLS: Final = 2_000_000  # runs x trades cells simulated at once (16 MB of float64 per matrix)


class Resampling(StrEnum):
    SHUFFLE = "shuffle"  # permute the trade order (same trades)
    BOOTSTRAP = "bootstrap"  # draw the same number of trades with replacement


@dataclass(frozen=True, slots=True)
class Percentiles:
    """The 5th, 25th, 50th, 75th and 95th percentiles of one outcome over the runs."""

    p5: float
    p25: float
    p50: float
    p75: float
    p95: float

    def __post_init__(self) -> None:
        values = (self.p5, self.p25, self.p50, self.p75, self.p95)
        if not all(np.isfinite(values)):
            raise ValueError(f"percentiles must be finite, were {values}")
        if any(a > b for a, b in itertools.pairwise(values)):
            raise ValueError(f"percentiles must not decrease from p5 to p95, were {values}")

    @classmethod
    def of(cls, values: npt.NDArray[np.floating] | npt.NDArray[np.integer]) -> Percentiles:
        """Summarise the outcomes of every run."""
        p = np.percentile(values, PERCENTILES, method="inverted_cdf")
        return cls(*(float(x) for x in p))


@dataclass(frozen=True, eq=False)
class MonteCarloRuns:
    """Per-run outcomes of a simulation, one value per run in run order."""

    max_drawdown: FloatArray
    final_return: FloatArray
    longest_losing_streak: IntArray

    def __post_init__(self) -> None:
        n = len(self.max_drawdown)
        if len(self.final_return) != n or len(self.longest_losing_streak) != n:
            raise ValueError("every per-run outcome array must hold one value per run")

    def __len__(self) -> int:
        return len(self.max_drawdown)

    def ruin_probability(self, ruin_drawdown: float) -> float:
        """Fraction of runs whose max drawdown reached `ruin_drawdown`."""
        _check_ruin(ruin_drawdown)
        return float(np.mean(self.max_drawdown >= ruin_drawdown)) if len(self) else 0.0


@dataclass(frozen=True, slots=True)
class MonteCarloReport:
    """Distribution of drawdown, final return and losing streaks over resampled trade sequences."""

    method: Resampling
    runs: int
    trades: int
    risk_fraction: float
    ruin_drawdown: float
    seed: int
    max_drawdown: Percentiles | None
    final_return: Percentiles | None
    longest_losing_streak: Percentiles | None
    ruin_probability: float | None

    def __post_init__(self) -> None:
        stats = (self.max_drawdown, self.final_return, self.longest_losing_streak, self.ruin_probability)
        if self.trades == 0 and any(s is not None for s in stats):
            raise ValueError("a report over zero trades must not carry statistics")
        if self.trades > 0 and any(s is None for s in stats):
            raise ValueError("a report over trades must carry every statistic")
        if self.ruin_probability is not None and not 0.0 <= self.ruin_probability <= 1.0:
            raise ValueError(f"ruin_probability must be within 0..1, was {self.ruin_probability}")

    @property
    def is_empty(self) -> bool:
        return self.trades == 0


def monte_carlo(
    r_multiples: Sequence[float] | npt.NDArray[np.floating],
    *,
    runs: int = 1000,
    method: Resampling = Resampling.SHUFFLE,
    risk_fraction: float = 0.01,
    ruin_drawdown: float = 0.3,
    seed: int = 0,
) -> MonteCarloReport:
    """Resample the trades `runs` times and summarise drawdown, final return, streaks and ruin."""
    _check_ruin(ruin_drawdown)
    outcomes = simulate_runs(r_multiples, runs=runs, method=method, risk_fraction=risk_fraction, seed=seed)
    trades = len(np.asarray(r_multiples))
    empty = trades == 0
    return MonteCarloReport(
        method=Resampling(method),
        runs=runs,
        trades=trades,
        risk_fraction=risk_fraction,
        ruin_drawdown=ruin_drawdown,
        seed=seed,
        max_drawdown=None if empty else Percentiles.of(outcomes.max_drawdown),
        final_return=None if empty else Percentiles.of(outcomes.final_return),
        longest_losing_streak=None if empty else Percentiles.of(outcomes.longest_losing_streak),
        ruin_probability=None if empty else outcomes.ruin_probability(ruin_drawdown),
    )


def simulate_runs(
    r_multiples: Sequence[float] | npt.NDArray[np.floating],
    *,
    runs: int = 1000,
    method: Resampling = Resampling.SHUFFLE,
    risk_fraction: float = 0.01,
    seed: int = 0,
) -> MonteCarloRuns:
    """Simulate every run and return its outcomes (no runs' worth of values when there are no trades)."""
    r = _checked_r(r_multiples, risk_fraction)
    method = Resampling(method)
    if isinstance(runs, bool) or not isinstance(runs, int | np.integer) or runs < 1:
        raise ValueError(f"runs must be a whole number of at least 1, was {runs!r}")
    n = len(r)
    if n == 0:
        return MonteCarloRuns(np.empty(0), np.empty(0), np.empty(0, dtype=np.int64))
    rng = np.random.default_rng(seed)
    rows_per_chunk = max(1, _CHUNK_CELLS // n)
    drawdowns, finals, streaks = [], [], []
    for first in range(0, runs, rows_per_chunk):
        rows = min(rows_per_chunk, runs - first)
        if method is Resampling.SHUFFLE:
            sample = rng.permuted(np.tile(r, (rows, 1)), axis=1)
        else:
            sample = r[rng.integers(0, n, size=(rows, n))]
        dd, final, streak = _outcomes(sample, risk_fraction)
        drawdowns.append(dd)
        finals.append(final)
        streaks.append(streak)
    return MonteCarloRuns(np.concatenate(drawdowns), np.concatenate(finals), np.concatenate(streaks))


def equity_curve(r_multiples: Sequence[float] | npt.NDArray[np.floating], risk_fraction: float) -> FloatArray:
    """Compounded equity from 1.0: the start then one value after each trade (`len(r) + 1` values)."""
    r = _checked_r(r_multiples, risk_fraction)
    return np.concatenate(([1.0], np.cumprod(1.0 + r * risk_fraction)))


def max_drawdown(equity: Sequence[float] | npt.NDArray[np.floating]) -> float:
    """Largest fall from a running peak of an equity curve, as a fraction of that peak (0 when empty)."""
    e = np.asarray(equity, dtype=np.float64)
    if e.size == 0:
        return 0.0
    peak = np.maximum.accumulate(e)
    return float(np.max(1.0 - e / peak))


def _outcomes(sample: FloatArray, risk_fraction: float) -> tuple[FloatArray, FloatArray, IntArray]:
    """Max drawdown, final return and longest losing streak of every row of a runs x trades matrix."""
    equity = sample * risk_fraction
    equity += 1.0
    np.cumprod(equity, axis=1, out=equity)
    peak = np.maximum.accumulate(equity, axis=1)
    np.maximum(peak, 1.0, out=peak)  # the starting 1.0 is the first peak
    dd = 1.0 - np.min(np.divide(equity, peak, out=peak), axis=1)
    final = equity[:, -1] - 1.0
    return dd, final, _longest_losing_streaks(sample <= LOSS_THRESHOLD_R)


def _longest_losing_streaks(loss: npt.NDArray[np.bool_]) -> IntArray:
    """Longest run of True in every row, from the gaps between the non-losses of the flattened matrix."""
    rows, n = loss.shape
    padded = np.zeros((rows, n + 2), dtype=np.bool_)  # a non-loss before and after every row
    padded[:, 1:-1] = loss
    at = np.flatnonzero(~padded)
    runs = np.diff(at) - 1  # losses between consecutive non-losses; 0 across a row boundary
    row_starts = np.flatnonzero(at % (n + 2) == 0)  # each row's first non-loss is its leading pad
    return np.maximum.reduceat(runs, row_starts).astype(np.int64)


def _checked_r(r_multiples: Sequence[float] | npt.NDArray[np.floating], risk_fraction: float) -> FloatArray:
    if not 0.0 < risk_fraction <= 1.0:
        raise ValueError(f"risk_fraction must be within (0, 1], was {risk_fraction}")
    r = np.asarray(r_multiples, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"r_multiples must be one-dimensional, had shape {r.shape}")
    if not np.all(np.isfinite(r)):
        raise ValueError("r_multiples must all be finite numbers")
    if r.size and float(np.min(r)) * risk_fraction < -1.0:
        raise ValueError(
            f"a trade of {float(np.min(r))}R at risk_fraction {risk_fraction} would lose more than the whole equity"
        )
    return r


def _check_ruin(ruin_drawdown: float) -> None:
    if not 0.0 < ruin_drawdown <= 1.0:
        raise ValueError(f"ruin_drawdown must be within (0, 1], was {ruin_drawdown}")
