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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final

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
ComponentFn = Callable[[MarketContext, int, Setup], Evaluation]


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


def _trend_alignment(ctx: MarketContext, i: int, setup: Setup) -> Evaluation:
    sign = setup.side.sign
    ema50 = ctx.ind.ema(50)[i]
    close = ctx.bars.close[i]
    higher = ctx.higher(HIGHER_TIMEFRAME[ctx.bars.interval])
    k = int(higher.index[i])  # the last higher bin closed by bar i, -1 if none yet
    fast = float(higher.ind.ema(50)[k]) if k >= 0 else math.nan
    slow = float(higher.ind.ema(200)[k]) if k >= 0 else math.nan
    if math.isnan(ema50) and (math.isnan(fast) or math.isnan(slow)):
        return None
    base_ok = not math.isnan(ema50) and sign * (close - ema50) > 0
    higher_ok = not (math.isnan(fast) or math.isnan(slow)) and sign * (fast - slow) > 0
    word = "up" if setup.side is Side.LONG else "down"
    value = (int(base_ok) + int(higher_ok)) / 2  # numpy bools would add as logical or
    parts = [
        f"{ctx.bars.interval} {'with' if base_ok else 'against'} EMA50",
        f"{higher.bars.interval} EMA50/200 {'with' if higher_ok else 'not'} {word}",
    ]
    return value, "; ".join(parts)


def _momentum(ctx: MarketContext, i: int, setup: Setup) -> Evaluation:
    rsi = ctx.ind.rsi(14)[i]
    hist = ctx.ind.macd()[2][i]
    if math.isnan(rsi) or math.isnan(hist):
        return None
    # Distance (in RSI points) from the side's sweet spot, fading to 0 at 20 points away.
    low, high = (50.0, 65.0) if setup.side is Side.LONG else (35.0, 50.0)
    off = max(low - rsi, rsi - high, 0.0)
    rsi_score = _clip01(1 - off / 20)
    macd_ok = setup.side.sign * hist > 0
    value = 0.6 * rsi_score + 0.4 * macd_ok
    return value, f"RSI {rsi:.0f}, MACD histogram {'agrees' if macd_ok else 'disagrees'}"


def _volatility_regime(ctx: MarketContext, i: int, setup: Setup) -> Evaluation:
    del setup
    atr = ctx.ind.atr(14)
    rank = ctx.ind.percentile_rank("atr14", atr, ATR_RANK_WINDOW)[i]
    if math.isnan(rank):
        return None
    if 0.2 <= rank <= 0.8:
        value, label = 1.0, "normal"
    elif rank < 0.2:
        value, label = 0.4 + 3 * rank, "quiet"
    else:
        value, label = 1.0 - 2.5 * (rank - 0.8), "volatile"
    return _clip01(value), f"ATR at {rank:.0%} of its 100-bar range ({label})"


def _reward_risk(ctx: MarketContext, i: int, setup: Setup) -> Evaluation:
    del ctx, i
    rr = float(setup.reward_risk)
    return _clip01(rr / 3), f"reward:risk {rr:.2f}"


def _volume_confirmation(ctx: MarketContext, i: int, setup: Setup) -> Evaluation:
    del setup
    if not ctx.instrument.has_volume:
        return None
    mean = ctx.ind.volume_sma(20)[i]
    volume = ctx.bars.volume[i]
    if math.isnan(mean) or mean <= 0:
        return None
    ratio = volume / mean
    return _clip01((ratio - 0.5) / 1.0), f"volume {ratio:.1f}x its 20-bar mean"


def _pattern_confluence(ctx: MarketContext, i: int, setup: Setup) -> Evaluation:
    lo = max(0, i - 2)
    sign = setup.side.sign
    agreeing, opposing = [], []
    for name in CONFLUENCE_PATTERNS:
        window = ctx.ind.pattern(name)[lo : i + 1].tolist()  # three values: plain Python beats numpy here
        if sign in window:
            agreeing.append(name.removeprefix("CDL").lower())
        elif -sign in window:
            opposing.append(name.removeprefix("CDL").lower())
    if agreeing:
        return 1.0, f"{', '.join(agreeing)} confirms"
    if opposing:
        return 0.0, f"{', '.join(opposing)} opposes"
    return 0.4, "no candlestick pattern"


def _level_room(ctx: MarketContext, i: int, setup: Setup) -> Evaluation:
    risk = float(setup.risk)
    entry = float(setup.entry)
    lookback = LEVEL_LOOKBACK
    if i < lookback or risk <= 0:
        return None
    if setup.side is Side.LONG:
        level = ctx.ind.highest(lookback)[i]
        room = (level - entry) / risk
    else:
        level = ctx.ind.lowest(lookback)[i]
        room = (entry - level) / risk
    if room <= 0:
        return 1.0, "at a fresh 100-bar extreme, no level in the way"
    return _clip01((room - 0.5) / 1.5), f"{room:.1f}R to the 100-bar {'high' if setup.side is Side.LONG else 'low'}"


def _session_quality(ctx: MarketContext, i: int, setup: Setup) -> Evaluation:
    del setup
    asset = ctx.instrument.asset_class
    if not ctx.bars.interval.is_intraday:
        return None
    if asset in (AssetClass.FX, AssetClass.METAL):
        hour = int((ctx.bars.time[i] // 3_600_000_000_000) % 24)
        london, new_york = 7 <= hour < 16, 12 <= hour < 21
        if london and new_york:
            return 1.0, "London/New York overlap"
        if london or new_york:
            return 0.8, "London session" if london else "New York session"
        return 0.5, "Asian session"
    if asset is AssetClass.CRYPTO:
        hour = int((ctx.bars.time[i] // 3_600_000_000_000) % 24)
        return (0.8, "US/EU hours") if 7 <= hour < 21 else (0.6, "off-peak hours")
    from_open = int(ctx.minutes_from_open[i])
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
        parts: list[ScoreComponent] = []
        for name, fn in COMPONENTS.items():
            weight = self.weights.weights.get(name, 0.0)
            if weight <= 0:
                continue
            evaluation = fn(ctx, i, setup)
            if evaluation is None:
                continue
            value, reason = evaluation
            parts.append(ScoreComponent(name.value, round(_clip01(value), 4), weight, reason))
        total_weight = sum(c.weight for c in parts)
        total = 0.0 if total_weight == 0 else 100 * sum(c.points for c in parts) / total_weight
        return QualityScore(round(total, 1), tuple(parts))
