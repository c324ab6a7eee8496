"""The weekly-zone system's backtest: every signal of the history, its close-only exit, and its spread.

Spec §8 and what the issue adds. One trade per signal (weeks are independent: an open position does not
block the next week's signal), entered at the trigger bar's close, left by `engine.weekly_zones`'s exit.
Two results, never mixed:

* the UNDERLYING, measured exactly as the spec scores it: points (exit - entry for a long, entry - exit for
  a short, index points, no costs) and R = points / |entry - stop|; win = not stopped (`spec_win`); the R
  statistics are `engine.performance.TradeStats` like every strategy's;
* the SPREAD's P&L in INR, MODELLED (`engine.options.model_spread`: Black-Scholes at the realised volatility
  of the previous 140 hourly closes, costs per lot and leg), labelled "modelled" wherever it is shown.
  A trade without enough history for the volatility gets no modelled figure (None), not a guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final

from engine.domain import Side
from engine.gate import GateCriteria, annualised_sharpe
from engine.montecarlo import equity_curve, max_drawdown
from engine.options import MODELLED, ModelledSpread, Spread, model_spread, realised_vol, spread_for
from engine.performance import TradeStats
from engine.session_hours import SessionHours
from engine.trading import ExitReason
from engine.weekly_zones import (
    Expiry,
    ZoneRule,
    ZoneSignal,
    expiries,
    find_zone_exit,
    position_expiry,
    scan,
)

YEAR_NS: Final = 365.25 * 86_400 * 1e9


@dataclass(frozen=True, slots=True)
class ZoneTrade:
    """One weekly-zone trade: its signal, exit (None while open), option spread and modelled spread result."""

    signal: ZoneSignal
    entry_time: datetime  # the trigger bar's close
    expiry: date | None
    exit_time: datetime | None
    exit_price: float | None
    exit_reason: ExitReason | None
    spread: Spread | None
    modelled: ModelledSpread | None

    @property
    def rule(self) -> ZoneRule:
        return self.signal.rule

    @property
    def side(self) -> Side:
        return self.signal.side

    @property
    def points(self) -> float | None:
        if self.exit_price is None:
            return None
        return (self.exit_price - self.signal.entry) * self.side.sign

    @property
    def r(self) -> float | None:
        points = self.points
        return None if points is None else points / abs(self.signal.entry - self.signal.stop)

    @property
    def spec_win(self) -> bool | None:
        """The spec's scoring: a win is a trade that was not stopped."""
        return None if self.exit_reason is None else self.exit_reason is not ExitReason.STOP

    def to_json(self) -> dict[str, Any]:
        s = self.signal
        out: dict[str, Any] = {
            "rule": s.rule.value,
            "side": s.side.value,
            "entry_time": self.entry_time.isoformat().replace("+00:00", "Z"),
            "entry": round(s.entry, 2),
            "stop": round(s.stop, 2),
            "expiry": self.expiry.isoformat() if self.expiry else None,
            "exit_time": self.exit_time.isoformat().replace("+00:00", "Z") if self.exit_time else None,
            "exit": None if self.exit_price is None else round(self.exit_price, 2),
            "exit_reason": self.exit_reason.value if self.exit_reason else None,
            "points": None if self.points is None else round(self.points, 2),
            "r": None if self.r is None else round(self.r, 3),
            "zones": {
                "resistance": [round(s.context.rb, 2), round(s.context.rt, 2)],
                "support": [round(s.context.sb, 2), round(s.context.st, 2)],
                "pwh": s.context.pwh,
                "pwl": s.context.pwl,
                "pwc": s.context.pwc,
                "bias": s.context.bias.value,
            },
        }
        if self.spread is not None:
            out["spread"] = {
                "hedge": self.spread.hedge.label,
                "main": self.spread.main.label,
                "lots": self.spread.lots,
                "lot_size": self.spread.lot_size,
            }
        if self.modelled is not None:
            m = self.modelled
            out[MODELLED] = {
                "note": "option prices modelled: Black-Scholes at realised volatility, not quotes",
                "volatility": round(m.vol, 4),
                "hedge_entry": round(m.hedge_entry, 2),
                "main_entry": round(m.main_entry, 2),
                "hedge_exit": round(m.hedge_exit, 2),
                "main_exit": round(m.main_exit, 2),
                "costs_inr": str(m.costs),
                "pnl_inr": str(m.pnl),
            }
        return out


@dataclass(frozen=True, slots=True)
class ZoneBacktest:
    """Every trade, the underlying's statistics in R, points, spec wins, and the modelled spread P&L."""

    trades: tuple[ZoneTrade, ...]

    @property
    def closed(self) -> tuple[ZoneTrade, ...]:
        return tuple(t for t in self.trades if t.exit_reason is not None)

    @property
    def stats(self) -> TradeStats[float]:
        return TradeStats.of([t.r for t in self.closed if t.r is not None])

    @property
    def points(self) -> float:
        return sum(t.points or 0.0 for t in self.closed)

    @property
    def spec_wins(self) -> int:
        return sum(1 for t in self.closed if t.spec_win)

    @property
    def modelled_pnl(self) -> Decimal | None:
        values = [t.modelled.pnl for t in self.closed if t.modelled is not None]
        return sum(values, Decimal(0)) if values else None

    def by_rule(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.trades:
            counts[t.rule.value] = counts.get(t.rule.value, 0) + 1
        return dict(sorted(counts.items()))


def zone_backtest(
    hours: SessionHours,
    *,
    lots: int = 1,
    wednesday_exit: bool = False,
    start_ns: int | None = None,
    cost_per_lot_leg: Decimal | None = None,
) -> ZoneBacktest:
    """Backtest the weekly-zone signals of `hours` (triggers from `start_ns` on; earlier weeks are context)."""
    known = expiries(hours)
    trades = []
    for signal in scan(hours):
        if start_ns is not None and hours.bars.time[signal.index] < start_ns:
            continue
        trades.append(_trade(hours, signal, known, lots, wednesday_exit, cost_per_lot_leg))
    return ZoneBacktest(tuple(trades))


def _trade(
    hours: SessionHours,
    signal: ZoneSignal,
    known: Sequence[Expiry],
    lots: int,
    wednesday_exit: bool,
    cost_per_lot_leg: Decimal | None,
) -> ZoneTrade:
    expiry = position_expiry(hours, signal.index, list(known))
    found = find_zone_exit(hours, signal, list(known), wednesday_exit=wednesday_exit)
    spread = spread_for(signal.side, signal.stop, expiry.day, lots) if expiry is not None else None
    modelled = None
    vol = realised_vol(hours.bars.close, signal.index)
    if spread is not None and expiry is not None and found is not None and vol is not None:
        expiry_close = int(hours.close_ns[expiry.last_bar])
        entry_ns, exit_ns = int(hours.close_ns[signal.index]), int(hours.close_ns[found.index])
        kwargs = {} if cost_per_lot_leg is None else {"cost_per_lot_leg": cost_per_lot_leg}
        modelled = model_spread(
            spread,
            signal.entry,
            (expiry_close - entry_ns) / YEAR_NS,
            found.price,
            (expiry_close - exit_ns) / YEAR_NS,
            vol,
            **kwargs,
        )
    return ZoneTrade(
        signal=signal,
        entry_time=hours.close_time(signal.index),
        expiry=expiry.day if expiry is not None else None,
        exit_time=found.at if found else None,
        exit_price=found.price if found else None,
        exit_reason=found.reason if found else None,
        spread=spread,
        modelled=modelled,
    )


@dataclass(frozen=True, slots=True)
class ZoneVerdict:
    """The pre-deploy gate's criteria applied to the zone system's index R (no parameter is tuned here)."""

    stats: TradeStats[float]
    sharpe: float | None
    max_drawdown: float
    first_half_win_rate: float | None
    second_half_win_rate: float | None
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


def zone_verdict(
    result: ZoneBacktest, start: datetime, end: datetime, criteria: GateCriteria, risk_fraction: float
) -> ZoneVerdict:
    """Apply `criteria` to every closed trade's index R over [start, end] (drawdown compounding `risk_fraction`).

    The rules are the spec's, fixed before this data was seen, so every trade counts as out of sample; the
    win-rate stability check compares the later half of the trades with the earlier half (the gate compares
    out-of-sample with in-sample for tuned systems).
    """
    rs = [t.r for t in result.closed if t.r is not None]
    stats = TradeStats.of(rs)
    half = len(rs) // 2
    early, late = TradeStats.of(rs[:half]), TradeStats.of(rs[half:])
    ratio = None
    if early.win_rate and late.win_rate is not None:
        ratio = late.win_rate / early.win_rate
    sharpe = annualised_sharpe(stats, start, end)
    drawdown = max_drawdown(equity_curve(rs, risk_fraction)) if rs else 0.0
    failures = [
        f.replace("out-of-sample win rate is", "the later half's win rate is").replace(
            "of in-sample", "of the earlier's"
        )
        for f in criteria.failures(stats, sharpe, drawdown, ratio)
    ]
    return ZoneVerdict(stats, sharpe, drawdown, early.win_rate, late.win_rate, tuple(failures))
