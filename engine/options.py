"""The option expression of a weekly-zone signal (spec §7) and the model that prices it when no quote exists.

* A long signal sells a PUT, a short one a CALL, of the position's expiry. Main strike = the stop moved onto
  the 50-point grid away from the money (put: floor, call: a true ceiling; on-grid stays). The hedge is the
  same type 200 points further out of the money. Entry buys the hedge first, then sells the main leg; exit
  buys back the main leg first, then sells the hedge.
* Quantity = lots x lot size: 75 for contracts expiring on or before 2025-12-30, 65 after (the exchange's
  revision); live, the lot size comes from the instrument master instead. Legs above the freeze quantity go
  out as child orders of whole lots, at most the freeze quantity each, all of one leg before the next.
* MODELLED prices (offline and in backtests, never shown without the word "modelled"): Black-Scholes on the
  index level with the realised volatility of the previous `VOL_WINDOW_BARS` hourly closes (log returns,
  annualised by the bars of a trading year), the risk-free rate `RISK_FREE`, no dividends, time to expiry
  in calendar years to the expiry day's 15:30 IST close; at expiry a contract is worth its intrinsic value.
  Costs per lot and per order leg (`OPTION_COST_PER_LOT_LEG`, INR: brokerage, STT, exchange charges and
  slippage of a few ticks, a round figure) are charged on every leg at entry and exit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Final

import numpy as np

from engine.bars import FloatArray
from engine.domain import Side

STRIKE_STEP: Final = 50
HEDGE_DISTANCE: Final = 200
LOT_SIZE_BEFORE: Final = 75
LOT_SIZE_AFTER: Final = 65
LOT_SIZE_CHANGE: Final = date(2025, 12, 30)  # expiries on or before this use 75
DEFAULT_FREEZE_QUANTITY: Final = 1800
VOL_WINDOW_BARS: Final = 140  # 20 trading days of seven hourly bars
HOURLY_BARS_PER_YEAR: Final = 252 * 7
RISK_FREE: Final = 0.065
OPTION_COST_PER_LOT_LEG: Final = Decimal("60")  # INR per lot per order leg, modelled
MIN_YEARS: Final = 1e-9
MODELLED: Final = "modelled"


class OptionType(StrEnum):
    PUT = "PE"
    CALL = "CE"


def option_type(side: Side) -> OptionType:
    """A long signal sells a put; a short one sells a call."""
    return OptionType.PUT if side is Side.LONG else OptionType.CALL


def main_strike(side: Side, stop: float) -> int:
    """The stop on the 50-point grid away from the money: a put's floor, a call's true ceiling."""
    if not math.isfinite(stop) or stop <= 0:
        raise ValueError(f"stop must be a positive finite level, was {stop}")
    steps = stop / STRIKE_STEP
    grid = math.floor(steps) if side is Side.LONG else math.ceil(steps)
    return int(grid) * STRIKE_STEP


def hedge_strike(side: Side, main: int) -> int:
    """The hedge: 200 points further out of the money than the main strike."""
    return main - HEDGE_DISTANCE if side is Side.LONG else main + HEDGE_DISTANCE


def lot_size(expiry: date) -> int:
    """NIFTY's lot size for a contract expiring on `expiry` (the spec's rule for backtests)."""
    return LOT_SIZE_BEFORE if expiry <= LOT_SIZE_CHANGE else LOT_SIZE_AFTER


def child_quantities(quantity: int, lot: int, freeze: int) -> tuple[int, ...]:
    """Split one leg into child orders of whole lots, each at most `freeze` units."""
    if lot < 1 or quantity < lot or quantity % lot:
        raise ValueError(f"quantity must be a positive whole number of lots of {lot}, was {quantity}")
    per_child = (freeze // lot) * lot
    if per_child < lot:
        raise ValueError(f"freeze quantity {freeze} is below one lot of {lot}")
    full, rest = divmod(quantity, per_child)
    return (per_child,) * full + ((rest,) if rest else ())


class LegRole(StrEnum):
    HEDGE = "hedge"
    MAIN = "main"


@dataclass(frozen=True, slots=True)
class OptionLeg:
    """One leg of the spread: its role, type, strike, and whether the position buys (hedge) or sells it."""

    role: LegRole
    kind: OptionType
    strike: int
    expiry: date
    quantity: int

    def __post_init__(self) -> None:
        if self.strike <= 0 or self.strike % STRIKE_STEP:
            raise ValueError(f"strike must be a positive multiple of {STRIKE_STEP}, was {self.strike}")
        if self.quantity < 1:
            raise ValueError(f"quantity must be positive, was {self.quantity}")

    @property
    def bought(self) -> bool:
        return self.role is LegRole.HEDGE

    @property
    def label(self) -> str:
        """`NIFTY 2025-01-23 23300 CE`."""
        return f"NIFTY {self.expiry.isoformat()} {self.strike} {self.kind.value}"


@dataclass(frozen=True, slots=True)
class Spread:
    """The hedged spread of one signal; `entry_legs` is the order of entry, `exit_legs` the order of exit."""

    side: Side
    hedge: OptionLeg
    main: OptionLeg
    lots: int
    lot_size: int

    def __post_init__(self) -> None:
        if self.hedge.kind is not self.main.kind or self.hedge.expiry != self.main.expiry:
            raise ValueError("both legs must be the same option type and expiry")
        if abs(self.hedge.strike - self.main.strike) != HEDGE_DISTANCE:
            raise ValueError(f"the hedge must be {HEDGE_DISTANCE} points from the main strike")
        further_out = (
            self.hedge.strike < self.main.strike if self.side is Side.LONG else self.hedge.strike > self.main.strike
        )
        if not further_out:
            raise ValueError("the hedge must be further out of the money than the main leg")

    @property
    def entry_legs(self) -> tuple[OptionLeg, OptionLeg]:
        return self.hedge, self.main

    @property
    def exit_legs(self) -> tuple[OptionLeg, OptionLeg]:
        return self.main, self.hedge

    @property
    def quantity(self) -> int:
        return self.lots * self.lot_size


def spread_for(side: Side, stop: float, expiry: date, lots: int, lot: int | None = None) -> Spread:
    """The spread a signal trades: strikes from its stop, `lots` of the expiry's lot size."""
    if lots < 1:
        raise ValueError(f"lots must be at least 1, was {lots}")
    size = lot if lot is not None else lot_size(expiry)
    kind = option_type(side)
    main = main_strike(side, stop)
    qty = lots * size
    return Spread(
        side,
        OptionLeg(LegRole.HEDGE, kind, hedge_strike(side, main), expiry, qty),
        OptionLeg(LegRole.MAIN, kind, main, expiry, qty),
        lots,
        size,
    )


def lots_for_risk(budget: Decimal, spread_width: int, net_credit: float, lot: int) -> int:
    """Lots whose maximum loss (width - credit per unit, times the lot) fits `budget`; 0 when none fits."""
    max_loss = (spread_width - max(net_credit, 0.0)) * lot
    if max_loss <= 0:
        raise ValueError(f"the spread's maximum loss must be positive, was {max_loss}")
    return int(budget // Decimal(repr(max_loss)))


def _norm_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def black_scholes(
    kind: OptionType, spot: float, strike: float, years: float, vol: float, rate: float = RISK_FREE
) -> float:
    """European option value (no dividends); intrinsic value at or after expiry."""
    intrinsic = max(spot - strike, 0.0) if kind is OptionType.CALL else max(strike - spot, 0.0)
    if years <= MIN_YEARS or vol <= 0:
        return intrinsic
    root = vol * math.sqrt(years)
    d1 = (math.log(spot / strike) + (rate + 0.5 * vol * vol) * years) / root
    d2 = d1 - root
    discount = math.exp(-rate * years)
    if kind is OptionType.CALL:
        return spot * _norm_cdf(d1) - strike * discount * _norm_cdf(d2)
    return strike * discount * _norm_cdf(-d2) - spot * _norm_cdf(-d1)


def realised_vol(closes: FloatArray, end: int, window: int = VOL_WINDOW_BARS) -> float | None:
    """Annualised volatility of the hourly log returns of the `window` closes up to and including `end`."""
    lo = end - window
    if lo < 0:
        return None
    returns = np.diff(np.log(closes[lo : end + 1]))
    sd = float(np.std(returns, ddof=1))
    return sd * math.sqrt(HOURLY_BARS_PER_YEAR) if math.isfinite(sd) and sd > 0 else None


@dataclass(frozen=True, slots=True)
class ModelledSpread:
    """Modelled premiums of both legs at entry and exit, and the spread's P&L in INR after costs."""

    hedge_entry: float
    main_entry: float
    hedge_exit: float
    main_exit: float
    vol: float
    costs: Decimal
    pnl: Decimal  # after costs, for the whole quantity

    @property
    def net_credit(self) -> float:
        return self.main_entry - self.hedge_entry


def model_spread(
    spread: Spread,
    entry_spot: float,
    entry_years: float,
    exit_spot: float,
    exit_years: float,
    vol: float,
    cost_per_lot_leg: Decimal = OPTION_COST_PER_LOT_LEG,
) -> ModelledSpread:
    """Price both legs at entry and exit with one volatility; P&L = credit kept on the main leg - hedge cost."""
    legs: Sequence[OptionLeg] = spread.entry_legs
    hedge_in, main_in = (black_scholes(leg.kind, entry_spot, leg.strike, entry_years, vol) for leg in legs)
    hedge_out, main_out = (black_scholes(leg.kind, exit_spot, leg.strike, exit_years, vol) for leg in legs)
    per_unit = (main_in - main_out) - (hedge_in - hedge_out)
    costs = cost_per_lot_leg * spread.lots * 4  # two legs in, two legs out
    pnl = (Decimal(repr(per_unit)) * spread.quantity - costs).quantize(Decimal("0.01"))
    return ModelledSpread(hedge_in, main_in, hedge_out, main_out, vol, costs, pnl)


TAG_ROLE: Final = {LegRole.HEDGE: "h", LegRole.MAIN: "m"}


class LegAction(StrEnum):
    OPEN = "o"
    CLOSE = "c"
    ROLLBACK = "r"  # undoing a hedge whose main leg failed


@dataclass(frozen=True, slots=True)
class LegOrder:
    """One child order of one leg: its broker tag, the contract's tradingsymbol, buy or sell, and units."""

    tag: str
    tradingsymbol: str
    buy: bool
    quantity: int

    def __post_init__(self) -> None:
        if not self.tag or len(self.tag) > 20 or not self.tag.isalnum():
            raise ValueError(f"a leg order's tag must be 1-20 letters and digits, was {self.tag!r}")
        if self.quantity < 1:
            raise ValueError(f"leg order {self.tag}: quantity must be positive, was {self.quantity}")


@dataclass(frozen=True, slots=True)
class LegFill:
    """What one leg order filled: units and the average premium (never more than ordered)."""

    tag: str
    tradingsymbol: str
    buy: bool
    quantity: int
    price: Decimal
    modelled: bool = False  # priced by the model, not by a market

    def __post_init__(self) -> None:
        if self.quantity < 0 or not self.price.is_finite() or self.price < 0:
            raise ValueError(f"leg fill {self.tag}: quantity and price must not be negative")


@dataclass(frozen=True, slots=True)
class SpreadPlan:
    """The contracts and sizes one spread trades: the child orders of each leg, in the spec's order."""

    signal_id: str
    hedge_symbol: str  # the venue's tradingsymbol of the hedge contract
    main_symbol: str
    quantity: int
    lot: int
    freeze: int = DEFAULT_FREEZE_QUANTITY

    def __post_init__(self) -> None:
        child_quantities(self.quantity, self.lot, self.freeze)  # whole lots within the freeze limit, or raise

    def orders(self, role: LegRole, action: LegAction, quantity: int | None = None) -> tuple[LegOrder, ...]:
        """One leg's child orders for `action`, tagged `<signal id><h|m><o|c|r><n>`; `quantity` defaults to all."""
        symbol = self.hedge_symbol if role is LegRole.HEDGE else self.main_symbol
        opening = action is LegAction.OPEN
        buy = opening if role is LegRole.HEDGE else not opening  # the hedge is bought, the main leg sold
        sizes = child_quantities(quantity or self.quantity, self.lot, self.freeze)
        prefix = f"{self.signal_id}{TAG_ROLE[role]}{action.value}"
        return tuple(LegOrder(f"{prefix}{n}", symbol, buy, size) for n, size in enumerate(sizes, start=1))
