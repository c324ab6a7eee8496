"""Order sizing in the account currency, checked against sizes computed by hand."""

from __future__ import annotations

import math
from dataclasses import replace
from decimal import Decimal as D
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from engine.catalog import default_instrument
from engine.costs import CostModel
from engine.domain import AssetClass, Instrument
from engine.sizing import (
    SizeLimits,
    pnl_to_account,
    quote_currency,
    quote_to_account,
    size_order,
    split_children,
    to_money,
)

EURUSD = default_instrument("EURUSD")
XAUUSD = default_instrument("XAUUSD")
USDJPY = replace(EURUSD, symbol="USDJPY", ticker="USDJPY=X", tick_size=D("0.001"), pip_size=D("0.01"))
EURGBP = replace(EURUSD, symbol="EURGBP", ticker="EURGBP=X")
NIFTY = default_instrument("NIFTY50")


def test_eurusd_for_a_usd_account() -> None:
    # $100 at risk; 20 pips x 100,000 = $200 per lot -> 0.50 lots.
    sized = size_order(EURUSD, D("1.08500"), D("1.08300"), D(10000), D("0.01"), quote_to_account(EURUSD, "USD", D(1)))
    assert sized.quantity == D("0.50") and sized.risk_money == D("100.00") and sized.children == (D("0.50"),)
    assert sized.notional == D("54250.00")


def test_usdjpy_converts_yen_into_dollars_at_the_entry_price() -> None:
    # 0.500 JPY x 100,000 = 50,000 JPY per lot = $333.33 at 150.000 -> $100 buys 0.30 lots exactly.
    rate = quote_to_account(USDJPY, "USD", D("150.000"))
    assert rate == Fraction(1, 150)
    sized = size_order(USDJPY, D("150.000"), D("149.500"), D(10000), D("0.01"), rate)
    assert sized.quantity == D("0.30") and sized.risk_money == D("100.00")


def test_gold_pip_and_contract_are_right() -> None:
    # $10 stop x 100 oz = $1,000 per lot -> $100 buys 0.10 lots (not 0.00001: gold is not 10,000x a FX pip).
    sized = size_order(XAUUSD, D("2000.00"), D("1990.00"), D(10000), D("0.01"), quote_to_account(XAUUSD, "USD", D(1)))
    assert sized.quantity == D("0.10") and sized.risk_money == D("100.00") and sized.notional == D("20000.00")


def test_a_eur_account_trading_eurusd() -> None:
    # 20 pips x 100,000 = $200 per lot = EUR 181.82 at 1.10000 -> EUR 100 buys 0.55 lots.
    rate = quote_to_account(EURUSD, "EUR", D("1.10000"))
    sized = size_order(EURUSD, D("1.10000"), D("1.09800"), D(10000), D("0.01"), rate)
    assert sized.quantity == D("0.55") and sized.risk_money == D("100.00")


def test_a_cross_needs_the_linking_pair() -> None:
    with pytest.raises(ValueError, match="no GBPUSD or USDGBP price"):
        quote_to_account(EURGBP, "USD", D("0.85"))
    assert quote_to_account(EURGBP, "USD", D("0.85"), {"GBPUSD": D("1.25")}) == Fraction(5, 4)


def test_sizes_never_round_up_and_limits_apply_with_their_reason() -> None:
    one = Fraction(1)
    assert size_order(EURUSD, D("1.08500"), D("1.08301"), D(10000), D("0.01"), one).quantity == D("0.50")
    capped = size_order(EURUSD, D("1.08500"), D("1.08300"), D(10000), D("0.01"), one, SizeLimits(max_quantity=D("0.2")))
    assert capped.quantity == D("0.20") and "maximum size" in capped.notes[0]
    by_notional = size_order(
        EURUSD, D("1.08500"), D("1.08300"), D(10000), D("0.01"), one, SizeLimits(max_notional=D(30000))
    )
    assert by_notional.quantity == D("0.27") and "maximum notional" in by_notional.notes[0]  # 30000 / 1085 per 0.01
    small = size_order(EURUSD, D("1.08500"), D("1.08300"), D(10000), D("0.01"), one, SizeLimits(min_quantity=D(1)))
    assert small.quantity == 0 and small.children == () and "under the minimum size" in small.notes[0]


def test_orders_over_the_freeze_quantity_go_out_as_children() -> None:
    assert split_children(D(4000), D(1800), D(1)) == (D(1800), D(1800), D(400))
    assert split_children(D(3600), D(1800), D(1)) == (D(1800), D(1800))
    assert split_children(D("0.5"), None, D("0.01")) == (D("0.5"),)
    # NIFTY: 75 per lot; INR 5,000 at risk, 10 points x 75 = INR 750 per lot -> 6 lots; freeze 4 lots -> 4 + 2.
    sized = size_order(
        NIFTY, D("22000.00"), D("21990.00"), D(500000), D("0.01"), Fraction(1), SizeLimits(freeze_quantity=D(4))
    )
    assert sized.quantity == D(6) and sized.children == (D(4), D(2)) and sized.risk_money == D("4500.00")
    assert "2 child orders" in sized.notes[0]


def test_quote_currencies() -> None:
    assert [quote_currency(i) for i in (EURUSD, USDJPY, XAUUSD, NIFTY, default_instrument("BTCUSDT"))] == [
        "USD",
        "JPY",
        "USD",
        "INR",
        "USD",
    ]
    odd = Instrument("FOO", "FOO", AssetClass.EQUITY, EURUSD.interval, D("0.01"), D("0.01"), D(1), D(1), "X", "UTC")
    with pytest.raises(ValueError, match="cannot tell its quote currency"):
        quote_currency(odd)


def test_invalid_inputs_name_the_rule() -> None:
    with pytest.raises(ValueError, match="risk_fraction must be within"):
        size_order(EURUSD, D("1.1"), D("1.0"), D(100), D("0.5"), Fraction(1))
    with pytest.raises(ValueError, match="distinct positive prices"):
        size_order(EURUSD, D("1.1"), D("1.1"), D(100), D("0.01"), Fraction(1))
    with pytest.raises(ValueError, match="min_quantity must not exceed max_quantity"):
        SizeLimits(min_quantity=D(2), max_quantity=D(1))


def _fraction_sizing(
    instrument: Instrument, entry: D, stop: D, equity: D, risk: D, rate: Fraction, costs: CostModel
) -> tuple[int, Fraction, Fraction, Fraction]:
    """The sizing formula in plain Fractions (the oracle): steps, and the risk, notional and costs as Fractions."""
    lot, contract = Fraction(instrument.lot_size), Fraction(instrument.contract_size)
    per_unit = Fraction(instrument.spread) + Fraction(costs.slippage_bps + costs.commission_bps) / 10_000 * (
        Fraction(entry) + Fraction(stop)
    )
    fixed = 2 * Fraction(costs.commission_per_order)
    loss = abs(Fraction(entry) - Fraction(stop)) * contract * lot * rate
    per_step = per_unit * contract * lot * rate
    steps = max(math.floor((Fraction(equity) * Fraction(risk) - fixed * rate) / (loss + per_step)), 0)
    spent = steps * per_step + (fixed * rate if steps else 0)
    return steps, steps * loss, steps * Fraction(entry) * contract * lot * rate, spent


@settings(max_examples=300, deadline=None)
@given(
    entry=st.decimals(min_value=D("0.0001"), max_value=D(100000), places=4),
    distance=st.decimals(min_value=D("0.0001"), max_value=D(500), places=4),
    equity=st.decimals(min_value=D(1), max_value=D(10_000_000), places=2),
    risk=st.sampled_from([D("0.001"), D("0.005"), D("0.01"), D("0.02")]),
    rate=st.fractions(min_value=Fraction(1, 1000), max_value=1000, max_denominator=10**6),
    slippage=st.decimals(min_value=0, max_value=D(50), places=2),
    per_order=st.decimals(min_value=0, max_value=D(20), places=2),
    short=st.booleans(),
)
def test_integer_sizing_equals_the_fraction_formula(
    entry: D, distance: D, equity: D, risk: D, rate: Fraction, slippage: D, per_order: D, short: bool
) -> None:
    stop = entry + distance if short else entry - distance
    assume(stop > 0)
    costs = CostModel(slippage_bps=slippage, commission_bps=D("2.5"), commission_per_order=per_order)
    sized = size_order(XAUUSD, entry, stop, equity, risk, rate, costs=costs)
    steps, loss, notional, spent = _fraction_sizing(XAUUSD, entry, stop, equity, risk, rate, costs)
    assert sized.quantity == (D(steps) * XAUUSD.lot_size).quantize(XAUUSD.lot_size)
    cents = [D(round(x * 100)) / 100 for x in (loss, notional, spent)]  # Fraction rounds half-even
    assert [sized.risk_money, sized.notional, sized.costs] == cents
    assert to_money(loss) == cents[0]
    assert pnl_to_account(D("-12.345"), rate) == D(round(Fraction("-12.345") * rate * 100)) / 100
