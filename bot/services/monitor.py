"""Watch open positions (paper and shadow) on every new bar and close them at stop, target or time.

The exit rules are the engine's (`engine.exits.find_exit`), the same the backtester uses: bars that opened
at or after the entry are checked; when one bar touches both the stop and the target, the stop is taken;
a bar that opens beyond a level fills at its open.

Live positions close at the broker (stop-loss and take-profit attached on fill): `check_live` asks the broker
how each open LIVE trade ended and records the exit at the broker's price and time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final

import numpy as np

from bot.services.events import Announcer, Notice, PositionClosed, StopMoved
from data.market.validation import validate_bars
from engine.bars import Bars, IntArray, from_nanos, to_nanos
from engine.calendars import SessionCalendar
from engine.costs import CostModel, commission, exit_fill_price
from engine.domain import Instrument
from engine.exits import (
    TRAIL_ATR_PERIOD,
    ExitPlan,
    ManagedExit,
    StopTrigger,
    find_exit_with_stops,
    leg_fills,
    manage_exit,
    managed_fill,
)
from engine.indicators import MarketContext
from engine.ports import BarProvider, Broker, BrokerError, BrokerErrorKind, Clock, ProviderError, TradeLedger
from engine.trading import BrokerExit, ExitReason, PartialExit, StopMove, Trade, TradeAction, TradeKind

log = logging.getLogger(__name__)

BOT_USER = 0  # the user id of a change the bot makes by its rules (a plan's stop move)

_NEVER_STALE = 10**9
MONITORED_KINDS: Final = (TradeKind.PAPER, TradeKind.SHADOW, TradeKind.LIVE)  # the trades `check` may close
_SESSION_CALENDARS = frozenset({"XNSE", "XNYS"})


class PositionMonitor:
    """Checks open trades against the bars that closed since their entry."""

    def __init__(
        self,
        store: TradeLedger,
        provider: BarProvider,
        notifier: Announcer,
        clock: Clock,
        instruments: Mapping[str, Instrument],
        calendars: Mapping[str, SessionCalendar],
        *,
        history_bars: int,
        max_hold_bars: int,
        costs: CostModel,
        broker: Broker | None = None,
        stop_triggers: Mapping[str, StopTrigger] | None = None,
        managed_live: Collection[str] = (),
        exit_plans: Mapping[str, ExitPlan] | None = None,
    ) -> None:
        self.store = store
        self.broker = broker  # asked how LIVE trades ended at the broker (`check_live`); None: not checked
        self.provider = provider
        self.notifier = notifier
        self.clock = clock
        self.instruments = dict(instruments)
        self.calendars = dict(calendars)
        self.history_bars = history_bars
        self.max_hold_bars = max_hold_bars
        self.costs = costs
        self.stop_triggers = dict(stop_triggers or {})  # by strategy: a close-only stop where its rules say so
        # Symbols whose LIVE trades the bot closes itself (a broker that holds no stop, such as Kite): their exits
        # are found on bars like paper ones, then sent to the broker as a closing order and recorded at its fill.
        self.managed_live = frozenset(managed_live)
        # Trade management by strategy (breakeven, trailing, partials), as the backtester applies it. A live
        # position whose broker holds its exits gets the plan's stop moved at the broker after each bar (so the
        # broker's stop is the validated one, and it protects the position while the bot is down); its partial
        # targets are not sent (the position runs whole, and the log says so).
        self.exit_plans = {k: p for k, p in (exit_plans or {}).items() if p.active}
        self._partials_warned: set[str] = set()

    async def check(
        self, symbols: Collection[str] | None = None, bars: Mapping[str, Bars] | None = None
    ) -> list[Trade]:
        """Close every open paper or shadow trade whose exit has happened; return the closed trades.

        `bars` are clean bars a scan just loaded at the same instant; symbols without them, or whose bars begin after
        one of their trades' entry (a run keeps only the tail of a symbol it found flat), are fetched.
        """
        open_trades = await self.store.open_trades(list(MONITORED_KINDS))
        by_symbol: dict[str, list[Trade]] = defaultdict(list)
        for trade in open_trades:
            broker_exits = trade.kind is TradeKind.LIVE and trade.symbol not in self.managed_live
            if broker_exits and (trade.strategy not in self.exit_plans or self.broker is None):
                continue  # the broker holds its exits: `check_live` asks how it ended (a plan's stop is moved there)
            if (symbols is None or trade.symbol in symbols) and trade.symbol in self.instruments:
                by_symbol[trade.symbol].append(trade)
        closed: list[Trade] = []
        for symbol, trades in by_symbol.items():
            loaded = (bars or {}).get(symbol)
            if loaded is None or not _reaches(loaded, trades):
                loaded = await self._load(symbol)
            if loaded is not None:
                closed += await self._check_symbol(symbol, trades, loaded)
        return closed

    async def check_live(self) -> list[Trade]:
        """Record the exits the broker made of open LIVE trades (stop-loss, take-profit, closed there); return them.

        Each is recorded at the broker's price and time with its fees, and the chat is told. A trade still open
        at the broker is left alone. When the broker does not answer, the rest wait for the next check.
        """
        if self.broker is None:
            return []
        closed: list[Trade] = []
        for trade in await self.store.open_trades([TradeKind.LIVE]):
            if trade.symbol in self.managed_live:
                continue  # the bot closes these itself (`check`)
            try:
                ended = await self.broker.trade_exit(trade.signal_id)
            except BrokerError as exc:
                if exc.kind is BrokerErrorKind.REJECTED:
                    log.warning("cannot learn how LIVE trade %s ended: %s", trade.trade_id, exc)
                    continue
                log.warning(
                    "broker did not say how LIVE trade %s ended (%s); asking again next run", trade.trade_id, exc
                )
                break
            if ended is not None and (done := await self._record_live_exit(trade, ended)) is not None:
                closed.append(done)
        return closed

    async def _record_live_exit(self, trade: Trade, ended: BrokerExit) -> Trade | None:
        """Close `trade` as the broker closed it and tell the chat; None when it cannot be recorded as told."""
        if ended.closed_at < trade.entry_time:
            log.error(
                "LIVE trade %s: the broker closed it at %s, before its entry at %s; not recorded",
                trade.trade_id,
                ended.closed_at,
                trade.entry_time,
            )
            return None
        if ended.quantity != trade.quantity:
            log.warning(
                "LIVE trade %s: the broker closed %s lots, the trade holds %s; recorded at the broker's average price",
                trade.trade_id,
                ended.quantity,
                trade.quantity,
            )
        if ended.financing > ended.fees:
            log.info(
                "LIVE trade %s: financing credit %s is not in its fees", trade.trade_id, ended.financing - ended.fees
            )
        fees = ended.costs
        if not await self.store.close_trade(trade.trade_id, ended.closed_at, ended.price, ended.reason, fees):
            return None
        done = trade.closed(ended.closed_at, ended.price, ended.reason, fees)
        log.info(
            "%s live trade %s closed at the broker: %s @ %s",
            trade.symbol,
            trade.trade_id,
            ended.reason.value,
            ended.price,
        )
        await self.notifier.announce(PositionClosed(done))
        return done

    async def _close_live(self, instrument: Instrument, trade: Trade, reason: ExitReason) -> Trade | None:
        """Send the closing order of a LIVE trade whose exit the bars show; record it at the broker's fill.

        A broker that cannot close it now leaves the trade open (the chat is told); the next check tries again.
        """
        if self.broker is None:
            return None
        try:
            ended = await self.broker.close_trade(instrument, trade)
        except BrokerError as exc:
            log.warning("LIVE trade %s reached its %s but the close failed: %s", trade.trade_id, reason.value, exc)
            await self.notifier.announce(
                Notice(f"{trade.symbol} {trade.trade_id} reached its {reason.value}; the closing order failed: {exc}")
            )
            return None
        return await self._record_live_exit(trade, dataclasses.replace(ended, reason=reason))

    async def _load(self, symbol: str) -> Bars | None:
        instrument, calendar = self.instruments[symbol], self.calendars[symbol]
        now = self.clock.now()
        try:
            frame = await asyncio.to_thread(self.provider.fetch, instrument, now, self.history_bars)
        except ProviderError as exc:
            log.warning("cannot monitor %s positions now: %s", symbol, exc)
            return None
        check = validate_bars(frame, instrument, calendar, now, min_bars=1, stale_bars=_NEVER_STALE)
        if check.bars is None:
            log.warning("cannot monitor %s positions now: %s", symbol, check.rejection)
        return check.bars

    async def _check_symbol(self, symbol: str, trades: list[Trade], bars: Bars) -> list[Trade]:
        instrument, calendar = self.instruments[symbol], self.calendars[symbol]
        session_day = None
        if instrument.calendar in _SESSION_CALENDARS and instrument.interval.is_intraday:
            session_day = MarketContext(instrument, bars, calendar).exit_session
        closed = []
        moves = await self.store.stop_moves([t.trade_id for t in trades])
        for trade in trades:
            entered = to_nanos(trade.entry_time)
            if len(bars) and entered < int(bars.time[0]):
                log.warning(
                    "%s trade %s is older than the loaded history; checking from %s",
                    symbol,
                    trade.trade_id,
                    bars.bar_time(0),
                )
            start = int(np.searchsorted(bars.time, entered, side="left"))
            if start >= len(bars):
                continue
            plan = self.exit_plans.get(trade.strategy)
            if plan is not None and trade.kind is TradeKind.LIVE and trade.symbol not in self.managed_live:
                await self._manage_live_stop(
                    trade, plan, instrument, bars, start, session_day, moves.get(trade.trade_id, [])
                )
                continue
            if plan is not None and trade.kind is not TradeKind.LIVE:
                done = await self._manage(
                    trade, plan, instrument, bars, start, session_day, moves.get(trade.trade_id, [])
                )
                closed += [done] if done is not None else []
                continue
            stops = stop_schedule(trade.stop, moves.get(trade.trade_id, ()))
            event = find_exit_with_stops(
                bars,
                start,
                trade.side,
                stops,
                float(trade.target),
                max_bars=self.max_hold_bars,
                session_day=session_day,
                stop_trigger=self.stop_triggers.get(trade.strategy, StopTrigger.TOUCH),
            )
            if event is None:
                continue
            if trade.kind is TradeKind.LIVE:
                done_live = await self._close_live(instrument, trade, event.reason)
                if done_live is not None:
                    closed.append(done_live)
                continue
            level = instrument.price(event.price, ROUND_HALF_EVEN)
            price = exit_fill_price(level, trade.side, self.costs, instrument)
            fees = commission(price, trade.quantity, instrument, self.costs)
            if await self.store.close_trade(trade.trade_id, event.at, price, event.reason, fees):
                done = trade.closed(event.at, price, event.reason, fees)
                closed.append(done)
                log.info(
                    "%s %s trade %s closed: %s @ %s",
                    symbol,
                    trade.kind.value,
                    trade.trade_id,
                    event.reason.value,
                    price,
                )
                if trade.kind is TradeKind.PAPER:
                    await self.notifier.announce(PositionClosed(done))
        return closed

    async def _manage(
        self,
        trade: Trade,
        plan: ExitPlan,
        instrument: Instrument,
        bars: Bars,
        start: int,
        session_day: IntArray | None,
        moves: list[StopMove],
    ) -> Trade | None:
        """Apply the plan to a paper or shadow position: record and tell each stop move and partial exit, and close
        it (at the average of its fills) when the rest is out. The same kernel as the backtester's."""
        managed = self._walk(trade, plan, instrument, bars, start, session_day, moves)
        told = trade.kind is TradeKind.PAPER
        if not managed.done and (move := _plan_move(managed, moves, trade, instrument)) is not None:
            await self._move_stop(trade, *move, self.clock.now(), told)
        fills = leg_fills(managed.legs, trade.quantity, trade.side, instrument, self.costs)
        partials = [f for f in fills if f.leg.reason is ExitReason.PARTIAL]
        for seq, fill in enumerate(partials, start=1):
            price, size, fees = fill.price, fill.quantity, fill.fees
            at = from_nanos(int(bars.time[fill.leg.bar_index]) + bars.interval.nanos)
            if await self.store.record_partial_exit(PartialExit(trade.trade_id, seq, at, price, size, fees)) and told:
                r = trade.side.sign * (price - trade.entry_price) / abs(trade.entry_price - trade.stop)
                await self.notifier.announce(
                    Notice(f"{trade.symbol} partial exit {seq}: {size} @ {price} ({r:+.2f}R) · {trade.trade_id}")
                )
        if not managed.done:
            return None
        at = from_nanos(int(bars.time[managed.legs[-1].bar_index]) + bars.interval.nanos)
        _, price, reason, fees = managed_fill(managed, trade.quantity, trade.side, instrument, self.costs, at)
        if not await self.store.close_trade(trade.trade_id, at, price, reason, fees):
            return None
        done = trade.closed(at, price, reason, fees)
        if told:
            await self.notifier.announce(PositionClosed(done))
        return done

    async def _manage_live_stop(
        self,
        trade: Trade,
        plan: ExitPlan,
        instrument: Instrument,
        bars: Bars,
        start: int,
        session_day: IntArray | None,
        moves: list[StopMove],
    ) -> None:
        """Move a live position's stop at its broker to where the plan has it after the last closed bar."""
        if plan.partials and trade.trade_id not in self._partials_warned:
            self._partials_warned.add(trade.trade_id)
            log.warning(
                "%s %s: partial targets are not sent to the broker; the live position runs whole",
                trade.symbol,
                trade.trade_id,
            )
        managed = self._walk(trade, plan, instrument, bars, start, session_day, moves)
        if managed.done or self.broker is None:
            return  # out by the rules: the broker's own stop, target or the time exit decides; `check_live` records it
        if (move := _plan_move(managed, moves, trade, instrument)) is not None:
            await self._move_stop(trade, *move, self.clock.now(), True, instrument)

    async def _move_stop(
        self, trade: Trade, old: Decimal, new: Decimal, now: datetime, told: bool, at_broker: Instrument | None = None
    ) -> None:
        """Record the plan's stop move as the bot's action (the trader's stays possible after it), moving it at the
        broker first for a position the broker holds (`at_broker`), and tell it."""
        action = await self.store.request_trade_action(trade.trade_id, TradeAction.STOP, now, BOT_USER)
        if action is None:
            return  # the trader's own action on it is in flight: the next check moves it
        if at_broker is not None and self.broker is not None:
            try:
                await self.broker.move_stop(at_broker, trade, new)
            except BrokerError as exc:
                await self.store.finish_trade_action(action, False, now, str(exc))
                log.warning(
                    "%s %s: the plan's stop %s not moved at the broker: %s", trade.symbol, trade.trade_id, new, exc
                )
                return
        if not await self.store.move_trade_stop(action, trade.trade_id, old, new, now):
            await self.store.finish_trade_action(action, False, now, "the stop changed meanwhile")
            return
        log.info("%s trade %s: stop moved by its plan %s -> %s", trade.symbol, trade.trade_id, old, new)
        if told:
            await self.notifier.announce(StopMoved(trade, old, new, BOT_USER))

    def _walk(
        self,
        trade: Trade,
        plan: ExitPlan,
        instrument: Instrument,
        bars: Bars,
        start: int,
        session_day: IntArray | None,
        moves: list[StopMove],
    ) -> ManagedExit:
        """The plan's path for this position over the bars since its entry (the backtester's kernel), with the
        stops the trader set in force from their bars."""
        atr = MarketContext(instrument, bars, self.calendars[trade.symbol]).ind.atr(TRAIL_ATR_PERIOD)
        return manage_exit(
            bars.open, bars.high, bars.low, bars.close, start, trade.side, float(trade.entry_price),
            float(trade.stop), float(trade.target), plan, atr=atr, max_bars=self.max_hold_bars,
            session_day=session_day, set_stops=[(_bar_index(bars, m.at), float(m.new)) for m in moves],
        )  # fmt: skip


def _reaches(bars: Bars, trades: Sequence[Trade]) -> bool:
    """Whether `bars` begin at or before the entry of every one of `trades`."""
    return len(bars) > 0 and int(bars.time[0]) <= min(to_nanos(t.entry_time) for t in trades)


def _plan_move(
    managed: ManagedExit, moves: list[StopMove], trade: Trade, instrument: Instrument
) -> tuple[Decimal, Decimal] | None:
    """(the stop now, the plan's stop on the tick) when the plan moved the stop beyond the one in force, else None."""
    if managed.stop is None:
        return None
    current = moves[-1].new if moves else trade.stop
    level = instrument.price(managed.stop, ROUND_HALF_EVEN)
    return (current, level) if trade.side.sign * (level - current) > 0 else None


def _bar_index(bars: Bars, at: datetime) -> int:
    return int(np.searchsorted(bars.time, to_nanos(at), side="left"))


def stop_schedule(stop: Decimal, moves: Sequence[StopMove]) -> list[tuple[datetime | None, float]]:
    """The stops a position has had: the first (from its entry) and each the trader set, with when."""
    first: list[tuple[datetime | None, float]] = [(None, float(moves[0].old if moves else stop))]
    return first + [(m.at, float(m.new)) for m in moves]
