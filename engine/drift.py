"""Drift detection: are a strategy's recent live trades worse than its out-of-sample baseline?

`assess(live_r, baseline_r)` compares the R multiples of recent closed live/paper trades (oldest first) with
the baseline's out-of-sample R sample stored by the pre-deploy gate, and grades the difference.

Decisions, so every number means one thing:

* Metrics follow `engine.performance`: a win is at least +0.05R (`BREAKEVEN_BAND`); win rate = wins / trades;
  profit factor = sum of positive R / |sum of negative R|, None when nothing was lost (never infinity);
  expectancy = mean R; per-trade Sharpe = mean R / sample standard deviation of R (ddof 1), None with fewer
  than two trades or no dispersion (identical R values).
* Only the latest `window` live trades are compared (`n` counts those); every statistic uses the same trades.
* A metric is degraded when live < baseline - degradation x |baseline| (default 15 %). For a baseline of 0
  the margin is 0, so any live value below 0 is degraded. When either side is None (a profit factor with
  nothing lost, a Sharpe without dispersion) the metric is not compared: an undefined ratio never makes a
  degraded verdict, so zero live losses can only look good.
* KS: a one-sided two-sample Kolmogorov-Smirnov test that live R is stochastically smaller than the baseline
  (`scipy.stats.ks_2samp(live, baseline, alternative="greater")`, computed without scipy by `engine.probability`:
  the alternative is that the live CDF lies above the baseline CDF somewhere, i.e. live values tend to be
  smaller). Run only with at least `ks_min_live` live and `ks_min_baseline` baseline values, else None. Ties
  are allowed (p is conservative). It compares whole distributions, so live trades that never reach the
  baseline's large wins can be significant even at the same or a higher win rate.
* Sequential detector: a Bernoulli CUSUM on win / not-win. p0 = baseline win rate clipped into [0.02, 0.98]
  and rounded to four places; p1 = max(p0 - win_rate_drop, 0.02), the worse win rate it is designed for.
  Each trade adds log(p1 / p0) for a win or log((1 - p1) / (1 - p0)) otherwise; the statistic starts at
  head_start x h (fast initial response) and is floored at 0. It alarms when the statistic reaches h at any
  trade of the compared window: the report's statistic is the maximum over the window, so an alarm between
  two checks is not lost. When p1 is not below p0 (a baseline that never wins) the detector is off. The
  default design (a 0.20 drop, head start 0.5) was chosen on `scripts/bench_drift.py`: calibrated for an
  estimated baseline, it caught a true 20-point drop more often than a 0.15 design at every baseline size and
  win rate there but one (0.25 at n_b = 200: 90.6 against 93.0 %).
* Calibration of h: `simulations` sequences of `horizon` outcomes (fixed seed), checked after every trade. The
  baseline win rate is itself an estimate from the baseline's n_b trades, so each simulated sequence draws its
  true win rate from the Jeffreys posterior Beta(wins + 1/2, n_b - wins + 1/2) and its outcomes from that rate,
  while the detector compares them with the estimate p0 (calibrating on Bernoulli(p0) alone, as if p0 were
  exact, let the baseline's own sampling error raise false alarms to 15-18 % at n_b = 30, 10-11 % at 70 and
  6-7 % at 200). h is the smallest threshold at which the number of simulated sequences alarming at any trade
  is at most the largest count whose one-sided Clopper-Pearson upper bound at `calibration_confidence` is
  at most `false_alarm`. Measured with the baseline re-drawn every time (`simulate_estimated_false_alarms`):
  a strategy still performing like its baseline raises an alarm at ANY trade within `horizon` trades in at
  most 5 % of cases at n_b = 30, 70 and 200 (`scripts/bench_drift.py`). The price is detection: a smaller
  baseline leaves less to detect with. Thresholds are cached per (p0, p1, horizon, false_alarm, head_start,
  confidence, simulations, seed, wins, n_b). Each check sees at most `window` <= `horizon` trades; a strategy
  checked for longer than `horizon` trades spends that false-alarm budget again per window.
* What the detector can do: the power of any rule whose false-alarm probability over the horizon is at most
  alpha is bounded, within k trades, by the most powerful fixed-size test at level alpha on the first k
  outcomes (`fixed_sample_power_bound`). At a baseline win rate of 50 % and a drop of 20 points that bound is
  about 90 % within 50 trades at alpha 5 %, so no any-time detector reaches 90 % there; see
  `scripts/bench_drift.py` for measured rates.

Severity, from the first rule that applies:

* NONE when fewer than `min_trades` live trades or fewer than `min_baseline` baseline values: no verdict on
  tiny samples (zero trades included). NONE also when a verdict is made and nothing below applies.
* CRITICAL: the detector alarmed AND live expectancy < 0 AND (the KS test is significant, p < ks_alpha, OR
  the live win rate's one-sided binomial p-value against p0 is below ks_alpha).
* HIGH: the detector alarmed (at any trade of the compared window).
* MEDIUM: two or more metrics degraded, or the KS test significant.
* LOW: exactly one metric degraded.

HIGH and CRITICAL both require the detector's alarm, so for trades drawn from the baseline the rate of HIGH or
above is the detector's calibrated false-alarm rate; LOW and MEDIUM are informative and not rate-controlled.
The simulation helpers (`bootstrap_sequences`, `degraded_sequences`, `first_high_checks`,
`simulate_false_alarms`, `simulate_detection`) measure that, vectorised over sequences and deterministic.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Final

import numpy as np
import numpy.typing as npt

from engine import probability
from engine.performance import WIN_R, TradeStats

FloatArray = npt.NDArray[np.float64]


BoolArray = npt.NDArray[np.bool_]


P_MIN: Final = 0.02  # detector win rates are clipped into [P_MIN, P_MAX]: log-likelihoods stay finite


P_MAX: Final = 0.98


P_PLACES: Final = 4


DEFAULT_SEED: Final = 20_240_601


FALSE_ALARM_SEED: Final = 1_001


DETECTION_SEED: Final = 2_002


CACHE_SIZE: Final = 1024


_THRESHOLD_MARGIN: Final = 1e-9  # lifts h just above the calibration quantile, far beyond float rounding


JEFFREYS: Final = 0.5  # the Beta prior's pseudo-wins and pseudo-losses when the baseline win rate is estimated


class Severity(IntEnum):
    """How far live trading has drifted from the baseline; ordered, so `severity >= Severity.HIGH` works."""

    NONE = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    def __str__(self) -> str:
        return self.label


class Metric(StrEnum):
    WIN_RATE = "win rate"
    PROFIT_FACTOR = "profit factor"
    EXPECTANCY = "expectancy"
    SHARPE = "sharpe"


ACTIONS: Final[Mapping[Severity, str]] = MappingProxyType(
    {
        Severity.NONE: "keep trading",
        Severity.LOW: "watch",
        Severity.MEDIUM: "review the strategy; consider ask-only",
        Severity.HIGH: "switch to ask-only and review",
        Severity.CRITICAL: "disabled for new entries until /enable",
    }
)


def _check_open(value: float, name: str, low: float, high: float) -> None:
    if not low < value < high:
        raise ValueError(f"{name} must be within ({low:g}, {high:g}), was {value}")


def _check_counts(sequences: int, length: int) -> None:
    if sequences < 1 or length < 1:
        raise ValueError(f"sequences and trades must be at least 1, were {sequences} and {length}")


@dataclass(frozen=True, slots=True)
class DriftConfig:
    """Thresholds, sample minimums and detector design of a drift assessment."""

    degradation: float = 0.15  # a metric is degraded below baseline - degradation x |baseline|
    min_trades: int = 10
    min_baseline: int = 20
    ks_min_live: int = 20
    ks_min_baseline: int = 30
    ks_alpha: float = 0.01
    win_rate_drop: float = 0.20  # the detector's design: p1 = p0 - win_rate_drop (see scripts/bench_drift.py)
    head_start: float = 0.5  # the statistic starts at head_start x h
    horizon: int = 100  # trades over which the false-alarm probability is calibrated
    false_alarm: float = 0.04
    calibration_confidence: float = 0.95
    simulations: int = 4000
    seed: int = DEFAULT_SEED
    window: int = 100  # only the latest `window` live trades are compared
    estimated_baseline: bool = True  # calibrate h for the baseline win rate's sampling error (False: taken as exact)

    def __post_init__(self) -> None:
        for name in ("min_trades", "min_baseline", "ks_min_live", "ks_min_baseline", "horizon", "simulations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, was {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative whole number, was {self.seed!r}")
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < self.min_trades:
            raise ValueError(f"window must be at least min_trades ({self.min_trades}), was {self.window!r}")
        if self.window > self.horizon:
            raise ValueError(f"window must be at most horizon ({self.horizon}), was {self.window}")
        _check_open(self.degradation, "degradation", 0.0, 1.0)
        _check_open(self.ks_alpha, "ks_alpha", 0.0, 0.5)
        _check_open(self.false_alarm, "false_alarm", 0.0, 0.5)
        _check_open(self.win_rate_drop, "win_rate_drop", 0.0, 1.0)
        if not 0.0 <= self.head_start < 1.0:
            raise ValueError(f"head_start must be within [0, 1), was {self.head_start}")
        if not 0.5 <= self.calibration_confidence < 1.0:
            raise ValueError(f"calibration_confidence must be within [0.5, 1), was {self.calibration_confidence}")
        needed = math.ceil(math.log(1.0 - self.calibration_confidence) / math.log(1.0 - self.false_alarm))
        if self.simulations < needed:
            raise ValueError(
                f"simulations must be at least {needed} to bound a false_alarm of {self.false_alarm} at confidence "
                f"{self.calibration_confidence}, was {self.simulations}"
            )


DEFAULT_CONFIG: Final = DriftConfig()


@dataclass(frozen=True, slots=True)
class DriftReport:
    """Live trades against the baseline: metrics, tests, the sequential detector and the verdict."""

    n: int
    baseline_n: int
    live_win_rate: float | None
    baseline_win_rate: float | None
    live_profit_factor: float | None
    baseline_profit_factor: float | None
    live_expectancy_r: float | None
    baseline_expectancy_r: float | None
    live_sharpe: float | None
    baseline_sharpe: float | None
    degraded: tuple[Metric, ...]
    ks_statistic: float | None
    ks_p_value: float | None
    win_rate_p_value: float | None  # one-sided binomial test of the live win rate against p0 (verdicts only)
    detector_statistic: float | None  # the maximum over the compared window; None when the detector did not run
    threshold: float | None
    detector_alarm: bool
    p0: float | None
    severity: Severity
    reasons: tuple[str, ...]
    action: str

    def __post_init__(self) -> None:
        if self.n < 0 or self.baseline_n < 0:
            raise ValueError(f"trade counts must be at least 0, were n={self.n}, baseline_n={self.baseline_n}")
        if (self.ks_statistic is None) != (self.ks_p_value is None):
            raise ValueError("ks_statistic and ks_p_value must both be set or both be None")
        if self.detector_alarm and (
            self.detector_statistic is None or self.threshold is None or self.detector_statistic < self.threshold
        ):
            raise ValueError(
                f"a detector alarm needs statistic >= threshold, were {self.detector_statistic} vs {self.threshold}"
            )
        if self.severity >= Severity.HIGH and not self.detector_alarm:
            raise ValueError(f"severity {self.severity} requires the detector's alarm")
        if not self.reasons:
            raise ValueError("a report must give at least one reason")
        if self.action != ACTIONS[self.severity]:
            raise ValueError(f"action must be {ACTIONS[self.severity]!r} for severity {self.severity}")

    def summary(self) -> str:
        """Render the report on one line."""
        ks = "KS n/a" if self.ks_p_value is None else f"KS p={self.ks_p_value:.2g}"
        if self.detector_statistic is None or self.threshold is None:
            cusum = "CUSUM n/a"
        else:
            cusum = f"CUSUM {self.detector_statistic:.1f}/{self.threshold:.1f}"
        return (
            f"{self.severity.label.upper()} · n={self.n} win {_pct(self.live_win_rate)} vs "
            f"{_pct(self.baseline_win_rate)} · exp {_r(self.live_expectancy_r)} vs {_r(self.baseline_expectancy_r)}"
            f" · {ks} · {cusum}"
        )


def assess(live_r: Sequence[float], baseline_r: Sequence[float], config: DriftConfig = DEFAULT_CONFIG) -> DriftReport:
    """Compare the latest live R multiples (oldest first) with the baseline's R sample."""
    live = _as_r(live_r, "live_r")[-config.window :]
    base = _as_r(baseline_r, "baseline_r")
    ls, bs = TradeStats.of(live.tolist()), TradeStats.of(base.tolist())
    p0 = None if bs.win_rate is None else detector_rates(bs.win_rate, config)[0]

    ks_statistic = ks_p = None
    if ls.trades >= config.ks_min_live and bs.trades >= config.ks_min_baseline:
        ks_statistic, ks_p = ks_worse(live, base)

    statistic = threshold = None
    alarm = False
    detector_off = False
    if ls.trades >= 1 and bs.trades >= config.min_baseline and bs.win_rate is not None:
        h = detector_threshold(bs.win_rate, config, bs.trades if config.estimated_baseline else None)
        if math.isinf(h):
            detector_off = True
        else:
            statistic = float(cusum_path(live >= WIN_R, bs.win_rate, config, h).max())
            threshold = h
            alarm = statistic >= h

    degradations = _degradations(ls, bs, config.degradation)
    degraded = tuple(d.metric for d in degradations)
    binom_p = None
    reasons: list[str] = []
    if ls.trades < config.min_trades:
        severity = Severity.NONE
        reasons.append(f"too few trades (n={ls.trades} < min_trades {config.min_trades}): no verdict")
    elif bs.trades < config.min_baseline:
        severity = Severity.NONE
        reasons.append(f"baseline too small ({bs.trades} R values < min_baseline {config.min_baseline}): no verdict")
    elif p0 is None or ls.win_rate is None or ls.expectancy_r is None:
        raise RuntimeError("both samples hold trades here: min_trades and min_baseline are at least 1")
    else:
        binom_p = probability.binomial_less_p(ls.wins, ls.trades, p0)
        ks_significant = ks_p is not None and ks_p < config.ks_alpha
        confirmed = ks_significant or binom_p < config.ks_alpha
        if alarm and ls.expectancy_r < 0 and confirmed:
            severity = Severity.CRITICAL
        elif alarm:
            severity = Severity.HIGH
        elif len(degraded) >= 2 or ks_significant:
            severity = Severity.MEDIUM
        elif degraded:
            severity = Severity.LOW
        else:
            severity = Severity.NONE
        if alarm:
            reasons.append(
                f"CUSUM alarm: the win/loss detector reached {statistic:.2f} >= threshold {threshold:.2f} "
                f"(baseline win rate {p0:.0%}, designed to catch {detector_rates(p0, config)[1]:.0%})"
            )
        if severity is Severity.CRITICAL:
            reasons.append(
                f"live expectancy {ls.expectancy_r:+.2f}R < 0 and the live win rate {ls.win_rate:.0%} vs {p0:.0%} "
                f"has binomial p={binom_p:.2g}"
                + (f", KS p={ks_p:.2g}" if ks_p is not None else "")
                + f" (alpha {config.ks_alpha})"
            )
        reasons.extend(d.reason(config.degradation) for d in degradations)
        if ks_significant:
            reasons.append(
                f"KS test: live R stochastically smaller than the baseline, p={ks_p:.2g} < {config.ks_alpha} "
                f"(D={ks_statistic:.2f})"
            )
        if severity is Severity.NONE:
            reasons.append(
                f"no metric more than {config.degradation:.0%} below baseline"
                + ("" if ks_p is None else f", KS p={ks_p:.2g}")
                + ("" if statistic is None else f", CUSUM {statistic:.2f} < {threshold:.2f}")
            )
    if detector_off:
        reasons.append(f"win-rate detector off: a baseline win rate of {bs.win_rate:.0%} leaves no lower rate")
    return DriftReport(
        n=ls.trades,
        baseline_n=bs.trades,
        live_win_rate=ls.win_rate,
        baseline_win_rate=bs.win_rate,
        live_profit_factor=ls.profit_factor,
        baseline_profit_factor=bs.profit_factor,
        live_expectancy_r=ls.expectancy_r,
        baseline_expectancy_r=bs.expectancy_r,
        live_sharpe=ls.sharpe,
        baseline_sharpe=bs.sharpe,
        degraded=degraded,
        ks_statistic=ks_statistic,
        ks_p_value=ks_p,
        win_rate_p_value=binom_p,
        detector_statistic=statistic,
        threshold=threshold,
        detector_alarm=alarm,
        p0=p0,
        severity=severity,
        reasons=tuple(reasons),
        action=ACTIONS[severity],
    )


def ks_worse(live_r: Sequence[float] | FloatArray, baseline_r: Sequence[float] | FloatArray) -> tuple[float, float]:
    """Return (D, p) of the one-sided KS test that live R is stochastically smaller than the baseline."""
    live, base = _as_r(live_r, "live_r"), _as_r(baseline_r, "baseline_r")
    if live.size == 0 or base.size == 0:
        raise ValueError(f"the KS test needs values on both sides, had {live.size} live and {base.size} baseline")
    return probability.ks_greater(live.tolist(), base.tolist())


def detector_rates(win_rate: float, config: DriftConfig = DEFAULT_CONFIG) -> tuple[float, float]:
    """Return the detector's (p0, p1) for a baseline win rate: clipped, rounded, and the designed worse rate."""
    if not 0.0 <= win_rate <= 1.0:
        raise ValueError(f"win_rate must be within [0, 1], was {win_rate}")
    p0 = round(min(max(win_rate, P_MIN), P_MAX), P_PLACES)
    return p0, round(max(p0 - config.win_rate_drop, P_MIN), P_PLACES)


def detector_threshold(p0: float, config: DriftConfig = DEFAULT_CONFIG, baseline_n: int | None = None) -> float:
    """Return the calibrated alarm threshold h for a baseline win rate (infinity when the detector is off).

    With `baseline_n`, the win rate is an estimate from that many baseline trades: h is calibrated on sequences
    whose true win rate is drawn from its Jeffreys posterior, Beta(wins + 1/2, losses + 1/2), so the baseline's
    own sampling error does not turn into false alarms (see the module docstring). None: p0 is taken as exact.
    """
    rate, worse = detector_rates(p0, config)
    if worse >= rate:
        return math.inf
    wins = None if baseline_n is None else round(p0 * baseline_n)
    return _calibrated_threshold(
        rate,
        worse,
        config.horizon,
        config.false_alarm,
        config.head_start,
        config.calibration_confidence,
        config.simulations,
        config.seed,
        wins,
        baseline_n,
    )


def cusum_path(
    wins: Sequence[bool] | BoolArray, p0: float, config: DriftConfig = DEFAULT_CONFIG, h: float | None = None
) -> FloatArray:
    """Return the detector statistic after each trade for outcomes in time order (h calibrated when not given)."""
    rate, worse = detector_rates(p0, config)
    if worse >= rate:
        raise ValueError(f"the detector is off for a baseline win rate of {p0}: there is no lower win rate to detect")
    threshold = detector_threshold(p0, config) if h is None else h
    if not 0.0 < threshold < math.inf:
        raise ValueError(f"h must be positive and finite, was {threshold}")
    outcomes = np.asarray(wins, dtype=np.bool_).reshape(1, -1)
    path: FloatArray = _cusum_paths(outcomes, rate, worse, config.head_start * threshold)[0]
    return path


def first_high_checks(
    sequences: FloatArray, baseline_r: Sequence[float], config: DriftConfig = DEFAULT_CONFIG
) -> FloatArray:
    """Return, per row of live R sequences, the first trade count whose check is HIGH or above (inf if none).

    A check after t trades is what `assess(row[:t], baseline_r, config)` would grade: HIGH or above exactly when
    t >= min_trades and the detector over the latest `window` of those t trades alarmed at any trade.
    """
    r = np.asarray(sequences, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"sequences must be a sequences x trades matrix, had {r.ndim} dimensions")
    count, length = r.shape
    first = np.full(count, np.inf)
    bs = TradeStats.of(baseline_r)
    if length < config.min_trades or bs.trades < config.min_baseline or bs.win_rate is None:
        return first
    rate, worse = detector_rates(bs.win_rate, config)
    h = detector_threshold(bs.win_rate, config, bs.trades if config.estimated_baseline else None)
    if math.isinf(h):
        return first
    wins = r >= WIN_R
    start = config.head_start * h
    # Checks up to `window` trades all see a window starting at the first trade: one path, its running maximum.
    hit = _cusum_paths(wins[:, : config.window], rate, worse, start) >= h
    alarmed = hit.any(axis=1)
    first[alarmed] = np.maximum(np.argmax(hit[alarmed], axis=1) + 1, config.min_trades)
    # Each later check restarts the detector on its own window of the latest `window` trades.
    for begin in range(1, length - config.window + 1):
        pending = np.flatnonzero(np.isinf(first))
        if pending.size == 0:
            break
        paths = _cusum_paths(wins[pending, begin : begin + config.window], rate, worse, start)
        first[pending[(paths >= h).any(axis=1)]] = begin + config.window
    return first


@functools.lru_cache(maxsize=CACHE_SIZE)
def _calibrated_threshold(
    p0: float,
    p1: float,
    horizon: int,
    false_alarm: float,
    head_start: float,
    confidence: float,
    simulations: int,
    seed: int,
    baseline_wins: int | None = None,
    baseline_n: int | None = None,
) -> float:
    rng = np.random.default_rng(seed)
    if baseline_n is None or baseline_wins is None:
        true_rate: FloatArray | float = p0
    else:  # the rate p0 was estimated from: each sequence gets a plausible true rate
        losses = baseline_n - baseline_wins
        true_rate = rng.beta(baseline_wins + JEFFREYS, losses + JEFFREYS, size=(simulations, 1))
    outcomes = rng.random((simulations, horizon)) < true_rate
    levels = np.sort(_crossing_levels(outcomes, p0, p1, head_start))
    allowed = _allowed_alarms(simulations, false_alarm, confidence)
    # Sequences whose crossing level is above h are the only ones alarming at h: keep at most `allowed` of them.
    level = float(levels[simulations - 1 - allowed])
    return level * (1.0 + _THRESHOLD_MARGIN) + _THRESHOLD_MARGIN


def _allowed_alarms(simulations: int, false_alarm: float, confidence: float) -> int:
    """Return the most alarms among `simulations` whose Clopper-Pearson upper bound stays within false_alarm."""
    # The upper bound for k alarms is at most false_alarm exactly when P(Binomial(n, false_alarm) <= k) <= 1 - c.
    low, high = 0, simulations  # the CDF rises with the count: the answer is the last count within, by bisection
    if probability.binomial_cdf(0, simulations, false_alarm) > 1.0 - confidence:
        raise ValueError(f"no count of {simulations} simulations bounds a false alarm rate of {false_alarm}")
    while low < high:
        middle = (low + high + 1) // 2
        if probability.binomial_cdf(middle, simulations, false_alarm) <= 1.0 - confidence:
            low = middle
        else:
            high = middle - 1
    return low


def _walks(outcomes: BoolArray, p0: float, p1: float) -> FloatArray:
    """Return the cumulative log-likelihood ratio of p1 against p0 after each trade, per row."""
    step = np.where(outcomes, math.log(p1 / p0), math.log((1.0 - p1) / (1.0 - p0)))
    return np.cumsum(step, axis=1)


def _cusum_paths(outcomes: BoolArray, p0: float, p1: float, start: float) -> FloatArray:
    """Return the floored CUSUM after each trade, starting at `start`, per row."""
    walk = _walks(outcomes, p0, p1)
    # S_t = max(start + W_t, W_t - min(0, min_k<=t W_k)): the recursion S_t = max(0, S_t-1 + x_t) in closed form.
    floor = np.minimum(np.minimum.accumulate(walk, axis=1), 0.0) if walk.size else walk
    return np.maximum(start + walk, walk - floor)


def _crossing_levels(outcomes: BoolArray, p0: float, p1: float, head_start: float) -> FloatArray:
    """Return per row the largest threshold h at which a CUSUM started at head_start x h alarms at some trade."""
    # start + W_t >= h  <=>  h <= W_t / (1 - head_start), and W_t - floor_t >= h: both monotone in h.
    walk = _walks(outcomes, p0, p1)
    floor = np.minimum(np.minimum.accumulate(walk, axis=1), 0.0)
    levels: FloatArray = np.maximum(walk.max(axis=1) / (1.0 - head_start), (walk - floor).max(axis=1))
    return levels


@dataclass(frozen=True, slots=True)
class _Degradation:
    metric: Metric
    live: float
    baseline: float

    def reason(self, degradation: float) -> str:
        """Describe the degradation with both values and the limit."""
        shown = _pct if self.metric is Metric.WIN_RATE else _r if self.metric is Metric.EXPECTANCY else _ratio
        if self.baseline == 0:
            drop = "below a baseline of zero"
        else:
            drop = f"{(self.baseline - self.live) / abs(self.baseline):.0%} lower"
        return f"{self.metric} {shown(self.live)} vs baseline {shown(self.baseline)}: {drop} (limit {degradation:.0%})"


def _degradations(live: TradeStats, base: TradeStats, degradation: float) -> list[_Degradation]:
    """Return the metrics whose live value is below baseline - degradation x |baseline| (undefined: not compared)."""
    found = []
    for metric in Metric:
        now, then = _metric(live, metric), _metric(base, metric)
        if now is not None and then is not None and now < then - degradation * abs(then):
            found.append(_Degradation(metric, now, then))
    return found


def _metric(s: TradeStats, metric: Metric) -> float | None:
    match metric:
        case Metric.WIN_RATE:
            return s.win_rate
        case Metric.PROFIT_FACTOR:
            return s.profit_factor
        case Metric.EXPECTANCY:
            return s.expectancy_r
        case Metric.SHARPE:
            return s.sharpe


def _as_r(values: Sequence[float] | FloatArray, name: str) -> FloatArray:
    r = np.asarray(values, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"{name} must be a flat sequence of R multiples, had {r.ndim} dimensions")
    bad = np.flatnonzero(~np.isfinite(r))
    if bad.size:
        raise ValueError(f"{name} must be finite R multiples, found {r[bad[0]]} at index {bad[0]}")
    return r


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _r(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}R"
