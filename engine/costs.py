"""The fill cost model: spread, slippage and commission, used by the paper broker and the backtester.

A bar close (or a stop/target level) is treated as the mid price. A market order buys at the ask and sells
at the bid, each half the instrument's typical spread away from the mid, then pays `slippage_bps` of that
price against the trader. Prices are rounded to the tick against the trader (bid and sells down, ask and
buys up), so a simulated fill is never better than the market could give. Exits of stops and targets go
through the same path: every exit pays half the spread and the slippage (for a resting target limit that is
conservative: a real limit does not fill worse than its price).

Commission is `commission_bps` of the notional (price x quantity x contract_size) plus
`commission_per_order`, in the instrument's quote currency, rounded half-up to 0.01 (cents, paise).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Context, Decimal
from typing import Final

from engine.domain import Instrument, Side, quantize_to_step, to_decimal
from engine.trading import Quote

BPS: Final = Decimal(10_000)
CENT: Final = Decimal("0.01")
WIDE_PRECISION: Final = 100
ZERO_FEE: Final = Decimal("0.00")
# Precise enough that the sums and products of prices here are exact before rounding (a context object,
# not a context manager: its methods are as exact and cost no thread-local switch per call).
_WIDE: Final = Context(prec=WIDE_PRECISION)


@dataclass(frozen=True, slots=True)
class CostModel:
    """Slippage and commission charged on every simulated fill (basis points are of price / notional)."""

    slippage_bps: Decimal = Decimal(0)
    commission_bps: Decimal = Decimal(0)
    commission_per_order: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        for name in ("slippage_bps", "commission_bps", "commission_per_order"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                raise ValueError(f"{name} must be a non-negative finite Decimal, was {value!r}")
        if self.slippage_bps >= BPS:
            raise ValueError(f"slippage_bps must be below {BPS} (100%), was {self.slippage_bps}")


def quote_from_price(instrument: Instrument, price: Decimal, at: datetime) -> Quote:
    """Build a quote around `price`: half the typical spread each side, bid floored and ask ceiled to the tick.

    A bid that would reach zero is held at one tick (the lowest positive price).
    """
    bid, ask = _bid(instrument, price), _ask(instrument, price)
    return Quote(instrument.symbol, bid, ask, at)


def fill_price(quote: Quote, side: Side, cost_model: CostModel, instrument: Instrument) -> Decimal:
    """Return the fill of a market order: buys (LONG) at ask + slippage, sells (SHORT) at bid - slippage."""
    if quote.symbol != instrument.symbol:
        raise ValueError(f"quote is for {quote.symbol}, not {instrument.symbol}")
    return _slipped(instrument, quote.entry_price(side), side, cost_model)


def market_fill(instrument: Instrument, mid: Decimal, side: Side, cost_model: CostModel) -> Decimal:
    """Return the fill of a market order around `mid`: `fill_price` of `quote_from_price`'s quote, the one side only."""
    touched = _ask(instrument, mid) if side is Side.LONG else _bid(instrument, mid)
    return _slipped(instrument, touched, side, cost_model)


def commission(price: Decimal, quantity: Decimal, instrument: Instrument, cost_model: CostModel) -> Decimal:
    """Return the commission of one order: bps of notional plus the per-order fee, half-up to 0.01."""
    if not price.is_finite() or price <= 0 or not quantity.is_finite() or quantity <= 0:
        raise ValueError(f"commission needs a positive price and quantity, were {price} and {quantity}")
    if not cost_model.commission_bps and not cost_model.commission_per_order:
        return ZERO_FEE
    w = _WIDE
    fee = w.divide(
        w.multiply(w.multiply(w.multiply(price, quantity), instrument.contract_size), cost_model.commission_bps), BPS
    )
    return quantize_to_step(w.add(fee, cost_model.commission_per_order), CENT, ROUND_HALF_UP)


def exit_fill_price(
    price: Decimal | float, position_side: Side, cost_model: CostModel, instrument: Instrument
) -> Decimal:
    """Return the fill of closing a `position_side` position at `price`: a long sells, a short buys."""
    mid = to_decimal(price, f"{instrument.symbol} exit price")
    closing = Side.SHORT if position_side is Side.LONG else Side.LONG
    touched = _ask(instrument, mid) if closing is Side.LONG else _bid(instrument, mid)
    return _slipped(instrument, touched, closing, cost_model)


def _bid(instrument: Instrument, price: Decimal) -> Decimal:
    _check_price(instrument, price)
    raw = _WIDE.subtract(price, _WIDE.divide(instrument.spread, 2)) if instrument.spread else price
    return max(quantize_to_step(raw, instrument.tick_size, ROUND_FLOOR), instrument.tick_size)


def _ask(instrument: Instrument, price: Decimal) -> Decimal:
    _check_price(instrument, price)
    raw = _WIDE.add(price, _WIDE.divide(instrument.spread, 2)) if instrument.spread else price
    return quantize_to_step(raw, instrument.tick_size, ROUND_CEILING)


def _slipped(instrument: Instrument, price: Decimal, side: Side, cost_model: CostModel) -> Decimal:
    """Move `price` by the slippage against the trader and round it to the tick against the trader."""
    moved = price
    if cost_model.slippage_bps:
        factor = _WIDE.add(1, _WIDE.divide(side.sign * cost_model.slippage_bps, BPS))
        moved = _WIDE.multiply(price, factor)
    if side is Side.LONG:
        return quantize_to_step(moved, instrument.tick_size, ROUND_CEILING)
    sold = quantize_to_step(moved, instrument.tick_size, ROUND_FLOOR)
    if sold <= 0:
        raise ValueError(f"{instrument.symbol}: a sell at {price} less slippage would fill at {sold}, not above 0")
    return sold


def _check_price(instrument: Instrument, price: Decimal) -> None:
    if not isinstance(price, Decimal) or not price.is_finite() or price <= 0:
        raise ValueError(f"{instrument.symbol}: price must be a positive finite Decimal, was {price!r}")
