"""What a backtest produces: its simulated trades and its equity curve (measured by `engine.metrics`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from engine.bars import BoolArray, FloatArray, IntArray
from engine.domain import (
    Interval,
    QualityScore,
    Setup,
)
from engine.trading import Trade, TradeKind


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
