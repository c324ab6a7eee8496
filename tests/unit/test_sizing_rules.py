"""Fixed-fractional sizing (`engine.sizing.size_order`, the one path of the desk and the backtester): hand-computed
sizes, the caps, the invariants, and exact-arithmetic properties, in the instrument's own currency (rate 1)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.catalog import default_instrument
from engine.domain import Instrument
from engine.sizing import SizeLimits, size_order

D = Decimal
ONE = Fraction(1)


def position_size(
    instrument: Instrument,
    entry: Decimal,
    stop: Decimal,
    equity: Decimal,
    risk_fraction: Decimal,
    *,
    max_notional: Decimal | None = None,
) -> Decimal:
    """The quantity `size_order` gives in the instrument's own currency, with an optional notional cap."""
    limits = SizeLimits(max_notional=max_notional)
    return size_order(instrument, entry, stop, equity, risk_fraction, ONE, limits).quantity


@pytest.mark.parametrize(
    ("symbol", "entry", "stop", "equity", "fraction", "expected"),
    [
        # 10000 x 1% = 100 USD; 0.005 x 100000 = 500 USD per lot -> 0.2 lots.
        ("EURUSD", "1.10000", "1.09500", "10000", "0.01", "0.20"),
        # 25000 x 2% = 500; 10 x 100 oz = 1000 per lot -> 0.5 lots.
        ("XAUUSD", "2000.00", "1990.00", "25000", "0.02", "0.50"),
        # 10000 x 1% = 100; 3 per share -> 33.33 -> 33 shares (floored, never 34).
        ("AAPL", "200.00", "197.00", "10000", "0.01", "33"),
        # Short: the distance is what matters. 100 / 3 -> 33.
        ("AAPL", "197.00", "200.00", "10000", "0.01", "33"),
        # 1000 x 1% = 10; 1000 per coin -> 0.01 BTC in 0.00001 steps.
        ("BTCUSDT", "60000.00", "59000.00", "1000", "0.01", "0.01000"),
        # 1000 x 1% = 10; 333 per coin -> 0.03003003.. -> 0.03003.
        ("BTCUSDT", "60000.00", "59667.00", "1000", "0.01", "0.03003"),
        # 100000 x 1% = 1000; 50 x 75 = 3750 per lot -> 0.27 of a lot: too small.
        ("NIFTY50", "24000.00", "23950.00", "100000", "0.01", "0"),
    ],
)
def test_hand_computed_sizes(symbol: str, entry: str, stop: str, equity: str, fraction: str, expected: str) -> None:
    size = position_size(default_instrument(symbol), D(entry), D(stop), D(equity), D(fraction))
    assert size == D(expected)
    assert str(size) == expected  # quantised to the lot step's places


def test_notional_cap_is_floored_to_the_lot_step() -> None:
    aapl = default_instrument("AAPL")
    # Risk alone allows 33 shares; 5000 / 200 = 25 shares of notional.
    assert position_size(aapl, D("200.00"), D("197.00"), D(10000), D("0.01"), max_notional=D(5000)) == D(25)
    # 5050 / 200 = 25.25 -> 25.
    assert position_size(aapl, D("200.00"), D("197.00"), D(10000), D("0.01"), max_notional=D(5050)) == D(25)
    # A loose cap changes nothing.
    assert position_size(aapl, D("200.00"), D("197.00"), D(10000), D("0.01"), max_notional=D(10**6)) == D(33)
    # EURUSD: 15000 / (1.1 x 100000) = 0.13636.. lots -> 0.13.
    eur = default_instrument("EURUSD")
    capped = position_size(eur, D("1.10000"), D("1.09500"), D(10000), D("0.01"), max_notional=D(15000))
    assert capped == D("0.13")


def test_cap_below_one_lot_gives_zero() -> None:
    aapl = default_instrument("AAPL")
    assert position_size(aapl, D("200.00"), D("197.00"), D(10000), D("0.01"), max_notional=D(199)) == 0


def test_exactly_one_lots_risk_is_allowed() -> None:
    # 10000 x 0.03 = 300 = 3 x 100 exactly: 100 shares at the budget, not one fewer.
    aapl = default_instrument("AAPL")
    assert position_size(aapl, D("200.00"), D("197.00"), D(10000), D("0.03")) == D(100)


def test_more_digits_than_the_default_context_never_rounds_above_the_budget() -> None:
    # The budget is a hair under 3 lots' risk; a 28-digit division would round the ratio up to 3.
    aapl = default_instrument("AAPL")
    equity = D("29999.99999999999999999999999999999")  # 34 significant digits
    assert position_size(aapl, D("101"), D("100"), equity, D("0.0001")) == D(2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"risk_fraction": D(0)}, r"risk_fraction must be within \(0, 0.1\]"),
        ({"risk_fraction": D("0.11")}, r"risk_fraction must be within \(0, 0.1\]"),
        ({"equity": D(0)}, "equity must be a positive Decimal"),
        ({"stop": D("200.00")}, "entry and stop must be distinct positive prices"),
        ({"stop": D(-1)}, "entry and stop must be distinct positive prices"),
        ({"max_notional": D(0)}, "max_notional must be a positive Decimal or None"),
        ({"equity": D("NaN")}, "equity must be a positive Decimal"),
    ],
)
def test_invariants_name_the_rule(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "entry": D("200.00"),
        "stop": D("197.00"),
        "equity": D(10000),
        "risk_fraction": D("0.01"),
    } | kwargs
    with pytest.raises(ValueError, match=message):
        position_size(default_instrument("AAPL"), **args)  # type: ignore[arg-type]


LOTS = [D("0.01"), D("0.00001"), D("1"), D("0.001"), D("75"), D("0.25")]
CONTRACTS = [D("1"), D("100"), D("100000"), D("75"), D("0.1")]
prices = st.decimals(min_value=D("0.0001"), max_value=D("100000"), places=5, allow_nan=False, allow_infinity=False)
equities = st.decimals(min_value=D("0.01"), max_value=D("1E+12"), places=8, allow_nan=False, allow_infinity=False)
fractions_ = st.decimals(min_value=D("0.0001"), max_value=D("0.1"), places=4, allow_nan=False, allow_infinity=False)


def instrument_with(lot: Decimal, contract: Decimal) -> Instrument:
    return replace(default_instrument("AAPL"), lot_size=lot, contract_size=contract)


@settings(max_examples=300, deadline=None)
@given(
    lot=st.sampled_from(LOTS),
    contract=st.sampled_from(CONTRACTS),
    entry=prices,
    stop=prices,
    equity=equities,
    fraction=fractions_,
    cap=st.none() | equities,
)
def test_sizing_properties(
    lot: Decimal,
    contract: Decimal,
    entry: Decimal,
    stop: Decimal,
    equity: Decimal,
    fraction: Decimal,
    cap: Decimal | None,
) -> None:
    if entry == stop:
        return
    size = position_size(instrument_with(lot, contract), entry, stop, equity, fraction, max_notional=cap)
    q, step = Fraction(size), Fraction(lot)
    budget = Fraction(equity) * Fraction(fraction)
    at_risk = q * abs(Fraction(entry) - Fraction(stop)) * Fraction(contract)
    notional = q * Fraction(entry) * Fraction(contract)
    assert q >= 0
    assert q % step == 0  # a whole number of lot steps
    assert at_risk <= budget  # never more money at risk than the budget
    if cap is not None:
        assert notional <= Fraction(cap)
    # Tight: one more lot step would break the budget or the cap.
    more = q + step
    over_budget = more * abs(Fraction(entry) - Fraction(stop)) * Fraction(contract) > budget
    over_cap = cap is not None and more * Fraction(entry) * Fraction(contract) > Fraction(cap)
    assert over_budget or over_cap
    # Monotone in equity.
    bigger = position_size(instrument_with(lot, contract), entry, stop, equity * 2, fraction, max_notional=cap)
    assert bigger >= size
