"""From strategy candidates to validated, quantised and scored setups: the one path live, replay and backtest share.

Setup validation rules, each rejection carrying its reason:

1. entry, stop and target are finite positive numbers;
2. the stop is on the losing side of entry and the target on the winning side;
3. prices are quantised to the tick against the trader: the entry away from the target (up for a long,
   down for a short), the stop away from entry and the target towards entry, so the quantised
   reward:risk is never better than the strategy's (a nearest-tick entry could move towards the stop).
   A strategy that states its target as a multiple of the risk (`reward_risk`) gets it exactly: the
   quantised entry plus that multiple of the quantised risk, in Decimal, then onto the tick towards entry
   (2R on a 0.05 tick is exactly 2R, never a float's one tick short);
4. the stop distance is at least `min_stop_ticks` ticks and more than `min_stop_spreads` x the instrument's
   typical spread (a stop inside the spread is noise, not risk control);
5. the signal bar has closed by the clock's now, and it closed at most `max_age_bars` bars of *market* time
   ago (a Friday-close setup is still fresh on Saturday; a bar from three hours ago on an open market is not);
6. the entry time, the signal bar's close, is not refused by the market calendar (`SessionCalendar.entry_block`):
   while the market is open, not in the last minutes before a close into a closed market (15 min on XNSE,
   XNYS and FX's Friday close) nor at or after the intraday flat time (15:15 on XNSE); a bar closing at the
   bell is judged by rule 5 alone, its order waits for the next open.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR
from typing import Any

import numpy as np

from engine.bars import IntArray
from engine.calendars import SessionCalendar
from engine.domain import (
    Instrument,
    Rejection,
    RejectionKind,
    ScoredSetup,
    Setup,
    Side,
    ensure_utc,
    human_duration,
    to_decimal,
)
from engine.indicators import MarketContext
from engine.quality import QualityScorer, ScoreSheet
from engine.strategy import SignalArrays, Strategy


@dataclass(frozen=True)
class ValidationRules:
    min_stop_ticks: int = 3
    min_stop_spreads: float = 2.0
    max_age_bars: int = 2

    def __post_init__(self) -> None:
        if self.min_stop_ticks < 1:
            raise ValueError(f"min_stop_ticks must be at least 1, was {self.min_stop_ticks}")
        if self.min_stop_spreads < 0:
            raise ValueError(f"min_stop_spreads must not be negative, was {self.min_stop_spreads}")
        if self.max_age_bars < 1:
            raise ValueError(f"max_age_bars must be at least 1, was {self.max_age_bars}")


@dataclass(frozen=True)
class Candidate:
    """What a strategy proposed at one bar, before validation (floats straight from the kernel)."""

    strategy: str
    side: Side
    bar_index: int
    bar_time: datetime
    entry: float
    stop: float
    target: float
    reasons: tuple[str, ...]
    reward_risk: float | None = None  # the target as a multiple of the risk, computed exactly by `validate`


def validate(
    instrument: Instrument,
    calendar: SessionCalendar,
    candidate: Candidate,
    now: datetime,
    rules: ValidationRules,
) -> Setup | Rejection:
    """Turn a candidate into a quantised `Setup`, or a `Rejection` that says which rule it broke."""
    ensure_utc(now, "now")

    def reject(reason: str, **detail: Any) -> Rejection:
        return Rejection(
            RejectionKind.SETUP,
            instrument.symbol,
            reason,
            candidate.strategy,
            candidate.bar_time,
            {k: str(v) for k, v in detail.items()},
        )

    c = candidate
    stated = c.reward_risk is not None  # the target follows from entry and stop: its float is not used
    levels = (("entry", c.entry), ("stop", c.stop), *(() if stated else (("target", c.target),)))
    for name, value in levels:
        if not math.isfinite(value) or value <= 0:
            return reject(f"{name} is not a finite positive price ({value})")
    side_word = "long" if c.side is Side.LONG else "short"
    sign = c.side.sign
    if sign * (c.entry - c.stop) <= 0:
        return reject(f"stop {c.stop:g} is not {'below' if sign > 0 else 'above'} entry {c.entry:g} for a {side_word}")
    if not stated and sign * (c.target - c.entry) <= 0:
        return reject(
            f"target {c.target:g} is not {'above' if sign > 0 else 'below'} entry {c.entry:g} for a {side_word}"
        )

    long = c.side is Side.LONG
    toward_entry = ROUND_FLOOR if long else ROUND_CEILING
    entry = instrument.price(c.entry, ROUND_CEILING if long else ROUND_FLOOR)
    stop = instrument.price(c.stop, ROUND_FLOOR if long else ROUND_CEILING)
    if c.reward_risk is None:
        target = instrument.price(c.target, toward_entry)
    else:
        exact = entry + sign * to_decimal(c.reward_risk, "reward_risk") * abs(entry - stop)
        target = instrument.price(exact, toward_entry)
    if sign * (entry - stop) <= 0 or sign * (target - entry) <= 0:
        return reject(f"levels collapse at tick {instrument.tick_size}: entry {entry}, stop {stop}, target {target}")

    distance = abs(entry - stop)
    min_ticks = instrument.tick_size * rules.min_stop_ticks
    if distance < min_ticks:
        return reject(f"stop distance {distance} is under {rules.min_stop_ticks} ticks ({min_ticks})")
    if instrument.spread > 0 and distance <= instrument.spread * to_decimal(rules.min_stop_spreads, "min_stop_spreads"):
        return reject(
            f"stop distance {distance} is within {rules.min_stop_spreads:g}x the typical spread {instrument.spread}"
        )

    closed_at = c.bar_time + instrument.interval.delta
    if closed_at > now:
        return reject(f"signal bar {c.bar_time:%Y-%m-%dT%H:%MZ} has not closed at {now:%Y-%m-%dT%H:%MZ}")
    age = calendar.open_duration(closed_at, now)
    max_age = instrument.interval.delta * rules.max_age_bars
    if age > max_age:
        return reject(
            f"stale: bar closed {human_duration(age)} of market time ago "
            f"(limit {rules.max_age_bars} bars = {human_duration(max_age)})"
        )
    blocked = calendar.entry_block(closed_at)
    if blocked is not None:
        return reject(blocked)

    try:
        return Setup(
            c.strategy, instrument.symbol, c.side, entry, stop, (target,), c.bar_time, instrument.interval, c.reasons
        )
    except ValueError as exc:  # the checks above should make this unreachable; keep the reason if not
        return reject(str(exc))


@dataclass(frozen=True)
class EngineConfig:
    """Everything the pure pipeline needs besides data and strategies."""

    rules: ValidationRules = ValidationRules()
    scorer: QualityScorer = field(default_factory=QualityScorer)
    min_score: float = 0.0


@dataclass(frozen=True)
class InstrumentScan:
    """Outcome of evaluating one instrument: scored setups and rejections with reasons."""

    symbol: str
    setups: tuple[ScoredSetup, ...]
    rejections: tuple[Rejection, ...]


def candidates(
    strategy: Strategy[Any], ctx: MarketContext, signals: SignalArrays, indices: IntArray
) -> list[Candidate]:
    """Candidates of `strategy` at the given bar indices where it fired."""
    out = []
    for i in indices.tolist():
        if signals.direction[i] == 0:
            continue
        side = signals.side_at(i)
        out.append(
            Candidate(
                strategy.name,
                side,
                i,
                ctx.bars.bar_time(i),
                float(signals.entry[i]),
                float(signals.stop[i]),
                float(signals.target[i]),
                strategy.explain(ctx, i, side),
                signals.reward_risk,
            )
        )
    return out


def scan_instrument(
    ctx: MarketContext,
    strategies: list[Strategy[Any]],
    config: EngineConfig,
    now: datetime | None,
    indices: IntArray | None = None,
) -> InstrumentScan:
    """Run every applicable strategy on `ctx`, validate and score what fired at `indices` (default: last bar).

    `now` is the clock of a live scan; None validates each candidate as of its own bar's close, which is
    how a backtest or replay sees every bar of history.
    """
    symbol = ctx.instrument.symbol
    setups: list[ScoredSetup] = []
    rejections: list[Rejection] = []
    n = len(ctx)
    at = np.array([n - 1], dtype=np.int64) if indices is None else indices
    for strategy in strategies:
        if not strategy.applies_to(ctx.instrument):
            continue
        if n < strategy.warmup:
            rejections.append(
                Rejection(
                    RejectionKind.SYMBOL,
                    symbol,
                    f"insufficient history for {strategy.name}: {n} bars, needs {strategy.warmup}",
                    strategy.name,
                )
            )
            continue
        signals = strategy.signals(ctx)
        for candidate in candidates(strategy, ctx, signals, at):
            result = assess(ctx, candidate, config, now)
            if isinstance(result, Rejection):
                rejections.append(result)
            else:
                setups.append(result)
    return InstrumentScan(symbol, tuple(setups), tuple(rejections))


def assess(
    ctx: MarketContext,
    candidate: Candidate,
    config: EngineConfig,
    now: datetime | None,
    sheet: ScoreSheet | None = None,
    row: int = 0,
) -> ScoredSetup | Rejection:
    """Validate one candidate as of `now` (None: its own bar's close), score it and apply the minimum score.

    The per-candidate step of every scan: the live scan, the replay and the backtester all call this. A backtest
    passes the `sheet` its scorer gathered at every bar that fired and the candidate's `row` in it (the same score,
    read from inputs gathered once).
    """
    as_of = now if now is not None else candidate.bar_time + ctx.bars.interval.delta
    result = validate(ctx.instrument, ctx.calendar, candidate, as_of, config.rules)
    if isinstance(result, Rejection):
        return result
    return score_setup(ctx, result, candidate.bar_index, config, sheet, row)


def score_setup(
    ctx: MarketContext,
    setup: Setup,
    bar_index: int,
    config: EngineConfig,
    sheet: ScoreSheet | None = None,
    row: int = 0,
) -> ScoredSetup | Rejection:
    """Score a validated setup of bar `bar_index` (from the `sheet`'s `row` when given) and apply the minimum score."""
    if sheet is None:
        score = config.scorer.score(ctx, bar_index, setup)
    elif sheet.scorer is config.scorer and sheet.inputs.ctx is ctx and sheet.bars[row] == bar_index:
        score = sheet.score(row, setup)
    else:
        raise ValueError(f"score sheet row {row} is not bar {bar_index} of this context and scorer")
    if score.total < config.min_score:
        return Rejection(
            RejectionKind.SETUP,
            ctx.instrument.symbol,
            f"quality {score.total:.1f} is below the minimum {config.min_score:g}",
            setup.strategy,
            setup.bar_time,
        )
    return ScoredSetup(setup, score)
