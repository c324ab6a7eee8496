"""The learned score calibration: fitted (isotonic or logistic) on the older outcomes, judged on the latest by
Brier against the base rate with a paired p-value, and its reliability curve (the method: `engine.learning`)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np

from engine.bars import FloatArray
from engine.domain import ensure_utc
from engine.learning import (
    MODEL_SCHEMA,
    QUALITY_SCALE,
    CalibrationMethod,
    LearningConfig,
    Outcome,
    OutcomeSource,
)
from engine.probability import student_t_sf

RELIABILITY_BINS: Final = 10


QUALITY_FEATURE: Final = "quality"


LOGISTIC_MAX_ITER: Final = 1_000


SIGNIFICANCE: Final = 0.05  # a calibration's Brier gain over the base rate must have a paired p-value below this


P_VALUE_SHOWN_FLOOR: Final = 0.001


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    """Held-out outcomes whose predicted win probability fell in [lower, upper)."""

    lower: float
    upper: float
    n: int
    mean_predicted: float
    observed: float  # their win rate

    def __post_init__(self) -> None:
        if not 0.0 <= self.lower < self.upper <= 1.0:
            raise ValueError(f"a reliability bin needs 0 <= lower < upper <= 1, was {self.lower}..{self.upper}")
        if self.n < 1:
            raise ValueError(f"a reliability bin holds at least one outcome, was {self.n}")
        if not (0.0 <= self.mean_predicted <= 1.0 and 0.0 <= self.observed <= 1.0):
            raise ValueError(f"bin probabilities must be within 0..1, were {self.mean_predicted}, {self.observed}")


@dataclass(frozen=True)
class CalibrationModel:
    """A fitted quality -> win-probability mapping with its out-of-sample evaluation."""

    method: CalibrationMethod
    features: tuple[str, ...]
    fit_n: int
    test_n: int
    base_rate: float  # win rate of the fit part
    brier: float  # of the model on the held-out part
    brier_base: float  # of the base rate on the held-out part
    skill: float | None  # 1 - brier / brier_base; None when brier_base is 0
    beats_base_rate: bool
    bins: tuple[ReliabilityBin, ...]
    fitted_from: str
    fit_start: datetime
    fit_end: datetime
    test_start: datetime
    test_end: datetime
    x_thresholds: tuple[float, ...] = ()  # isotonic
    y_thresholds: tuple[float, ...] = ()
    coef: tuple[float, ...] = ()  # logistic, one per feature, on standardised values
    intercept: float = 0.0
    means: tuple[float, ...] = ()
    scales: tuple[float, ...] = ()
    p_value: float | None = None  # one-sided paired t-test that the Brier gain over the base rate is chance

    def __post_init__(self) -> None:
        if not isinstance(self.method, CalibrationMethod):
            raise ValueError(f"method must be a CalibrationMethod, was {self.method!r}")
        if not self.features or self.features[0] != QUALITY_FEATURE or len(set(self.features)) != len(self.features):
            raise ValueError(f"features must start with {QUALITY_FEATURE!r} and be unique, were {self.features}")
        if self.method is CalibrationMethod.ISOTONIC:
            x, y = self.x_thresholds, self.y_thresholds
            if self.features != (QUALITY_FEATURE,) or not x or len(x) != len(y):
                raise ValueError("an isotonic model maps the quality alone through equally many x and y thresholds")
            if any(b < a for a, b in itertools.pairwise(x)) or any(b < a for a, b in itertools.pairwise(y)):
                raise ValueError("isotonic thresholds must be non-decreasing")
            if not all(0.0 <= v <= 1.0 for v in y):
                raise ValueError("isotonic y thresholds are probabilities within 0..1")
        else:
            k = len(self.features)
            if not len(self.coef) == len(self.means) == len(self.scales) == k:
                raise ValueError(f"a logistic model needs one coef, mean and scale per feature ({k})")
            if not all(s > 0 for s in self.scales):
                raise ValueError("logistic feature scales must be positive")
        if self.fit_n < 1 or self.test_n < 1:
            raise ValueError(f"fit and held-out parts both need outcomes, were {self.fit_n} and {self.test_n}")
        for name in ("base_rate", "brier", "brier_base"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within 0..1, was {getattr(self, name)}")
        if self.p_value is not None and not 0.0 <= self.p_value <= 1.0:
            raise ValueError(f"p_value must be within 0..1 or None, was {self.p_value}")
        if self.beats_base_rate != beats(self.brier, self.brier_base, self.p_value):
            raise ValueError(
                f"beats_base_rate must be exactly brier < brier_base with paired p < {SIGNIFICANCE} (a gain that "
                "chance would give is not a gain)"
            )
        if not self.fit_start <= self.fit_end < self.test_start <= self.test_end:
            raise ValueError("the fit part must end strictly before the held-out part starts")
        if sum(b.n for b in self.bins) != self.test_n:
            raise ValueError(f"reliability bins must hold the {self.test_n} held-out outcomes")

    def predict(self, quality: float, components: Mapping[str, float]) -> float:
        """Return the model's win probability for a score and its components."""
        return _predict(self.method, _Params.of(self), quality, components)

    def estimate(self, quality: float, components: Mapping[str, float]) -> float | None:
        """Return the win probability when the model beats the base rate out of sample, else None."""
        return self.predict(quality, components) if self.beats_base_rate else None

    def verdict(self) -> str:
        """Say in plain words whether the model beats the base rate on the held-out trades."""
        figures = (
            f"Brier {self.brier:.4f} vs {self.brier_base:.4f} for the base rate {self.base_rate:.1%} on "
            f"{self.test_n:,} held-out trades"
        )
        if self.p_value is not None:
            shown = "< 0.001" if self.p_value < P_VALUE_SHOWN_FLOOR else f"{self.p_value:.3f}"
            figures += f" (one-sided paired p {shown})"
        if self.beats_base_rate:
            return f"{self.method} calibration beats the base rate out of sample: {figures}"
        return (
            f"{self.method} calibration does NOT beat the base rate out of sample: {figures}; no win estimate is shown"
        )

    def to_json(self) -> dict[str, Any]:
        """Return the model as JSON-serialisable values."""
        return {
            "schema": MODEL_SCHEMA,
            "method": self.method.value,
            "features": list(self.features),
            "fit_n": self.fit_n,
            "test_n": self.test_n,
            "base_rate": self.base_rate,
            "brier": self.brier,
            "brier_base": self.brier_base,
            "skill": self.skill,
            "beats_base_rate": self.beats_base_rate,
            "bins": [[b.lower, b.upper, b.n, b.mean_predicted, b.observed] for b in self.bins],
            "fitted_from": self.fitted_from,
            "fit_start": self.fit_start.isoformat(),
            "fit_end": self.fit_end.isoformat(),
            "test_start": self.test_start.isoformat(),
            "test_end": self.test_end.isoformat(),
            "x_thresholds": list(self.x_thresholds),
            "y_thresholds": list(self.y_thresholds),
            "coef": list(self.coef),
            "intercept": self.intercept,
            "means": list(self.means),
            "scales": list(self.scales),
            "p_value": self.p_value,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CalibrationModel:
        """Rebuild a model from `to_json` output."""
        if data.get("schema") != MODEL_SCHEMA:
            raise ValueError(f"calibration model schema must be {MODEL_SCHEMA}, was {data.get('schema')!r}")

        def floats(name: str) -> tuple[float, ...]:
            return tuple(float(v) for v in data[name])

        def when(name: str) -> datetime:
            return ensure_utc(datetime.fromisoformat(data[name]), name)

        skill, p_value = data["skill"], data.get("p_value")
        return cls(
            method=CalibrationMethod(data["method"]),
            features=tuple(str(f) for f in data["features"]),
            fit_n=int(data["fit_n"]),
            test_n=int(data["test_n"]),
            base_rate=float(data["base_rate"]),
            brier=float(data["brier"]),
            brier_base=float(data["brier_base"]),
            skill=None if skill is None else float(skill),
            beats_base_rate=bool(data["beats_base_rate"]),
            bins=tuple(
                ReliabilityBin(float(lo), float(hi), int(n), float(p), float(o)) for lo, hi, n, p, o in data["bins"]
            ),
            fitted_from=str(data["fitted_from"]),
            fit_start=when("fit_start"),
            fit_end=when("fit_end"),
            test_start=when("test_start"),
            test_end=when("test_end"),
            x_thresholds=floats("x_thresholds"),
            y_thresholds=floats("y_thresholds"),
            coef=floats("coef"),
            intercept=float(data["intercept"]),
            means=floats("means"),
            scales=floats("scales"),
            p_value=None if p_value is None else float(p_value),
        )


@dataclass(frozen=True)
class _Params:
    """The fitted numbers of a model, without its evaluation."""

    features: tuple[str, ...]
    x_thresholds: tuple[float, ...] = ()
    y_thresholds: tuple[float, ...] = ()
    coef: tuple[float, ...] = ()
    intercept: float = 0.0
    means: tuple[float, ...] = ()
    scales: tuple[float, ...] = ()

    @classmethod
    def of(cls, model: CalibrationModel) -> _Params:
        return cls(
            model.features,
            model.x_thresholds,
            model.y_thresholds,
            model.coef,
            model.intercept,
            model.means,
            model.scales,
        )


def _predict(method: CalibrationMethod, p: _Params, quality: float, components: Mapping[str, float]) -> float:
    if not 0.0 <= quality <= QUALITY_SCALE:
        raise ValueError(f"quality must be within 0..100, was {quality}")
    if method is CalibrationMethod.ISOTONIC:
        return float(np.interp(quality, p.x_thresholds, p.y_thresholds))
    values = [
        quality / QUALITY_SCALE,
        *(components.get(c, m) for c, m in zip(p.features[1:], p.means[1:], strict=True)),
    ]
    z = p.intercept + sum(c * (v - m) / s for c, v, m, s in zip(p.coef, values, p.means, p.scales, strict=True))
    return _sigmoid(z)


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def fit_calibration(outcomes: Sequence[Outcome], config: LearningConfig | None = None) -> CalibrationModel | str:
    """Fit a win-probability model on the earlier scored outcomes and evaluate it on the later ones (or say why not)."""
    cfg = config or LearningConfig()
    scored = sorted((o for o in outcomes if o.quality is not None), key=lambda o: o.closed_at)
    n = len(scored)
    if n < cfg.min_calibration_trades:
        return (
            f"n/a: {n:,} scored outcomes; at least {cfg.min_calibration_trades:,} are needed to fit a calibration on "
            f"the earlier {1 - cfg.holdout_fraction:.0%} and test it on the later {cfg.holdout_fraction:.0%}"
        )
    cut = n - min(n - 1, max(1, round(n * cfg.holdout_fraction)))
    while cut > 0 and scored[cut - 1].closed_at == scored[cut].closed_at:
        cut -= 1  # outcomes closing together stay on the held-out side: the fit part ends strictly earlier
    if cut == 0:
        return f"n/a: the {n:,} scored outcomes cannot be split in time (the held-out ones share their close time)"
    fit, test = scored[:cut], scored[cut:]
    y_fit = np.array([o.won for o in fit], dtype=np.float64)
    y_test = np.array([o.won for o in test], dtype=np.float64)
    base = float(y_fit.mean())

    if cfg.method is CalibrationMethod.ISOTONIC:
        params = _fit_isotonic(fit, y_fit)
    else:
        if base in (0.0, 1.0):
            return f"n/a: the {len(fit):,} fit outcomes are all {'wins' if base else 'losses'}; logistic needs both"
        params = _fit_logistic(fit, y_fit)

    predicted = np.array([_predict(cfg.method, params, _quality(o), o.components) for o in test], dtype=np.float64)
    brier = float(np.mean((predicted - y_test) ** 2))
    brier_base = float(np.mean((base - y_test) ** 2))
    p_value = _paired_p_value((base - y_test) ** 2 - (predicted - y_test) ** 2)
    return CalibrationModel(
        method=cfg.method,
        fitted_from=_fitted_from(scored, fit, test),
        fit_n=len(fit),
        test_n=len(test),
        base_rate=base,
        brier=brier,
        brier_base=brier_base,
        skill=1.0 - brier / brier_base if brier_base > 0 else None,
        beats_base_rate=beats(brier, brier_base, p_value),
        bins=_reliability(predicted, y_test),
        fit_start=fit[0].closed_at,
        fit_end=fit[-1].closed_at,
        test_start=test[0].closed_at,
        test_end=test[-1].closed_at,
        features=params.features,
        x_thresholds=params.x_thresholds,
        y_thresholds=params.y_thresholds,
        coef=params.coef,
        intercept=params.intercept,
        means=params.means,
        scales=params.scales,
        p_value=p_value,
    )


def beats(brier: float, brier_base: float, p_value: float | None) -> bool:
    """Whether a calibration beats the base rate: a lower held-out Brier score, by more than chance gives."""
    return brier < brier_base and p_value is not None and p_value < SIGNIFICANCE


def _paired_p_value(gain: FloatArray) -> float | None:
    """Return the one-sided t-test p-value that the mean per-trade Brier gain is not above 0 (None if undefined)."""
    if len(gain) < 2 or not np.ptp(gain) > 0:  # equal gains have no variance (their float deviation is noise)
        return None
    n = len(gain)
    t = float(np.mean(gain)) / (float(np.std(gain, ddof=1)) / math.sqrt(n))  # scipy.stats.ttest_1samp's statistic
    p = student_t_sf(t, n - 1) if math.isfinite(t) else math.nan
    return p if math.isfinite(p) else None


def _quality(o: Outcome) -> float:
    if o.quality is None:
        raise ValueError("calibration uses scored outcomes only")
    return o.quality


def _fit_isotonic(fit: Sequence[Outcome], y: FloatArray) -> _Params:
    x = np.array([_quality(o) for o in fit], dtype=np.float64)
    x_thresholds, y_thresholds = isotonic_thresholds(x, y)
    return _Params(
        features=(QUALITY_FEATURE,),
        x_thresholds=tuple(float(v) for v in x_thresholds),
        y_thresholds=tuple(float(min(1.0, max(0.0, v))) for v in y_thresholds),
    )


def isotonic_thresholds(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return the points of the increasing isotonic regression of `y` on `x`, clipped to [0, 1], between which a
    prediction interpolates (scikit-learn's `IsotonicRegression(increasing=True, y_min=0, y_max=1)`: its
    `X_thresholds_` and `y_thresholds_`).

    Equal x are one point with the mean of their y, weighted by their count; pool adjacent violators then makes
    the means non-decreasing, each pooled block the weighted mean of its points; points inside a flat run are
    dropped (interpolation does not need them). Blocks carry their sums and each mean is one division: with 0/1
    outcomes every figure is the correctly rounded ratio of two whole numbers (scikit-learn's can be one unit in
    the last place off, as it averages means).
    """
    if x.shape != y.shape or x.ndim != 1 or len(x) == 0:
        raise ValueError(f"isotonic regression needs two 1-D samples of the same size, had {x.shape} and {y.shape}")
    order = np.lexsort((y, x))
    xs, ys = x[order], y[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    values = xs[starts]
    weights = np.diff(np.r_[starts, len(xs)]).astype(np.float64)
    totals = np.add.reduceat(ys, starts)
    fitted = np.clip(_pool_adjacent_violators(totals.tolist(), weights.tolist()), 0.0, 1.0)
    keep = np.ones(len(fitted), dtype=bool)
    keep[1:-1] = (fitted[1:-1] != fitted[:-2]) | (fitted[1:-1] != fitted[2:])
    return values[keep], fitted[keep]


def _pool_adjacent_violators(total: list[float], w: list[float]) -> FloatArray:
    """The non-decreasing sequence closest to the means `total / w` in weighted least squares: each block the
    weighted mean of its points (the single-pass form that pools whole decreasing runs and steps back, as
    scikit-learn's), carried as sums so each mean is one division of the block's sums."""
    n = len(total)
    end = list(range(n))  # of a block starting at i: its last index; of a block ending at j: its first
    i = 0
    while i < n:
        k = end[i] + 1
        if k == n:
            break
        if total[i] * w[k] < total[k] * w[i]:  # mean i < mean k, without rounding either
            i = k
            continue
        sum_total, sum_w = total[i], w[i]
        while True:
            previous = (total[k], w[k])
            sum_total += total[k]
            sum_w += w[k]
            k = end[k] + 1
            if k == n or previous[0] * w[k] < total[k] * previous[1]:
                total[i], w[i] = sum_total, sum_w
                end[i], end[k - 1] = k - 1, i
                if i > 0:
                    i = end[i - 1]
                break
    out = np.empty(n)
    i = 0
    while i < n:
        k = end[i] + 1
        out[i:k] = total[i] / w[i]
        i = k
    return out


def _fit_logistic(fit: Sequence[Outcome], y: FloatArray) -> _Params:
    names = sorted({name for o in fit for name in o.components})
    comp_means = [float(np.mean([o.components[c] for o in fit if c in o.components])) for c in names]
    rows = [
        [_quality(o) / QUALITY_SCALE, *(o.components.get(c, m) for c, m in zip(names, comp_means, strict=True))]
        for o in fit
    ]
    x = np.array(rows, dtype=np.float64)
    means = x.mean(axis=0)
    sd = x.std(axis=0)
    # A feature equal on every outcome is not scaled: its deviation in floats is rounding noise (1e-16 for 0.6667),
    # and dividing by it made the constant a +-1 column the fit weighed.
    scales = np.where(np.ptp(x, axis=0) > 0, sd, 1.0)
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415 - only when fitting

    model = LogisticRegression(max_iter=LOGISTIC_MAX_ITER).fit((x - means) / scales, y)
    return _Params(
        features=(QUALITY_FEATURE, *names),
        coef=tuple(float(v) for v in model.coef_[0]),
        intercept=float(model.intercept_[0]),
        means=tuple(float(v) for v in means),
        scales=tuple(float(v) for v in scales),
    )


def _reliability(predicted: FloatArray, observed: FloatArray) -> tuple[ReliabilityBin, ...]:
    index = np.clip(np.floor(predicted * RELIABILITY_BINS), 0, RELIABILITY_BINS - 1).astype(np.int64)
    bins = []
    for k in range(RELIABILITY_BINS):
        mask = index == k
        if bool(mask.any()):
            bins.append(
                ReliabilityBin(
                    lower=k / RELIABILITY_BINS,
                    upper=(k + 1) / RELIABILITY_BINS,
                    n=int(mask.sum()),
                    mean_predicted=float(predicted[mask].mean()),
                    observed=float(observed[mask].mean()),
                )
            )
    return tuple(bins)


def _fitted_from(scored: Sequence[Outcome], fit: Sequence[Outcome], test: Sequence[Outcome]) -> str:
    counts = ", ".join(
        f"{sum(1 for o in scored if o.source is s):,} {s}" for s in OutcomeSource if any(o.source is s for o in scored)
    )
    return (
        f"{counts} outcomes, fit {_month(fit[0].closed_at)}..{_month(fit[-1].closed_at)}, held out "
        f"{_month(test[0].closed_at)}..{_month(test[-1].closed_at)}"
    )


def _month(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m")
