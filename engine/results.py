"""What a backtest produces: its simulated trades and its equity curve (measured by `engine.metrics`).

A backtest of a million bars takes thousands of trades, and a report shows a few of them: the trades and
setups are kept as records (`TradeRecord`, `Proposal`) and each `BacktestTrade` or `Setup` is built, with its
checks and its id, on first access (`Built`). The metrics and the equity curve read the records' exact
figures, which are the ones the built objects carry (`Measured`, `Held`). Until its setups are built, a result
holds the market context they are built from; pickled, it sends the built setups instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any, Generic, Protocol, TypeVar, overload

import numpy as np

from engine.bars import BoolArray, FloatArray, IntArray, from_nanos
from engine.domain import (
    Interval,
    QualityScore,
    Setup,
    Side,
)
from engine.sizing import pnl_to_account
from engine.trading import ExitReason, Trade, TradeKind, trade_from_setup

R = TypeVar("R")
T = TypeVar("T")


class Measured(Protocol):
    """What the metrics read of a closed trade."""

    @property
    def exit_index(self) -> int | None: ...
    @property
    def trade_id(self) -> str: ...
    @property
    def r(self) -> Decimal | None: ...
    @property
    def money(self) -> Decimal | None: ...
    @property
    def fees(self) -> Decimal: ...
    @property
    def entry_rate(self) -> float: ...
    @property
    def entry_hour(self) -> int: ...
    @property
    def entry_weekday(self) -> int: ...
    @property
    def symbol(self) -> str: ...
    @property
    def quality(self) -> float | None: ...


class Held(Measured, Protocol):
    """What the equity curve reads of a trade, open or closed."""

    @property
    def entry_index(self) -> int: ...
    @property
    def sign(self) -> int: ...
    @property
    def units(self) -> Decimal: ...  # quantity x contract size
    @property
    def entry_price(self) -> Decimal: ...
    @property
    def entry_fees(self) -> Decimal: ...


@dataclass(frozen=True, slots=True)
class BacktestTrade:
    """One simulated trade with the setup and quality score it came from and where it sits in the bars.

    Money beside the `Trade` (whose P&L is in the quote currency) is in `currency`, the account's: the risk
    the sizing budgeted at the setup's entry, the risk at the fill, the notional, and the net P&L once closed.
    """

    trade: Trade
    setup: Setup
    score: QualityScore | None
    signal_index: int
    entry_index: int
    exit_index: int | None
    entry_hour: int  # exchange-local hour of day of the entry
    entry_weekday: int  # exchange-local weekday of the entry, 0 = Monday
    currency: str = ""
    budget_risk: Decimal = Decimal(0)  # what sizing risked from the setup's entry to its stop, costs included
    initial_risk: Decimal = Decimal(0)  # from the fill to the stop, before fees
    notional: Decimal = Decimal(0)
    account_pnl: Decimal | None = None  # net P&L converted at the exit's conversion price
    entry_rate: float = 1.0  # account money per unit of the quote currency at entry (marks the open position)

    def __post_init__(self) -> None:
        t = self.trade
        if t.kind is not TradeKind.BACKTEST:
            raise ValueError(f"trade {t.trade_id}: a backtest trade must be of kind backtest, was {t.kind}")
        if t.signal_id != self.setup.signal_id:
            raise ValueError(f"trade {t.trade_id}: signal id {t.signal_id} is not its setup's {self.setup.signal_id}")
        if not 0 <= self.signal_index < self.entry_index:
            raise ValueError(
                f"trade {t.trade_id}: entry bar {self.entry_index} must come after signal bar {self.signal_index}"
            )
        if (self.exit_index is None) != t.is_open:
            raise ValueError(f"trade {t.trade_id}: an exit bar is set exactly when the trade is closed")
        if self.exit_index is not None and self.exit_index < self.entry_index:
            raise ValueError(f"trade {t.trade_id}: exit bar {self.exit_index} is before entry bar {self.entry_index}")
        if not (0 <= self.entry_hour < 24 and 0 <= self.entry_weekday < 7):
            raise ValueError(
                f"trade {t.trade_id}: entry hour must be 0..23 and weekday 0..6, were {self.entry_hour} and "
                f"{self.entry_weekday}"
            )

    @property
    def quality(self) -> float | None:
        """Total quality score at entry, None when the backtest did not score setups."""
        return None if self.score is None else self.score.total

    @property
    def trade_id(self) -> str:
        return self.trade.trade_id

    @property
    def r(self) -> Decimal | None:
        return self.trade.pnl_r

    @property
    def money(self) -> Decimal | None:
        """Net P&L in account money once closed (the quote currency's when it was not converted)."""
        return self.account_pnl if self.account_pnl is not None else self.trade.pnl

    @property
    def fees(self) -> Decimal:
        return self.trade.fees

    @property
    def symbol(self) -> str:
        return self.trade.symbol

    @property
    def sign(self) -> int:
        return self.trade.side.sign

    @property
    def units(self) -> Decimal:
        return self.trade.quantity * self.trade.contract_size

    @property
    def entry_price(self) -> Decimal:
        return self.trade.entry_price

    @property
    def entry_fees(self) -> Decimal:
        return self.trade.entry_fees

    @property
    def components(self) -> Mapping[str, float]:
        """Quality component values at entry (empty when not scored)."""
        return {} if self.score is None else self.score.as_dict()


@dataclass(frozen=True, eq=False)
class EquityCurve:
    """Per-bar equity of a backtest: mark-to-market at each bar's close, realised, and time in the market."""

    initial: float
    interval: Interval
    time: IntArray  # bar open times, ns UTC
    day: IntArray  # trading-date id of each bar (daily returns group by it)
    equity: FloatArray  # mark-to-market at the bar's close
    realized: FloatArray  # initial equity + net P&L of the trades closed by the bar's close
    in_position: BoolArray  # a position was open during the bar
    trading_days_per_year: int

    def __post_init__(self) -> None:
        if not math.isfinite(self.initial) or self.initial <= 0:
            raise ValueError(f"initial equity must be positive, was {self.initial}")
        n = len(self.time)
        for name in ("day", "equity", "realized", "in_position"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"equity curve {name} has {len(getattr(self, name))} values, expected {n}")
        if n > 1 and bool(np.any(np.diff(self.day) < 0)):
            raise ValueError("equity curve trading days must not go back in time")
        if self.trading_days_per_year < 1:
            raise ValueError(f"trading_days_per_year must be positive, was {self.trading_days_per_year}")

    def __len__(self) -> int:
        return len(self.time)

    @property
    def close_time(self) -> IntArray:
        return self.time + self.interval.nanos


class Proposal:
    """A validated setup's terms, as the trade logic reads them; the `Setup` (its reasons, its checks, its id) is
    built on first use. `ticks` are the entry and stop in whole ticks when known."""

    __slots__ = ("_make", "_setup", "entry", "side", "stop", "strategy", "symbol", "target", "ticks")

    def __init__(
        self,
        strategy: str,
        symbol: str,
        side: Side,
        levels: tuple[Decimal, Decimal, Decimal],
        ticks: tuple[int, int] | None,
        make: Callable[[], Setup] | None = None,
    ) -> None:
        self.strategy, self.symbol, self.side, self.ticks = strategy, symbol, side, ticks
        self.entry, self.stop, self.target = levels
        self._make = make
        self._setup: Setup | None = None

    @classmethod
    def of(cls, setup: Setup) -> Proposal:
        """The terms of a setup already built."""
        proposal = cls(setup.strategy, setup.symbol, setup.side, (setup.entry, setup.stop, setup.target), None)
        proposal._setup = setup
        return proposal

    @property
    def setup(self) -> Setup:
        setup = self._setup
        if setup is None:
            if self._make is None:
                raise RuntimeError("a proposal needs a setup or a way to build one")
            setup = self._setup = self._make()
            self._make = None
        return setup

    def __reduce__(self) -> tuple[Any, ...]:
        return Proposal.of, (self.setup,)  # its builder holds the whole market context: send the setup


class TradeRecord:
    """One simulated trade as the trade logic recorded it: exact money and bar indices; `build` makes the
    `BacktestTrade` (the same objects, checks included, as building them during the backtest)."""

    __slots__ = (
        "account_pnl",
        "budget_risk",
        "contract_size",
        "currency",
        "entry_fees",
        "entry_hour",
        "entry_index",
        "entry_ns",
        "entry_price",
        "entry_weekday",
        "exit_index",
        "exited",
        "notional",
        "pnl",
        "proposal",
        "quantity",
        "r",
        "rate",
        "score",
        "signal_index",
    )

    def __init__(
        self,
        proposal: Proposal,
        score: QualityScore | None,
        bars: tuple[int, int, int | None],
        local: tuple[int, int],
        quantity: Decimal,
        contract_size: Decimal,
        entry: tuple[int, Decimal, Decimal],
        exited: tuple[int, Decimal, ExitReason, Decimal] | None,
        money: tuple[str, Fraction, Decimal, Decimal, Decimal | None],
        result: tuple[Decimal | None, Decimal | None],
    ) -> None:
        """`bars`: signal, entry and exit bar; `local`: the entry's hour and weekday; `entry`: (open time in ns,
        fill, fees); `exited`: (close time in ns, fill, reason, fees) or None while open; `money`: (account
        currency, quote-to-account rate, budgeted risk, notional, account P&L); `result`: (net P&L, net R)."""
        self.proposal, self.score, self.quantity, self.contract_size = proposal, score, quantity, contract_size
        self.signal_index, self.entry_index, self.exit_index = bars
        self.entry_hour, self.entry_weekday = local
        self.entry_ns, self.entry_price, self.entry_fees = entry
        self.exited = exited
        self.currency, self.rate, self.budget_risk, self.notional, self.account_pnl = money
        self.pnl, self.r = result

    @property
    def entry_rate(self) -> float:
        return 1.0 if self.rate == 1 else float(self.rate)

    @property
    def money(self) -> Decimal | None:
        return self.account_pnl if self.account_pnl is not None else self.pnl

    @property
    def fees(self) -> Decimal:
        return self.entry_fees + (self.exited[3] if self.exited is not None else Decimal(0))

    @property
    def sign(self) -> int:
        return self.proposal.side.sign

    @property
    def units(self) -> Decimal:
        return self.quantity * self.contract_size

    @property
    def quality(self) -> float | None:
        return None if self.score is None else self.score.total

    @property
    def symbol(self) -> str:
        return self.proposal.symbol

    @property
    def trade_id(self) -> str:
        return self.proposal.setup.signal_id

    def build(self) -> BacktestTrade:
        """The `BacktestTrade` this record describes."""
        setup = self.proposal.setup
        exited = None
        if self.exited is not None:
            exit_ns, price, reason, fees = self.exited
            exited = (from_nanos(exit_ns), price, reason, fees)
        trade = trade_from_setup(
            setup,
            TradeKind.BACKTEST,
            self.quantity,
            self.contract_size,
            from_nanos(self.entry_ns),
            self.entry_price,
            self.entry_fees,
            exited=exited,
        )
        return BacktestTrade(
            trade,
            setup,
            self.score,
            self.signal_index,
            self.entry_index,
            self.exit_index,
            self.entry_hour,
            self.entry_weekday,
            currency=self.currency,
            budget_risk=self.budget_risk,
            initial_risk=pnl_to_account(trade.risk_money, self.rate),
            notional=self.notional,
            account_pnl=self.account_pnl,
            entry_rate=self.entry_rate,
        )


class Built(Sequence[T], Generic[R, T]):
    """A sequence of objects each built from its record on first access (and kept); `records` reads them unbuilt.

    It compares equal to a tuple or list of the same objects and pickles its records."""

    __slots__ = ("_build", "_items", "records")

    def __init__(self, records: Sequence[R], build: Callable[[R], T]) -> None:
        self.records: tuple[R, ...] = tuple(records)
        self._build = build
        self._items: list[T | None] = [None] * len(self.records)

    def __len__(self) -> int:
        return len(self.records)

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[T, ...]: ...
    def __getitem__(self, index: int | slice) -> T | tuple[T, ...]:
        if isinstance(index, slice):
            return tuple(self[k] for k in range(*index.indices(len(self.records))))
        item = self._items[index]
        if item is None:
            item = self._items[index] = self._build(self.records[index])
        return item

    def __iter__(self) -> Iterator[T]:
        for k in range(len(self.records)):
            yield self[k]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Built | tuple | list):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(tuple(self))

    def __reduce__(self) -> tuple[Any, ...]:
        return Built, (self.records, self._build)


def measured(trades: Sequence[BacktestTrade]) -> Sequence[Held]:
    """What the metrics read of `trades`: their records when they are still to be built."""
    return trades.records if isinstance(trades, Built) else trades
