"""Domain invariants: a bad instrument, setup or score must fail loudly, naming the rule it broke."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from engine.catalog import DEFAULT_WATCHLIST, default_instrument
from engine.domain import (
    Instrument,
    Interval,
    QualityScore,
    ScoreComponent,
    Setup,
    Side,
    ensure_utc,
    to_decimal,
)

BAR = datetime(2025, 3, 14, 5, 30, tzinfo=UTC)
D = Decimal


def long_setup(**overrides: object) -> Setup:
    fields: dict[str, object] = {
        "strategy": "ema_pullback",
        "symbol": "RELIANCE",
        "side": Side.LONG,
        "entry": D("1250.00"),
        "stop": D("1240.00"),
        "targets": (D("1275.00"),),
        "bar_time": BAR,
        "timeframe": Interval.M5,
    }
    fields.update(overrides)
    return Setup(**fields)  # type: ignore[arg-type]


def short_setup(**overrides: object) -> Setup:
    values: dict[str, object] = {"side": Side.SHORT, "stop": D("1260.00"), "targets": (D("1230.00"),)}
    values.update(overrides)
    return long_setup(**values)


# --- Instrument ---------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["tick_size", "pip_size", "lot_size", "contract_size"])
@pytest.mark.parametrize("bad", [D(0), D("-0.05"), D("NaN"), D("Infinity")])
def test_instrument_refuses_non_positive_or_non_finite_sizes_naming_the_field(field: str, bad: Decimal) -> None:
    with pytest.raises(ValueError, match=rf"{field} must be a positive decimal for RELIANCE"):
        replace(default_instrument("RELIANCE"), **{field: bad})


def test_instrument_refuses_a_float_tick_size_because_it_cannot_be_exact() -> None:
    with pytest.raises(ValueError, match="tick_size must be a positive decimal"):
        replace(default_instrument("EURUSD"), tick_size=0.00001)


def test_instrument_refuses_a_negative_spread() -> None:
    with pytest.raises(ValueError, match="spread must be a non-negative decimal for EURUSD"):
        replace(default_instrument("EURUSD"), spread=D("-0.00001"))


@pytest.mark.parametrize("symbol", ["", "   "])
def test_instrument_refuses_an_empty_symbol(symbol: str) -> None:
    with pytest.raises(ValueError, match="symbol must not be empty"):
        replace(default_instrument("SPY"), symbol=symbol)


def test_every_built_in_instrument_satisfies_the_invariants_and_quantises_its_own_spread() -> None:
    for instrument in DEFAULT_WATCHLIST:
        assert isinstance(instrument, Instrument)
        # A typical spread that is not a whole number of ticks would be a catalogue typo.
        assert instrument.price(instrument.spread) == instrument.spread, instrument.symbol


# --- UTC and decimals ---------------------------------------------------------------------------


def test_ensure_utc_refuses_a_naive_datetime_naming_the_field() -> None:
    with pytest.raises(ValueError, match="bar_time must be a timezone-aware UTC datetime"):
        ensure_utc(datetime(2025, 3, 14, 5, 30), "bar_time")


def test_ensure_utc_refuses_a_non_utc_offset() -> None:
    ist = datetime(2025, 3, 14, 11, 0, tzinfo=ZoneInfo("Asia/Kolkata"))
    with pytest.raises(ValueError, match="now must be a timezone-aware UTC datetime"):
        ensure_utc(ist, "now")


def test_ensure_utc_accepts_any_zero_offset_utc_spelling() -> None:
    for tz in (UTC, timezone.utc, ZoneInfo("UTC")):  # noqa: UP017 - both spellings on purpose
        ts = datetime(2025, 3, 14, 5, 30, tzinfo=tz)
        assert ensure_utc(ts, "ts") is ts


def test_to_decimal_takes_the_shortest_repr_not_the_binary_expansion() -> None:
    assert to_decimal(0.1, "price") == D("0.1")
    assert to_decimal(1.1 + 2.2, "price") == D("3.3000000000000003")  # the float really is this value
    assert to_decimal(2, "qty") == D(2)
    assert to_decimal("1.23450", "price") == D("1.23450")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), "NaN", "-Infinity"])
def test_to_decimal_refuses_non_finite_values_naming_the_field(bad: float | str) -> None:
    with pytest.raises(ValueError, match="entry must be a finite number"):
        to_decimal(bad, "entry")


def test_to_decimal_refuses_text_that_is_not_a_number() -> None:
    with pytest.raises(ValueError, match="stop must be a decimal number, was 'abc'"):
        to_decimal("abc", "stop")


# --- Setup invariants ---------------------------------------------------------------------------


def test_long_with_stop_above_entry_names_the_rule_and_the_values() -> None:
    with pytest.raises(ValueError, match=r"stop must be below entry for a long, was 1260\.00 vs entry 1250\.00"):
        long_setup(stop=D("1260.00"))


def test_long_with_stop_equal_to_entry_is_refused() -> None:
    with pytest.raises(ValueError, match="stop must be below entry for a long"):
        long_setup(stop=D("1250.00"))


def test_long_with_a_target_at_or_below_entry_is_refused() -> None:
    with pytest.raises(ValueError, match=r"targets must be above entry for a long, were \['1275.00', '1250.00'\]"):
        long_setup(targets=(D("1275.00"), D("1250.00")))


def test_short_with_stop_below_entry_names_the_rule() -> None:
    with pytest.raises(ValueError, match=r"stop must be above entry for a short, was 1240\.00 vs entry 1250\.00"):
        short_setup(stop=D("1240.00"))


def test_short_with_a_target_above_entry_is_refused() -> None:
    with pytest.raises(ValueError, match="targets must be below entry for a short"):
        short_setup(targets=(D("1260.50"),))


def test_setup_needs_at_least_one_target() -> None:
    with pytest.raises(ValueError, match="RELIANCE ema_pullback: a setup needs at least one target"):
        long_setup(targets=())


@pytest.mark.parametrize(
    ("field", "value"),
    [("entry", D(0)), ("stop", D("-1")), ("entry", D("NaN")), ("stop", 1240.0)],
)
def test_setup_prices_must_be_positive_finite_decimals(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"{field} must be a positive finite decimal"):
        long_setup(**{field: value})


def test_setup_refuses_a_naive_bar_time() -> None:
    with pytest.raises(ValueError, match="bar_time must be a timezone-aware UTC datetime"):
        long_setup(bar_time=datetime(2025, 3, 14, 5, 30))


def test_valid_long_and_short_setups_expose_risk_and_first_target() -> None:
    long = long_setup(targets=(D("1275.00"), D("1300.00")))
    assert long.target == D("1275.00")
    assert long.risk == D("10.00")
    short = short_setup()
    assert short.risk == D("10.00")


def test_reward_risk_is_the_first_target_over_the_stop_distance_to_two_decimals() -> None:
    assert long_setup().reward_risk == D("2.50")  # 25 / 10
    assert short_setup().reward_risk == D("2.00")  # 20 / 10
    assert long_setup(targets=(D("1263.33"),)).reward_risk == D("1.33")  # 13.33 / 10 exactly


def test_reward_risk_of_a_far_target_does_not_overflow_decimal_precision() -> None:
    # 1e24 / 0.00003 needs more than Decimal's default 28 digits once quantised to 0.01.
    setup = long_setup(entry=D("1.00003"), stop=D("1.00000"), targets=(D("1E+24"),))
    assert setup.reward_risk > D("3E+28")


def test_signal_id_is_deterministic_for_the_same_setup_seen_by_two_scans() -> None:
    first, second = long_setup(), long_setup()
    assert first is not second
    assert first.signal_id == second.signal_id
    assert len(first.signal_id) == 10
    assert int(first.signal_id, 16) >= 0  # hex


def test_signal_id_is_stable_when_a_rescan_nudges_the_levels() -> None:
    assert long_setup().signal_id == long_setup(entry=D("1250.05"), targets=(D("1280.00"),)).signal_id


@pytest.mark.parametrize(
    "change",
    [
        {"side": Side.SHORT, "stop": D("1260.00"), "targets": (D("1230.00"),)},
        {"bar_time": BAR + timedelta(minutes=5)},
        {"strategy": "breakout"},
        {"symbol": "INFY"},
        {"timeframe": Interval.H1},
    ],
)
def test_signal_id_differs_when_side_bar_strategy_symbol_or_timeframe_differs(change: dict[str, object]) -> None:
    assert long_setup(**change).signal_id != long_setup().signal_id


# --- Quality score types ------------------------------------------------------------------------


@pytest.mark.parametrize("total", [-0.1, 100.1, float("nan")])
def test_quality_score_total_must_be_within_0_and_100(total: float) -> None:
    with pytest.raises(ValueError, match=r"quality score must be within 0\.\.100"):
        QualityScore(total, ())


def test_quality_score_accepts_its_bounds() -> None:
    assert QualityScore(0.0, ()).total == 0.0
    assert QualityScore(100.0, ()).total == 100.0


@pytest.mark.parametrize(("value", "weight"), [(1.2, 0.5), (-0.1, 0.5), (float("nan"), 0.5)])
def test_score_component_value_must_be_within_0_and_1(value: float, weight: float) -> None:
    with pytest.raises(ValueError, match=r"score component momentum value must be within 0\.\.1"):
        ScoreComponent("momentum", value, weight, "RSI 55")


@pytest.mark.parametrize("weight", [1.5, -0.2, float("nan")])
def test_score_component_weight_must_be_within_0_and_1(weight: float) -> None:
    with pytest.raises(ValueError, match=r"score component momentum weight must be within 0\.\.1"):
        ScoreComponent("momentum", 0.5, weight, "RSI 55")


def test_top_ranks_components_by_contribution_then_name() -> None:
    score = QualityScore(
        60.0,
        (
            ScoreComponent("momentum", 1.0, 0.1, "a"),  # 0.10
            ScoreComponent("trend_alignment", 0.5, 0.4, "b"),  # 0.20
            ScoreComponent("reward_risk", 0.9, 0.3, "c"),  # 0.27
            ScoreComponent("level_room", 0.5, 0.2, "d"),  # 0.10, ties with momentum, sorts first by name
        ),
    )
    assert [c.name for c in score.top()] == ["reward_risk", "trend_alignment", "level_room"]
    assert [c.name for c in score.top(10)] == ["reward_risk", "trend_alignment", "level_room", "momentum"]
    assert score.top(0) == ()
    assert score.as_dict() == {"momentum": 1.0, "trend_alignment": 0.5, "reward_risk": 0.9, "level_room": 0.5}


# --- Enums --------------------------------------------------------------------------------------


def test_side_sign_and_interval_durations() -> None:
    assert (Side.LONG.sign, Side.SHORT.sign) == (1, -1)
    assert Interval.M5.delta == timedelta(minutes=5)
    assert Interval.H4.nanos == 4 * 3600 * 10**9
    assert Interval.H4.is_intraday
    assert not Interval.D1.is_intraday
    assert Interval("1h") is Interval.H1
