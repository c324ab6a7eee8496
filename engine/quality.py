"""Explainable 0-100 quality score of a validated setup.

The score is the weighted mean of named components, each a value in 0..1 with a one-line reason:

- `trend_alignment`: the side agrees with the trend on the setup's timeframe (close vs EMA50) and on the
  higher timeframe (EMA50 vs EMA200 on closed higher bins): 1 both, 0.5 one, 0 neither.
- `momentum`: RSI(14) in the side's sweet spot (50-65 for longs, 35-50 for shorts) and the MACD histogram
  on the side's sign.
- `volatility_regime`: percentile of ATR(14) among the last 100 bars; middle regimes (20-80 %) score 1,
  dead or explosive markets less.
- `reward_risk`: reward:risk of the first target, 3R or more scores 1.
- `volume_confirmation`: signal-bar volume vs its 20-bar mean, 1.5x or more scores 1. Not applicable to
  instruments without volume (index, some FX feeds): the component is then left out, not faked.
- `pattern_confluence`: a TA-Lib candlestick pattern in the side's direction on the signal bar or the two
  before it scores 1, none 0.4, an opposing one 0.
- `level_room`: room from entry to the nearest opposing swing level (100-bar high for longs, low for
  shorts) in R; 2R of room or more scores 1, a level closer than 0.5R scores 0.
- `session_quality`: liquidity of the time of day. Exchange sessions: the middle of the session scores 1,
  the first 15 minutes and last 30 minutes 0.5. FX and metals: London/New York overlap 1, London or New York
  alone 0.8, Asia 0.5. Crypto: 0.8 during US/EU hours, 0.6 otherwise.

The total is `100 * sum(w * v) / sum(w)` over the applicable components, rounded to 0.1. It is
deterministic, and the component values are kept so later calibration can map them to a win probability.
Values and total are Python floats rounded by `round` (half to even on the exact binary value), so a score read
back from its stored components totals the same (a numpy value used to round a total its own way: 49.15, stored
as 49.1499..., became 49.2).

The inputs the components read are gathered once per context for a set of bars (`QualityScorer.sheet`): a
backtest gathers every bar that fired and scores the setups it takes from them; the live scan gathers its one bar.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from types import MappingProxyType
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from engine.bars import IntArray, take_aligned
from engine.domain import AssetClass, Interval, QualityScore, ScoreComponent, Setup, Side
from engine.indicators import MarketContext, ema_history, higher_bars, macd_history, wilder_history


class Component(StrEnum):
    TREND_ALIGNMENT = "trend_alignment"
    MOMENTUM = "momentum"
    VOLATILITY_REGIME = "volatility_regime"
    REWARD_RISK = "reward_risk"
    VOLUME_CONFIRMATION = "volume_confirmation"
    PATTERN_CONFLUENCE = "pattern_confluence"
    LEVEL_ROOM = "level_room"
    SESSION_QUALITY = "session_quality"


DEFAULT_WEIGHTS: Mapping[Component, float] = MappingProxyType(
    {
        Component.TREND_ALIGNMENT: 0.20,
        Component.MOMENTUM: 0.15,
        Component.VOLATILITY_REGIME: 0.10,
        Component.REWARD_RISK: 0.15,
        Component.VOLUME_CONFIRMATION: 0.10,
        Component.PATTERN_CONFLUENCE: 0.10,
        Component.LEVEL_ROOM: 0.10,
        Component.SESSION_QUALITY: 0.10,
    }
)

CONFLUENCE_PATTERNS = (
    "CDLENGULFING",
    "CDLHAMMER",
    "CDLSHOOTINGSTAR",
    "CDLMORNINGSTAR",
    "CDLEVENINGSTAR",
    "CDLPIERCING",
    "CDLDARKCLOUDCOVER",
)

HIGHER_TIMEFRAME: Mapping[Interval, Interval] = MappingProxyType(
    {
        Interval.M1: Interval.H1,
        Interval.M5: Interval.H1,
        Interval.M15: Interval.H1,
        Interval.M30: Interval.H4,
        Interval.H1: Interval.H4,
        Interval.H4: Interval.D1,
        Interval.D1: Interval.D1,
    }
)

Evaluation = tuple[float, str] | None
ComponentFn = Callable[["_Inputs", int, Setup], Evaluation]


@dataclass(frozen=True)
class QualityWeights:
    """Weight (0..1) of each component; a weight of 0 leaves the component out."""

    weights: Mapping[Component, float] = field(default_factory=lambda: DEFAULT_WEIGHTS)

    def __post_init__(self) -> None:
        for name, weight in self.weights.items():
            if not (0.0 <= weight <= 1.0) or math.isnan(weight):
                raise ValueError(f"quality weight {name} must be within 0..1, was {weight}")
        if not any(w > 0 for w in self.weights.values()):
            raise ValueError("at least one quality weight must be above 0")


def _clip01(x: float) -> float:
    return 0.0 if math.isnan(x) else min(1.0, max(0.0, x))


class _Inputs:
    """What the components read at a set of bars of one context, gathered once as Python numbers (row k = the
    k-th bar): the figures the per-bar formulas below read, without a numpy scalar or an indicator lookup each."""

    def __init__(self, ctx: MarketContext, indices: IntArray, names: frozenset[Component]) -> None:
        at = np.asarray(indices, dtype=np.int64)
        self.ctx = ctx
        self.bar: list[int] = at.tolist()
        # One bar (a live scan's) is read as scalars: cheaper than fancy indexing for one value, the same numbers.
        self._one = self.bar[0] if len(self.bar) == 1 else None
        self._at = at
        bars, ind = ctx.bars, ctx.ind
        if Component.TREND_ALIGNMENT in names:
            self.close = self._take(bars.close)
            higher = ctx.higher(HIGHER_TIMEFRAME[bars.interval])
            self.higher_interval = higher.bars.interval
            self.ema50 = self._take(ind.ema(50))
            closed_bin = higher.index[at]  # the last higher bin closed by each bar, -1 if none yet
            self.fast = take_aligned(higher.ind.ema(50), closed_bin).tolist()
            self.slow = take_aligned(higher.ind.ema(200), closed_bin).tolist()
        if Component.MOMENTUM in names:
            self.rsi = self._take(ind.rsi(14))
            self.histogram = self._take(ind.macd()[2])
        if Component.VOLATILITY_REGIME in names:
            self.atr_rank = self._take(ind.percentile_rank("atr14", ind.atr(14), ATR_RANK_WINDOW))
        if Component.VOLUME_CONFIRMATION in names and ctx.instrument.has_volume:
            self.volume = self._take(bars.volume)
            self.volume_mean = self._take(ind.volume_sma(20))
        if Component.PATTERN_CONFLUENCE in names:
            self.patterns = {name: self._windows(ind.pattern(name)) for name in CONFLUENCE_PATTERNS}
        if Component.SESSION_QUALITY in names and bars.interval.is_intraday:
            if ctx.instrument.asset_class in (AssetClass.FX, AssetClass.METAL, AssetClass.CRYPTO):
                self.hour = [(t // 3_600_000_000_000) % 24 for t in self._take(bars.time)]
            else:
                self.from_open = self._take(ctx.minutes_from_open)

    @cached_property
    def highest(self) -> list[float]:
        """The 100-bar high (a long's level room): computed when a long asks, as the low when a short does."""
        return self._take(self.ctx.ind.highest(LEVEL_LOOKBACK))

    @cached_property
    def lowest(self) -> list[float]:
        return self._take(self.ctx.ind.lowest(LEVEL_LOOKBACK))

    def _take(self, values: npt.NDArray[Any]) -> list[Any]:
        """`values` at the bars, as Python numbers."""
        return [values[self._one].item()] if self._one is not None else values[self._at].tolist()

    def _windows(self, pattern: IntArray) -> list[tuple[int, ...]]:
        """The pattern's values on each bar and the two before it (fewer at the start of the bars)."""
        if self._one is not None:
            return [tuple(pattern[max(0, self._one - 2) : self._one + 1].tolist())]
        at = self._at
        columns = [np.where(at >= lag, pattern[np.maximum(at - lag, 0)], 0).tolist() for lag in (2, 1, 0)]
        return list(zip(*columns, strict=True))  # a 0 before the first bar is no pattern, as a shorter window


def _trend_alignment(g: _Inputs, k: int, setup: Setup) -> Evaluation:
    sign = setup.side.sign
    ema50, close, fast, slow = g.ema50[k], g.close[k], g.fast[k], g.slow[k]
    if math.isnan(ema50) and (math.isnan(fast) or math.isnan(slow)):
        return None
    base_ok = not math.isnan(ema50) and sign * (close - ema50) > 0
    higher_ok = not (math.isnan(fast) or math.isnan(slow)) and sign * (fast - slow) > 0
    word = "up" if setup.side is Side.LONG else "down"
    value = (int(base_ok) + int(higher_ok)) / 2
    parts = [
        f"{g.ctx.bars.interval} {'with' if base_ok else 'against'} EMA50",
        f"{g.higher_interval} EMA50/200 {'with' if higher_ok else 'not'} {word}",
    ]
    return value, "; ".join(parts)


def _momentum(g: _Inputs, k: int, setup: Setup) -> Evaluation:
    rsi, hist = g.rsi[k], g.histogram[k]
    if math.isnan(rsi) or math.isnan(hist):
        return None
    # Distance (in RSI points) from the side's sweet spot, fading to 0 at 20 points away.
    low, high = (50.0, 65.0) if setup.side is Side.LONG else (35.0, 50.0)
    off = max(low - rsi, rsi - high, 0.0)
    rsi_score = _clip01(1 - off / 20)
    macd_ok = setup.side.sign * hist > 0
    value = 0.6 * rsi_score + 0.4 * macd_ok
    return value, f"RSI {rsi:.0f}, MACD histogram {'agrees' if macd_ok else 'disagrees'}"


def _volatility_regime(g: _Inputs, k: int, setup: Setup) -> Evaluation:
    del setup
    rank = g.atr_rank[k]
    if math.isnan(rank):
        return None
    if 0.2 <= rank <= 0.8:
        value, label = 1.0, "normal"
    elif rank < 0.2:
        value, label = 0.4 + 3 * rank, "quiet"
    else:
        value, label = 1.0 - 2.5 * (rank - 0.8), "volatile"
    return _clip01(value), f"ATR at {rank:.0%} of its 100-bar range ({label})"


def _reward_risk(g: _Inputs, k: int, setup: Setup) -> Evaluation:
    del g, k
    rr = float(setup.reward_risk)
    return _clip01(rr / 3), f"reward:risk {rr:.2f}"


def _volume_confirmation(g: _Inputs, k: int, setup: Setup) -> Evaluation:
    del setup
    if not g.ctx.instrument.has_volume:
        return None
    mean, volume = g.volume_mean[k], g.volume[k]
    if math.isnan(mean) or mean <= 0:
        return None
    ratio = volume / mean
    return _clip01((ratio - 0.5) / 1.0), f"volume {ratio:.1f}x its 20-bar mean"


def _pattern_confluence(g: _Inputs, k: int, setup: Setup) -> Evaluation:
    sign = setup.side.sign
    agreeing, opposing = [], []
    for name in CONFLUENCE_PATTERNS:
        window = g.patterns[name][k]
        if sign in window:
            agreeing.append(name.removeprefix("CDL").lower())
        elif -sign in window:
            opposing.append(name.removeprefix("CDL").lower())
    if agreeing:
        return 1.0, f"{', '.join(agreeing)} confirms"
    if opposing:
        return 0.0, f"{', '.join(opposing)} opposes"
    return 0.4, "no candlestick pattern"


def _level_room(g: _Inputs, k: int, setup: Setup) -> Evaluation:
    risk = float(setup.risk)
    entry = float(setup.entry)
    if g.bar[k] < LEVEL_LOOKBACK or risk <= 0:
        return None
    room = (g.highest[k] - entry) / risk if setup.side is Side.LONG else (entry - g.lowest[k]) / risk
    if room <= 0:
        return 1.0, "at a fresh 100-bar extreme, no level in the way"
    return _clip01((room - 0.5) / 1.5), f"{room:.1f}R to the 100-bar {'high' if setup.side is Side.LONG else 'low'}"


def _session_quality(g: _Inputs, k: int, setup: Setup) -> Evaluation:
    del setup
    ctx = g.ctx
    asset = ctx.instrument.asset_class
    if not ctx.bars.interval.is_intraday:
        return None
    if asset in (AssetClass.FX, AssetClass.METAL):
        hour = g.hour[k]
        london, new_york = 7 <= hour < 16, 12 <= hour < 21
        if london and new_york:
            return 1.0, "London/New York overlap"
        if london or new_york:
            return 0.8, "London session" if london else "New York session"
        return 0.5, "Asian session"
    if asset is AssetClass.CRYPTO:
        return (0.8, "US/EU hours") if 7 <= g.hour[k] < 21 else (0.6, "off-peak hours")
    from_open = g.from_open[k]
    to_close = ctx.calendar.session_minutes - from_open - int(ctx.bars.interval.delta.total_seconds() // 60)
    if from_open < 15:
        return 0.5, "first 15 minutes of the session"
    if to_close < 30:
        return 0.5, "last 30 minutes of the session"
    return 1.0, "core session hours"


COMPONENTS: Mapping[Component, ComponentFn] = MappingProxyType(
    {
        Component.TREND_ALIGNMENT: _trend_alignment,
        Component.MOMENTUM: _momentum,
        Component.VOLATILITY_REGIME: _volatility_regime,
        Component.REWARD_RISK: _reward_risk,
        Component.VOLUME_CONFIRMATION: _volume_confirmation,
        Component.PATTERN_CONFLUENCE: _pattern_confluence,
        Component.LEVEL_ROOM: _level_room,
        Component.SESSION_QUALITY: _session_quality,
    }
)


PATTERN_HISTORY: Final = 16  # bars TA-Lib's candlestick functions look back (their trailing averages), plus margin
LEVEL_LOOKBACK: Final = 100
ATR_RANK_WINDOW: Final = 100


@dataclass(frozen=True)
class QualityScorer:
    """Scores setups with the configured component weights."""

    weights: QualityWeights = QualityWeights()

    def history(self, interval: Interval) -> int:
        """Bars of `interval` a live scan needs so every weighted component has converged (see `Strategy.history`).

        The trend component's EMA200 of the higher timeframe dominates: 9,092 1h bars (on 4h bins), 27,276 5m
        bars (on 1h bins), 2,273 daily bars.
        """
        needs = {
            Component.TREND_ALIGNMENT: max(
                ema_history(50), higher_bars(interval, HIGHER_TIMEFRAME[interval], ema_history(200))
            ),
            Component.MOMENTUM: max(wilder_history(14), macd_history()),
            Component.VOLATILITY_REGIME: wilder_history(14) + ATR_RANK_WINDOW,
            Component.VOLUME_CONFIRMATION: 20,
            Component.PATTERN_CONFLUENCE: PATTERN_HISTORY + 2,
            Component.LEVEL_ROOM: LEVEL_LOOKBACK + 1,
        }
        return max((bars for name, bars in needs.items() if self.weights.weights.get(name, 0.0) > 0), default=1)

    def score(self, ctx: MarketContext, i: int, setup: Setup) -> QualityScore:
        """Score the setup that fired at bar `i` of `ctx`."""
        return self.sheet(ctx, np.array([i], dtype=np.int64)).score(0, setup)

    def sheet(self, ctx: MarketContext, indices: IntArray) -> ScoreSheet:
        """What the weighted components read at bars `indices` of `ctx`, gathered once: `ScoreSheet.score(k, setup)`
        scores a setup of the k-th of them (a backtest gathers every bar that fired, then scores the ones it takes)."""
        parts = self._parts
        return ScoreSheet(self, _Inputs(ctx, indices, frozenset(Component(name) for name, _, _ in parts)), parts)

    @cached_property
    def _parts(self) -> tuple[tuple[str, ComponentFn, float], ...]:
        """The weighted components in order: name, function, weight."""
        weights = self.weights.weights
        return tuple((name.value, fn, weights[name]) for name, fn in COMPONENTS.items() if weights.get(name, 0.0) > 0)


@dataclass(frozen=True)
class ScoreSheet:
    """A scorer's inputs at a set of bars of one context (see `QualityScorer.sheet`)."""

    scorer: QualityScorer
    inputs: _Inputs
    parts: tuple[tuple[str, ComponentFn, float], ...]  # the weighted components in order: name, function, weight

    @property
    def bars(self) -> list[int]:
        """The bar index of each row."""
        return self.inputs.bar

    def score(self, k: int, setup: Setup) -> QualityScore:
        """Score the setup that fired at the k-th bar of the sheet."""
        inputs = self.inputs
        parts: list[ScoreComponent] = []
        for name, fn, weight in self.parts:
            evaluation = fn(inputs, k, setup)
            if evaluation is not None:
                parts.append(ScoreComponent(name, round(_clip01(evaluation[0]), 4), weight, evaluation[1]))
        total_weight = sum(c.weight for c in parts)
        total = 0.0 if total_weight == 0 else 100 * sum(c.points for c in parts) / total_weight
        return QualityScore(round(total, 1), tuple(parts))
