"""The signal desk: offer new signals, take decisions on them, execute approved ones exactly once.

Every decision goes through one compare-and-set on the signal's stored status, so a double click, two
approvers at once or a replayed Telegram update yield exactly one order. Before anything is approved the
desk re-checks at click time: not expired, bot not paused, the pair not disabled or failed since the offer, and
a fresh price still near the signal's entry (within `max_price_drift_r` of the risk, and not already past the stop
or the target).

What the gate validated decides what the desk may do on its own (`bot.services.systems.SystemBook`): only a system whose
own current baseline passed is ever executed without asking (auto and quality modes). An unvalidated or stale
system is offered with its warning for the trader to decide, in every mode; a failed one is dropped, unless
`trade_failed_strategies` is set, which offers it the same way. Every signal keeps the status it was offered with.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Final, Protocol
from zoneinfo import ZoneInfo

import numpy as np

from bot.ops.logs import log_context
from bot.ops.metrics import MetricName, Metrics, NullMetrics, Unit
from bot.services.book import book_view, close_returns
from bot.services.events import Announcer, Notice, PositionOpened, Tone
from bot.services.rates import RateBook
from bot.services.state import PAUSED_KEY, BotState
from bot.services.systems import SystemBook
from data.market.news_feed import NewsSource
from engine.bars import Bars
from engine.calendars import SessionCalendar
from engine.controls import PairControl, PairState
from engine.costs import CostModel, commission
from engine.domain import Instrument, ScoredSetup, Setup, SignalStatus, human_duration
from engine.news import EmbargoConfig, FeedFallback
from engine.ports import (
    BotStore,
    Broker,
    BrokerError,
    BrokerErrorKind,
    Clock,
    DecisionChanged,
    SignalEstimate,
    SignalRecord,
    fill_from_status,
)
from engine.protections import Block, BookView, Candidate, ProtectionConfig, check_entry
from engine.sizing import CANNOT_SIZE, NO_EQUITY, SizedOrder, Sizing, split_children
from engine.systems import PairValidation, ValidationStatus
from engine.trading import ExecutionMode, Fill, OrderRequest, Trade, TradeKind

log = logging.getLogger(__name__)


def order_request(record: SignalRecord, quantity: Decimal | None = None) -> OrderRequest:
    """The market order of a signal: its side and size, with its stop and target attached at the broker."""
    setup = record.scored.setup
    size = quantity if quantity is not None else record.quantity
    if size is None:
        raise ValueError(f"signal {record.signal_id} has no position size")
    return OrderRequest(record.signal_id, setup.symbol, setup.side, size, stop=setup.stop, target=setup.target)


COMMIT_ATTEMPTS: Final = 3  # checks re-run on a changed book at most this often before the press is refused
DECISION_STATE_KEYS: Final = (PAUSED_KEY,)  # the persisted switches a decision to trade reads


class InFlight:
    """Which task owns each signal being decided or sent: one owner at a time, and only the owner lets go.

    A press that loses the race must never clear the winner's mark (the settlement would then send the order a
    second time); here it cannot, because it never owned it.
    """

    def __init__(self) -> None:
        self._owners: dict[str, object] = {}

    def claim(self, signal_id: str) -> object | None:
        """Own `signal_id` and return the token to release it with, or None when someone owns it already."""
        if signal_id in self._owners:
            return None
        token = object()
        self._owners[signal_id] = token
        return token

    def release(self, signal_id: str, token: object) -> None:
        if self._owners.get(signal_id) is token:
            del self._owners[signal_id]

    def __contains__(self, signal_id: object) -> bool:
        return signal_id in self._owners


class OutcomeKind(StrEnum):
    DONE = "done"  # the decision was taken
    REFUSED = "refused"  # not now (paused, price drifted, no price); the signal stays pending
    INVALID = "invalid"  # the button no longer applies (unknown, decided, expired)


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    message: str


@dataclass(frozen=True)
class DeskPolicy:
    """How signals are offered and executed (from the `[bot]` settings)."""

    default_mode: ExecutionMode = ExecutionMode.MANUAL
    auto_threshold: float = 80.0
    ask_threshold: float = 60.0
    ttl_bars: int = 2
    max_price_drift_r: float = 0.25
    cooldown: timedelta = timedelta(minutes=60)
    digest_threshold: int = 4
    max_signals_per_run: int = 12
    equity: Decimal = Decimal("10000")  # the account's starting equity, in its currency
    sizing: Sizing = field(default_factory=lambda: Sizing(account_currency="USD"))
    costs: CostModel = field(default_factory=CostModel)
    trade_failed_strategies: bool = False
    protections: ProtectionConfig = field(default_factory=ProtectionConfig)
    embargo: EmbargoConfig = field(default_factory=EmbargoConfig)
    day_timezone: str = "America/New_York"
    day_rollover_hour: int = 17

    @property
    def account_currency(self) -> str:
        return self.sizing.account_currency or ""


class Advisor(Protocol):
    """What learning tells the desk: how to rank setups and the win estimate to show with a signal."""

    def rank_key(self, scored: ScoredSetup) -> tuple[float, ...]:
        """Sort key, smallest first: higher posterior expectancy, then higher quality, comes first."""
        ...

    def estimate(self, scored: ScoredSetup) -> SignalEstimate | None:
        """The estimate to store and show with this signal; None before any learning run."""
        ...

    def score(self, scored: ScoredSetup) -> float:
        """The score quality mode's thresholds compare: learned component weights where adopted, else the hand's."""
        ...


@dataclass(frozen=True)
class OfferDecision:
    signal_id: str
    symbol: str
    status: SignalStatus
    reason: str


class SignalDesk:
    """Offers, approves, rejects, expires and executes signals."""

    def __init__(
        self,
        store: BotStore,
        broker: Broker,
        notifier: Announcer,
        state: BotState,
        clock: Clock,
        instruments: Mapping[str, Instrument],
        policy: DeskPolicy,
        trade_kind: TradeKind = TradeKind.PAPER,
        news: NewsSource | None = None,
        rates: RateBook | None = None,
        calendars: Mapping[str, SessionCalendar] | None = None,
        advisor: Advisor | None = None,
        metrics: Metrics | None = None,
        systems: SystemBook | None = None,
    ) -> None:
        self.store = store
        self.systems = systems if systems is not None else SystemBook(())
        self.metrics: Metrics = metrics or NullMetrics()
        self.advisor = advisor
        self.broker = broker
        self.notifier = notifier
        self.state = state
        self.clock = clock
        self.instruments = dict(instruments)
        self.policy = policy
        self.trade_kind = trade_kind
        self.news = news
        self.rates = rates or RateBook({}, None)
        self.calendars = dict(calendars or {})
        self._unconverted: set[str] = set()
        self._in_flight = InFlight()  # signals being decided or sent now: the settlement and other presses wait
        self._news_status = ""
        self._controls: dict[tuple[str, str], PairControl] = {}
        self._returns: dict[str, np.ndarray] = {}

    async def book(self, now: datetime) -> BookView:
        """The account as the protections see it now (equity is the starting equity plus closed P&L)."""
        p = self.policy
        return await book_view(
            self.store,
            p.equity,
            now,
            timezone=p.day_timezone,
            rollover_hour=p.day_rollover_hour,
            returns=self._returns,
            to_account=self.account_pnl,
        )

    def account_pnl(self, trade: Trade) -> Decimal:
        """A closed trade's net P&L in the account currency, converted at its own exit price or a linking rate.

        USDJPY in a USD account converts exactly at the trade's exit price; other pairs at the rate book's
        latest price (the P&L of a closed cross is valued at today's rate). A trade whose rate is unknown
        counts unconverted, and the log says so once.
        """
        pnl = trade.pnl
        if pnl is None or trade.exit_price is None:
            raise ValueError(f"trade {trade.trade_id} is open; only closed trades have a P&L")
        instrument = self.instruments.get(trade.symbol)
        if instrument is None:
            return pnl
        try:
            return self.policy.sizing.to_account(instrument, pnl, trade.exit_price, self.rates.prices())
        except ValueError as exc:
            if trade.symbol not in self._unconverted:
                self._unconverted.add(trade.symbol)
                log.warning("P&L of %s trades counted unconverted: %s", trade.symbol, exc)
            return pnl

    def size(self, setup: Setup, equity: Decimal, open_trades: Sequence[Trade] = ()) -> SizedOrder | str:
        """The order size for `setup` in the account's money, its expected costs inside the risk budget, within
        the symbol's limits and the notional caps (what `open_trades` hold counts against the total), or why it
        cannot be sized. The backtester sizes with the same `Sizing` on the same levels."""
        instrument = self.instruments[setup.symbol]
        sizing, prices = self.policy.sizing, self.rates.prices()
        held = self.open_notional(open_trades)
        return sizing.size(
            instrument, setup.entry, setup.stop, equity, prices, costs=self.policy.costs, open_notional=held
        )

    def open_notional(self, trades: Sequence[Trade]) -> Decimal:
        """The notional the open paper and live positions hold, in account money at their entry prices."""
        total = Decimal(0)
        for trade in trades:
            instrument = self.instruments.get(trade.symbol)
            if instrument is None or trade.kind not in (TradeKind.PAPER, TradeKind.LIVE):
                continue
            try:
                total += self.policy.sizing.notional(instrument, trade.quantity, trade.entry_price, self.rates.prices())
            except ValueError as exc:
                log.warning("open notional of %s not counted: %s", trade.trade_id, exc)
        return total

    def exposure_block(self, record: SignalRecord, book: BookView) -> str | None:
        """Why the signal's size may not be added to the book now (no equity, or over the total notional cap)."""
        if book.equity <= 0:
            return f"{NO_EQUITY}: realised equity is {book.equity:,.2f}"
        if record.quantity is None:
            return None
        setup = record.scored.setup
        try:
            adding = self.policy.sizing.notional(
                self.instruments[setup.symbol], record.quantity, setup.entry, self.rates.prices()
            )
        except ValueError as exc:
            return f"{CANNOT_SIZE} {self.policy.sizing.account_currency}: {exc}"
        cap = self.policy.sizing.exposure.max_total_leverage
        total = self.open_notional(book.open_trades) + adding
        if total > book.equity * cap:
            return (
                f"all open positions would hold {total:,.2f} ({total / book.equity:.1f}x equity), "
                f"above the {cap:g}x cap"
            )
        return None

    def rate_notes(self) -> list[str]:
        """What the trader should know about conversion rates: the ones missing, and which symbols they stop."""
        book, p = self.rates, self.policy
        missing = set(book.missing())
        return [
            f"no {pair} rate: {', '.join(sorted(s for s, x in book.needs.items() if x == pair))} cannot be sized "
            f"in {p.account_currency}; set [bot.fx_rates]"
            for pair in sorted(missing)
        ]

    def split(self, request: OrderRequest) -> bool:
        """Whether the order goes out as several child orders (above the symbol's freeze quantity)."""
        limits = self.policy.sizing.limits.get(request.symbol)
        freeze = limits.freeze_quantity if limits is not None else None
        lot = self.instruments[request.symbol].lot_size
        return len(split_children(request.quantity, freeze, lot)) > 1

    def session_block(self, setup: Setup, now: datetime) -> str | None:
        """Why the market's hours refuse an entry on `setup` now (close near, past the flat time), or None."""
        calendar = self.calendars.get(setup.symbol)
        return None if calendar is None else calendar.entry_block(now)

    def blocks(self, view: BookView, setup: Setup, now: datetime) -> list[Block]:
        """Every protection that stops a new entry on `setup` now."""
        local_hour = now.astimezone(ZoneInfo(self.instruments[setup.symbol].timezone)).hour
        candidate = Candidate(setup.symbol, setup.side, setup.strategy, now, local_hour)
        return check_entry(self.policy.protections, view, candidate)

    async def news_block(self, setup: Setup, now: datetime) -> str | None:
        """Why news blocks an entry on `setup` now, or None; an unavailable calendar is told to the chat once."""
        if self.news is None:
            return None
        result = await self.news.calendar(now)
        if result.calendar is None:
            if result.status != self._news_status:
                self._news_status = result.status
                await self.notifier.announce(Notice(result.status))
            if self.policy.embargo.fallback is FeedFallback.BLOCK:
                return f"{result.status}; entries blocked until it is back"
            return None
        self._news_status = ""
        block = result.calendar.embargo(self.instruments[setup.symbol], now, self.policy.embargo)
        return None if block is None else block.reason

    async def offer(self, setups: Sequence[ScoredSetup], bars: Mapping[str, Bars] | None = None) -> list[OfferDecision]:
        """Decide for each setup new to the store: ask the trader, execute (by mode), or drop with a reason.

        `bars` (the run's bars by symbol) feed the correlation guard; without them it is skipped.
        """
        now = self.clock.now()
        mode = await self.state.mode()
        if bars is not None:
            self._returns = close_returns(bars, self.policy.protections.correlation_lookback)
            self.rates.update_from_bars(bars)
        await self.rates.refresh(now)
        await self.systems.refresh(self.store)
        self._controls = await self.store.pair_controls()
        ranked = sorted(setups, key=self._rank)
        decisions: list[OfferDecision] = []
        to_ask: list[SignalRecord] = []
        executed = 0
        view = await self.book(now)
        for scored in ranked:
            record = await self.store.signal(scored.setup.signal_id)
            if record is None or record.status is not SignalStatus.NEW:
                continue  # seen by an earlier run: the same setup is never signalled twice
            token = self._in_flight.claim(record.signal_id)  # from the commit on: `_place` sends it, not the settlement
            if token is None:
                continue
            try:
                decided = await self._offer_one(record, mode, now, len(to_ask) + executed, view)
                if decided is None:
                    continue
                decisions.append(decided[0])
                fresh = decided[1]
                if decided[0].status is SignalStatus.PENDING:
                    to_ask.append(fresh)
                elif decided[0].status is SignalStatus.APPROVED:  # placed now: the next setup's checks see it
                    executed += 1
                    with log_context(signal_id=fresh.signal_id):
                        await self._place(fresh, order_request(fresh), None, None)
                    view = await self.book(now)
            finally:
                self._in_flight.release(record.signal_id, token)
        await self._send_offers(to_ask)
        return decisions

    async def _offer_one(
        self, record: SignalRecord, mode: ExecutionMode, now: datetime, offered: int, view: BookView
    ) -> tuple[OfferDecision, SignalRecord] | None:
        """Decide on one new signal and commit the decision; None when another task took it first.

        An execution commits only if nothing its checks read changed meanwhile (the decision stamp), else the
        checks run again on the new book.
        """
        setup = record.scored.setup
        expires_at = setup.bar_time + setup.timeframe.delta * (1 + self.policy.ttl_bars)
        validation = self.systems.validation(setup.strategy, setup.symbol, now)
        await self.store.set_signal_validation(record.signal_id, validation)
        for _ in range(COMMIT_ATTEMPTS):
            stamp = await self.store.decision_stamp(DECISION_STATE_KEYS)
            paused = await self.state.paused()
            if expires_at <= now:  # e.g. a session's last bar seen after the close: too late to act on
                status, reason, sized = SignalStatus.DROPPED, "expired before it could be offered", None
            else:
                status, reason, sized = await self._decide(record, validation, mode, paused, now, offered, view)
            quantity = None if sized is None else sized.quantity
            if sized is not None:
                summary = sized.summary(self.policy.sizing.currency(self.instruments[setup.symbol]))
                await self.store.set_signal_sizing(record.signal_id, summary)
            try:
                if status is SignalStatus.APPROVED and quantity is not None:
                    request = order_request(record, quantity)
                    guard = (stamp, DECISION_STATE_KEYS)
                    args = (record.signal_id, SignalStatus.NEW, request, now)
                    moved = await self.store.approve_order(*args, reason=reason, expires_at=expires_at, stamp=guard)
                else:
                    moved = await self.store.transition(
                        record.signal_id,
                        SignalStatus.NEW,
                        status,
                        now,
                        reason=reason,
                        quantity=quantity,
                        expires_at=expires_at,
                    )
            except DecisionChanged:
                view = await self.book(now)
                self._controls = await self.store.pair_controls()
                continue
            break
        else:
            log.warning("signal %s: the book kept changing while it was decided; left for the next run", setup.symbol)
            return None
        if not moved:
            return None
        log.info("signal %s %s %s: %s (%s)", record.signal_id, setup.symbol, setup.strategy, status.value, reason)
        fresh = await self.store.signal(record.signal_id)
        if fresh is None:
            return None
        offered_now = status in (SignalStatus.PENDING, SignalStatus.APPROVED)
        if offered_now and self.advisor is not None and (estimate := self.advisor.estimate(fresh.scored)):
            await self.store.save_estimate(replace(estimate, signal_id=fresh.signal_id))
        return OfferDecision(record.signal_id, setup.symbol, status, reason), fresh

    def _rank(self, scored: ScoredSetup) -> tuple[float | str, ...]:
        """Learning's order when it has run (posterior expectancy, then quality), else quality; ties by name."""
        tail = (scored.setup.symbol, scored.setup.strategy)
        if self.advisor is not None:
            return (*self.advisor.rank_key(scored), *tail)
        return (-scored.score.total, *tail)

    async def _decide(
        self,
        record: SignalRecord,
        validation: PairValidation,
        mode: ExecutionMode,
        paused: bool,
        now: datetime,
        offered: int,
        view: BookView,
    ) -> tuple[SignalStatus, str, SizedOrder | None]:
        setup = record.scored.setup
        control = self._controls.get((setup.strategy, setup.symbol))
        why = "" if control is None else f"{control.source.value} {control.at:%Y-%m-%d}: {control.reason}"
        if control is not None and control.state is PairState.DISABLED and not paused:
            return SignalStatus.DROPPED, f"{setup.strategy} on {setup.symbol} disabled by {why} (/enable)", None
        status, reason, sized = await self._decide_by_mode(record, validation, mode, paused, now, offered, view)
        if status is SignalStatus.APPROVED and not validation.validated:  # only the validated system acts alone
            return SignalStatus.PENDING, f"{validation.status.value}, so asking instead of executing", sized
        if control is not None and control.state is PairState.ASK_ONLY and status is SignalStatus.APPROVED:
            return SignalStatus.PENDING, f"ask-only ({why}): asking", sized  # the trader decides, not the mode
        return status, reason, sized

    async def _decide_by_mode(
        self,
        record: SignalRecord,
        validation: PairValidation,
        mode: ExecutionMode,
        paused: bool,
        now: datetime,
        offered: int,
        view: BookView,
    ) -> tuple[SignalStatus, str, SizedOrder | None]:
        setup = record.scored.setup
        score = record.scored.score.total if self.advisor is None else self.advisor.score(record.scored)
        p = self.policy
        if paused:
            return SignalStatus.DROPPED, "bot paused (/resume)", None
        if validation.status is ValidationStatus.FAILED:
            why = f"failed pre-deploy validation v{validation.version}: {validation.reason}"
            if not p.trade_failed_strategies:
                return SignalStatus.DROPPED, why, None
            log.warning("OVERRIDE: offering %s on %s although it %s", setup.strategy, setup.symbol, why)
        if (session := self.session_block(setup, now)) is not None:
            return SignalStatus.DROPPED, session, None
        blocked = self.blocks(view, setup, now)
        if blocked:
            return SignalStatus.DROPPED, "protection: " + "; ".join(b.reason for b in blocked), None
        if (news := await self.news_block(setup, now)) is not None:
            return SignalStatus.DROPPED, news, None
        last = await self.store.last_offered_at(setup.symbol)
        if last is not None and now - last < p.cooldown:
            return (
                SignalStatus.DROPPED,
                f"cooldown: {setup.symbol} was signalled {human_duration(now - last)} ago",
                None,
            )
        sized = self.size(setup, view.equity, view.open_trades)
        if isinstance(sized, str):
            return SignalStatus.DROPPED, sized, None
        if sized.quantity <= 0:
            return SignalStatus.DROPPED, "; ".join(sized.notes), None
        if offered >= p.max_signals_per_run:
            return SignalStatus.DROPPED, f"more than {p.max_signals_per_run} signals in one run", None
        if mode is ExecutionMode.AUTO:
            return SignalStatus.APPROVED, "auto mode", sized
        if mode is ExecutionMode.QUALITY:
            if score >= p.auto_threshold:
                return SignalStatus.APPROVED, f"quality {score:.0f} >= auto threshold {p.auto_threshold:g}", sized
            if score < p.ask_threshold:
                return SignalStatus.DROPPED, f"quality {score:.0f} below ask threshold {p.ask_threshold:g}", None
            return SignalStatus.PENDING, f"quality {score:.0f}: asking", sized
        return SignalStatus.PENDING, "manual mode: asking", sized

    async def _send_offers(self, records: Sequence[SignalRecord]) -> None:
        if len(records) <= self.policy.digest_threshold:
            for record in records:
                await self.notifier.signals([record])
        else:
            await self.notifier.signals(records)

    async def approve(self, signal_id: str, user_id: int) -> Outcome:
        """Approve a pending signal after re-checking it at click time, then execute it once.

        Every check holds at the commit that creates the order intent: the checks run on a decision stamp read
        first, and the commit refuses when anything it covers changed meanwhile (a pause, a fill, a disabled
        pair, a new baseline), so the checks run again on the new state. One press at a time owns the signal;
        a press while another is in flight changes nothing.
        """
        token = self._in_flight.claim(signal_id)
        if token is None:
            return Outcome(OutcomeKind.INVALID, "This signal is being approved already.")
        try:
            for _ in range(COMMIT_ATTEMPTS):
                stamp = await self.store.decision_stamp(DECISION_STATE_KEYS)
                checked = await self._click_checks(signal_id)
                if isinstance(checked, Outcome):
                    return checked
                record, request = checked
                now = self.clock.now()
                try:
                    committed = await self.store.approve_order(
                        signal_id, SignalStatus.PENDING, request, now, by=user_id, stamp=(stamp, DECISION_STATE_KEYS)
                    )
                except DecisionChanged:
                    log.info("approval of %s: the book changed during its checks; checking again", signal_id)
                    continue
                if not committed:
                    return Outcome(OutcomeKind.INVALID, "This button is no longer valid.")
                latency = (now - record.offered_at).total_seconds() if record.offered_at else None
                if latency is not None:
                    self.metrics.record(MetricName.APPROVAL_LATENCY, latency, Unit.SECONDS)
                return await self._place(record, request, user_id, latency)
            return Outcome(OutcomeKind.REFUSED, "The account kept changing while this was checked; press again.")
        finally:
            self._in_flight.release(signal_id, token)

    async def _click_checks(self, signal_id: str) -> tuple[SignalRecord, OrderRequest] | Outcome:
        """The pending signal and its order if every click-time check passes now, else what to answer."""
        record = await self.store.signal(signal_id)
        if record is None or record.status is not SignalStatus.PENDING:
            return Outcome(OutcomeKind.INVALID, "This button is no longer valid.")
        now = self.clock.now()
        if record.expires_at is not None and now >= record.expires_at:
            await self._expire(record, "expired before approval")
            return Outcome(OutcomeKind.INVALID, "This signal has expired.")
        if await self.state.paused():
            return Outcome(OutcomeKind.REFUSED, "The bot is paused; /resume first.")
        setup = record.scored.setup
        control = (await self.store.pair_controls()).get((setup.strategy, setup.symbol))
        if control is not None and control.state is PairState.DISABLED:  # turned off since the offer
            why = f"{control.source.value}: {control.reason}"
            return Outcome(
                OutcomeKind.REFUSED, f"Refused: {setup.strategy} on {setup.symbol} is disabled ({why}); /enable first."
            )
        validation = (await self.systems.refresh(self.store)).validation(setup.strategy, setup.symbol, now)
        offered = record.validation.fingerprint if record.validation is not None else ""
        if offered and validation.fingerprint != offered:  # the config changed across a restart: not what trades
            changed = f"{setup.strategy} on {setup.symbol} trades other parameters or rules since this was offered"
            await self._expire(record, changed)
            return Outcome(OutcomeKind.INVALID, f"Refused: {changed}; the signal has expired.")
        if validation.status is ValidationStatus.FAILED and not self.policy.trade_failed_strategies:
            failed = f"{setup.strategy} on {setup.symbol} failed pre-deploy validation v{validation.version}"
            return Outcome(OutcomeKind.REFUSED, f"Refused: {failed} since this was offered: {validation.reason}.")
        if (session := self.session_block(setup, now)) is not None:
            return Outcome(OutcomeKind.REFUSED, f"Refused: {session}.")
        book = await self.book(now)
        blocked = self.blocks(book, setup, now)
        if blocked:  # the book changed since the offer (a loss, another position): the entry is not taken now
            return Outcome(OutcomeKind.REFUSED, "Refused by protection: " + "; ".join(b.reason for b in blocked))
        if (over := self.exposure_block(record, book)) is not None:
            return Outcome(OutcomeKind.REFUSED, f"Refused: {over}.")
        if (news := await self.news_block(setup, now)) is not None:
            return Outcome(OutcomeKind.REFUSED, f"Refused: {news}.")
        instrument = self.instruments[setup.symbol]
        try:
            quote = await self.broker.quote(instrument)
        except BrokerError as exc:
            return Outcome(OutcomeKind.REFUSED, f"No fresh price for {setup.symbol}: {exc}")
        price = quote.entry_price(setup.side)
        sign = setup.side.sign
        if sign * (price - setup.stop) <= 0 or sign * (price - setup.target) >= 0:
            level = "stop" if sign * (price - setup.stop) <= 0 else "target"
            reason = f"price {price} already crossed the {level} {getattr(setup, level)}"
            await self._expire(record, reason)
            return Outcome(OutcomeKind.INVALID, f"Refused: {reason}.")
        drift = abs(price - setup.entry) / setup.risk
        if drift > Decimal(str(self.policy.max_price_drift_r)):
            limit = self.policy.max_price_drift_r
            moved = f"price moved from {setup.entry} to {price} ({drift:.2f}R > {limit:g}R)"
            return Outcome(OutcomeKind.REFUSED, f"Refused: {moved}.")
        if record.quantity is None or record.quantity <= 0:
            return Outcome(OutcomeKind.REFUSED, "No position size for this signal.")
        if record.expires_at is not None and self.clock.now() >= record.expires_at:  # the checks took that long
            await self._expire(record, "expired before approval")
            return Outcome(OutcomeKind.INVALID, "This signal has expired.")
        return record, order_request(record)

    async def reject(self, signal_id: str, user_id: int) -> Outcome:
        """Reject a pending signal and start tracking what it would have made."""
        now = self.clock.now()
        if not await self.store.transition(signal_id, SignalStatus.PENDING, SignalStatus.REJECTED, now, by=user_id):
            return Outcome(OutcomeKind.INVALID, "This button is no longer valid.")
        record = await self.store.signal(signal_id)
        if record is not None:
            await self._shadow(record)
        await self.notifier.refresh(signal_id)
        return Outcome(OutcomeKind.DONE, "Rejected.")

    async def expire_due(self) -> int:
        """Expire every pending signal whose time is up; return how many."""
        due = await self.store.signals_with_status(SignalStatus.PENDING, expiring_by=self.clock.now())
        count = 0
        for record in due:
            count += await self._expire(record, "no decision before expiry")
        return count

    async def _expire(self, record: SignalRecord, reason: str) -> bool:
        moved = await self.store.transition(
            record.signal_id, SignalStatus.PENDING, SignalStatus.EXPIRED, self.clock.now(), reason=reason
        )
        if moved:
            fresh = await self.store.signal(record.signal_id)
            await self._shadow(fresh or record)
            await self.notifier.refresh(record.signal_id)
        return moved

    async def _place(
        self, record: SignalRecord, request: OrderRequest, approver: int | None, latency: float | None
    ) -> Outcome:
        """Send a submitted order and record its fill; no answer leaves it unconfirmed, a refusal fails it.

        The broker is idempotent by client order id, and an unconfirmed order is settled by `settle_unconfirmed`
        (asked for by its id before anything is sent again).
        """
        setup = record.scored.setup
        instrument = self.instruments[setup.symbol]
        try:
            fill = await self.broker.place_order(instrument, request)
        except BrokerError as exc:
            if exc.kind is BrokerErrorKind.PENDING:  # accepted; its fill is settled by its client id
                await self.notifier.announce(
                    Notice(f"{setup.symbol} order {record.signal_id} placed: {exc}", Tone.WAITING)
                )
                return Outcome(OutcomeKind.DONE, f"Order placed: {exc}.")
            if exc.transient:  # it may have reached the broker: settled later by its client id, never re-sent blind
                await self.notifier.announce(
                    Notice(
                        f"{setup.symbol} order {record.signal_id} is unconfirmed: {exc}. "
                        "It is checked with the broker every minute and never sent twice."
                    )
                )
                return Outcome(OutcomeKind.REFUSED, f"Order unconfirmed: {exc}")
            await self._fail(record.signal_id, SignalStatus.ORDER_SUBMITTED, f"order refused: {exc}")
            await self.notifier.announce(Notice(f"{setup.symbol} order for {record.signal_id} failed: {exc}"))
            return Outcome(OutcomeKind.REFUSED, f"Order failed: {exc}")
        return await self._open_trade(record, fill, approver, latency)

    async def _open_trade(
        self, record: SignalRecord, fill: Fill, approver: int | None, latency: float | None
    ) -> Outcome:
        """Record the fill of a submitted order as an open trade (or fail it when it filled through the stop)."""
        setup = record.scored.setup
        instrument = self.instruments[setup.symbol]
        if setup.side.sign * (fill.price - setup.stop) <= 0:
            reason = f"filled at {fill.price}, already through the stop {setup.stop}"
            await self._fail(record.signal_id, SignalStatus.ORDER_SUBMITTED, reason)
            await self.notifier.announce(Notice(f"{setup.symbol} {record.signal_id}: {reason}; no position was opened"))
            return Outcome(OutcomeKind.REFUSED, f"Order not opened: {reason}.")
        trade = Trade(
            trade_id=record.signal_id,
            signal_id=record.signal_id,
            kind=self.trade_kind,
            strategy=setup.strategy,
            symbol=setup.symbol,
            side=setup.side,
            quantity=fill.quantity,
            contract_size=instrument.contract_size,
            entry_time=fill.filled_at,
            entry_price=fill.price,
            stop=setup.stop,
            target=setup.target,
            entry_fees=fill.fees,
            approver_id=approver,
            approval_latency_s=latency,
        )
        if not await self.store.record_fill(fill, trade):
            return Outcome(OutcomeKind.INVALID, "This signal was already filled.")
        partial = (
            f" of {record.quantity} asked" if record.quantity is not None and fill.quantity < record.quantity else ""
        )
        await self.notifier.refresh(record.signal_id)
        note = f" · partial: {fill.quantity}{partial}" if partial else ""
        await self.notifier.announce(PositionOpened(trade, instrument, note))
        return Outcome(OutcomeKind.DONE, f"Filled {fill.quantity}{partial} @ {fill.price}.")

    async def reconcile(self) -> int:
        """After a restart, settle signals a crash left half-way; return how many were touched.

        NEW (found, never offered) are dropped; APPROVED without an order fail (the trader approved a price
        that is gone); ORDER_SUBMITTED are settled with the broker by client order id (`settle_unconfirmed`).
        """
        now = self.clock.now()
        touched = 0
        for record in await self.store.signals_with_status(SignalStatus.NEW):
            reason = "not offered before the bot restarted"
            touched += await self.store.transition(
                record.signal_id, SignalStatus.NEW, SignalStatus.DROPPED, now, reason=reason
            )
        for record in await self.store.signals_with_status(SignalStatus.APPROVED):
            await self._fail(record.signal_id, SignalStatus.APPROVED, "the bot restarted before the order was sent")
            touched += 1
        touched += await self.settle_unconfirmed()
        return touched

    async def settle_unconfirmed(self) -> int:
        """Settle every order intent the broker has not acknowledged (none being sent right now); return how many."""
        touched = 0
        for record in await self.store.signals_with_status(SignalStatus.ORDER_SUBMITTED):
            token = self._in_flight.claim(record.signal_id)
            if token is None:  # being sent right now by its approval
                continue
            try:
                touched += 1
                if record.quantity is None:
                    await self._fail(record.signal_id, SignalStatus.ORDER_SUBMITTED, "no position size")
                    continue
                await self._settle_submitted(record)
            finally:
                self._in_flight.release(record.signal_id, token)
        return touched

    async def _settle_submitted(self, record: SignalRecord) -> None:
        """Settle an order intent a restart found unacknowledged: ask the broker by client order id first.

        Found filled: record that fill. Found rejected or cancelled: fail the signal with the broker's words.
        Found still pending: leave it for the next reconciliation. Not found: the order never reached the
        broker, so it is sent now, once. A broker that cannot answer leaves the intent for the next start.
        """
        signal_id = record.signal_id
        request = order_request(record)
        if self.split(request):  # each child already at the broker returns its fill; only missing ones are sent
            await self._place(record, request, record.decided_by, None)
            return
        try:
            status = await self.broker.order_status(signal_id)
        except BrokerError as exc:
            log.warning("reconcile %s: broker did not answer (%s); will retry on the next start", signal_id, exc)
            await self.notifier.announce(Notice(f"order {signal_id} is unconfirmed: the broker did not answer ({exc})"))
            return
        if status is None:
            await self._place(record, request, record.decided_by, None)
            return
        try:
            fill = fill_from_status(status, request)
        except BrokerError as exc:
            if exc.transient:  # still pending at the broker: settled on a later start
                log.info("reconcile %s: %s", signal_id, exc)
                return
            await self._fail(signal_id, SignalStatus.ORDER_SUBMITTED, str(exc))
            await self.notifier.announce(Notice(f"{request.symbol} order {signal_id} was not filled: {exc}"))
            return
        await self._open_trade(record, fill, record.decided_by, None)

    async def _fail(self, signal_id: str, expected: SignalStatus, reason: str) -> None:
        if await self.store.transition(signal_id, expected, SignalStatus.FAILED, self.clock.now(), reason=reason):
            self.metrics.record(MetricName.ORDERS_FAILED, 1)
        await self.notifier.refresh(signal_id)

    async def _shadow(self, record: SignalRecord) -> None:
        """Track the hypothetical trade of a signal nobody took, entered at its price when it was signalled."""
        setup = record.scored.setup
        instrument = self.instruments.get(setup.symbol)
        if instrument is None:
            return
        quantity = record.quantity
        if quantity is None:
            sized = self.size(setup, self.policy.equity)
            if isinstance(sized, str) or sized.quantity <= 0:
                return
            quantity = sized.quantity
        entered = setup.bar_time + setup.timeframe.delta
        fees = commission(setup.entry, quantity, instrument, self.policy.costs)
        await self.store.open_shadow_trade(
            Trade(
                trade_id=f"{record.signal_id}-shadow",
                signal_id=record.signal_id,
                kind=TradeKind.SHADOW,
                strategy=setup.strategy,
                symbol=setup.symbol,
                side=setup.side,
                quantity=quantity,
                contract_size=instrument.contract_size,
                entry_time=entered,
                entry_price=setup.entry,
                stop=setup.stop,
                target=setup.target,
                entry_fees=fees,
            )
        )
