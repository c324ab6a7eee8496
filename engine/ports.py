"""Ports: the small interfaces through which the core reaches time, market data and storage.

Adapters live in `data/` (market data, SQLite) and `bot/` (clocks, brokers); tests use fakes at these ports.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from engine.audit import AuditEvent
from engine.controls import DriftAlert, PairControl
from engine.domain import Instrument, Rejection, RunStatus, ScoredSetup, SignalStatus
from engine.options import LegFill, LegOrder
from engine.sizing import SizingSummary
from engine.spread_book import SpreadRecord, SpreadStatus
from engine.systems import Baseline, PairValidation
from engine.trading import (
    BrokerExit,
    ExitReason,
    Fill,
    OrderRequest,
    OrderState,
    OrderStatus,
    PartialExit,
    Quote,
    StopMove,
    Trade,
    TradeAction,
    TradeKind,
)

if TYPE_CHECKING:
    import pandas as pd


class Clock(Protocol):
    def now(self) -> datetime:
        """Current instant, timezone-aware UTC."""
        ...


@dataclass(frozen=True)
class FixedClock:
    """A clock stopped at one instant (replays, `--as-of`, tests)."""

    at: datetime

    def now(self) -> datetime:
        return self.at


class ProviderError(Exception):
    """Market data could not be obtained for one instrument; the message is shown to the trader."""


class BarProvider(Protocol):
    """Source of OHLCV bars for one instrument at its configured interval."""

    name: str

    def fetch(self, instrument: Instrument, end: datetime, bars: int) -> pd.DataFrame:
        """Return up to `bars` bars closed by `end`, oldest first.

        The frame is indexed by bar open time (tz-aware UTC DatetimeIndex named `timestamp`) with float
        columns open, high, low, close, volume. It is raw: validation happens after. Raises ProviderError.
        """
        ...


@dataclass(frozen=True)
class RunSummary:
    """What one analysis run did, as persisted."""

    run_id: int
    started_at: datetime
    finished_at: datetime | None
    as_of: datetime
    data_source: str
    symbols: tuple[str, ...]
    setups: int
    rejected_setups: int
    rejected_symbols: int
    errors: tuple[str, ...] = field(default_factory=tuple)
    status: RunStatus | None = None  # None only from stores that do not track it; SqliteStore always sets it


class SignalStore(Protocol):
    """Persistence of analysis runs, setups (signals) and rejections."""

    async def start_run(self, started_at: datetime, as_of: datetime, data_source: str, symbols: Sequence[str]) -> int:
        """Record the start of a run and return its id."""
        ...

    async def finish_run(
        self,
        run_id: int,
        finished_at: datetime,
        setups: Sequence[ScoredSetup],
        rejections: Sequence[Rejection],
        errors: Sequence[str],
    ) -> None:
        """Store the run's setups (status NEW, idempotent by signal id) and rejections, and close the run."""
        ...

    async def mark_run_failed(self, run_id: int, finished_at: datetime, error: str) -> None:
        """Close a run that crashed, keeping the error."""
        ...

    async def run(self, run_id: int) -> RunSummary | None: ...

    async def recent_runs(self, limit: int = 20) -> list[RunSummary]: ...

    async def setups_for_run(self, run_id: int) -> list[tuple[ScoredSetup, SignalStatus]]: ...

    async def rejections_for_run(self, run_id: int) -> list[Rejection]: ...


@dataclass(frozen=True)
class SignalRecord:
    """A stored signal with its lifecycle fields."""

    scored: ScoredSetup
    status: SignalStatus
    run_id: int
    created_at: datetime
    quantity: Decimal | None = None
    offered_at: datetime | None = None
    expires_at: datetime | None = None
    decided_by: int | None = None
    decided_at: datetime | None = None
    reason: str | None = None
    validation: PairValidation | None = None  # the system's validation status when the signal was offered
    sizing: SizingSummary | None = None  # what its size meant in money when it was offered

    @property
    def signal_id(self) -> str:
        return self.scored.setup.signal_id


@dataclass(frozen=True)
class ModelVersion:
    """One learning run's output as stored: what it was fitted from and the model itself (both JSON objects)."""

    version: int
    created_at: datetime
    summary: dict[str, Any]
    model: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SignalEstimate:
    """The win estimate shown with a signal when it was offered: a probability, or a note saying why none."""

    signal_id: str
    model_version: int
    p_win: float | None
    trades: int  # outcomes the estimate rests on
    expected_r: float | None = None
    note: str = ""
    learned_score: float | None = None  # the score of the learned component weights, when they were adopted

    def __post_init__(self) -> None:
        if self.p_win is not None and not 0.0 <= self.p_win <= 1.0:
            raise ValueError(f"estimate of {self.signal_id}: p_win must be within 0..1, was {self.p_win}")
        if self.trades < 0:
            raise ValueError(f"estimate of {self.signal_id}: trades must be >= 0, was {self.trades}")


class SignalBook(Protocol):
    """Signals after their run: lifecycle moves, messages, sizing and validation, the stamp a decision reads."""

    async def signal(self, signal_id: str) -> SignalRecord | None: ...

    async def signals_with_status(
        self, status: SignalStatus, expiring_by: datetime | None = None, created_since: datetime | None = None
    ) -> list[SignalRecord]:
        """Signals in `status` (optionally expiring by, or created since, an instant), oldest first."""
        ...

    async def transition(
        self,
        signal_id: str,
        expected: SignalStatus,
        to: SignalStatus,
        at: datetime,
        *,
        by: int | None = None,
        reason: str | None = None,
        quantity: Decimal | None = None,
        expires_at: datetime | None = None,
    ) -> bool:
        """Compare-and-set the status: True iff it was `expected` and is now `to` (exactly one winner).

        Illegal moves (see `SIGNAL_TRANSITIONS`) raise ValueError. `by`/`reason` record who decided and why;
        `quantity`/`expires_at` are set when a signal is offered (NEW -> PENDING or NEW -> APPROVED).
        """
        ...

    async def last_offered_at(self, symbol: str) -> datetime | None:
        """When a signal of `symbol` was last offered or auto-executed (for the per-symbol cooldown)."""
        ...

    async def add_signal_message(self, signal_id: str, chat_id: int, message_id: int) -> None: ...

    async def set_signal_sizing(self, signal_id: str, sizing: SizingSummary) -> None:
        """Keep what a new signal's size means in money with it."""
        ...

    async def decision_stamp(self, state_keys: Sequence[str] = ()) -> str:
        """A token of what a decision to trade reads that can change meanwhile (state keys, book, controls)."""
        ...

    async def set_signal_validation(self, signal_id: str, validation: PairValidation) -> None:
        """Keep the system's validation status with a signal being offered (shown with it from then on)."""
        ...

    async def signal_fingerprints(self, signal_ids: Collection[str]) -> dict[str, str]:
        """The fingerprint of the system that found each signal, for the signals offered with one."""
        ...


class TradeLedger(Protocol):
    """Orders, fills and trades (paper, live, shadow and reported), and the trader's actions on open positions."""

    async def submit_order(self, signal_id: str, request: OrderRequest, at: datetime) -> bool:
        """Atomically APPROVED -> ORDER_SUBMITTED and record the order; False if another caller won."""
        ...

    async def approve_order(
        self,
        signal_id: str,
        expected: SignalStatus,
        request: OrderRequest,
        at: datetime,
        *,
        by: int | None = None,
        reason: str | None = None,
        expires_at: datetime | None = None,
        stamp: tuple[str, Sequence[str]] | None = None,
    ) -> bool:
        """In one transaction approve the signal (from NEW or PENDING) and record its order intent; with `stamp`,
        only if nothing it covers changed since it was read (else raise the store's DecisionChanged)."""
        ...

    async def record_fill(self, fill: Fill, trade: Trade) -> bool:
        """Atomically ORDER_SUBMITTED -> FILLED, store the fill and open the trade; False if already done."""
        ...

    async def order_fill(self, client_order_id: str) -> Fill | None: ...

    async def open_shadow_trade(self, trade: Trade) -> bool:
        """Track the hypothetical outcome of a rejected/expired signal; False if already tracked."""
        ...

    async def record_external_trade(self, trade: Trade) -> None:
        """Store a closed trade executed outside the bot (reported with /report)."""
        ...

    async def close_trade(self, trade_id: str, at: datetime, price: Decimal, reason: ExitReason, fees: Decimal) -> bool:
        """Close an open trade; False if it was already closed."""
        ...

    async def open_trades(self, kinds: Collection[TradeKind] | None = None) -> list[Trade]: ...

    async def open_trade(self, trade_id: str) -> Trade | None:
        """The trade if it is open, else None."""
        ...

    async def request_trade_action(self, trade_id: str, action: TradeAction, at: datetime, by: int) -> int | None:
        """Claim an action on an open trade; None when it is closed or another action on it is in flight."""
        ...

    async def finish_trade_action(self, action_id: int, done: bool, at: datetime, detail: str = "") -> None: ...

    async def move_trade_stop(self, action_id: int, trade_id: str, old: Decimal, new: Decimal, at: datetime) -> bool:
        """Set the open trade's stop from `old` to `new` and finish the action; False if it changed meanwhile."""
        ...

    async def stop_moves(self, trade_ids: Collection[str]) -> dict[str, list[StopMove]]: ...

    async def record_partial_exit(self, exit: PartialExit) -> bool:
        """Record a partial exit once by its number; False when it was recorded already or the trade closed."""
        ...

    async def partial_exits(self, trade_ids: Collection[str]) -> dict[str, list[PartialExit]]: ...

    async def abandon_trade_actions(self, at: datetime) -> int: ...

    async def create_close_batch(self, trade_ids: Sequence[str], at: datetime, by: int) -> int: ...

    async def use_close_batch(self, batch_id: int, at: datetime, by: int) -> list[str] | None:
        """Mark a close-all confirmation used and return its trades; None if already used or unknown."""
        ...

    async def trades(
        self, kinds: Collection[TradeKind] | None = None, closed_since: datetime | None = None
    ) -> list[Trade]:
        """Closed trades, oldest exit first."""
        ...

    async def closed_after(self, mark: int, kinds: Collection[TradeKind] | None = None) -> list[tuple[int, Trade]]:
        """The trades of `kinds` closed after close number `mark` (0: all), each with its number, in closing order:
        a trade closes once and never changes after, so nothing here means nothing closed since `mark`."""
        ...


class BaselineStore(Protocol):
    """Validation baselines of the traded systems."""

    async def save_baseline(self, baseline: Baseline) -> int:
        """Store a validation result as the next version for its strategy x instrument; return the version."""
        ...

    async def latest_baselines(self) -> list[Baseline]:
        """The newest validation result of every strategy x instrument."""
        ...

    async def baselines(self) -> list[Baseline]:
        """The newest validation result of every system (fingerprint) of every strategy x instrument."""
        ...


class KeyValueState(Protocol):
    """The bot's persisted switches and markers."""

    async def get_state(self, key: str) -> str | None: ...

    async def set_state(self, key: str, value: str, *, audit_by: str | None = None, detail: str | None = None) -> None:
        """Set a value; with `audit_by` the change is also recorded in the audit trail, atomically."""
        ...


class LearningStore(Protocol):
    """Drift alerts, pair controls, learned models and signal estimates."""

    async def record_drift_alert(self, alert: DriftAlert) -> None: ...

    async def last_drift_alert(self, strategy: str, symbol: str) -> DriftAlert | None:
        """The newest alert told for this pair (its time and severity drive the cooldown)."""
        ...

    async def set_pair_control(self, control: PairControl, expected_id: int | None = None) -> PairControl | None:
        """Append a state change; with `expected_id`, only if that record is still the pair's newest (else None)."""
        ...

    async def pair_controls(self) -> dict[tuple[str, str], PairControl]:
        """The newest control record of every pair that has one."""
        ...

    async def pair_control(self, control_id: int) -> PairControl | None: ...

    async def save_model(self, created_at: datetime, summary: dict[str, Any], model: dict[str, Any]) -> int:
        """Store a learning run's output as the next version and make it the active one; return the version."""
        ...

    async def active_model(self) -> ModelVersion | None: ...

    async def rollback_model(self) -> ModelVersion | None:
        """Make the version before the active one active; None (nothing changed) when there is none."""
        ...

    async def save_estimate(self, estimate: SignalEstimate) -> None: ...

    async def estimates(self, signal_ids: Collection[str]) -> dict[str, SignalEstimate]: ...


class AuditLog(Protocol):
    """The append-only audit trail (the store also appends to it inside the writes it records)."""

    async def audit(self, event: AuditEvent) -> None: ...

    async def audit_events(self, since: datetime | None = None, limit: int = 50) -> list[AuditEvent]:
        """The newest `limit` events at or after `since`, newest first."""
        ...


class BotStore(SignalStore, SignalBook, TradeLedger, BaselineStore, KeyValueState, LearningStore, AuditLog, Protocol):
    """Everything the running bot persists (the SQLite store implements it all); a service asks for its slice."""


class SpreadBook(Protocol):
    """Hedged option spreads from offer to outcome, and their leg fills."""

    async def offer_spread(self, record: SpreadRecord) -> bool: ...

    async def move_spread(self, record: SpreadRecord, expected: SpreadStatus) -> bool:
        """Store `record` iff the spread is in `expected` now."""
        ...

    async def add_spread_fills(self, spread_id: str, fills: Iterable[LegFill]) -> None: ...

    async def spread(self, spread_id: str) -> SpreadRecord | None: ...

    async def spreads(self, statuses: Collection[SpreadStatus]) -> list[SpreadRecord]: ...


class Broker(Protocol):
    """An execution venue. Every call has a timeout and may raise BrokerError.

    `place_order` is idempotent by `client_order_id` (the signal id): placing it again returns the first
    order's fill. Its Fill may carry less than the requested quantity (a partial fill).
    """

    name: str

    async def quote(self, instrument: Instrument) -> Quote: ...

    async def place_order(self, instrument: Instrument, request: OrderRequest) -> Fill: ...

    async def order_status(self, client_order_id: str) -> OrderStatus | None:
        """The order placed with this client order id, or None when the broker never received it."""
        ...

    async def cancel(self, client_order_id: str) -> None: ...

    async def positions(self) -> list[Trade]: ...

    async def equity(self) -> Decimal:
        """Account equity (net asset value) in the account currency."""
        ...

    async def trade_exit(self, client_order_id: str) -> BrokerExit | None:
        """How the trade opened by this order ended at the broker (stop-loss, take-profit, closed there).

        None while it is still open, and always for a venue whose positions the bot itself closes (paper).
        """
        ...

    async def close_trade(self, instrument: Instrument, trade: Trade) -> BrokerExit:
        """Close the open `trade` at market now and return how it ended; a trade the broker has already closed
        returns that close (so a retry never closes twice)."""
        ...

    async def move_stop(self, instrument: Instrument, trade: Trade, stop: Decimal) -> None:
        """Move the stop-loss of the open `trade` to `stop` at the broker (paper: nothing to do, the monitor
        watches the stop the store holds)."""
        ...


class LegVenue(Protocol):
    """Where option legs trade (Kite NFO, or paper at quotes or modelled prices); idempotent by tag."""

    name: str

    async def leg_fill(self, order: LegOrder) -> LegFill:
        """Fill `order` once: an order already at the venue under its tag returns that order's fill.

        Raises BrokerError: REJECTED with the venue's words when nothing filled; TRANSIENT when unknown."""
        ...

    async def leg_status(self, tag: str) -> LegFill | None:
        """What the order with this tag filled, or None when the venue never received it."""
        ...


@dataclass(frozen=True)
class BrokerSession:
    """A broker's login as the chat shows it (never its token)."""

    broker: str
    user_id: str
    user_name: str
    expires_at: datetime


class DailyLogin(Protocol):
    """A broker whose session the owner renews by logging in through a browser (Kite: every morning)."""

    name: str

    @property
    def login_url(self) -> str: ...

    def current_session(self) -> BrokerSession | None:
        """Today's session while it is valid, else None."""
        ...

    async def login_from(self, text: str) -> BrokerSession:
        """Log in with what the owner sent back (the redirect address or the request token); ValueError when
        it holds no token, BrokerError when the broker refuses it."""
        ...

    async def funds(self) -> Decimal:
        """The money available in the account, in its currency."""
        ...


class BreakerState(StrEnum):
    CLOSED = "closed"  # calls go through
    OPEN = "open"  # calls are refused until the cool-down ends
    HALF_OPEN = "half_open"  # one probe call is in flight or allowed


@dataclass(frozen=True)
class BreakerSnapshot:
    """The breaker as /status shows it."""

    name: str
    state: BreakerState
    failures: int
    opened_at: datetime | None
    retry_at: datetime | None


class CircuitView(Protocol):
    """What the bot shows of a broker's circuit breaker."""

    def snapshot(self) -> BreakerSnapshot: ...


class DecisionChanged(Exception):
    """Something a decision to trade was checked against changed before its commit (`BotStore.decision_stamp`)."""


class BrokerErrorKind(StrEnum):
    """Whether a failed broker call may be tried again."""

    TRANSIENT = "transient"  # timeout, connection error, 5xx, 429: retry with backoff
    REJECTED = "rejected"  # the broker said no (margin, market closed, size): never retried
    UNAVAILABLE = "unavailable"  # the circuit breaker is open: refused without calling the broker
    PENDING = "pending"  # accepted, not filled yet (e.g. at the next bar's open): settled later by its client id
    SESSION = "session"  # no valid broker session (Kite's daily login): refused until the owner logs in


class BrokerError(Exception):
    """The broker could not do what was asked; the message is shown to the trader."""

    def __init__(
        self, message: str, kind: BrokerErrorKind = BrokerErrorKind.REJECTED, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after  # seconds the broker asked us to wait (429 Retry-After)

    @property
    def transient(self) -> bool:
        return self.kind is BrokerErrorKind.TRANSIENT


def fill_from_status(status: OrderStatus, request: OrderRequest) -> Fill:
    """The Fill of an order the broker already has, or a BrokerError saying why there is none."""
    cid = request.client_order_id
    filled = status.state in (OrderState.FILLED, OrderState.PARTIALLY_FILLED)
    if filled and status.average_price is not None and status.filled_at is not None:
        return Fill(
            client_order_id=cid,
            symbol=request.symbol,
            side=request.side,
            quantity=status.filled_quantity,
            price=status.average_price,
            fees=status.fees,
            filled_at=status.filled_at,
        )
    if filled or status.state is OrderState.PENDING:
        raise BrokerError(f"order {cid} is not settled at the broker yet", BrokerErrorKind.TRANSIENT)
    reason = f": {status.reason}" if status.reason else ""
    raise BrokerError(f"order {cid} was {status.state.value} by the broker{reason}")
