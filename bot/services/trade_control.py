"""The trader's hands on open positions: close one, move its stop to breakeven, close all that a confirmation showed.

Every action is claimed in the store before anything reaches a broker (`request_trade_action`): one action per
position at a time, so a double press, a second chat or a press on an old message acts once, and a press on a
position that has closed since is refused. Paper positions close at the paper broker's validated quote with the
paper costs; live ones at the live broker, which returns its closing fill, or the close it had already made (its
stop, its target). "Close all" acts only on the positions its confirmation listed, once. Only the owner acts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from bot.ops.metrics import MetricName, Metrics, NullMetrics
from bot.services.desk import Outcome, OutcomeKind
from bot.services.events import Announcer, PositionClosed, StopMoved
from engine.domain import Instrument, plural
from engine.ports import Broker, BrokerError, Clock, TradeLedger
from engine.trading import BrokerExit, ExitReason, Trade, TradeAction, TradeKind

log = logging.getLogger(__name__)

CONTROLLED_KINDS: Final = (TradeKind.PAPER, TradeKind.LIVE)
STALE_CONFIRMATION: Final = "This button is no longer valid."
OWNER_ONLY: Final = "Only the bot's owner can close positions or move their stops."


@dataclass(frozen=True)
class CloseAllOffer:
    """A "close all" confirmation: the positions it lists, kept as `batch_id` (what its button closes)."""

    batch_id: int
    trades: tuple[Trade, ...]


class TradeControl:
    """Closes positions and moves their stops at the trader's request, exactly once each."""

    def __init__(
        self,
        store: TradeLedger,
        brokers: Mapping[TradeKind, Broker],
        notifier: Announcer,
        clock: Clock,
        instruments: Mapping[str, Instrument],
        owner: int,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.brokers = dict(brokers)
        self.notifier = notifier
        self.clock = clock
        self.instruments = instruments
        self.owner = owner
        self.metrics = metrics or NullMetrics()

    async def open_positions(self) -> list[Trade]:
        """The open positions the trader can act on (paper and live), oldest first."""
        return await self.store.open_trades(CONTROLLED_KINDS)

    async def close(self, trade_id: str, user: int) -> Outcome:
        """Close one open position at market now."""
        found = await self._controlled(trade_id, user)
        if isinstance(found, Outcome):
            return found
        trade, instrument, broker = found
        action = await self.store.request_trade_action(trade_id, TradeAction.CLOSE, self.clock.now(), user)
        if action is None:
            return Outcome(OutcomeKind.INVALID, f"Position {trade_id} is closed or already being changed.")
        try:
            ended = await broker.close_trade(instrument, trade)
        except BrokerError as exc:
            await self.store.finish_trade_action(action, False, self.clock.now(), str(exc))
            later = " It may have closed at the broker: its exit is recorded when the broker shows it." * (
                exc.transient and trade.kind is TradeKind.LIVE
            )
            return Outcome(OutcomeKind.REFUSED, f"{trade.symbol} {trade_id} not closed: {exc}.{later}")
        return await self._record_close(action, trade, ended, user)

    async def _record_close(self, action: int, trade: Trade, ended: BrokerExit, user: int) -> Outcome:
        fees = ended.costs
        closed = await self.store.close_trade(trade.trade_id, ended.closed_at, ended.price, ended.reason, fees)
        await self.store.finish_trade_action(action, closed, self.clock.now(), f"{ended.reason.value} @ {ended.price}")
        if not closed:  # its stop or target closed it while the close was on its way
            return Outcome(OutcomeKind.INVALID, f"Position {trade.trade_id} had already closed.")
        self.metrics.record(MetricName.TRADES_CLOSED, 1)
        done = trade.closed(ended.closed_at, ended.price, ended.reason, fees)
        log.warning("user %s closed %s trade %s @ %s", user, trade.kind.value, trade.trade_id, ended.price)
        await self.notifier.announce(PositionClosed(done, by=user))
        before = "" if ended.reason is ExitReason.MANUAL else f" ({ended.reason.value} at the broker before this close)"
        return Outcome(OutcomeKind.DONE, f"Closed {trade.symbol} {trade.trade_id} @ {ended.price}{before}.")

    async def breakeven(self, trade_id: str, user: int) -> Outcome:
        """Move an open position's stop to its entry price, if the price is beyond the entry."""
        found = await self._controlled(trade_id, user)
        if isinstance(found, Outcome):
            return found
        trade, instrument, broker = found
        entry, sign = trade.entry_price, trade.side.sign
        stop = await self.current_stop(trade)
        if sign * (stop - entry) >= 0:
            return Outcome(OutcomeKind.INVALID, f"The stop of {trade_id} is already at {stop}, at or past breakeven.")
        try:
            quote = await broker.quote(instrument)
        except BrokerError as exc:
            return Outcome(OutcomeKind.REFUSED, f"No fresh price for {trade.symbol}: {exc}")
        trigger = quote.bid if sign > 0 else quote.ask  # the price a stop of this position is triggered by
        if sign * (trigger - entry) <= 0:
            return Outcome(
                OutcomeKind.REFUSED,
                f"{trade.symbol} is at {trigger}, not beyond the entry {entry}: a stop there would close it at once "
                f"(/close {trade_id} closes it now).",
            )
        action = await self.store.request_trade_action(trade_id, TradeAction.STOP, self.clock.now(), user)
        if action is None:
            return Outcome(OutcomeKind.INVALID, f"Position {trade_id} is closed or already being changed.")
        try:
            await broker.move_stop(instrument, trade, entry)
        except BrokerError as exc:
            await self.store.finish_trade_action(action, False, self.clock.now(), str(exc))
            return Outcome(OutcomeKind.REFUSED, f"Stop of {trade.symbol} {trade_id} not moved: {exc}.")
        if not await self.store.move_trade_stop(action, trade_id, stop, entry, self.clock.now()):
            await self.store.finish_trade_action(action, False, self.clock.now(), "the position changed meanwhile")
            return Outcome(OutcomeKind.INVALID, f"Position {trade_id} changed meanwhile; /positions shows it now.")
        log.warning("user %s moved the stop of trade %s from %s to %s", user, trade_id, stop, entry)
        await self.notifier.announce(StopMoved(trade, stop, entry, user))
        return Outcome(OutcomeKind.DONE, f"Stop of {trade.symbol} moved to breakeven {entry}.")

    async def current_stop(self, trade: Trade) -> Decimal:
        """The stop the position has now: the last one the trader set, else the one it entered with."""
        moves = (await self.store.stop_moves([trade.trade_id])).get(trade.trade_id)
        return moves[-1].new if moves else trade.stop

    async def current_stops(self, trades: Sequence[Trade]) -> dict[str, Decimal]:
        """The stop each position has now, by trade id."""
        moves = await self.store.stop_moves([t.trade_id for t in trades])
        return {t.trade_id: moves[t.trade_id][-1].new if t.trade_id in moves else t.stop for t in trades}

    async def offer_close_all(self, user: int) -> CloseAllOffer | None:
        """Keep the open positions as one confirmation (its button closes exactly these); None when none is open."""
        trades = await self.open_positions()
        if not trades:
            return None
        batch = await self.store.create_close_batch([t.trade_id for t in trades], self.clock.now(), user)
        return CloseAllOffer(batch, tuple(trades))

    async def close_batch(self, batch_id: int, user: int) -> Outcome:
        """Close the positions a confirmation listed that are still open; its button works once."""
        if user != self.owner:
            return Outcome(OutcomeKind.REFUSED, OWNER_ONLY)
        trade_ids = await self.store.use_close_batch(batch_id, self.clock.now(), user)
        if trade_ids is None:
            return Outcome(OutcomeKind.INVALID, STALE_CONFIRMATION)
        outcomes = [await self.close(trade_id, user) for trade_id in trade_ids]
        return Outcome(OutcomeKind.DONE, close_all_text(trade_ids, outcomes))

    async def _controlled(self, trade_id: str, user: int) -> tuple[Trade, Instrument, Broker] | Outcome:
        """The open position `user` may act on, with its instrument and broker; else what to answer."""
        if user != self.owner:
            return Outcome(OutcomeKind.REFUSED, OWNER_ONLY)
        trade = await self.store.open_trade(trade_id)
        if trade is None or trade.kind not in CONTROLLED_KINDS:
            return Outcome(OutcomeKind.INVALID, f"No open position {trade_id}.")
        instrument = self.instruments.get(trade.symbol)
        broker = self.brokers.get(trade.kind)
        if instrument is None or broker is None:
            return Outcome(
                OutcomeKind.REFUSED, f"{trade.symbol} {trade.kind.value} positions are not traded by this bot now."
            )
        return trade, instrument, broker


def close_all_text(trade_ids: Sequence[str], outcomes: Sequence[Outcome]) -> str:
    """What a close-all did: how many it closed of those it listed, and why each other one was not."""
    closed = sum(o.kind is OutcomeKind.DONE for o in outcomes)
    lines = [f"Closed {closed} of {plural(len(trade_ids), 'listed position')}."]
    lines += [f"  {o.message}" for o in outcomes if o.kind is not OutcomeKind.DONE]
    return "\n".join(lines)
