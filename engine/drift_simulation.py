"""Measuring the drift detector: false alarms and detection by simulation (bootstrapped and degraded sequences,
the baseline re-drawn when it is estimated) and the fixed-sample power bound (the method: `engine.drift`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.bars import FloatArray
from engine.drift import (
    DEFAULT_CONFIG,
    DETECTION_SEED,
    FALSE_ALARM_SEED,
    DriftConfig,
    _as_r,
    _check_counts,
    _check_open,
    first_high_checks,
)
from engine.performance import WIN_R


def bootstrap_sequences(
    baseline_r: Sequence[float], sequences: int = 1000, length: int = 100, seed: int = FALSE_ALARM_SEED
) -> FloatArray:
    """Draw sequences x length R multiples from the baseline with replacement."""
    base = _as_r(baseline_r, "baseline_r")
    _check_counts(sequences, length)
    if base.size == 0:
        raise ValueError("baseline_r must hold at least one R multiple to draw from")
    rng = np.random.default_rng(seed)
    return base[rng.integers(0, base.size, size=(sequences, length))]


def degraded_sequences(
    baseline_r: Sequence[float],
    win_rate_drop: float = 0.20,
    sequences: int = 1000,
    length: int = 50,
    seed: int = DETECTION_SEED,
) -> FloatArray:
    """Draw R sequences winning `win_rate_drop` less often than the baseline, each outcome from its own pool.

    A trade wins with probability max(baseline win rate - win_rate_drop, 0); a win is drawn from the baseline's
    wins, anything else from its non-wins: the same payoff, a lower win rate.
    """
    base = _as_r(baseline_r, "baseline_r")
    _check_counts(sequences, length)
    _check_open(win_rate_drop, "win_rate_drop", 0.0, 1.0)
    won, other = base[base >= WIN_R], base[base < WIN_R]
    if base.size == 0:
        raise ValueError("baseline_r must hold at least one R multiple to draw from")
    p_win = max(won.size / base.size - win_rate_drop, 0.0)
    if other.size == 0:
        raise ValueError("baseline_r must hold at least one non-winning R multiple to draw the extra losses from")
    rng = np.random.default_rng(seed)
    is_win = rng.random((sequences, length)) < p_win
    losing = other[rng.integers(0, other.size, size=(sequences, length))]
    if won.size == 0:
        return losing
    return np.where(is_win, won[rng.integers(0, won.size, size=(sequences, length))], losing)


def simulate_false_alarms(
    baseline_r: Sequence[float],
    config: DriftConfig = DEFAULT_CONFIG,
    sequences: int = 1000,
    length: int = 100,
    seed: int = FALSE_ALARM_SEED,
) -> float:
    """Return the fraction of bootstrap sequences from the baseline reaching HIGH or above at any check."""
    drawn = bootstrap_sequences(baseline_r, sequences, length, seed)
    return float(np.mean(np.isfinite(first_high_checks(drawn, baseline_r, config))))


def simulate_detection(
    baseline_r: Sequence[float],
    config: DriftConfig = DEFAULT_CONFIG,
    win_rate_drop: float = 0.20,
    sequences: int = 1000,
    within: int = 50,
    seed: int = DETECTION_SEED,
) -> float:
    """Return the fraction of degraded sequences reaching HIGH or above within `within` trades."""
    drawn = degraded_sequences(baseline_r, win_rate_drop, sequences, within, seed)
    return float(np.mean(np.isfinite(first_high_checks(drawn, baseline_r, config))))


def simulate_estimated_false_alarms(
    true_win_rate: float,
    baseline_n: int,
    config: DriftConfig = DEFAULT_CONFIG,
    runs: int = 2000,
    length: int = 100,
    seed: int = FALSE_ALARM_SEED,
) -> float:
    """Return the fraction of runs reaching HIGH or above when nothing changed, the baseline being estimated.

    Each run draws a baseline of `baseline_n` trades and then `length` live trades, all winning with
    `true_win_rate` (+2R wins, -1R losses: HIGH needs only the win/loss detector), and is checked after every
    live trade against its own baseline, as `assess` would.
    """
    return _estimated_runs(true_win_rate, true_win_rate, baseline_n, config, runs, length, seed)


def simulate_estimated_detection(
    true_win_rate: float,
    baseline_n: int,
    config: DriftConfig = DEFAULT_CONFIG,
    win_rate_drop: float = 0.20,
    runs: int = 2000,
    within: int = 50,
    seed: int = DETECTION_SEED,
) -> float:
    """Return the fraction of runs reaching HIGH within `within` live trades after the win rate fell by
    `win_rate_drop`, each run's baseline of `baseline_n` trades drawn at the former rate."""
    live = max(true_win_rate - win_rate_drop, 0.0)
    return _estimated_runs(true_win_rate, live, baseline_n, config, runs, within, seed)


def _estimated_runs(
    baseline_rate: float, live_rate: float, baseline_n: int, config: DriftConfig, runs: int, length: int, seed: int
) -> float:
    _check_counts(runs, length)
    if baseline_n < 1:
        raise ValueError(f"baseline_n must be at least 1, was {baseline_n}")
    rng = np.random.default_rng(seed)
    wins = rng.binomial(baseline_n, baseline_rate, runs)
    alarmed = 0
    for w in np.unique(wins).tolist():  # runs sharing a baseline win count share its threshold: one batch each
        count = int(np.count_nonzero(wins == w))
        base = (2.0,) * int(w) + (-1.0,) * (baseline_n - int(w))
        live = np.where(rng.random((count, length)) < live_rate, 2.0, -1.0)
        alarmed += int(np.count_nonzero(np.isfinite(first_high_checks(live, base, config))))
    return alarmed / runs


def fixed_sample_power_bound(p0: float, p1: float, trades: int, alpha: float) -> float:
    """Return the power of the most powerful level-alpha test of win rate p0 against p1 < p0 on `trades` trades.

    No detector whose false-alarm probability over any horizon of at least `trades` trades is at most alpha can
    detect a win rate of p1 within `trades` trades more often: its alarms by then form such a test.
    """
    if not 0.0 <= p1 < p0 <= 1.0:
        raise ValueError(f"win rates must satisfy 0 <= p1 < p0 <= 1, were p0={p0}, p1={p1}")
    _check_counts(1, trades)
    _check_open(alpha, "alpha", 0.0, 1.0)
    # Neyman-Pearson: reject for few wins, randomising on the boundary count to use exactly alpha.
    counts = np.arange(trades + 1)
    from scipy import stats  # noqa: PLC0415 - scipy loads in the jobs that need it, not at start

    below = stats.binom.cdf(counts, trades, p0) <= alpha
    k = int(np.flatnonzero(below)[-1]) if below.any() else -1
    size = float(stats.binom.cdf(k, trades, p0)) if k >= 0 else 0.0
    edge = (alpha - size) / float(stats.binom.pmf(k + 1, trades, p0))
    power = float(stats.binom.cdf(k, trades, p1)) if k >= 0 else 0.0
    return min(1.0, power + edge * float(stats.binom.pmf(k + 1, trades, p1)))
