"""Position sizing: fixed-fractional, so a stop-out loses at most a chosen fraction of equity.

Money is in the instrument's QUOTE currency (USD for EURUSD and SPY, INR for RELIANCE): equity, the risk
budget and the notional cap must be given in that currency. Converting an account currency is the full
risk engine's job (a later issue). Arithmetic is exact Decimal: no rounding can size a position above the
budget, and quantities are floored to whole lot steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Context, Decimal, Inexact, InvalidOperation, localcontext
from typing import Final

from engine.domain import Instrument

MAX_RISK_FRACTION: Final = Decimal("0.1")
_FIXED: Final = Context(prec=60, traps=[Inexact, InvalidOperation])


def position_size(
    instrument: Instrument,
    entry: Decimal,
    stop: Decimal,
    equity: Decimal,
    risk_fraction: Decimal,
    *,
    max_notional: Decimal | None = None,
) -> Decimal:
    """Return the quantity (a multiple of the lot step) risking at most `equity x risk_fraction` to the stop.

    quantity = floor_to_lot(equity x risk_fraction / (|entry - stop| x contract_size)), capped by
    floor_to_lot(max_notional / (entry x contract_size)) when a cap is given. Returns 0 (quantised to the
    lot step) when not even one lot step fits: the caller reports "position too small for the risk budget".
    """
    _check(instrument, entry, stop, equity, risk_fraction, max_notional)
    lot, contract = instrument.lot_size, instrument.contract_size
    if max_notional is None:
        try:  # ordinary magnitudes: exact in a fixed wide context (checked: anything inexact raises)
            c = _FIXED
            steps = c.divide_int(
                c.multiply(equity, risk_fraction), c.multiply(c.multiply(c.abs(c.subtract(entry, stop)), contract), lot)
            )
            return c.quantize(c.multiply(max(steps, Decimal(0)), lot), lot)
        except (Inexact, InvalidOperation):
            pass
    with _exact(entry, stop, equity, risk_fraction, lot, contract, max_notional):
        steps = (equity * risk_fraction) // (abs(entry - stop) * contract * lot)
        if max_notional is not None:
            steps = min(steps, max_notional // (entry * contract * lot))
        return (max(steps, Decimal(0)) * lot).quantize(lot)


def _check(
    instrument: Instrument,
    entry: Decimal,
    stop: Decimal,
    equity: Decimal,
    risk_fraction: Decimal,
    max_notional: Decimal | None,
) -> None:
    named = {"entry": entry, "stop": stop, "equity": equity, "risk_fraction": risk_fraction}
    if max_notional is not None:
        named["max_notional"] = max_notional
    for name, value in named.items():
        if not isinstance(value, Decimal) or not value.is_finite():
            raise ValueError(f"{name} must be a finite Decimal, was {value!r}")
    if not 0 < risk_fraction <= MAX_RISK_FRACTION:
        raise ValueError(f"risk_fraction must be within (0, {MAX_RISK_FRACTION}], was {risk_fraction}")
    if equity <= 0:
        raise ValueError(f"equity must be positive, was {equity}")
    if entry <= 0 or stop <= 0:
        raise ValueError(f"{instrument.symbol}: entry and stop must be positive prices, were {entry} and {stop}")
    if entry == stop:
        raise ValueError(f"{instrument.symbol}: entry must differ from stop (no risk distance), both were {entry}")
    if max_notional is not None and max_notional <= 0:
        raise ValueError(f"max_notional must be positive when given, was {max_notional}")


@contextmanager
def _exact(*values: Decimal | None) -> Iterator[None]:
    """Run with enough precision that products and integer quotients are exact; anything inexact raises."""
    present = [v for v in values if v is not None]
    digits = sum(len(v.as_tuple().digits) + abs(v.adjusted()) for v in present)
    with localcontext() as ctx:
        ctx.prec = max(ctx.prec, 2 * digits + 10)
        ctx.traps[Inexact] = True
        yield
