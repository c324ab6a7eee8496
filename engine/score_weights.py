"""Learning the quality score's component weights, and keeping them only when they rank outcomes better.

The hand weights (`engine.quality.DEFAULT_WEIGHTS`) were set by judgement. Here the component weights of one
strategy are fitted to its outcomes and judged against the hand weights on outcomes they never saw:

* The scored outcomes are sorted by close time; the earliest (1 - holdout_fraction) fit the weights, the latest
  are held out (outcomes sharing a close time across the cut all go to the held-out part).
* Fit: non-negative least squares of net R on the component values, both centred on the fit part (a missing
  component, e.g. volume on an index, takes its fit mean; a component equal on every outcome is left out):
  w >= 0 so the score stays a weighted mean of named, explainable components; the weights are scaled so the
  largest is 1. All zero: no component predicts R. (`nnls` and the bootstrap's `row_ranks` are numpy, held to
  scipy's by unit tests: scipy took a second of `tradebot validate` to import.)
* The learned score of an outcome is `engine.quality`'s formula with these weights: 100 x sum(w x v) / sum(w)
  over its components.
* Judged on the held-out part by Spearman's rank correlation with R (`engine.systems.ScoreEdge`), the hand score
  (the quality each outcome carries) beside the learned one. Whether the learned score ranks better is a paired
  bootstrap of the difference of the two correlations on the same held-out outcomes (`resamples` draws, fixed
  seed): p = (1 + draws where learned <= hand) / (1 + resamples).
* Adopted only when the learned score has a measured edge of its own (one-sided p < 0.05) AND beats the hand
  score (bootstrap p < 0.05). Otherwise the hand weights stay and the report says so, with both figures.

Adopted weights reorder and select among setups the gate validated (ranking, quality mode's thresholds); they
never change which setups exist, so the system the gate validated is still the one that trades.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from engine.bars import FloatArray
from engine.domain import ensure_utc
from engine.learning import Outcome
from engine.systems import SCORE_ALPHA, ScoreEdge

RESAMPLES: Final = 2000
BOOTSTRAP_SEED: Final = 11
MIN_OUTCOMES: Final = 100
SCORE_SCALE: Final = 100.0


def learned_score(components: Mapping[str, float], weights: Mapping[str, float]) -> float | None:
    """100 x the weighted mean of the components present (None when no weighted component is present)."""
    present = [(weights[name], value) for name, value in components.items() if weights.get(name, 0.0) > 0]
    total = math.fsum(w for w, _ in present)
    if total <= 0:
        return None
    return round(SCORE_SCALE * math.fsum(w * v for w, v in present) / total, 1)


@dataclass(frozen=True)
class WeightsComparison:
    """Learned component weights of one strategy against the hand weights, on held-out outcomes."""

    strategy: str
    weights: Mapping[str, float]  # learned, the largest 1.0; empty when no component predicted R
    fit_n: int
    test_n: int
    fit_end: datetime
    test_start: datetime
    hand: ScoreEdge
    learned: ScoreEdge
    p_better: float | None  # bootstrap p that the learned score ranks no better than the hand score

    def __post_init__(self) -> None:
        ensure_utc(self.fit_end, "fit_end")
        ensure_utc(self.test_start, "test_start")
        if not self.fit_end < self.test_start:
            raise ValueError("the fit part must end before the held-out part starts")
        if self.p_better is not None and not 0.0 < self.p_better <= 1.0:
            raise ValueError(f"p_better must be within (0, 1], was {self.p_better}")

    @property
    def adopted(self) -> bool:
        """Whether the learned weights replace the hand weights: an edge of their own, and better than the hand's."""
        return self.learned.has_edge and self.p_better is not None and self.p_better < SCORE_ALPHA

    def verdict(self) -> str:
        """Both held-out figures and the decision, in words."""
        hand, learned = self.hand.text().removeprefix("score: "), self.learned.text().removeprefix("score: ")
        head = f"{self.strategy}, {self.test_n} held-out outcomes: hand weights {hand}; learned weights {learned}"
        if not self.weights:
            return f"{head}; no component predicted R on the {self.fit_n} earlier ones: the hand weights stay"
        better = "n/a" if self.p_better is None else f"{self.p_better:.2g}"
        if self.adopted:
            return f"{head}; the learned weights rank better (bootstrap p {better}): adopted for ranking"
        return f"{head}; not shown to rank better (bootstrap p {better}): the hand weights stay"

    def score(self, components: Mapping[str, float]) -> float | None:
        """The learned score of a setup's components (None unless adopted)."""
        return learned_score(components, self.weights) if self.adopted else None

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "weights": dict(self.weights),
            "fit_n": self.fit_n,
            "test_n": self.test_n,
            "fit_end": self.fit_end.isoformat(),
            "test_start": self.test_start.isoformat(),
            "hand": self.hand.to_json(),
            "learned": self.learned.to_json(),
            "p_better": self.p_better,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WeightsComparison:
        p = data.get("p_better")
        return cls(
            strategy=str(data["strategy"]),
            weights={str(k): float(v) for k, v in data["weights"].items()},
            fit_n=int(data["fit_n"]),
            test_n=int(data["test_n"]),
            fit_end=datetime.fromisoformat(data["fit_end"]),
            test_start=datetime.fromisoformat(data["test_start"]),
            hand=ScoreEdge.from_json(data["hand"]),
            learned=ScoreEdge.from_json(data["learned"]),
            p_better=None if p is None else float(p),
        )


def compare_weights(
    outcomes: Sequence[Outcome],
    strategy: str,
    *,
    holdout_fraction: float = 0.3,
    min_outcomes: int = MIN_OUTCOMES,
    resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> WeightsComparison | str:
    """Fit weights on the strategy's earlier scored outcomes and compare them with the hand weights on the later."""
    scored = sorted(
        (o for o in outcomes if o.strategy == strategy and o.quality is not None and o.components),
        key=lambda o: o.closed_at,
    )
    n = len(scored)
    if n < min_outcomes:
        return f"{strategy}: {n} scored outcomes; at least {min_outcomes} are needed to fit and test score weights"
    cut = n - min(n - 1, max(1, round(n * holdout_fraction)))
    while cut > 0 and scored[cut - 1].closed_at == scored[cut].closed_at:
        cut -= 1
    if cut == 0:
        return f"{strategy}: the scored outcomes cannot be split in time"
    fit, test = scored[:cut], scored[cut:]
    weights = fit_weights(fit)
    r = [o.r for o in test]
    hand = [float(o.quality or 0.0) for o in test]
    learned = [learned_score(o.components, weights) or 0.0 for o in test] if weights else hand
    return WeightsComparison(
        strategy=strategy,
        weights=weights,
        fit_n=len(fit),
        test_n=len(test),
        fit_end=fit[-1].closed_at,
        test_start=test[0].closed_at,
        hand=ScoreEdge.measure(hand, r),
        learned=ScoreEdge.measure(learned, r) if weights else ScoreEdge(len(test), None, None),
        p_better=_bootstrap_p(np.array(learned), np.array(hand), np.array(r), resamples, seed) if weights else None,
    )


def fit_weights(fit: Sequence[Outcome]) -> dict[str, float]:
    """Non-negative least squares of centred R on centred component values, scaled so the largest weight is 1."""
    present = sorted({name for o in fit for name in o.components})
    means = {c: float(np.mean([o.components[c] for o in fit if c in o.components])) for c in present}
    x = np.array([[o.components.get(c, means[c]) for c in present] for o in fit], dtype=np.float64)
    # A component equal on every outcome ranks nothing: it gets no weight. Its spread, not its standard deviation,
    # says so exactly (the deviation of 1,755 copies of 0.6667 is 1e-16, and a solver then weighed that noise).
    varies = np.ptp(x, axis=0) > 0
    names = [c for c, v in zip(present, varies, strict=True) if v]
    x = x[:, varies]
    y = np.array([o.r for o in fit], dtype=np.float64)
    w = nnls(x - x.mean(axis=0), y - y.mean())
    top = float(w.max()) if len(w) else 0.0
    if not top > 0:
        return {}
    return {name: round(float(v) / top, 4) for name, v in zip(names, w, strict=True) if v > 0}


def _bootstrap_p(learned: FloatArray, hand: FloatArray, r: FloatArray, resamples: int, seed: int) -> float | None:
    """Paired bootstrap p-value that the learned score's rank correlation with R is no higher than the hand's."""
    n = len(r)
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    rr = row_ranks(r[idx])
    diff = _rows_corr(row_ranks(learned[idx]), rr) - _rows_corr(row_ranks(hand[idx]), rr)
    valid = diff[np.isfinite(diff)]
    if len(valid) == 0:
        return None
    return float((1 + np.count_nonzero(valid <= 0)) / (1 + len(valid)))


def _rows_corr(a: FloatArray, b: FloatArray) -> FloatArray:
    """Pearson correlation of each row of `a` with the same row of `b` (NaN where a row does not vary)."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: FloatArray = (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return out


def nnls(a: FloatArray, b: FloatArray) -> FloatArray:
    """Return the x >= 0 that minimises ||a x - b|| (`scipy.optimize.nnls`: Lawson and Hanson's active set method).

    Columns move into the passive set one at a time, the one whose gradient is largest (a column whose own least
    squares step would not be positive, a rounding artefact, is passed over); the least squares on the passive
    columns is taken while it stays positive, else x goes as far towards it as it can and the columns that reach
    zero go back. Raises ValueError for non-finite input or when it does not converge in 3 x columns steps
    (scipy's limit).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.shape != (a.shape[0],):
        raise ValueError(f"nnls needs an (m, n) matrix and an m-vector, had shapes {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("nnls needs finite values")
    m, n = a.shape
    # A gradient a_j . (b - a x) is at most ||a|| ||b||; below this multiple of its rounding it is noise.
    tol = 10 * max(m, n) * np.finfo(np.float64).eps * float(np.linalg.norm(a)) * float(np.linalg.norm(b))

    def solve(columns: npt.NDArray[np.bool_]) -> FloatArray:
        s = np.zeros(n)
        s[columns] = np.linalg.lstsq(a[:, columns], b, rcond=None)[0]
        return s

    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    for _ in range(3 * n):
        gradient = a.T @ (b - a @ x)
        candidates = ~passive & (gradient > tol)
        while candidates.any():
            j = int(np.argmax(np.where(candidates, gradient, -np.inf)))
            trial = passive.copy()
            trial[j] = True
            s = solve(trial)
            if s[j] > 0:
                break
            candidates[j] = False
        else:
            return x
        passive = trial
        while not bool((s[passive] > 0).all()):
            blocking = np.flatnonzero(passive & (s <= 0))
            gap = x[blocking] - s[blocking]
            steps = np.divide(x[blocking], gap, out=np.zeros_like(gap), where=gap > 0)
            k = int(np.argmin(steps))
            x = x + float(steps[k]) * (s - x)
            passive &= x > 0
            passive[blocking[k]] = False  # it reached zero, whatever the rounding says
            x[~passive] = 0.0
            s = solve(passive)
        x = s
    raise ValueError(f"nnls did not converge in {3 * n} steps")


def row_ranks(values: FloatArray) -> FloatArray:
    """Return the ranks 1..n within each row, tied values sharing the mean of their ranks (`scipy.stats.rankdata(
    values, axis=1)`)."""
    rows, n = values.shape
    order = np.argsort(values, axis=1, kind="stable")
    ordered = np.take_along_axis(values, order, axis=1)
    starts = np.ones((rows, n), dtype=bool)  # where a run of equal values begins in its sorted row
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    flat = starts.ravel()
    first = np.flatnonzero(flat)  # each run's first position, over all rows
    run = np.cumsum(flat) - 1
    ends = np.append(first[1:], flat.size)  # a row starts a new run, so no run crosses rows
    mean_rank = (first[run] + ends[run] + 1) / 2.0 - np.repeat(np.arange(rows) * n, n)
    ranks = np.empty((rows, n))
    np.put_along_axis(ranks, order, mean_rank.reshape(rows, n), axis=1)
    return ranks
