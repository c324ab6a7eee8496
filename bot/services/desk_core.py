"""The signal desk's core: its policy and outcomes, sizing and the checks both offers and clicks use, and
placing, recording and failing orders."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Final, Protocol
from zoneinfo import ZoneInfo

import numpy as np

from bot.ops.metrics import MetricName, Metrics, NullMetrics
from bot.services.book import ClosedBooks, book_view
from bot.services.charts import SignalCharts
from bot.services.events import Announcer, Notice, PositionOpened, Tone
from bot.services.rates import RateBook
from bot.services.state import PAUSED_KEY, BotState
from bot.services.systems import SystemBook
from data.market.news_feed import NewsSource
from engine.calendars import SessionCalendar
from engine.controls import PairControl
from engine.costs import CostModel, commission
from engine.domain import Instrument, ScoredSetup, Setup, SignalStatus
from engine.exits import ExitPlan
from engine.news import EmbargoConfig, FeedFallback
from engine.ports import (
    BotStore,
    Broker,
    BrokerError,
    BrokerErrorKind,
    Clock,
    SignalEstimate,
    SignalRecord,
)
from engine.protections import Block, BookView, Candidate, ProtectionConfig, check_entry
from engine.protections import alerts as protection_alerts
from engine.protections import status as protection_status
from engine.routing import Account, Market, market_of
from engine.sizing import CANNOT_SIZE, NO_EQUITY, SizedOrder, Sizing, split_children
from engine.trading import ExecutionMode, Fill, OrderRequest, Trade, TradeKind, trade_from_setup

log = logging.getLogger(__name__)

PAUSES_KEY = "announced_pauses"  # the entry pauses the chat was told of, so each is told once


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
    accounts: Mapping[Market, Account] = field(default_factory=dict)  # routed broker accounts; others: this one
    live_markets: frozenset[Market] = frozenset()  # markets whose orders a real broker fills: their trades are LIVE
    exit_plans: Mapping[str, ExitPlan] = field(default_factory=dict)  # trade management by strategy

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


class DeskCore:
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
        charts: SignalCharts | None = None,
    ) -> None:
        self.store = store
        self.charts = charts  # draws each offered signal's chart; None: signals go as text
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
        self.closed_books = ClosedBooks(store)  # closed trades re-read only when one has closed since

    async def book(self, now: datetime) -> BookView:
        """The bot's overall book as the protections see it now (equity is the starting equity plus closed P&L).

        A routed account's trade whose P&L cannot be converted into the bot's currency counts 0 in the overall
        money figures (its own account's limits hold it), never its raw amount in another currency."""
        p = self.policy
        closed = await self.closed_books.fold(
            (None, p.equity), p.equity, self._overall_pnl, rates=self._rate_inputs(p.sizing)
        )
        return await book_view(
            self.store,
            p.equity,
            now,
            timezone=p.day_timezone,
            rollover_hour=p.day_rollover_hour,
            returns=self._returns,
            closed=closed,
            reach=p.protections.symbol_cooldown,
            sent=await self.orders_sent(now),
        )

    async def warm(self, now: datetime) -> None:
        """Fold the closed books (the overall one and each routed account's) before the first click needs them: on a
        long history that is tens of milliseconds a click would otherwise wait."""
        await self.book(now)
        for account in self.policy.accounts.values():
            await self.account_book(account, now)

    async def orders_sent(self, now: datetime) -> list[Trade]:
        """The orders committed but not filled yet (being sent, or working at the broker) as the positions they
        become: the protections and the exposure count them, so two approvals checked at once cannot both pass a
        one-position limit while the first one's order is still on its way. Read before the open trades (a fill
        in between is then seen twice and counted once, never missed)."""
        sent = []
        for record in await self.store.signals_with_status(SignalStatus.ORDER_SUBMITTED):
            setup = record.scored.setup
            instrument = self.instruments.get(setup.symbol)
            if instrument is None or record.quantity is None or record.quantity <= 0:
                continue
            quantity, size, entered = record.quantity, instrument.contract_size, record.decided_at or now
            sent.append(trade_from_setup(setup, TradeKind.PAPER, quantity, size, entered, setup.entry))
        return sent

    def _rate_inputs(self, sizing: Sizing) -> Callable[[str], Hashable]:
        """What converting a closed trade of a symbol with `sizing` reads from the rate book now (a closed fold
        converts a symbol's trades again only when that moved)."""

        def inputs(symbol: str) -> Hashable:
            instrument = self.instruments.get(symbol)
            return () if instrument is None else sizing.rate_inputs(instrument, self.rates.prices())

        return inputs

    def _overall_pnl(self, trade: Trade) -> Decimal:
        account = self.account_of(trade.symbol)
        if account is None or account.currency == self.policy.account_currency:
            return self.account_pnl(trade)
        instrument, pnl = self.instruments[trade.symbol], trade.pnl
        if pnl is None or trade.exit_price is None:
            raise ValueError(f"trade {trade.trade_id} is open; only closed trades have a P&L")
        try:
            return self.policy.sizing.to_account(instrument, pnl, trade.exit_price, self.rates.prices())
        except ValueError:
            if trade.symbol not in self._unconverted:
                self._unconverted.add(trade.symbol)
                log.warning(
                    "%s P&L is kept in the %s account only (no rate into %s)",
                    trade.symbol,
                    account.name,
                    self.policy.account_currency,
                )
            return Decimal(0)

    def account_of(self, symbol: str) -> Account | None:
        """The routed broker account `symbol` trades in, or None for the bot's default account."""
        instrument = self.instruments.get(symbol)
        return None if instrument is None else self.policy.accounts.get(market_of(instrument))

    async def account_book(self, account: Account, now: datetime) -> BookView:
        """One routed account's book: its trades only, its starting equity, P&L in its currency."""
        p = self.policy
        symbols = frozenset(s for s in self.instruments if self.account_of(s) is account)
        closed = await self.closed_books.fold(
            (account.name, account.equity),
            account.equity,
            lambda trade: self.account_pnl(trade, account.sizing),
            symbols,
            rates=self._rate_inputs(account.sizing),
        )
        return await book_view(
            self.store,
            account.equity,
            now,
            timezone=p.day_timezone,
            rollover_hour=p.day_rollover_hour,
            returns=self._returns,
            symbols=symbols,
            closed=closed,
            reach=account.protections.symbol_cooldown,
            sent=await self.orders_sent(now),
        )

    async def sizing_book(self, setup: Setup, view: BookView, now: datetime) -> tuple[BookView, Sizing]:
        """The book and sizing an entry on `setup` is sized with: its routed account's, or the default ones."""
        account = self.account_of(setup.symbol)
        if account is None:
            return view, self.policy.sizing
        return await self.account_book(account, now), account.sizing

    async def account_blocks(self, setup: Setup, now: datetime) -> list[Block]:
        """The routed account's own protections on an entry (the overall ones are `blocks`)."""
        account = self.account_of(setup.symbol)
        if account is None:
            return []
        view = await self.account_book(account, now)
        local_hour = now.astimezone(ZoneInfo(self.instruments[setup.symbol].timezone)).hour
        candidate = Candidate(setup.symbol, setup.side, setup.strategy, now, local_hour)
        return [
            dataclasses.replace(b, reason=f"{account.name} account: {b.reason}")
            for b in check_entry(account.protections, view, candidate)
        ]

    def money_now(self) -> Callable[..., Decimal]:
        """`account_pnl` at the conversion prices of now, copied: safe to call from another thread while the event
        loop updates the rate book."""
        prices = self.rates.prices()

        def money(trade: Trade, sizing: Sizing | None = None) -> Decimal:
            return self.account_pnl(trade, sizing, prices)

        return money

    def account_pnl(
        self, trade: Trade, sizing: Sizing | None = None, prices: Mapping[str, Decimal] | None = None
    ) -> Decimal:
        """A closed trade's net P&L in the account currency, converted at its own exit price or a linking rate.

        USDJPY in a USD account converts exactly at the trade's exit price; other pairs at the rate book's
        latest price, or at `prices` (a copy of them taken before, for a computation in another thread): the P&L
        of a closed cross is valued at today's rate. A trade whose rate is unknown counts unconverted, and the log
        says so once.
        """
        pnl = trade.pnl
        if pnl is None or trade.exit_price is None:
            raise ValueError(f"trade {trade.trade_id} is open; only closed trades have a P&L")
        instrument = self.instruments.get(trade.symbol)
        if instrument is None:
            return pnl
        try:
            rates = self.rates.prices() if prices is None else prices
            return (sizing or self.policy.sizing).to_account(instrument, pnl, trade.exit_price, rates)
        except ValueError as exc:
            if trade.symbol not in self._unconverted:
                self._unconverted.add(trade.symbol)
                log.warning("P&L of %s trades counted unconverted: %s", trade.symbol, exc)
            return pnl

    def size(
        self, setup: Setup, equity: Decimal, open_trades: Sequence[Trade] = (), sizing: Sizing | None = None
    ) -> SizedOrder | str:
        """The order size for `setup` in the account's money, its expected costs inside the risk budget, within
        the symbol's limits and the notional caps (what `open_trades` hold counts against the total), or why it
        cannot be sized. The backtester sizes with the same `Sizing` on the same levels. `sizing` is the routed
        account's (default: the bot's)."""
        instrument = self.instruments[setup.symbol]
        sizing, prices = sizing or self.policy.sizing, self.rates.prices()
        held = self.open_notional(open_trades, sizing)
        return sizing.size(
            instrument, setup.entry, setup.stop, equity, prices, costs=self.policy.costs, open_notional=held
        )

    def open_notional(self, trades: Sequence[Trade], sizing: Sizing | None = None) -> Decimal:
        """The notional the open paper and live positions hold, in account money at their entry prices."""
        sizing = sizing or self.policy.sizing
        total = Decimal(0)
        for trade in trades:
            instrument = self.instruments.get(trade.symbol)
            if instrument is None or trade.kind not in (TradeKind.PAPER, TradeKind.LIVE):
                continue
            try:
                total += sizing.notional(instrument, trade.quantity, trade.entry_price, self.rates.prices())
            except ValueError as exc:
                log.warning("open notional of %s not counted: %s", trade.trade_id, exc)
        return total

    def exposure_block(self, record: SignalRecord, book: BookView, sizing: Sizing | None = None) -> str | None:
        """Why the signal's size may not be added to the book now (no equity, or over the total notional cap);
        `book` and `sizing` are the routed account's when it has one."""
        sizing = sizing or self.policy.sizing
        if book.equity <= 0:
            return f"{NO_EQUITY}: realised equity is {book.equity:,.2f}"
        if record.quantity is None:
            return None
        setup = record.scored.setup
        try:
            adding = sizing.notional(self.instruments[setup.symbol], record.quantity, setup.entry, self.rates.prices())
        except ValueError as exc:
            return f"{CANNOT_SIZE} {sizing.account_currency}: {exc}"
        cap = sizing.exposure.max_total_leverage
        total = self.open_notional(book.open_trades, sizing) + adding
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

    def management_block(self, setup: Setup) -> str | None:
        """Why a live broker cannot trade `setup` as it was validated (partial targets it would not send), or None."""
        plan = self.policy.exit_plans.get(setup.strategy)
        instrument = self.instruments.get(setup.symbol)
        if plan is None or not plan.partials or instrument is None:
            return None
        if market_of(instrument) not in self.policy.live_markets:
            return None
        return (
            f"{setup.strategy} takes partial targets, which the bot does not send to a live broker yet: a live "
            "trade would not be the validated system (remove [strategies.*.exits] partials, or trade it on paper)"
        )

    def session_block(self, setup: Setup, now: datetime) -> str | None:
        """Why the market's hours refuse an entry on `setup` now (close near, past the flat time), or None."""
        calendar = self.calendars.get(setup.symbol)
        return None if calendar is None else calendar.entry_block(now)

    async def announce_pauses(self) -> None:
        """Tell the chat once when an entry pause (daily loss, loss streak, drawdown) starts and once when it lifts;
        what was told is kept, so a restart does not tell it again."""
        now = self.clock.now()
        view = await self.book(now)
        active = {b.kind.value: b for b in protection_status(self.policy.protections, view, now) if b.pauses}
        told = set(json.loads(await self.store.get_state(PAUSES_KEY) or "[]"))
        started, lifted = sorted(set(active) - told), sorted(told - set(active))
        if not started and not lifted:
            return
        await self.store.set_state(PAUSES_KEY, json.dumps(sorted(active)))
        for kind in started:
            await self.notifier.announce(Notice(f"entries paused: {active[kind].reason}", Tone.WARNING))
        for kind in lifted:
            await self.notifier.announce(
                Notice(f"entries allowed again: the {kind.replace('_', ' ')} pause lifted", Tone.DONE)
            )

    def active_protections(self, view: BookView, now: datetime) -> list[str]:
        """Every protection blocking entries now and every alert (a drawdown), as /status and the summary show."""
        config = self.policy.protections
        return [b.reason for b in (*protection_status(config, view, now), *protection_alerts(config, view))]

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
        live = market_of(instrument) in self.policy.live_markets
        trade = trade_from_setup(
            setup,
            TradeKind.LIVE if live else self.trade_kind,
            fill.quantity,
            instrument.contract_size,
            fill.filled_at,
            fill.price,
            fill.fees,
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
        why: tuple[str, ...] = ()
        if approver is None:  # executed by the mode's rule: the trader never saw the offer, so say what it was
            scored = record.scored
            rule = (
                f"{setup.strategy} {setup.timeframe} · quality {scored.score.total:.0f}/100 · {record.reason or 'auto'}"
            )
            why = (rule, *setup.reasons[:3])
        await self.notifier.announce(PositionOpened(trade, instrument, note, why))
        return Outcome(OutcomeKind.DONE, f"Filled {fill.quantity}{partial} @ {fill.price}.")

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
            account = self.account_of(setup.symbol)
            equity, sizing = (account.equity, account.sizing) if account else (self.policy.equity, self.policy.sizing)
            sized = self.size(setup, equity, sizing=sizing)
            if isinstance(sized, str) or sized.quantity <= 0:
                return
            quantity = sized.quantity
        entered = setup.bar_time + setup.timeframe.delta
        fees = commission(setup.entry, quantity, instrument, self.policy.costs)
        await self.store.open_shadow_trade(
            trade_from_setup(
                setup,
                TradeKind.SHADOW,
                quantity,
                instrument.contract_size,
                entered,
                setup.entry,
                fees,
                trade_id=f"{record.signal_id}-shadow",
            )
        )
