"""Deterministic walk-forward evaluations over a synthetic series, module-level so process and Dask workers
can unpickle them (bind their data with `functools.partial`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np

from engine.walkforward import EvalResult, EvalTask, Phase

N_BARS = 600
SPACE: dict[str, tuple[float, float, float | None]] = {"threshold": (0.0, 1.0, 0.25), "hold": (1, 3, 1)}
DEFAULTS: dict[str, Any] = {"threshold": 0.5, "hold": 2}


def synthetic_series(n: int = N_BARS, seed: int = 7) -> tuple[float, ...]:
    """A series that trends (positive autocorrelation) and mean-reverts (negative) in turn every 150 bars,
    so different folds favour different parameters."""
    rng = np.random.default_rng(seed)
    values = np.empty(n)
    previous = 0.0
    for i in range(n):
        trending = (i // 150) % 2 == 0
        previous = (0.5 if trending else -0.5) * previous + 0.05 + rng.normal(0.0, 0.6)
        values[i] = previous
    return tuple(float(v) for v in values)


SERIES = synthetic_series()


def synthetic_evaluate(task: EvalTask, series: Sequence[float] = SERIES, test_bias: float = 0.0) -> EvalResult:
    """Trade every bar i in [start, end - hold) whose value exceeds `threshold`; R = 3 x the mean of the next
    `hold` values, clipped to -1..3. Reads no value at or after `end`. `test_bias` shifts TEST-phase R by an
    amount that favours high thresholds, to prove test results cannot steer the choice."""
    threshold, hold = float(task.params["threshold"]), int(task.params["hold"])
    if task.end > len(series):
        raise ValueError(f"task ends at {task.end} beyond the {len(series)} bars")
    rs = []
    for i in range(task.start, task.end - hold):
        if series[i] > threshold:
            r = 3.0 * sum(series[i + 1 : i + 1 + hold]) / hold
            rs.append(min(max(r, -1.0), 3.0))
    if task.phase is Phase.TEST and test_bias:
        rs = [r + test_bias * (threshold * 4 + hold) for r in rs]
    return EvalResult.from_r_multiples(rs, pnl=[100.0 * r for r in rs])


def recording_evaluate(task: EvalTask, seen: list[EvalTask], series: Sequence[float] = SERIES) -> EvalResult:
    """`synthetic_evaluate`, noting every task it was given (in-process executors only)."""
    seen.append(task)
    return synthetic_evaluate(task, series)


Table = Mapping[tuple[int, Phase, int], Sequence[float]]


def table_evaluate(task: EvalTask, table: Table) -> EvalResult:
    """The R multiples listed for (fold, phase, params["id"]): hand-made results for hand-checked choices."""
    return EvalResult.from_r_multiples(table[task.fold, task.phase, int(task.params["id"])])


def synthetic(series: Sequence[float] = SERIES, test_bias: float = 0.0) -> partial[EvalResult]:
    """A picklable evaluate over `series`."""
    return partial(synthetic_evaluate, series=series, test_bias=test_bias)
