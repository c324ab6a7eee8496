"""Trading domain: execution modes, orders, fills, quotes, trades and their P&L.

Money and prices are `Decimal`. A trade's P&L is in the instrument's quote currency:
`(exit - entry) x side x quantity x contract_size - fees`; its R multiple divides that by the money
risked at entry, `|entry - stop| x quantity x contract_size`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Final

from engine.domain import Setup, Side, ensure_utc

R_STEP: Final = Decimal("0.01")  # R multiples are reported to 0.01R


class ExecutionMode(StrEnum):
    MANUAL = "manual"  # always ask
    QUALITY = "quality"  # execute at/above auto_threshold, ask at/above ask_threshold, drop below
    AUTO = "auto"  # execute every signal, notify


class ExitReason(StrEnum):
    STOP = "stop"
    TRAILING_STOP = "trailing_stop"  # the stop after a trailing or breakeven move took the rest
    TARGET = "target"
    PARTIAL = "partial"  # a partial target took part of the position
    TIME = "time"
    SESSION_END = "session_end"
    EXPIRY = "expiry"  # held to its option expiry
    MANUAL = "manual"  # closed by the trader (/stop with close-all, or reported)
    EXTERNAL = "external"  # outcome of a trade executed outside the bot, reported with /report


class TradeAction(StrEnum):
    """What the trader asked of an open position."""

    CLOSE = "close"
    STOP = "stop"  # move its stop


@dataclass(frozen=True, slots=True)
class StopMove:
    """A stop the trader moved: from `old` to `new` at `at` (bars before it were watched with `old`)."""

    at: datetime
    old: Decimal
    new: Decimal


@dataclass(frozen=True)
class PartialExit:
    """Part of an open position closed by a partial target: its number, when, at what fill, how much, fees."""

    trade_id: str
    seq: int
    at: datetime
    price: Decimal
    quantity: Decimal
    fees: Decimal

    def __post_init__(self) -> None:
        ensure_utc(self.at, "partial exit time")
        if self.seq < 1 or self.quantity <= 0 or self.price <= 0:
            raise ValueError(f"partial exit {self.seq} of {self.trade_id}: number, quantity and price must be positive")


class TradeKind(StrEnum):
    PAPER = "paper"  # a position of the paper broker
    LIVE = "live"  # a position of a real broker (later issue)
    SHADOW = "shadow"  # the hypothetical outcome of a rejected or expired signal, for learning
    EXTERNAL = "external"  # reported by the trader, executed outside the bot
    BACKTEST = "backtest"  # simulated on history by the backtester


@dataclass(frozen=True, slots=True)
class Quote:
    """A fresh price: bid/ask around the last traded (or last bar close) price."""

    symbol: str
    bid: Decimal
    ask: Decimal
    at: datetime

    def __post_init__(self) -> None:
        ensure_utc(self.at, "quote time")
        if not (0 < self.bid <= self.ask):
            raise ValueError(f"quote for {self.symbol} must have 0 < bid <= ask, was bid {self.bid} ask {self.ask}")

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2

    def entry_price(self, side: Side) -> Decimal:
        """The price a market order pays: ask to buy, bid to sell."""
        return self.ask if side is Side.LONG else self.bid


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A market order; `client_order_id` is the signal id, so placing it twice places it once.

    `stop` and `target`, when given, are attached to the fill at the broker (stop-loss and take-profit
    on fill), so the position is protected even while the bot is down.
    """

    client_order_id: str
    symbol: str
    side: Side
    quantity: Decimal
    stop: Decimal | None = None
    target: Decimal | None = None

    def __post_init__(self) -> None:
        if not self.client_order_id:
            raise ValueError("client_order_id must not be empty")
        if not self.quantity.is_finite() or self.quantity <= 0:
            raise ValueError(f"order quantity must be positive, was {self.quantity}")
        sign = self.side.sign
        for name, level in (("stop", self.stop), ("target", self.target)):
            if level is not None and (not level.is_finite() or level <= 0):
                raise ValueError(f"order {self.client_order_id}: {name} must be a positive price, was {level}")
        if self.stop is not None and self.target is not None and sign * (self.target - self.stop) <= 0:
            raise ValueError(
                f"order {self.client_order_id}: target must be {'above' if sign > 0 else 'below'} the stop for a "
                f"{self.side.value}, was target {self.target} stop {self.stop}"
            )


class OrderState(StrEnum):
    """Where an order stands at the broker."""

    PENDING = "pending"  # accepted, not (fully) filled yet
    FILLED = "filled"
    PARTIALLY_FILLED = "partially_filled"  # done, with less than asked (the rest cancelled)
    REJECTED = "rejected"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class OrderStatus:
    """What the broker knows of an order found by its client order id."""

    client_order_id: str
    state: OrderState
    filled_quantity: Decimal = Decimal(0)
    average_price: Decimal | None = None
    fees: Decimal = Decimal(0)
    filled_at: datetime | None = None
    broker_order_id: str | None = None
    reason: str | None = None  # the broker's words for a rejection or cancellation

    def __post_init__(self) -> None:
        if self.filled_quantity < 0 or self.fees < 0:
            raise ValueError(f"order {self.client_order_id}: filled quantity and fees must be >= 0")
        if (self.filled_quantity > 0) != (self.average_price is not None):
            raise ValueError(f"order {self.client_order_id}: an average price is set exactly when something filled")
        if self.filled_at is not None:
            ensure_utc(self.filled_at, "filled_at")


@dataclass(frozen=True, slots=True)
class Fill:
    """How an order was filled: one average price, the fees, the time."""

    client_order_id: str
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    fees: Decimal
    filled_at: datetime

    def __post_init__(self) -> None:
        ensure_utc(self.filled_at, "filled_at")
        if self.price <= 0 or self.quantity <= 0 or self.fees < 0:
            raise ValueError(f"fill {self.client_order_id} needs positive price and quantity and fees >= 0")


@dataclass(frozen=True, slots=True)
class Trade:
    """A position from entry to exit (open while `exit_time` is None)."""

    trade_id: str
    signal_id: str
    kind: TradeKind
    strategy: str
    symbol: str
    side: Side
    quantity: Decimal
    contract_size: Decimal
    entry_time: datetime
    entry_price: Decimal
    stop: Decimal
    target: Decimal
    entry_fees: Decimal = Decimal(0)
    exit_time: datetime | None = None
    exit_price: Decimal | None = None
    exit_reason: ExitReason | None = None
    exit_fees: Decimal = Decimal(0)
    approver_id: int | None = None
    approval_latency_s: float | None = None
    _pnl: Decimal | None = field(init=False, repr=False, compare=False)
    _pnl_r: Decimal | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ensure_utc(self.entry_time, "entry_time")
        if self.quantity <= 0:
            raise ValueError(f"trade {self.trade_id}: quantity must be positive, was {self.quantity}")
        if self.side is Side.LONG and self.stop >= self.entry_price:
            raise ValueError(f"stop must be below entry for a long, was {self.stop} vs entry {self.entry_price}")
        if self.side is Side.SHORT and self.stop <= self.entry_price:
            raise ValueError(f"stop must be above entry for a short, was {self.stop} vs entry {self.entry_price}")
        unset = (self.exit_time is None) + (self.exit_price is None) + (self.exit_reason is None)
        if unset not in (0, 3):
            raise ValueError(f"trade {self.trade_id}: exit time, price and reason are set together")
        if self.exit_time is not None:
            ensure_utc(self.exit_time, "exit_time")
            if self.exit_time < self.entry_time:
                raise ValueError(f"trade {self.trade_id}: exit {self.exit_time} is before entry {self.entry_time}")
        pnl = pnl_r = None
        if self.exit_price is not None:
            pnl, pnl_r = net_pnl(
                self.side,
                self.quantity,
                self.contract_size,
                self.entry_price,
                self.stop,
                (self.exit_price, self.entry_fees, self.exit_fees),
            )
        object.__setattr__(self, "_pnl", pnl)
        object.__setattr__(self, "_pnl_r", pnl_r)

    @property
    def is_open(self) -> bool:
        return self.exit_time is None

    @property
    def fees(self) -> Decimal:
        return self.entry_fees + self.exit_fees

    @property
    def risk_money(self) -> Decimal:
        """Money lost if the stop is hit at its price, before fees."""
        return abs(self.entry_price - self.stop) * self.quantity * self.contract_size

    @property
    def pnl(self) -> Decimal | None:
        """Net P&L in the quote currency after all fees; None while open."""
        return self._pnl

    @property
    def pnl_r(self) -> Decimal | None:
        """Net P&L in multiples of the money risked at entry, to 0.01R."""
        return self._pnl_r

    def closed(self, at: datetime, price: Decimal, reason: ExitReason, fees: Decimal = Decimal(0)) -> Trade:
        """This trade exited at `price` for `reason`."""
        return replace(self, exit_time=at, exit_price=price, exit_reason=reason, exit_fees=fees)


@dataclass(frozen=True, slots=True)
class BrokerExit:
    """How a trade ended at the broker (its stop-loss, its take-profit, or a close there), at one average price.

    `fees` is the commission of the closing fill(s), >= 0. `financing` is the trade's financing over its
    life, signed as the broker reports it (negative: the account paid). `quantity` is what closed, in lots.
    """

    client_order_id: str
    price: Decimal
    closed_at: datetime
    reason: ExitReason
    quantity: Decimal
    fees: Decimal = Decimal(0)
    financing: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        if not self.client_order_id:
            raise ValueError("a broker exit needs the client order id of its trade")
        ensure_utc(self.closed_at, "closed_at")
        if not self.price.is_finite() or self.price <= 0:
            raise ValueError(f"exit of {self.client_order_id}: price must be positive, was {self.price}")
        if not self.quantity.is_finite() or self.quantity <= 0:
            raise ValueError(f"exit of {self.client_order_id}: closed quantity must be positive, was {self.quantity}")
        if not self.fees.is_finite() or self.fees < 0:
            raise ValueError(f"exit of {self.client_order_id}: fees must be >= 0, was {self.fees}")
        if not self.financing.is_finite():
            raise ValueError(f"exit of {self.client_order_id}: financing must be finite, was {self.financing}")

    @property
    def costs(self) -> Decimal:
        """Exit costs as a trade records them: commission plus financing paid; a credit lowers them, not below 0."""
        return max(self.fees - self.financing, Decimal(0))


def net_pnl(
    side: Side,
    quantity: Decimal,
    contract_size: Decimal,
    entry_price: Decimal,
    stop: Decimal,
    closing: tuple[Decimal, Decimal, Decimal],
) -> tuple[Decimal, Decimal | None]:
    """A closed trade's net P&L in the quote currency, and in multiples of the money its stop risked at entry, to
    0.01R (None with nothing at risk); `closing` is (exit price, entry fees, exit fees)."""
    exit_price, entry_fees, exit_fees = closing
    pnl = (exit_price - entry_price) * side.sign * quantity * contract_size - entry_fees - exit_fees
    risk = abs(entry_price - stop) * quantity * contract_size
    return pnl, (pnl / risk).quantize(R_STEP) if risk else None


def closed_order(trade: Trade) -> tuple[datetime, str]:
    """The order closed trades are listed in: oldest exit first, then by trade id."""
    if trade.exit_time is None:
        raise ValueError(f"trade {trade.trade_id} is open; only closed trades have an exit to order by")
    return trade.exit_time, trade.trade_id


def trade_from_setup(
    setup: Setup,
    kind: TradeKind,
    quantity: Decimal,
    contract_size: Decimal,
    entry_time: datetime,
    entry_price: Decimal,
    entry_fees: Decimal = Decimal(0),
    *,
    trade_id: str | None = None,
    approver_id: int | None = None,
    approval_latency_s: float | None = None,
    exited: tuple[datetime, Decimal, ExitReason, Decimal] | None = None,
) -> Trade:
    """The trade a setup became: its strategy, symbol, side, stop and target, entered as given, and closed when
    `exited` (time, price, reason, fees) is given (the one place a trade is made from a setup, in backtests, at the
    desk, in shadow tracking and reported outcomes)."""
    exit_time, exit_price, exit_reason, exit_fees = exited or (None, None, None, Decimal(0))
    return Trade(
        trade_id=trade_id or setup.signal_id,
        signal_id=setup.signal_id,
        kind=kind,
        strategy=setup.strategy,
        symbol=setup.symbol,
        side=setup.side,
        quantity=quantity,
        contract_size=contract_size,
        entry_time=entry_time,
        entry_price=entry_price,
        stop=setup.stop,
        target=setup.target,
        entry_fees=entry_fees,
        exit_time=exit_time,
        exit_price=exit_price,
        exit_reason=exit_reason,
        exit_fees=exit_fees,
        approver_id=approver_id,
        approval_latency_s=approval_latency_s,
    )
