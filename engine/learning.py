"""What the bot learns from closed trades: per-strategy posteriors, a learned score calibration, the trader's edge.

Pure (no I/O): the bot loads baselines and outcomes from its store, calls these functions and shows the results.

Outcomes. An `Outcome` is one closed trade as learning sees it: strategy, symbol, close time (UTC),
exchange-local entry hour, net R and the quality score with its components at entry. A win is net R >= +0.05R
(`engine.performance.BREAKEVEN_BAND`). Its source says where it came from: BACKTEST (simulated on history),
LIVE (a live or paper position), SHADOW (the hypothetical outcome of a rejected or expired signal), EXTERNAL
(reported by the trader). Each signal should contribute one outcome.

Posteriors (`posteriors`), per (strategy, symbol), per strategy overall (symbol None) and per hour-of-day bucket:

* Prior sample: the pair's validation baseline (its out-of-sample R multiples). It counts as
  w0 = min(prior_trades, len(baseline)) pseudo-trades whatever its size, so years of backtest never drown what
  the strategy does now. A pair without a baseline gets a weak prior: w0 = 2 pseudo-trades at win rate 0.5 and
  expectancy 0 with an R variance of 1. The strategy overall pools all its pairs' baselines.
* Recorded outcomes of source LIVE, EXTERNAL and SHADOW update the prior; BACKTEST outcomes do not (the baseline
  already is the backtest's word). SHADOW outcomes count because they measure the strategy's setups, not the
  trader's choices. Each weighs 0.5 ** (age_days / half_life_days) at `now`: weight 1 when it just closed, 1/2
  one half-life earlier (an outcome closed after `now` weighs 1).
* Win probability: Beta(alpha0, beta0) with alpha0 = 1 + w0 * p_b, beta0 = 1 + w0 * (1 - p_b), p_b the prior
  sample's win rate; a won outcome adds its weight to alpha, any other to beta. p_win is the posterior mean,
  the interval its 5 % and 95 % quantiles.
* Expected R: normal-normal with a known per-trade variance. Posterior mean = (w0 * m0 + sum w_i r_i) /
  (w0 + sum w_i), m0 the prior sample's mean R; posterior sd = sqrt(s2 / (w0 + sum w_i)), where s2 is the
  pooled weighted variance of the prior sample (each of its trades weighing w0 / len) and the outcomes around
  the posterior mean, floored at 0.25 R^2 so a constant sample does not claim certainty.
  p_negative = Phi(-mean / sd), the posterior probability that the expected R is below zero.
* Hour buckets (key (strategy, "SYMBOL@hourHH"), `bucket` "hour HH"): a bucket's prior sample is the BACKTEST
  outcomes of that pair entered in that exchange-local hour (or the pair's prior when there are none); its
  updates are the recorded outcomes entered in that hour. A bucket gets a posterior only when its backtest plus
  recorded outcomes number at least `min_bucket_trades`.

Demotion (`demotion`): a pair is demoted (ask-only or paused) once it has at least `min_live_for_demotion`
recorded outcomes and P(expected R < 0) >= `demote_confidence`. Ranking (`rank_key`): higher posterior expected
R first, then higher quality; a signal without a posterior ranks as expected R 0.

Calibration (`fit_calibration`): maps the quality score (isotonic) or the standardised score and components
(logistic) to a win probability. The scored outcomes are sorted by close time (ties keep their input order) and
never shuffled: the earliest (1 - holdout_fraction) fit the model, the latest are held out to evaluate it, so
the model never sees the future it is judged on. Outcomes sharing a close time across the cut all go to the
held-out part, so the fit part ends strictly before it starts. The evaluated model is the one kept. Its Brier
score on the held-out part is compared with the Brier score of the fit part's win rate (the base rate); only a
model that beats it (strictly lower Brier) gives a win estimate, otherwise the bot shows "n/a". Isotonic
regression is non-decreasing in the score and clipped to the fitted range. The logistic model uses
[quality / 100, component values...]; a component missing from an outcome takes its training mean, which after
standardising contributes nothing. Prediction needs numpy only; the model round-trips through JSON. Beside
the gate the model reports a one-sided paired t-test p-value of the per-trade Brier gain over the base rate:
an uninformative score beats the base rate by a hair in a fair share of samples, so read a small gain with it.

Trader edge (`trader_edge`): the shadow outcomes of the trader's rejections: losses avoided (|R| of those that
lost, net R <= -0.05R) against wins skipped (R of those that won), beside the R of approved and expired signals.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from engine import probability
from engine.domain import ensure_utc
from engine.performance import WIN_R
from engine.trading import Trade, TradeKind

if TYPE_CHECKING:
    from engine.results import BacktestTrade


MIN_CALIBRATION_FLOOR: Final = 10
QUALITY_SCALE: Final = 100.0
LOSS_R: Final = -WIN_R


SECONDS_PER_DAY: Final = 86_400.0


WEAK_PRIOR_TRADES: Final = 2.0


WEAK_PRIOR_WIN_RATE: Final = 0.5


WEAK_PRIOR_EXPECTANCY: Final = 0.0


WEAK_PRIOR_R_VARIANCE: Final = 1.0


R_VARIANCE_FLOOR: Final = 0.25  # R^2: a per-trade R sd of at least 0.5R


CREDIBLE_LOW: Final = 0.05


CREDIBLE_HIGH: Final = 0.95


HOURS_PER_DAY: Final = 24


MODEL_SCHEMA: Final = 1


WEIGHT_TOLERANCE: Final = 1e-9


class OutcomeSource(StrEnum):
    BACKTEST = "backtest"  # simulated on history
    LIVE = "live"  # a live or paper position
    SHADOW = "shadow"  # the hypothetical outcome of a rejected or expired signal
    EXTERNAL = "external"  # executed outside the bot, reported by the trader


RECORDED: Final = frozenset({OutcomeSource.LIVE, OutcomeSource.EXTERNAL, OutcomeSource.SHADOW})


SOURCE_OF_KIND: Final[Mapping[TradeKind, OutcomeSource]] = MappingProxyType(
    {
        TradeKind.PAPER: OutcomeSource.LIVE,
        TradeKind.LIVE: OutcomeSource.LIVE,
        TradeKind.SHADOW: OutcomeSource.SHADOW,
        TradeKind.EXTERNAL: OutcomeSource.EXTERNAL,
        TradeKind.BACKTEST: OutcomeSource.BACKTEST,
    }
)


class CalibrationMethod(StrEnum):
    ISOTONIC = "isotonic"  # non-decreasing step function of the quality score
    LOGISTIC = "logistic"  # logistic regression on the standardised score and components


class Verdict(StrEnum):
    KEEP = "keep"
    ASK_ONLY = "ask_only"
    PAUSE = "pause"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One closed trade as learning sees it."""

    strategy: str
    symbol: str
    closed_at: datetime
    entry_hour: int  # exchange-local hour of the entry, 0..23
    r: float  # net R
    quality: float | None
    components: Mapping[str, float]
    source: OutcomeSource

    def __post_init__(self) -> None:
        ensure_utc(self.closed_at, "outcome closed_at")
        if not self.strategy or not self.symbol:
            raise ValueError(f"an outcome needs a strategy and a symbol, were {self.strategy!r} {self.symbol!r}")
        if isinstance(self.entry_hour, bool) or not 0 <= self.entry_hour < HOURS_PER_DAY:
            raise ValueError(f"outcome entry_hour must be an hour 0..23, was {self.entry_hour!r}")
        if not math.isfinite(self.r):
            raise ValueError(f"outcome R must be finite, was {self.r}")
        if self.quality is not None and not 0.0 <= self.quality <= QUALITY_SCALE:
            raise ValueError(f"outcome quality must be within 0..100 or None, was {self.quality}")
        for name, value in self.components.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"quality component {name} must be within 0..1, was {value}")
        if not isinstance(self.source, OutcomeSource):
            raise ValueError(f"outcome source must be an OutcomeSource, was {self.source!r}")
        object.__setattr__(self, "components", MappingProxyType(dict(self.components)))

    def __reduce__(self) -> tuple[type[Outcome], tuple[Any, ...]]:
        """Pickle the components as a plain dict (a read-only view does not pickle): outcomes cross processes."""
        fields = (self.strategy, self.symbol, self.closed_at, self.entry_hour, self.r, self.quality)
        return Outcome, (*fields, dict(self.components), self.source)

    @property
    def won(self) -> bool:
        return self.r >= WIN_R

    @classmethod
    def from_backtest(cls, bt: BacktestTrade) -> Outcome:
        """Return the outcome of a closed backtest trade."""
        return cls.from_trade(bt.trade, entry_hour=bt.entry_hour, quality=bt.quality, components=bt.components)

    @classmethod
    def from_trade(
        cls,
        trade: Trade,
        *,
        entry_hour: int,
        quality: float | None = None,
        components: Mapping[str, float] | None = None,
    ) -> Outcome:
        """Return the outcome of a closed trade of any kind (paper and live trades are LIVE)."""
        if trade.exit_time is None:
            raise ValueError(f"trade {trade.trade_id} is still open: only closed trades are outcomes")
        r = trade.pnl_r
        if r is None:
            raise ValueError(f"trade {trade.trade_id} has no R multiple (no money at risk)")
        return cls(
            strategy=trade.strategy,
            symbol=trade.symbol,
            closed_at=trade.exit_time,
            entry_hour=entry_hour,
            r=float(r),
            quality=quality,
            components=components or {},
            source=SOURCE_OF_KIND[trade.kind],
        )


@dataclass(frozen=True)
class LearningConfig:
    """How much the prior counts, how fast outcomes fade, and when to demote or calibrate."""

    prior_trades: float = 20.0
    half_life_days: float = 90.0
    demote_confidence: float = 0.90
    min_live_for_demotion: int = 10
    min_bucket_trades: int = 30
    holdout_fraction: float = 0.3
    min_calibration_trades: int = 100
    method: CalibrationMethod = CalibrationMethod.ISOTONIC

    def __post_init__(self) -> None:
        if not math.isfinite(self.prior_trades) or self.prior_trades <= 0:
            raise ValueError(f"prior_trades must be a positive number of pseudo-trades, was {self.prior_trades}")
        if not math.isfinite(self.half_life_days) or self.half_life_days <= 0:
            raise ValueError(f"half_life_days must be a positive number of days, was {self.half_life_days}")
        if not 0.5 <= self.demote_confidence < 1.0:
            raise ValueError(
                f"demote_confidence must be within [0.5, 1): below 0.5 it would demote pairs whose expected R is "
                f"more likely positive, was {self.demote_confidence}"
            )
        for name in ("min_live_for_demotion", "min_bucket_trades"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, was {value!r}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(
                f"holdout_fraction must be within (0, 1): both the fit and the held-out part need outcomes, was "
                f"{self.holdout_fraction}"
            )
        m = self.min_calibration_trades
        if isinstance(m, bool) or not isinstance(m, int) or m < MIN_CALIBRATION_FLOOR:
            raise ValueError(f"min_calibration_trades must be a whole number >= {MIN_CALIBRATION_FLOOR}, was {m!r}")
        if not isinstance(self.method, CalibrationMethod):
            raise ValueError(f"method must be a CalibrationMethod, was {self.method!r}")


@dataclass(frozen=True)
class Posterior:
    """Posterior win probability and expected R of a strategy, a pair or an hour bucket of a pair."""

    strategy: str
    symbol: str | None  # None: the strategy over all its symbols
    bucket: str | None  # e.g. "hour 09"; None: all hours
    prior: str  # where the prior came from, in words
    prior_n: float  # effective prior weight in pseudo-trades (w0)
    prior_win_rate: float
    prior_expected_r: float
    live_n: int  # recorded outcomes that updated the prior
    live_weight: float  # sum of their recency weights
    win_alpha: float
    win_beta: float
    expected_r: float  # posterior mean of the expected R
    expected_r_sd: float

    def __post_init__(self) -> None:
        if self.bucket is not None and self.symbol is None:
            raise ValueError("an hour bucket belongs to a symbol: bucket needs symbol")
        if self.prior_n <= 0 or self.live_n < 0 or self.live_weight < 0:
            raise ValueError(
                f"prior_n must be positive and live counts non-negative, were {self.prior_n}, {self.live_n}, "
                f"{self.live_weight}"
            )
        if self.live_weight > self.live_n + WEIGHT_TOLERANCE:
            raise ValueError(f"live_weight cannot exceed live_n (weights are at most 1), {self.live_weight}")
        if self.win_alpha <= 0 or self.win_beta <= 0:
            raise ValueError(f"Beta parameters must be positive, were {self.win_alpha}, {self.win_beta}")
        if not math.isfinite(self.expected_r) or not (math.isfinite(self.expected_r_sd) and self.expected_r_sd > 0):
            raise ValueError(
                f"expected R needs a finite mean and positive sd, was {self.expected_r} ± {self.expected_r_sd}"
            )

    @property
    def p_win(self) -> float:
        """Return the posterior mean win probability."""
        return self.win_alpha / (self.win_alpha + self.win_beta)

    @property
    def p_win_interval(self) -> tuple[float, float]:
        """Return the 5 % and 95 % quantiles of the posterior win probability."""
        return (
            probability.beta_ppf(CREDIBLE_LOW, self.win_alpha, self.win_beta),
            probability.beta_ppf(CREDIBLE_HIGH, self.win_alpha, self.win_beta),
        )

    @property
    def p_negative(self) -> float:
        """Return the posterior probability that the expected R is below zero."""
        return probability.normal_cdf(-self.expected_r / self.expected_r_sd)

    def describe(self) -> str:
        """Summarise the posterior in one line."""
        low, high = self.p_win_interval
        where = self.strategy if self.symbol is None else f"{self.strategy} {self.symbol}"
        if self.bucket is not None:
            where += f" {self.bucket}"
        return (
            f"{where}: win {self.p_win:.0%} ({low:.0%}-{high:.0%}), expected R {self.expected_r:+.2f} ± "
            f"{self.expected_r_sd:.2f}, P(expected R < 0) {self.p_negative:.0%}; {self.live_n} recorded "
            f"outcomes (weight {self.live_weight:.1f}); prior: {self.prior}"
        )


def hour_bucket(hour: int) -> str:
    """Return the bucket label of an exchange-local entry hour."""
    if not 0 <= hour < HOURS_PER_DAY:
        raise ValueError(f"hour must be 0..23, was {hour}")
    return f"hour {hour:02d}"


def bucket_key(symbol: str, hour: int) -> str:
    """Return the second element of the posteriors key of an hour bucket: "EURUSD@hour09"."""
    return f"{symbol}@{hour_bucket(hour).replace(' ', '')}"


def recency_weight(closed_at: datetime, now: datetime, half_life_days: float) -> float:
    """Return 0.5 ** (age in days / half-life); an outcome closed at or after `now` weighs 1."""
    age_days = max(0.0, (now - closed_at).total_seconds() / SECONDS_PER_DAY)
    return float(0.5 ** (age_days / half_life_days))


@dataclass(frozen=True)
class _Prior:
    weight: float  # w0
    win_rate: float
    mean: float
    variance: float  # population variance of the prior sample
    label: str


def _prior(sample: Sequence[float], config: LearningConfig, label: str) -> _Prior:
    if not sample:
        return _Prior(
            WEAK_PRIOR_TRADES,
            WEAK_PRIOR_WIN_RATE,
            WEAK_PRIOR_EXPECTANCY,
            WEAK_PRIOR_R_VARIANCE,
            "no baseline: weak prior",
        )
    values = np.asarray(sample, dtype=np.float64)
    if not bool(np.all(np.isfinite(values))):
        raise ValueError(f"{label}: prior R multiples must be finite")
    n = len(values)
    w0 = min(config.prior_trades, float(n))
    discount = f", discounted to {w0:g}" if w0 < n else ""
    return _Prior(
        weight=w0,
        win_rate=float(np.mean(values >= WIN_R)),
        mean=float(np.mean(values)),
        variance=float(np.var(values)),
        label=f"{label} ({n:,} trades{discount})",
    )


def _posterior(
    strategy: str,
    symbol: str | None,
    bucket: str | None,
    prior: _Prior,
    recorded: Sequence[Outcome],
    now: datetime,
    config: LearningConfig,
) -> Posterior:
    weights = np.array([recency_weight(o.closed_at, now, config.half_life_days) for o in recorded], dtype=np.float64)
    rs = np.array([o.r for o in recorded], dtype=np.float64)
    won = rs >= WIN_R
    w0 = prior.weight
    total = w0 + float(weights.sum())
    mean = (w0 * prior.mean + float(weights @ rs)) / total
    spread = w0 * (prior.variance + (prior.mean - mean) ** 2) + float(weights @ (rs - mean) ** 2)
    variance = max(R_VARIANCE_FLOOR, spread / total)
    return Posterior(
        strategy=strategy,
        symbol=symbol,
        bucket=bucket,
        prior=prior.label,
        prior_n=w0,
        prior_win_rate=prior.win_rate,
        prior_expected_r=prior.mean,
        live_n=len(recorded),
        live_weight=float(weights.sum()),
        win_alpha=1.0 + w0 * prior.win_rate + float(weights[won].sum()),
        win_beta=1.0 + w0 * (1.0 - prior.win_rate) + float(weights[~won].sum()),
        expected_r=mean,
        expected_r_sd=math.sqrt(variance / total),
    )


def posteriors(
    baselines: Mapping[tuple[str, str], Sequence[float]],
    outcomes: Sequence[Outcome],
    now: datetime,
    config: LearningConfig | None = None,
    *,
    baseline_versions: Mapping[tuple[str, str], int] | None = None,
) -> dict[tuple[str, str | None], Posterior]:
    """Return the posteriors of every pair, strategy and eligible hour bucket (see the module docstring)."""
    ensure_utc(now, "now")
    cfg = config or LearningConfig()
    versions = baseline_versions or {}
    recorded: dict[tuple[str, str], list[Outcome]] = {}
    backtested: dict[tuple[str, str], list[Outcome]] = {}
    for o in outcomes:
        if o.source in RECORDED:
            recorded.setdefault((o.strategy, o.symbol), []).append(o)
        elif o.source is OutcomeSource.BACKTEST:
            backtested.setdefault((o.strategy, o.symbol), []).append(o)
    with_baseline = {pair for pair, rs in baselines.items() if rs}
    pairs = sorted(with_baseline | recorded.keys())
    out: dict[tuple[str, str | None], Posterior] = {}

    for strategy in sorted({s for s, _ in pairs}):
        mine = [pair for pair in pairs if pair[0] == strategy]
        pooled = [r for pair in mine if pair in with_baseline for r in baselines[pair]]
        n_symbols = sum(1 for pair in mine if pair in with_baseline)
        label = f"baselines of {n_symbols} symbol{'s' if n_symbols != 1 else ''}"
        updates = [o for pair in mine for o in recorded.get(pair, ())]
        out[(strategy, None)] = _posterior(strategy, None, None, _prior(pooled, cfg, label), updates, now, cfg)

    for strategy, symbol in pairs:
        version = versions.get((strategy, symbol))
        label = "baseline" if version is None else f"baseline v{version}"
        pair_prior = _prior(list(baselines.get((strategy, symbol), ())), cfg, label)
        live = recorded.get((strategy, symbol), [])
        out[(strategy, symbol)] = _posterior(strategy, symbol, None, pair_prior, live, now, cfg)
        history = backtested.get((strategy, symbol), [])
        for hour in sorted({o.entry_hour for o in (*live, *history)}):
            in_hour = [o for o in live if o.entry_hour == hour]
            prior_sample = [o.r for o in history if o.entry_hour == hour]
            if len(in_hour) + len(prior_sample) < cfg.min_bucket_trades:
                continue
            bucket = hour_bucket(hour)
            prior = _prior(prior_sample, cfg, f"backtest {bucket}") if prior_sample else pair_prior
            out[(strategy, bucket_key(symbol, hour))] = _posterior(strategy, symbol, bucket, prior, in_hour, now, cfg)
    return out


def posterior_for(
    posts: Mapping[tuple[str, str | None], Posterior], strategy: str, symbol: str, hour: int | None = None
) -> Posterior | None:
    """Return the most specific posterior of a signal: its hour bucket's, else its pair's, else None."""
    if hour is not None:
        found = posts.get((strategy, bucket_key(symbol, hour)))
        if found is not None:
            return found
    return posts.get((strategy, symbol))


def demotion(p: Posterior, config: LearningConfig, action: Verdict = Verdict.ASK_ONLY) -> tuple[Verdict, str]:
    """Return `action` with its reason when the pair's expected R is confidently negative, else KEEP and why."""
    if action is Verdict.KEEP:
        raise ValueError("the demotion action must be ASK_ONLY or PAUSE, not KEEP")
    figures = f"P(expected R < 0) = {p.p_negative:.2f}, expected R {p.expected_r:+.2f} ± {p.expected_r_sd:.2f}"
    if p.live_n < config.min_live_for_demotion:
        return Verdict.KEEP, (
            f"only {p.live_n} recorded outcomes; demotion needs at least {config.min_live_for_demotion} ({figures})"
        )
    if p.p_negative >= config.demote_confidence:
        return action, (
            f"{figures} after {p.live_n} recorded outcomes: at or above the {config.demote_confidence:.2f} "
            "demotion threshold"
        )
    return Verdict.KEEP, f"{figures} after {p.live_n} recorded outcomes: below {config.demote_confidence:.2f}"


def rank_key(p: Posterior | None, quality: float) -> tuple[float, float]:
    """Return an ascending sort key: higher posterior expected R first, then higher quality (no posterior: R 0)."""
    return -(0.0 if p is None else p.expected_r), -quality


@dataclass(frozen=True, slots=True)
class TraderEdge:
    """What the trader's approvals and rejections were worth, from the shadow outcomes of the rejected signals."""

    rejected: int
    avoided_loss_r: float  # sum of |R| of rejected signals that would have lost
    skipped_win_r: float  # sum of R of rejected signals that would have won
    approved: int
    approved_r: float
    expired: int
    expired_r: float

    def __post_init__(self) -> None:
        if min(self.rejected, self.approved, self.expired) < 0:
            raise ValueError("signal counts cannot be negative")
        if self.avoided_loss_r < 0 or self.skipped_win_r < 0:
            raise ValueError("avoided losses and skipped wins are sums of magnitudes and cannot be negative")

    @property
    def rejection_value_r(self) -> float:
        """Return the R the rejections saved net: losses avoided minus wins skipped."""
        return self.avoided_loss_r - self.skipped_win_r

    def sentence(self) -> str:
        """Say what the trader's choices were worth in one sentence."""
        if self.rejected:
            verdict = "in your favour" if self.rejection_value_r >= 0 else "against you"
            head = (
                f"your {self.rejected} rejections avoided {self.avoided_loss_r:.1f} R of losses and skipped "
                f"{self.skipped_win_r:.1f} R of wins (net {self.rejection_value_r:+.1f} R {verdict})"
            )
        else:
            head = "no rejected signal has an outcome yet"
        parts = [head, f"your {self.approved} approved signals made {self.approved_r:+.1f} R"]
        if self.expired:
            parts.append(f"{self.expired} expired signals would have made {self.expired_r:+.1f} R")
        return "; ".join(parts)


def trader_edge(rejected_r: Sequence[float], approved_r: Sequence[float], expired_r: Sequence[float]) -> TraderEdge:
    """Sum the R of rejected (split into avoided losses and skipped wins), approved and expired signals."""
    for name, values in (("rejected", rejected_r), ("approved", approved_r), ("expired", expired_r)):
        _require_finite(values, name)
    return TraderEdge(
        rejected=len(rejected_r),
        avoided_loss_r=float(sum(-r for r in rejected_r if r <= LOSS_R)),
        skipped_win_r=float(sum(r for r in rejected_r if r >= WIN_R)),
        approved=len(approved_r),
        approved_r=float(sum(approved_r)),
        expired=len(expired_r),
        expired_r=float(sum(expired_r)),
    )


def _require_finite(values: Iterable[float], name: str) -> None:
    for v in values:
        if not math.isfinite(v):
            raise ValueError(f"{name} R multiples must be finite, found {v}")
