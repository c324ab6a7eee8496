"""The NIFTY weekly-zone system live: offer each signal as a hedged spread, trade it on approval, exit it.

After every NSE hourly close (the schedule's `zones` run) the desk:

1. scans the week's hourly bars (`engine.weekly_zones.scan`, the backtest's code); a signal whose trigger bar
   is the bar that just closed is offered once, as the spread it would trade: the contracts of the position's
   expiry (by the exchange calendar) from the venue's instrument master, `lots` x the contract's lot size;
   the offer expires at the next bar's close;
2. watches open spreads on the same bars: the close-only stop from the bar after the trigger, the optional
   Wednesday 14:15 exit, and the expiry (the close of the expiry day's last bar); the legs are closed main
   first (`SpreadExecutor.close`) and the outcome recorded: points and R on the index, P&L from the fills.

Approve moves the spread PENDING -> APPROVED in one compare-and-set (a double press acts once), then places
the hedge and the main leg. A crash or an unknown answer leaves it APPROVED (or CLOSING): `reconcile` re-runs
the legs, found by their tags, so nothing is sent twice. A refused main leg rolls the hedge back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Final, Protocol

import numpy as np

from bot.services.desk_core import InFlight, Outcome, OutcomeKind
from bot.services.events import Announcer, Notice, SpreadEvent, SpreadStage
from bot.services.spreads import SpreadExecutor, SpreadState
from data.market.validation import validate_bars
from engine.bars import to_nanos
from engine.calendars import SessionCalendar
from engine.domain import Instrument
from engine.options import (
    HEDGE_DISTANCE,
    LegAction,
    LegOrder,
    LegRole,
    OptionType,
    SpreadPlan,
    hedge_strike,
    main_strike,
    option_type,
    realised_vol,
)
from engine.ports import BarProvider, BrokerError, Clock, LegVenue, ProviderError, SpreadBook
from engine.session_hours import SessionHours, session_hours
from engine.spread_book import SpreadRecord, SpreadStatus, spread_id
from engine.trading import ExitReason
from engine.weekly_zones import WEDNESDAY_EXIT_HOUR, ZoneSignal, live_expiry, scan

log = logging.getLogger(__name__)

SYSTEM: Final = "weekly_zones"
ZONES_GROUP: Final = "weekly-zones"  # the schedule group that runs the desk after each NSE hourly close
UNDERLYING: Final = "NIFTY"
HISTORY_BARS: Final = 7 * 5 * 6  # six weeks of hourly bars: the week, the one before, and the volatility window
_NEVER_STALE: Final = 10**6
YEAR: Final = timedelta(days=365.25)
OFFER_FOR: Final = timedelta(hours=1)  # an offer lives until the next bar closes; a late feed offers nothing


class ContractSource(Protocol):
    """Where the option contracts come from: the broker's instrument master (live) or the spec's rules."""

    async def option_contract(self, name: str, expiry: date, strike: int, kind: OptionType) -> tuple[str, int]:
        """The contract's tradingsymbol and lot size; BrokerError when it is not listed (or no session)."""
        ...


class MarginCheck(Protocol):
    """A venue that can price a multi-leg entry's margin before anything is sent (Kite's basket margins)."""

    async def basket_margin(self, orders: list[LegOrder]) -> Decimal: ...

    async def funds(self) -> Decimal: ...


class ModelledMarket(Protocol):
    """A venue that prices legs with the model needs the underlying's level and volatility now."""

    def observe(self, spot: float, vol: float, at: datetime) -> None: ...


@dataclass(frozen=True)
class ZoneConfig:
    lots: int = 1
    wednesday_exit: bool = False
    freeze_quantity: int = 1800
    risk_per_spread: Decimal | None = None  # INR: size by the maximum loss instead of fixed lots

    def lots_for(self, lot: int) -> int:
        """Fixed lots, or the most whose maximum loss (width x lot, the credit not counted) fits the budget."""
        if self.risk_per_spread is None:
            return self.lots
        return int(self.risk_per_spread // (HEDGE_DISTANCE * lot))


class ZoneDesk:
    """Offers, trades and exits the weekly-zone spreads of one underlying (NIFTY 50)."""

    def __init__(
        self,
        store: SpreadBook,
        provider: BarProvider,
        venue: LegVenue,
        contracts: ContractSource,
        announcer: Announcer,
        clock: Clock,
        instrument: Instrument,
        calendar: SessionCalendar,
        config: ZoneConfig = ZoneConfig(),
        market: ModelledMarket | None = None,
        margins: MarginCheck | None = None,
    ) -> None:
        self.store = store
        self.provider = provider
        self.venue = venue
        self.contracts = contracts
        self.announcer = announcer
        self.clock = clock
        self.instrument = instrument
        self.calendar = calendar
        self.config = config
        self.market = market
        self.margins = margins
        self.executor = SpreadExecutor(venue)
        self._in_flight = InFlight()
        self._last: SessionHours | None = None  # the bars of the latest run, for the model's inputs
        self._told: set[str] = set()  # spreads whose unconfirmed legs the chat was told of (once each)

    # ---------------------------------------------------------------------------------------------- runs

    async def run(self) -> None:
        """After an hourly close: expire stale offers, exit what must exit, offer what fired."""
        hours = await self._hours()
        await self.expire_due()
        if hours is None:
            return
        await self.monitor(hours)
        await self.offer(hours)

    async def offer(self, hours: SessionHours) -> SpreadRecord | None:
        """Offer the week's signal if it fired on the bar that just closed."""
        if len(hours) == 0:
            return None
        last = len(hours) - 1
        fired = [s for s in scan(hours) if s.index == last]
        if not fired:
            return None
        signal = fired[0]
        if self.clock.now() >= hours.close_time(signal.index) + OFFER_FOR:
            log.warning(
                "weekly zones %s on the bar closed %s seen too late to offer", signal.rule, hours.close_time(last)
            )
            return None
        record = await self._record(hours, signal)
        if record is None or not await self.store.offer_spread(record):
            return None
        log.info("weekly zones %s %s offered as spread %s", signal.rule, signal.side, record.spread_id)
        await self.announcer.announce(SpreadEvent(SpreadStage.OFFERED, record))
        return record

    async def _record(self, hours: SessionHours, signal: ZoneSignal) -> SpreadRecord | None:
        closed_at = hours.close_time(signal.index)
        expiry = live_expiry(hours.date_of(signal.index), closed_at, self._session_close)
        kind = option_type(signal.side)
        main = main_strike(signal.side, signal.stop)
        hedge = hedge_strike(signal.side, main)
        try:
            main_symbol, lot = await self.contracts.option_contract(UNDERLYING, expiry, main, kind)
            hedge_symbol, _ = await self.contracts.option_contract(UNDERLYING, expiry, hedge, kind)
        except BrokerError as exc:
            await self.announcer.announce(
                Notice(f"weekly zones {signal.rule} {signal.side} not offered: no contract ({exc})")
            )
            return None
        sid = spread_id(SYSTEM, self.instrument.symbol, closed_at, signal.side)
        lots = self.config.lots_for(lot)
        if lots < 1:
            loss = HEDGE_DISTANCE * lot
            await self.announcer.announce(
                Notice(
                    f"weekly zones {signal.rule} {signal.side} not offered: one lot can lose {loss:,} INR, "
                    f"above the {self.config.risk_per_spread:,} INR risk per spread"
                )
            )
            return None
        plan = SpreadPlan(sid, hedge_symbol, main_symbol, lots * lot, lot, self.config.freeze_quantity)
        ctx = signal.context
        zones = {
            "resistance": [round(ctx.rb, 2), round(ctx.rt, 2)],
            "support": [round(ctx.sb, 2), round(ctx.st, 2)],
            "pwh": ctx.pwh,
            "pwl": ctx.pwl,
            "pwc": ctx.pwc,
            "bias": ctx.bias.value,
            "rule_title": signal.rule.description,
            "main_strike": main,
            "hedge_strike": hedge,
            "option_type": kind.value,
        }
        return SpreadRecord(
            spread_id=sid,
            system=SYSTEM,
            symbol=self.instrument.symbol,
            rule=signal.rule.value,
            side=signal.side,
            signal_time=closed_at,
            entry=self.instrument.price(signal.entry),
            stop=self.instrument.price(signal.stop),
            expiry=expiry,
            plan=plan,
            status=SpreadStatus.PENDING,
            venue=self.venue.name,
            zones=zones,
            expires_at=closed_at + OFFER_FOR,
        )

    async def expire_due(self) -> int:
        """Expire every offer whose time is up."""
        now, count = self.clock.now(), 0
        for record in await self.store.spreads([SpreadStatus.PENDING]):
            if record.expires_at is not None and now >= record.expires_at:
                moved = record.moved(SpreadStatus.EXPIRED, reason="no decision before the next bar closed")
                count += await self.store.move_spread(moved, SpreadStatus.PENDING)
        return count

    # ---------------------------------------------------------------------------------------------- decisions

    async def approve(self, sid: str, user: int) -> Outcome:
        """Approve an offered spread and place its legs, hedge first (one press acts once)."""
        token = self._in_flight.claim(sid)
        if token is None:
            return Outcome(OutcomeKind.INVALID, "This spread is being approved already.")
        try:
            record = await self.store.spread(sid)
            if record is None or record.status is not SpreadStatus.PENDING:
                return Outcome(OutcomeKind.INVALID, "This button is no longer valid.")
            if record.expires_at is not None and self.clock.now() >= record.expires_at:
                await self.store.move_spread(record.moved(SpreadStatus.EXPIRED, reason="expired"), SpreadStatus.PENDING)
                return Outcome(OutcomeKind.INVALID, "This spread offer has expired.")
            if (short := await self._margin_short(record)) is not None:
                return Outcome(OutcomeKind.REFUSED, f"Refused: {short}.")
            approved = record.moved(SpreadStatus.APPROVED, decided_by=user)
            if not await self.store.move_spread(approved, SpreadStatus.PENDING):
                return Outcome(OutcomeKind.INVALID, "This button is no longer valid.")
            return await self._open(approved)
        finally:
            self._in_flight.release(sid, token)

    async def _margin_short(self, record: SpreadRecord) -> str | None:
        """Why the account cannot carry both legs now (the hedge counted), or None; nothing is sent for it."""
        if self.margins is None:
            return None
        plan = record.plan
        orders = [*plan.orders(LegRole.HEDGE, LegAction.OPEN), *plan.orders(LegRole.MAIN, LegAction.OPEN)]
        try:
            need, have = await self.margins.basket_margin(orders), await self.margins.funds()
        except BrokerError as exc:
            return f"the margin could not be checked ({exc})"
        if need > have:
            return f"the spread needs {need:,.2f} INR of margin, the account has {have:,.2f}"
        return None

    async def reject(self, sid: str, user: int) -> Outcome:
        record = await self.store.spread(sid)
        if record is None or record.status is not SpreadStatus.PENDING:
            return Outcome(OutcomeKind.INVALID, "This button is no longer valid.")
        if not await self.store.move_spread(record.moved(SpreadStatus.REJECTED, decided_by=user), SpreadStatus.PENDING):
            return Outcome(OutcomeKind.INVALID, "This button is no longer valid.")
        return Outcome(OutcomeKind.DONE, "Rejected.")

    async def _open(self, record: SpreadRecord) -> Outcome:
        await self._observe()
        try:
            result = await self.executor.open(record.plan)
        except BrokerError as exc:  # unknown or not now: the legs are re-run by tag every minute
            await self._tell_once(record, f"spread {record.spread_id}: legs not confirmed yet, retried ({exc})")
            return Outcome(OutcomeKind.REFUSED, f"Approved; the legs are not confirmed yet: {exc}")
        self._told.discard(record.spread_id)
        await self.store.add_spread_fills(record.spread_id, result.fills)
        fills = tuple({f.tag: f for f in (*result.fills, *record.fills)}.values())  # a stored fill stands
        if result.state is SpreadState.ROLLED_BACK:
            moved = record.moved(SpreadStatus.ROLLED_BACK, reason=result.reason, fills=fills)
            await self.store.move_spread(moved, SpreadStatus.APPROVED)
            await self.announcer.announce(SpreadEvent(SpreadStage.ROLLED_BACK, moved))
            return Outcome(OutcomeKind.REFUSED, f"Not opened: {result.reason}; the hedge was sold back.")
        moved = record.moved(SpreadStatus.OPEN, fills=fills)
        await self.store.move_spread(moved, SpreadStatus.APPROVED)
        await self.announcer.announce(SpreadEvent(SpreadStage.OPENED, moved))
        return Outcome(OutcomeKind.DONE, "Spread opened.")

    # ---------------------------------------------------------------------------------------------- exits

    async def monitor(self, hours: SessionHours) -> list[SpreadRecord]:
        """Close every open spread whose close-only stop, Wednesday exit or expiry has come."""
        closed = []
        for record in await self.store.spreads([SpreadStatus.OPEN]):
            found = self._exit(hours, record)
            if found is None:
                continue
            index, reason = found
            at, level = hours.close_time(index), self.instrument.price(float(hours.bars.close[index]))
            closing = record.moved(SpreadStatus.CLOSING, exit_time=at, exit_level=level, exit_reason=reason)
            token = self._in_flight.claim(record.spread_id)
            if token is None:
                continue
            try:
                if await self.store.move_spread(closing, SpreadStatus.OPEN):
                    done = await self._close(closing)
                    if done is not None:
                        closed.append(done)
            finally:
                self._in_flight.release(record.spread_id, token)
        return closed

    def _exit(self, hours: SessionHours, record: SpreadRecord) -> tuple[int, ExitReason] | None:
        """The bar and reason of the spread's exit in `hours`, or None while it holds."""
        start = int(np.searchsorted(hours.close_ns, to_nanos(record.signal_time), side="right"))
        expiry_day = (record.expiry - date(1970, 1, 1)).days
        last_of_expiry = np.flatnonzero(hours.day == expiry_day)
        end = int(last_of_expiry[-1]) if len(last_of_expiry) and int(hours.hour[last_of_expiry[-1]]) == 6 else None
        stop = float(record.stop)
        for i in range(start, len(hours) if end is None else end + 1):
            close = float(hours.bars.close[i])
            if (close <= stop) if record.side.sign > 0 else (close >= stop):
                return i, ExitReason.STOP
            if self.config.wednesday_exit and _is_wednesday_before(hours, i, record.expiry):
                return i, ExitReason.TIME
        return (end, ExitReason.EXPIRY) if end is not None and end >= start else None

    async def _close(self, record: SpreadRecord) -> SpreadRecord | None:
        await self._observe()
        try:
            result = await self.executor.close(record.plan, record.open_quantity)
        except BrokerError as exc:
            why = f"spread {record.spread_id} reached its {record.exit_reason}; closing the legs failed, retried: {exc}"
            await self._tell_once(record, why)
            return None
        self._told.discard(record.spread_id)
        await self.store.add_spread_fills(record.spread_id, result.fills)
        fills = tuple({f.tag: f for f in (*result.fills, *record.fills)}.values())  # a stored fill stands
        done = record.moved(SpreadStatus.CLOSED, fills=fills)
        await self.store.move_spread(done, SpreadStatus.CLOSING)
        await self.announcer.announce(SpreadEvent(SpreadStage.CLOSED, done))
        return done

    async def reconcile(self) -> int:
        """Finish the legs of approved spreads and of spreads being closed (by tag): after a restart, and every
        minute for legs an unknown answer or an outage left unconfirmed. A spread being decided now is skipped."""
        touched = 0
        for status in (SpreadStatus.APPROVED, SpreadStatus.CLOSING):
            for record in await self.store.spreads([status]):
                token = self._in_flight.claim(record.spread_id)
                if token is None:
                    continue
                try:
                    touched += 1
                    await (self._open if status is SpreadStatus.APPROVED else self._close)(record)
                finally:
                    self._in_flight.release(record.spread_id, token)
        return touched

    async def _tell_once(self, record: SpreadRecord, text: str) -> None:
        if record.spread_id not in self._told:
            self._told.add(record.spread_id)
            await self.announcer.announce(Notice(text))

    async def open_spreads(self) -> list[SpreadRecord]:
        return await self.store.spreads([SpreadStatus.APPROVED, SpreadStatus.OPEN, SpreadStatus.CLOSING])

    # ---------------------------------------------------------------------------------------------- data

    async def _hours(self) -> SessionHours | None:
        now = self.clock.now()
        try:
            frame = self.provider.fetch(self.instrument, now, HISTORY_BARS)
        except ProviderError as exc:
            log.warning("weekly zones: no NIFTY hourly bars now: %s", exc)
            return None
        check = validate_bars(frame, self.instrument, self.calendar, now, min_bars=1, stale_bars=_NEVER_STALE)
        if check.bars is None:
            log.warning("weekly zones: NIFTY hourly bars refused: %s", check.rejection)
            return None
        try:
            hours = session_hours(check.bars)
        except ValueError as exc:
            log.warning("weekly zones: %s", exc)
            return None
        self._last = hours
        return hours

    async def _observe(self) -> None:
        """Tell a modelled venue the index level and its realised volatility now."""
        if self.market is None:
            return
        hours = self._last or await self._hours()
        if hours is None or len(hours) == 0:
            return
        vol = realised_vol(hours.bars.close, len(hours) - 1) or 0.0
        self.market.observe(float(hours.bars.close[-1]), vol, self.clock.now())

    def _session_close(self, day: date) -> datetime | None:
        bounds = self.calendar.session(day)
        return None if bounds is None else bounds[1]


def _is_wednesday_before(hours: SessionHours, i: int, expiry: date) -> bool:
    """Whether bar `i` is the 14:15 bar of the last Wednesday before the expiry day."""
    day = hours.date_of(i)
    return day.weekday() == 2 and day < expiry and (expiry - day).days < 7 and int(hours.hour[i]) == WEDNESDAY_EXIT_HOUR
