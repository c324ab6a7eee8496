"""Decimal quantisation to the tick: every price a trader sees is an exact, honestly rounded tick multiple."""

from __future__ import annotations

import math
from dataclasses import replace
from decimal import (
    ROUND_CEILING,
    ROUND_DOWN,
    ROUND_FLOOR,
    ROUND_HALF_DOWN,
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    ROUND_UP,
    Decimal,
)
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.catalog import default_instrument
from engine.domain import Instrument, quantize_float, quantize_to_step, to_decimal

TICKS = [Decimal(t) for t in ("0.00001", "0.01", "0.05", "0.25", "1")]
ROUNDINGS = [ROUND_HALF_EVEN, ROUND_FLOOR, ROUND_CEILING]

ticks = st.sampled_from(TICKS)
prices = st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False)
# Decimals with more significant digits than a float carries, and more than Decimal's default 28.
long_decimals = st.decimals(min_value=Decimal("1E-8"), max_value=Decimal("1E+30"), places=12, allow_nan=False)

PROPERTY = settings(max_examples=200, deadline=None)


def with_tick(tick: Decimal) -> Instrument:
    return replace(default_instrument("EURUSD"), tick_size=tick, spread=Decimal(0))


def is_multiple(value: Decimal, step: Decimal) -> bool:
    """Exact check (Fractions), independent of the Decimal context's precision."""
    return Fraction(value) % Fraction(step) == 0


@PROPERTY
@given(value=prices, tick=ticks)
def test_nearest_tick_is_an_exact_multiple_within_half_a_tick(value: float, tick: Decimal) -> None:
    quantised = with_tick(tick).price(value)
    exact = to_decimal(value, "value")
    assert is_multiple(quantised, tick)
    assert abs(quantised - exact) <= tick / 2
    # Shown with the tick's decimals: a 0.05 tick prints 1234.50, not 1234.5 or 1234.500000001.
    assert quantised.as_tuple().exponent == tick.as_tuple().exponent


@PROPERTY
@given(value=prices, tick=ticks)
def test_floor_and_ceiling_bracket_the_input_one_tick_apart_at_most(value: float, tick: Decimal) -> None:
    instrument = with_tick(tick)
    exact = to_decimal(value, "value")
    low, high = instrument.price(value, ROUND_FLOOR), instrument.price(value, ROUND_CEILING)
    assert is_multiple(low, tick)
    assert is_multiple(high, tick)
    assert low <= exact <= high
    assert high - low == (0 if is_multiple(exact, tick) else tick)
    assert low <= instrument.price(value) <= high


@PROPERTY
@given(value=prices, tick=ticks, rounding=st.sampled_from(ROUNDINGS))
def test_quantising_twice_changes_nothing(value: float, tick: Decimal, rounding: str) -> None:
    instrument = with_tick(tick)
    once = instrument.price(value, rounding)
    for again_with in ROUNDINGS:
        assert instrument.price(once, again_with) == once


@PROPERTY
@given(a=prices, b=prices, tick=ticks, rounding=st.sampled_from(ROUNDINGS))
def test_quantisation_is_monotone(a: float, b: float, tick: Decimal, rounding: str) -> None:
    low, high = sorted((a, b))
    instrument = with_tick(tick)
    assert instrument.price(low, rounding) <= instrument.price(high, rounding)


@PROPERTY
@given(value=long_decimals, tick=ticks)
def test_quantize_to_step_stays_exact_beyond_the_default_28_digit_precision(value: Decimal, tick: Decimal) -> None:
    low = quantize_to_step(value, tick, ROUND_FLOOR)
    high = quantize_to_step(value, tick, ROUND_CEILING)
    nearest = quantize_to_step(value, tick, ROUND_HALF_EVEN)
    assert is_multiple(low, tick)
    assert is_multiple(high, tick)
    assert low <= value <= high
    assert Fraction(high) - Fraction(low) <= Fraction(tick)
    assert abs(Fraction(nearest) - Fraction(value)) <= Fraction(tick) / 2


def test_floor_of_a_29_digit_price_never_rounds_up() -> None:
    value = Decimal("1234567890123456789012345678.9")  # default precision would round the quotient up
    assert quantize_to_step(value, Decimal(1), ROUND_FLOOR) == Decimal("1234567890123456789012345678")
    assert quantize_to_step(value, Decimal(1), ROUND_CEILING) == Decimal("1234567890123456789012345679")


@pytest.mark.parametrize("value", [1e30, 1e100, 1.7976931348623157e308])
def test_huge_finite_prices_quantise_exactly_instead_of_raising(value: float) -> None:
    quantised = with_tick(Decimal("0.00001")).price(value)
    assert quantised == to_decimal(value, "value")
    assert quantised.as_tuple().exponent == -5


def test_half_ticks_round_to_the_even_multiple() -> None:
    nse = with_tick(Decimal("0.05"))
    assert nse.price(100.025) == Decimal("100.00")  # 2000.5 ticks -> 2000
    assert nse.price(100.075) == Decimal("100.10")  # 2001.5 ticks -> 2002
    assert nse.price(100.026) == Decimal("100.05")
    assert with_tick(Decimal("0.25")).price(10.125) == Decimal("10.00")  # 40.5 ticks -> 40
    assert with_tick(Decimal(1)).price(2.5) == Decimal(2)
    assert with_tick(Decimal(1)).price(3.5) == Decimal(4)


def test_no_binary_artefacts_reach_a_quoted_price() -> None:
    eurusd = default_instrument("EURUSD")
    assert to_decimal(0.1, "x") == Decimal("0.1")
    assert eurusd.price(1.1 + 0.00002) == Decimal("1.10002")  # the float is 1.1000200000000000...
    assert str(default_instrument("RELIANCE").price(0.1 + 0.2)) == "0.30"
    assert str(default_instrument("XAUUSD").price(2345.675)) == "2345.68"  # 234567.5 ticks -> even 234568


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_price_refuses_non_finite_input_naming_the_instrument(value: float) -> None:
    with pytest.raises(ValueError, match="EURUSD price must be a finite number"):
        default_instrument("EURUSD").price(value)


FAST_TICKS = [*TICKS, Decimal("0.1"), Decimal("0.5"), Decimal("5"), Decimal("0.003"), Decimal("2.5")]
ALL_ROUNDINGS = [ROUND_HALF_EVEN, ROUND_HALF_UP, ROUND_HALF_DOWN, ROUND_FLOOR, ROUND_CEILING, ROUND_DOWN, ROUND_UP]


def near_grid(tick: Decimal) -> st.SearchStrategy[float]:
    """Doubles on, one or two ulps beside, and half-way between tick multiples: where a float shortcut breaks."""
    units = st.integers(min_value=-(10**9), max_value=10**9)
    offsets = st.sampled_from([-2, -1, 0, 1, 2])
    halves = st.booleans()

    def build(u: int, off: int, half: bool) -> float:
        x = float((Decimal(u) + (Decimal("0.5") if half else 0)) * tick)
        for _ in range(abs(off)):
            x = math.nextafter(x, math.inf if off > 0 else -math.inf)
        return x

    return st.builds(build, units, offsets, halves)


@settings(max_examples=600, deadline=None)
@given(data=st.data(), tick=st.sampled_from(FAST_TICKS), rounding=st.sampled_from(ALL_ROUNDINGS))
def test_fast_float_quantiser_equals_the_decimal_route(data: st.DataObject, tick: Decimal, rounding: str) -> None:
    value = data.draw(st.one_of(near_grid(tick), st.floats(allow_nan=False, allow_infinity=False, width=64)))
    expected = quantize_to_step(to_decimal(value, "value"), tick, rounding)
    got = quantize_float(value, tick, rounding)
    assert got == expected, (value, tick, rounding)
    assert got.as_tuple().exponent == expected.as_tuple().exponent or got == 0


@pytest.mark.parametrize(
    ("value", "rounding", "expected"),
    [
        (1.1, ROUND_CEILING, "1.10"),  # 1.1 x 100 = 110.00000000000001 in floats: a naive ceil says 1.11
        (1089.0000000000002, ROUND_CEILING, "1089.01"),  # the repr carries digits past the tick: they count
        (1089.0000000000002, ROUND_FLOOR, "1089.00"),
        (0.285, ROUND_HALF_EVEN, "0.28"),  # a true half: decided by Decimal, not by the float 28.499999999999996
        (0.295, ROUND_HALF_UP, "0.30"),
    ],
)
def test_fast_float_quantiser_known_traps(value: float, rounding: str, expected: str) -> None:
    assert quantize_float(value, Decimal("0.01"), rounding) == Decimal(expected)


def test_fast_float_quantiser_rejects_what_to_decimal_rejects() -> None:
    with pytest.raises(ValueError, match="must be a finite number"):
        quantize_float(math.nan, Decimal("0.01"), ROUND_FLOOR, "stop")
