"""Setup validation: whatever floats a strategy emits, the trader gets a sound setup or a stated reason."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from engine.calendars import get_calendar
from engine.catalog import DEFAULT_WATCHLIST, default_instrument
from engine.domain import Instrument, Rejection, RejectionKind, Setup, Side, to_decimal
from engine.pipeline import Candidate, ValidationRules, validate

PROPERTY = settings(max_examples=300, deadline=None)

# A bar that just closed inside every built-in calendar's session: Tuesday 2025-03-11 14:00Z is open for
# XNYS (10:00 New York), FX and crypto; NSE bars use 05:00Z (10:30 IST).
NSE_BAR = datetime(2025, 3, 11, 5, 0, tzinfo=UTC)
GLOBAL_BAR = datetime(2025, 3, 11, 14, 0, tzinfo=UTC)


def bar_for(instrument: Instrument) -> datetime:
    return NSE_BAR if instrument.calendar == "XNSE" else GLOBAL_BAR


def check(
    instrument: Instrument,
    side: Side,
    entry: float,
    stop: float,
    target: float,
    *,
    bar_time: datetime | None = None,
    now: datetime | None = None,
    rules: ValidationRules | None = None,
) -> Setup | Rejection:
    bar = bar_time or bar_for(instrument)
    candidate = Candidate("probe", side, 0, bar, entry, stop, target, ("because",))
    return validate(
        instrument,
        get_calendar(instrument.calendar),
        candidate,
        now or bar + instrument.interval.delta,
        rules or ValidationRules(),
    )


def rejected(result: Setup | Rejection) -> str:
    assert isinstance(result, Rejection), f"expected a rejection, got {result}"
    return result.reason


def accepted(result: Setup | Rejection) -> Setup:
    assert isinstance(result, Setup), f"expected a setup, got {result}"
    return result


def exact(value: float) -> Fraction:
    """The strategy's price as the trader would read it: the float's shortest decimal, exactly."""
    return Fraction(to_decimal(value, "price"))


def assert_sound(setup: Setup, instrument: Instrument, candidate: tuple[float, float, float], rules: ValidationRules):
    entry_f, stop_f, target_f = (exact(v) for v in candidate)
    entry, stop, target = (Fraction(v) for v in (setup.entry, setup.stop, setup.target))
    tick = Fraction(instrument.tick_size)
    sign = setup.side.sign
    # Stop on the losing side, target on the winning side.
    assert sign * (entry - stop) > 0
    assert sign * (target - entry) > 0
    # Every level is a whole number of ticks and at most one tick from what the strategy asked for.
    for quantised, wanted in ((entry, entry_f), (stop, stop_f), (target, target_f)):
        assert quantised % tick == 0
        assert abs(quantised - wanted) < tick
    # Quantisation never moves the stop towards entry or the target away from it.
    assert sign * (stop_f - stop) >= 0
    assert sign * (target_f - target) >= 0
    # The stop is far enough to be risk control rather than noise.
    distance = abs(entry - stop)
    assert distance >= rules.min_stop_ticks * tick
    assert distance > Fraction(instrument.spread) * Fraction(to_decimal(rules.min_stop_spreads, "spreads"))
    # The quantised reward:risk is never better than the strategy's own.
    assert (target - entry) / (entry - stop) <= (target_f - entry_f) / (entry_f - stop_f)
    assert Fraction(setup.reward_risk) <= (target_f - entry_f) / (entry_f - stop_f) + Fraction(1, 200)
    assert setup.symbol == instrument.symbol
    assert setup.timeframe == instrument.interval
    assert setup.reasons == ("because",)


def assert_explained(rejection: Rejection, instrument: Instrument) -> None:
    assert rejection.reason.strip()
    assert rejection.kind is RejectionKind.SETUP
    assert rejection.symbol == instrument.symbol
    assert rejection.strategy == "probe"


instruments = st.sampled_from(DEFAULT_WATCHLIST)
sides = st.sampled_from([Side.LONG, Side.SHORT])
rules_st = st.builds(
    ValidationRules,
    min_stop_ticks=st.integers(1, 20),
    min_stop_spreads=st.sampled_from([0.0, 0.7, 1.0, 1.5, 2.0, 3.0]),
    max_age_bars=st.integers(1, 5),
)
any_float = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, -1.0, 1e-300, 5e-324, 1e300, 1.7976931348623157e308]),
    st.floats(min_value=1e-3, max_value=1e6),
)


@PROPERTY
@given(instrument=instruments, side=sides, entry=any_float, stop=any_float, target=any_float, rules=rules_st)
def test_arbitrary_floats_give_a_sound_setup_or_an_explained_rejection(
    instrument: Instrument, side: Side, entry: float, stop: float, target: float, rules: ValidationRules
) -> None:
    result = check(instrument, side, entry, stop, target, rules=rules)
    if isinstance(result, Setup):
        assert_sound(result, instrument, (entry, stop, target), rules)
    else:
        assert_explained(result, instrument)


@st.composite
def plausible_candidates(draw: st.DrawFn) -> tuple[Instrument, Side, float, float, float]:
    """Prices near a realistic level so most candidates pass and the accepted path is well exercised."""
    instrument = draw(instruments)
    tick = float(instrument.tick_size)
    base = draw(st.floats(min_value=2000 * tick, max_value=2_000_000 * tick))
    risk = draw(st.floats(min_value=0.5 * tick, max_value=300 * tick))
    reward = draw(st.floats(min_value=0.5 * tick, max_value=900 * tick))
    side = draw(sides)
    return instrument, side, base, base - side.sign * risk, base + side.sign * reward


@PROPERTY
@given(candidate=plausible_candidates(), rules=rules_st)
def test_plausible_candidates_quantise_soundly(
    candidate: tuple[Instrument, Side, float, float, float], rules: ValidationRules
) -> None:
    instrument, side, entry, stop, target = candidate
    result = check(instrument, side, entry, stop, target, rules=rules)
    if isinstance(result, Setup):
        assert_sound(result, instrument, (entry, stop, target), rules)
        assert result.side is side
    else:
        assert_explained(result, instrument)
        # Only the tick and distance rules can reject a well-ordered, fresh candidate.
        assert result.reason.startswith(("levels collapse at tick", "stop distance")), result.reason


@PROPERTY
@given(candidate=plausible_candidates())
def test_a_wide_stop_on_a_fresh_bar_is_always_accepted(candidate: tuple[Instrument, Side, float, float, float]) -> None:
    instrument, side, entry, _, _ = candidate
    risk = 50 * float(instrument.tick_size) + 5 * float(instrument.spread)
    assume(entry - risk > 0)
    setup = accepted(check(instrument, side, entry, entry - side.sign * risk, entry + side.sign * 2 * risk))
    assert Fraction(setup.reward_risk) <= 2


@PROPERTY
@given(
    candidate=plausible_candidates(),
    reward_risk=st.sampled_from([1.0, 1.5, 2.0, 2.5, 3.0, 4.0]) | st.floats(min_value=0.1, max_value=10.0),
)
def test_a_target_stated_in_r_is_that_multiple_of_the_quantised_risk_to_the_tick(
    candidate: tuple[Instrument, Side, float, float, float], reward_risk: float
) -> None:
    instrument, side, entry, stop, _ = candidate
    bar = bar_for(instrument)
    far = entry + side.sign * 1e9  # the float target must be ignored when the multiple is given
    stated = Candidate("probe", side, 0, bar, entry, stop, far, ("because",), reward_risk)
    result = validate(
        instrument, get_calendar(instrument.calendar), stated, bar + instrument.interval.delta, ValidationRules()
    )
    if isinstance(result, Rejection):
        assert_explained(result, instrument)
        return
    exact_target = result.entry + side.sign * to_decimal(reward_risk, "rr") * result.risk
    shortfall = side.sign * (exact_target - result.target)
    assert Decimal(0) <= shortfall < instrument.tick_size  # onto the tick towards entry, never past it
    if (to_decimal(reward_risk, "rr") * result.risk) % instrument.tick_size == 0:
        assert result.target == exact_target  # e.g. 2R of a risk on the tick: exactly 2R, not one tick short


def test_two_r_of_an_nse_breakout_is_exact_where_floats_fall_one_tick_short() -> None:
    # 1214.30 + 2 x (1214.30 - 1211.45) = 1220.00 exactly; in floats it is 1219.9999999999998, which the
    # old float path floored to 1219.95.
    entry, stop = 1214.30, 1211.45
    assert entry + 2.0 * (entry - stop) < 1220.0
    floated = accepted(check(RELIANCE, Side.LONG, entry, stop, entry + 2.0 * (entry - stop)))
    assert floated.target == Decimal("1219.95")
    bar = bar_for(RELIANCE)
    stated = Candidate("probe", Side.LONG, 0, bar, entry, stop, math.nan, ("because",), 2.0)
    setup = accepted(validate(RELIANCE, get_calendar("XNSE"), stated, bar + RELIANCE.interval.delta, ValidationRules()))
    assert (setup.entry, setup.stop, setup.target, setup.reward_risk) == (
        Decimal("1214.30"),
        Decimal("1211.45"),
        Decimal("1220.00"),
        Decimal("2.00"),
    )


# --- Prices and sides ---------------------------------------------------------------------------

RELIANCE = default_instrument("RELIANCE")  # tick 0.05, spread 0.05
EURUSD = default_instrument("EURUSD")  # tick 0.00001, spread 0.00008


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 0.0, -5.0])
@pytest.mark.parametrize("field", ["entry", "stop", "target"])
def test_non_finite_or_non_positive_prices_are_rejected_by_name(field: str, bad: float) -> None:
    prices = {"entry": 1250.0, "stop": 1240.0, "target": 1275.0} | {field: bad}
    reason = rejected(check(RELIANCE, Side.LONG, **prices))
    assert reason == f"{field} is not a finite positive price ({bad})"


def test_long_with_stop_above_entry_is_rejected() -> None:
    reason = rejected(check(RELIANCE, Side.LONG, 1250.0, 1260.0, 1275.0))
    assert reason == "stop 1260 is not below entry 1250 for a long"


def test_short_with_stop_below_entry_is_rejected() -> None:
    reason = rejected(check(RELIANCE, Side.SHORT, 1250.0, 1240.0, 1230.0))
    assert reason == "stop 1240 is not above entry 1250 for a short"


def test_long_with_target_below_entry_is_rejected() -> None:
    reason = rejected(check(RELIANCE, Side.LONG, 1250.0, 1240.0, 1249.0))
    assert reason == "target 1249 is not above entry 1250 for a long"


def test_short_with_target_above_entry_is_rejected() -> None:
    reason = rejected(check(RELIANCE, Side.SHORT, 1250.0, 1260.0, 1250.0))
    assert reason == "target 1250 is not below entry 1250 for a short"


def test_levels_that_collapse_onto_one_tick_are_rejected() -> None:
    # Entry rounds up to 100.05, the target rounds down to 100.00: no room left for a profit.
    reason = rejected(check(RELIANCE, Side.LONG, 100.01, 99.00, 100.04))
    assert reason == "levels collapse at tick 0.05: entry 100.05, stop 99.00, target 100.00"


def test_levels_are_rounded_against_the_trader() -> None:
    long = accepted(check(RELIANCE, Side.LONG, 1250.02, 1240.02, 1275.08))
    assert (long.entry, long.stop, long.target) == (Decimal("1250.05"), Decimal("1240.00"), Decimal("1275.05"))
    short = accepted(check(RELIANCE, Side.SHORT, 1250.02, 1260.02, 1225.02))
    assert (short.entry, short.stop, short.target) == (Decimal("1250.00"), Decimal("1260.05"), Decimal("1225.05"))


def test_rounding_the_entry_never_flatters_the_reward_risk() -> None:
    # Strategy R:R is 0.98 / 1.02 = 0.96. A nearest-tick entry of 100.00 would have shown 1.00.
    setup = accepted(check(RELIANCE, Side.LONG, 100.02, 99.00, 101.00))
    assert setup.reward_risk <= Decimal("0.96")


def test_prices_already_on_the_tick_are_kept_exactly() -> None:
    setup = accepted(check(EURUSD, Side.SHORT, 1.08512, 1.08712, 1.08112))
    assert (setup.entry, setup.stop, setup.target) == (Decimal("1.08512"), Decimal("1.08712"), Decimal("1.08112"))
    assert setup.reward_risk == Decimal("2.00")


# --- Stop distance ------------------------------------------------------------------------------


def test_stop_closer_than_the_minimum_ticks_is_rejected() -> None:
    reason = rejected(check(RELIANCE, Side.LONG, 1250.0, 1249.9, 1260.0))
    assert reason == "stop distance 0.10 is under 3 ticks (0.15)"


def test_stop_exactly_at_the_minimum_ticks_is_accepted() -> None:
    rules = ValidationRules(min_stop_ticks=3, min_stop_spreads=0.0)
    setup = accepted(check(RELIANCE, Side.LONG, 1250.0, 1249.85, 1260.0, rules=rules))
    assert setup.risk == Decimal("0.15")


def test_stop_inside_twice_the_spread_is_rejected() -> None:
    # EURUSD spread 0.00008: a 15-point stop sits inside 2x the spread.
    reason = rejected(check(EURUSD, Side.LONG, 1.08500, 1.08485, 1.08700))
    assert reason == "stop distance 0.00015 is within 2x the typical spread 0.00008"


def test_stop_exactly_twice_the_spread_is_still_rejected_one_more_point_passes() -> None:
    assert "typical spread" in rejected(check(EURUSD, Side.LONG, 1.08500, 1.08484, 1.08700))
    assert accepted(check(EURUSD, Side.LONG, 1.08500, 1.08483, 1.08700)).risk == Decimal("0.00017")


def test_spread_multiple_is_compared_exactly_not_in_binary_floats() -> None:
    # ETHUSDT spread 0.10 x 0.7 = 0.07 exactly; in floats 0.1 * 0.7 = 0.06999999999999999 would let it pass.
    eth = default_instrument("ETHUSDT")
    rules = ValidationRules(min_stop_ticks=1, min_stop_spreads=0.7)
    reason = rejected(check(eth, Side.LONG, 3000.00, 2999.93, 3010.00, rules=rules))
    assert reason == "stop distance 0.07 is within 0.7x the typical spread 0.10"
    assert accepted(check(eth, Side.LONG, 3000.00, 2999.92, 3010.00, rules=rules)).risk == Decimal("0.08")


def test_instrument_without_a_typical_spread_only_needs_the_tick_rule() -> None:
    no_spread = replace(EURUSD, spread=Decimal(0))
    assert accepted(check(no_spread, Side.SHORT, 1.08500, 1.08503, 1.08400)).risk == Decimal("0.00003")


# --- Bar timing ---------------------------------------------------------------------------------


def test_a_bar_that_has_not_closed_yet_is_rejected() -> None:
    bar = NSE_BAR
    reason = rejected(check(RELIANCE, Side.LONG, 1250.0, 1240.0, 1275.0, bar_time=bar, now=bar + timedelta(minutes=4)))
    assert reason == "signal bar 2025-03-11T05:00Z has not closed at 2025-03-11T05:04Z"


def test_a_bar_closing_exactly_now_is_accepted() -> None:
    setup = accepted(check(RELIANCE, Side.LONG, 1250.0, 1240.0, 1275.0, now=NSE_BAR + timedelta(minutes=5)))
    assert setup.bar_time == NSE_BAR


def test_a_bar_from_three_hours_ago_on_an_open_market_is_stale() -> None:
    now = NSE_BAR + timedelta(hours=3)
    reason = rejected(check(RELIANCE, Side.LONG, 1250.0, 1240.0, 1275.0, now=now))
    assert reason == "stale: bar closed 2.9 h of market time ago (limit 2 bars = 10 min)"


def test_a_bar_just_inside_the_age_limit_is_fresh_and_one_minute_later_stale() -> None:
    closed = NSE_BAR + timedelta(minutes=5)
    accepted(check(RELIANCE, Side.LONG, 1250.0, 1240.0, 1275.0, now=closed + timedelta(minutes=10)))
    assert "stale" in rejected(check(RELIANCE, Side.LONG, 1250.0, 1240.0, 1275.0, now=closed + timedelta(minutes=11)))


def test_friday_close_fx_setup_is_still_fresh_on_saturday() -> None:
    # Summer: New York 17:00 is 21:00Z. The last Friday bar opens 20:00Z and closes with the week.
    friday_bar = datetime(2025, 7, 11, 20, 0, tzinfo=UTC)
    saturday = datetime(2025, 7, 12, 10, 0, tzinfo=UTC)
    setup = accepted(check(EURUSD, Side.LONG, 1.17000, 1.16800, 1.17400, bar_time=friday_bar, now=saturday))
    assert setup.bar_time == friday_bar


def test_friday_close_fx_setup_goes_stale_once_the_new_week_has_traded_two_hours() -> None:
    friday_bar = datetime(2025, 7, 11, 20, 0, tzinfo=UTC)
    sunday_open = datetime(2025, 7, 13, 21, 0, tzinfo=UTC)
    args = (EURUSD, Side.LONG, 1.17000, 1.16800, 1.17400)
    accepted(check(*args, bar_time=friday_bar, now=sunday_open + timedelta(hours=2)))
    reason = rejected(check(*args, bar_time=friday_bar, now=sunday_open + timedelta(hours=2, minutes=1)))
    assert reason == "stale: bar closed 2.0 h of market time ago (limit 2 bars = 2.0 h)"


def test_nse_last_bar_of_friday_is_fresh_before_monday_open() -> None:
    last_bar = datetime(2025, 3, 14, 9, 55, tzinfo=UTC)
    monday_pre_open = datetime(2025, 3, 17, 3, 30, tzinfo=UTC)
    accepted(check(RELIANCE, Side.SHORT, 1250.0, 1260.0, 1230.0, bar_time=last_bar, now=monday_pre_open))


def test_a_setup_from_weeks_ago_is_stale_in_plain_elapsed_time() -> None:
    old = datetime(2025, 1, 7, 5, 0, tzinfo=UTC)
    reason = rejected(check(RELIANCE, Side.LONG, 1250.0, 1240.0, 1275.0, bar_time=old, now=NSE_BAR))
    assert reason.startswith("stale: bar closed 63.0 days")


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="now must be a timezone-aware UTC datetime"):
        check(RELIANCE, Side.LONG, 1250.0, 1240.0, 1275.0, now=datetime(2025, 3, 11, 5, 5))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_stop_ticks": 0}, "min_stop_ticks must be at least 1"),
        ({"min_stop_spreads": -0.5}, "min_stop_spreads must not be negative"),
        ({"max_age_bars": 0}, "max_age_bars must be at least 1"),
    ],
)
def test_validation_rules_refuse_nonsense(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ValidationRules(**kwargs)  # type: ignore[arg-type]
