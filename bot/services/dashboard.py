"""What the web dashboard shows, gathered from the running bot's services (no HTML here).

Open positions with their stop now, last price and open P&L; realised equity and its drawdown after every
closed trade; today's and the week's P&L; the latest signals with their status, decision, approver and
latency; each traded system's validation and drift verdict; active protections; the broker and its circuit;
open option spreads. The emergency stop is the same as `/stop`: pause, then close the open positions.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from bot.services.book import REAL_KINDS, TRADED_KINDS
from bot.services.runtime import BotRuntime
from bot.services.summary import realised
from engine.audit import DASHBOARD_ACTOR
from engine.drift import Severity
from engine.ports import BrokerError, SignalRecord
from engine.trading import Trade

log = logging.getLogger(__name__)

WEEK = timedelta(days=7)


@dataclass(frozen=True)
class PositionRow:
    trade: Trade
    stop: Decimal
    mark: Decimal | None
    open_pnl: Decimal | None


@dataclass(frozen=True)
class EquityPoint:
    at: datetime
    equity: Decimal
    drawdown: Decimal  # fraction of the running peak, 0..1


@dataclass(frozen=True)
class SystemRow:
    strategy: str
    symbol: str
    validation: str
    drift: str


@dataclass(frozen=True)
class DashboardView:
    now: datetime
    currency: str
    mode: str
    paused: bool
    positions: tuple[PositionRow, ...]
    equity: tuple[EquityPoint, ...]
    today_pnl: Decimal
    week_pnl: Decimal
    signals: tuple[SignalRecord, ...]
    systems: tuple[SystemRow, ...]
    protections: tuple[str, ...]
    broker: str
    spreads: tuple[str, ...]


class Dashboard:
    """Reads the dashboard's view, and runs the emergency stop, through the bot's own services."""

    def __init__(self, runtime: BotRuntime) -> None:
        self.rt = runtime

    async def view(self) -> DashboardView:
        rt, now = self.rt, self.rt.clock.now()
        book = await rt.desk.book(now)
        trades = await rt.control.open_positions()
        stops = await rt.control.current_stops(trades)
        positions = tuple([await self._position(t, stops.get(t.trade_id, t.stop)) for t in trades])
        systems = await rt.desk.systems.refresh(rt.store)
        drift = {(r.strategy, r.symbol): r.report for r in await rt.drift.table()}
        rows = []
        for spec in systems.specs.values():
            status = systems.validation(spec.strategy, spec.symbol, now)
            report = drift.get((spec.strategy, spec.symbol))
            verdict = "no baseline" if report is None else report.severity.name.lower()
            if report is not None and report.severity is Severity.NONE:
                verdict = "in line with its baseline"
            rows.append(SystemRow(spec.strategy, spec.symbol, status.status.value, verdict))
        week_start = now - WEEK
        week = realised(await rt.store.trades(TRADED_KINDS, closed_since=week_start), rt.desk.account_pnl)
        return DashboardView(
            now=now,
            currency=rt.desk.policy.account_currency,
            mode=(await rt.state.mode()).value,
            paused=await rt.state.paused(),
            positions=positions,
            equity=await self._equity(),
            today_pnl=await rt.today_pnl(now),
            week_pnl=week,
            signals=tuple(await rt.store.recent_signals(15)),
            systems=tuple(sorted(rows, key=lambda r: (r.strategy, r.symbol))),
            protections=tuple(rt.desk.active_protections(book, now)),
            broker=rt.broker_status(),
            spreads=tuple(await rt.spread_lines()),
        )

    async def _position(self, trade: Trade, stop: Decimal) -> PositionRow:
        broker = self.rt.control.brokers.get(trade.kind)
        instrument = self.rt.instruments.get(trade.symbol)
        mark = None
        if broker is not None and instrument is not None:
            try:
                mark = (await broker.quote(instrument)).mid
            except BrokerError as exc:
                log.info("dashboard: no mark for %s: %s", trade.symbol, exc)
        pnl = None
        if mark is not None:
            pnl = (mark - trade.entry_price) * trade.side.sign * trade.quantity * trade.contract_size
        return PositionRow(trade, stop, mark, pnl)

    async def _equity(self) -> tuple[EquityPoint, ...]:
        """Realised equity after each closed trade (the account's start first), with its drawdown."""
        rt = self.rt
        start = rt.desk.policy.equity
        closed = await rt.store.trades(list(REAL_KINDS))
        money = rt.desk.money_now()

        def curve() -> tuple[EquityPoint, ...]:
            points: list[EquityPoint] = []
            equity = peak = start
            if closed:
                points.append(EquityPoint(closed[0].entry_time, start, Decimal(0)))
            for trade in closed:
                equity += money(trade)
                peak = max(peak, equity)
                assert trade.exit_time is not None
                drawdown = (peak - equity) / peak if peak > 0 else Decimal(0)
                points.append(EquityPoint(trade.exit_time, equity, drawdown))
            return tuple(points)

        return await asyncio.to_thread(curve)  # the whole closed book: the loop (the clicks) runs on meanwhile

    async def emergency_stop(self) -> str:
        """Pause new signals and approvals, then close every open position (as `/stop` and its button do), with
        the owner's authority: whoever reaches the dashboard is trusted (loopback, or a token)."""
        rt = self.rt
        user = rt.control.owner
        await rt.state.set_paused(True, DASHBOARD_ACTOR)
        log.warning("emergency stop from the dashboard")
        offer = await rt.control.offer_close_all(user)
        if offer is None:
            return "Stopped: no new signals, approvals refused. No open positions."
        outcome = await rt.control.close_batch(offer.batch_id, user)
        return f"Stopped: no new signals, approvals refused. {outcome.message}"
