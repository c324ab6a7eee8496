"""The exit search: stops, targets, the both-touched bar, gaps, shorts, time and session exits."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.bars import Bars, IntArray
from engine.domain import Side
from engine.exits import FIRST_CHUNK, ExitEvent, StopTrigger, find_exit
from engine.trading import ExitReason
from tests.builders import make_bars

T0 = datetime(2025, 1, 6, 3, 45, tzinfo=UTC)  # make_bars' default start, 5-minute bars


def close_at(hour: int, minute: int) -> datetime:
    return datetime(2025, 1, 6, hour, minute, tzinfo=UTC)


def ohlc(rows: list[tuple[float, float, float, float]]) -> Bars:
    """Bars from (open, high, low, close) rows."""
    o, h, lo, c = (list(col) for col in zip(*rows, strict=True))
    return make_bars(c, open=o, high=h, low=lo)


# Long: entry ~100, stop 95, target 110. Bar 0 is pre-entry noise that would hit both levels.
LONG_BARS = ohlc(
    [
        (100, 111, 94, 100),  # 0: before start
        (100, 102, 98, 101),  # 1: nothing
        (101, 104, 95, 97),  # 2: low touches the stop exactly
        (97, 112, 96, 111),  # 3: would hit the target
    ]
)


def test_long_stop_touched_exactly_fills_at_the_stop_and_reports_the_bar_close() -> None:
    event = find_exit(LONG_BARS, 1, Side.LONG, 95.0, 110.0)
    assert event == ExitEvent(2, close_at(4, 0), 95.0, ExitReason.STOP)


def test_long_target_hit_fills_at_the_target() -> None:
    bars = ohlc([(100, 102, 98, 101), (101, 110, 99, 109), (109, 111, 90, 92)])
    assert find_exit(bars, 0, Side.LONG, 95.0, 110.0) == ExitEvent(1, close_at(3, 55), 110.0, ExitReason.TARGET)


def test_bar_touching_both_levels_takes_the_stop() -> None:
    bars = ohlc([(100, 102, 98, 101), (101, 113, 94, 105)])
    assert find_exit(bars, 0, Side.LONG, 95.0, 110.0) == ExitEvent(1, close_at(3, 55), 95.0, ExitReason.STOP)
    short = find_exit(bars, 0, Side.SHORT, 112.0, 96.0)
    assert short == ExitEvent(1, close_at(3, 55), 112.0, ExitReason.STOP)


def test_gap_below_a_longs_stop_fills_at_the_worse_open() -> None:
    bars = ohlc([(100, 102, 98, 101), (93, 96, 92, 95.5)])
    assert find_exit(bars, 0, Side.LONG, 95.0, 110.0) == ExitEvent(1, close_at(3, 55), 93.0, ExitReason.STOP)


def test_gap_above_a_longs_target_fills_at_the_better_open_even_if_the_bar_then_falls_to_the_stop() -> None:
    bars = ohlc([(100, 102, 98, 101), (112, 113, 94, 96)])
    assert find_exit(bars, 0, Side.LONG, 95.0, 110.0) == ExitEvent(1, close_at(3, 55), 112.0, ExitReason.TARGET)


def test_short_stop_and_target_mirror_the_long() -> None:
    # Short from ~100: stop 105 (high reaches it), target 90 (low reaches it).
    stopped = ohlc([(100, 103, 98, 101), (101, 105, 99, 104)])
    assert find_exit(stopped, 0, Side.SHORT, 105.0, 90.0) == ExitEvent(1, close_at(3, 55), 105.0, ExitReason.STOP)
    won = ohlc([(100, 103, 98, 99), (99, 100, 89.5, 91)])
    assert find_exit(won, 0, Side.SHORT, 105.0, 90.0) == ExitEvent(1, close_at(3, 55), 90.0, ExitReason.TARGET)


def test_short_gaps_fill_at_the_open_both_ways() -> None:
    gap_up = ohlc([(100, 103, 98, 101), (107, 108, 106, 107)])
    assert find_exit(gap_up, 0, Side.SHORT, 105.0, 90.0) == ExitEvent(1, close_at(3, 55), 107.0, ExitReason.STOP)
    gap_down = ohlc([(100, 103, 98, 101), (88, 106, 87, 100)])
    assert find_exit(gap_down, 0, Side.SHORT, 105.0, 90.0) == ExitEvent(1, close_at(3, 55), 88.0, ExitReason.TARGET)


def test_exit_on_exactly_the_start_bar_and_earlier_bars_are_ignored() -> None:
    bars = ohlc([(100, 120, 80, 100), (100, 101, 94, 96)])  # bar 0 would stop AND target: not searched
    assert find_exit(bars, 1, Side.LONG, 95.0, 110.0) == ExitEvent(1, close_at(3, 55), 95.0, ExitReason.STOP)
    assert find_exit(LONG_BARS, 2, Side.LONG, 95.0, 110.0) == ExitEvent(2, close_at(4, 0), 95.0, ExitReason.STOP)


def test_no_exit_yet_returns_none() -> None:
    bars = ohlc([(100, 102, 98, 101), (101, 109.99, 95.01, 100)])
    assert find_exit(bars, 0, Side.LONG, 95.0, 110.0) is None
    assert find_exit(bars, len(bars), Side.LONG, 95.0, 110.0) is None  # nothing opened since entry
    assert find_exit(bars, 0, Side.LONG, 95.0, 110.0, max_bars=3) is None  # the third bar has not come


def test_time_exit_at_the_close_of_the_last_allowed_bar() -> None:
    bars = ohlc([(100, 102, 98, 101), (101, 103, 99, 102), (102, 104, 100, 103.5), (103, 111, 101, 110)])
    assert find_exit(bars, 0, Side.LONG, 95.0, 110.0, max_bars=3) == ExitEvent(
        2, close_at(4, 0), 103.5, ExitReason.TIME
    )
    assert find_exit(bars, 1, Side.LONG, 95.0, 110.0, max_bars=1) == ExitEvent(
        1, close_at(3, 55), 102.0, ExitReason.TIME
    )
    # A level hit on the last allowed bar happens inside it, before its close.
    assert find_exit(bars, 1, Side.LONG, 95.0, 110.0, max_bars=3) == ExitEvent(
        3, close_at(4, 5), 110.0, ExitReason.TARGET
    )


def test_session_end_exit_at_the_close_of_the_entry_sessions_last_bar() -> None:
    bars = ohlc([(100, 102, 98, 101), (101, 103, 99, 102), (102, 104, 100, 103), (90, 91, 80, 85)])
    days: IntArray = np.array([7, 7, 7, 8], dtype=np.int64)
    assert find_exit(bars, 1, Side.LONG, 95.0, 110.0, session_day=days) == ExitEvent(
        2, close_at(4, 0), 103.0, ExitReason.SESSION_END
    )
    # Same bar for the time limit and the bell: the session end is reported.
    assert find_exit(bars, 1, Side.LONG, 95.0, 110.0, max_bars=2, session_day=days) == ExitEvent(
        2, close_at(4, 0), 103.0, ExitReason.SESSION_END
    )
    # An earlier time limit wins.
    assert find_exit(bars, 0, Side.LONG, 95.0, 110.0, max_bars=2, session_day=days) == ExitEvent(
        1, close_at(3, 55), 102.0, ExitReason.TIME
    )


def test_session_end_is_not_assumed_before_a_later_session_has_shown_up() -> None:
    bars = ohlc([(100, 102, 98, 101), (101, 103, 99, 102)])
    days: IntArray = np.array([7, 7], dtype=np.int64)
    assert find_exit(bars, 0, Side.LONG, 95.0, 110.0, session_day=days) is None


def test_hit_before_the_session_end_wins() -> None:
    bars = ohlc([(100, 102, 98, 101), (101, 103, 94, 96), (96, 97, 95.5, 96)])
    days: IntArray = np.array([7, 7, 8], dtype=np.int64)
    assert find_exit(bars, 0, Side.LONG, 95.0, 110.0, session_day=days) == ExitEvent(
        1, close_at(3, 55), 95.0, ExitReason.STOP
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": 5}, "start must be within 0..4"),
        ({"start": -1}, "start must be within 0..4"),
        ({"stop": 111.0}, "a long's stop must be below its target"),
        ({"side": Side.SHORT}, "a short's stop must be above its target"),
        ({"stop": float("nan")}, "positive finite prices"),
        ({"max_bars": 0}, "max_bars must be at least 1"),
        ({"session_day": np.array([1, 1], dtype=np.int64)}, "session_day has 2 values, expected 4"),
    ],
)
def test_invalid_arguments_name_the_rule(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"start": 0, "side": Side.LONG, "stop": 95.0, "target": 110.0} | kwargs
    with pytest.raises(ValueError, match=message):
        find_exit(LONG_BARS, **args)  # type: ignore[arg-type]


def reference_exit(
    bars: Bars,
    start: int,
    side: Side,
    stop: float,
    target: float,
    max_bars: int | None,
    session_day: IntArray | None,
) -> tuple[int, float, ExitReason] | None:
    """A plain per-bar loop stating the rules one bar at a time."""
    n = len(bars)
    for i in range(start, n):
        o, h, lo, c = bars.open[i], bars.high[i], bars.low[i], bars.close[i]
        if side is Side.LONG:
            if o <= stop:
                return i, o, ExitReason.STOP
            if o >= target:
                return i, o, ExitReason.TARGET
            if lo <= stop:
                return i, stop, ExitReason.STOP
            if h >= target:
                return i, target, ExitReason.TARGET
        else:
            if o >= stop:
                return i, o, ExitReason.STOP
            if o <= target:
                return i, o, ExitReason.TARGET
            if h >= stop:
                return i, stop, ExitReason.STOP
            if lo <= target:
                return i, target, ExitReason.TARGET
        if session_day is not None and i + 1 < n and session_day[i + 1] != session_day[start]:
            return i, c, ExitReason.SESSION_END
        if max_bars is not None and i - start + 1 == max_bars:
            return i, c, ExitReason.TIME
    return None


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Bars, int, Side, float, float, int | None, IntArray | None]:
    n = draw(st.integers(1, 25) | st.integers(60, 300))  # long runs cross the kernel's doubling windows
    grid = st.integers(2, 30)  # integer prices: exact touches and ties are common
    opens = draw(st.lists(grid, min_size=n, max_size=n))
    closes = draw(st.lists(grid, min_size=n, max_size=n))
    ups = draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))
    downs = draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))
    highs = [max(o, c) + u for o, c, u in zip(opens, closes, ups, strict=True)]
    lows = [max(min(o, c) - d, 1) for o, c, d in zip(opens, closes, downs, strict=True)]
    bars = make_bars(closes, open=opens, high=highs, low=lows)
    side = draw(st.sampled_from(Side))
    a, b = draw(st.integers(1, 33)), draw(st.integers(1, 33))
    if a == b:
        b = a + 1
    lo_level, hi_level = float(min(a, b)), float(max(a, b))
    stop, target = (lo_level, hi_level) if side is Side.LONG else (hi_level, lo_level)
    start = draw(st.integers(0, n))
    max_bars = draw(st.none() | st.integers(1, 8) | st.integers(60, 250))
    session_steps = st.integers(0, 1) | st.sampled_from([0] * 60 + [1])  # short or long sessions
    steps = draw(st.none() | st.lists(session_steps, min_size=n, max_size=n))
    session_day = None if steps is None else np.cumsum(np.asarray(steps, dtype=np.int64)) + 100
    return bars, start, side, stop, target, max_bars, session_day


@settings(max_examples=250, deadline=None)
@given(scenarios())
def test_matches_a_per_bar_loop(case: tuple[Bars, int, Side, float, float, int | None, IntArray | None]) -> None:
    bars, start, side, stop, target, max_bars, session_day = case
    event = find_exit(bars, start, side, stop, target, max_bars=max_bars, session_day=session_day)
    expected = reference_exit(bars, start, side, stop, target, max_bars, session_day)
    if expected is None:
        assert event is None
        return
    assert event is not None
    index, price, reason = expected
    assert (event.bar_index, event.price, event.reason) == (index, float(price), reason)
    assert event.at == bars.bar_time(index) + bars.interval.delta


@st.composite
def long_walks(draw: st.DrawFn) -> tuple[Bars, int, Side, float, float, int | None, IntArray | None]:
    """Random walks of 60-400 bars with levels at the extremes of a drawn span: first touches land late."""
    n = draw(st.integers(60, 400))
    moves = draw(st.lists(st.integers(-1, 1), min_size=n, max_size=n))
    closes = (np.cumsum(moves) + 500).tolist()
    opens = [closes[0], *closes[:-1]]
    highs = [max(o, c) + 1 for o, c in zip(opens, closes, strict=True)]
    lows = [min(o, c) - 1 for o, c in zip(opens, closes, strict=True)]
    bars = make_bars(closes, open=opens, high=highs, low=lows)
    start = draw(st.integers(0, n - 1))
    span_low, span_high = draw(st.integers(1, n - start)), draw(st.integers(1, n - start))
    low_level = float(min(lows[start : start + span_low]))
    high_level = float(max(highs[start : start + span_high]))
    if low_level >= high_level:
        high_level = low_level + 1
    side = draw(st.sampled_from(Side))
    stop, target = (low_level, high_level) if side is Side.LONG else (high_level, low_level)
    max_bars = draw(st.none() | st.integers(1, n))
    cuts = draw(st.none() | st.lists(st.integers(1, n - 1), max_size=3))
    session_day = None
    if cuts is not None:
        steps = np.zeros(n, dtype=np.int64)
        steps[cuts] = 1
        session_day = np.cumsum(steps) + 100
    return bars, start, side, stop, target, max_bars, session_day


@settings(max_examples=300, deadline=None)
@given(long_walks())
def test_long_trades_match_a_per_bar_loop_across_the_search_windows(
    case: tuple[Bars, int, Side, float, float, int | None, IntArray | None],
) -> None:
    test_matches_a_per_bar_loop.hypothesis.inner_test(case)  # type: ignore[attr-defined]


BOUNDARIES = sorted({k + d for k in (FIRST_CHUNK, 3 * FIRST_CHUNK, 7 * FIRST_CHUNK) for d in (-1, 0, 1)})


@pytest.mark.parametrize("at", BOUNDARIES)
@pytest.mark.parametrize("side", list(Side))
def test_a_touch_on_a_search_window_edge_is_found(at: int, side: Side) -> None:
    n = 8 * FIRST_CHUNK
    highs, lows = [101.0] * n, [99.0] * n
    if side is Side.LONG:
        highs[at] = 110.0
    else:
        lows[at] = 90.0
    bars = make_bars([100.0] * n, open=[100.0] * n, high=highs, low=lows)
    target = 110.0 if side is Side.LONG else 90.0
    stop = 80.0 if side is Side.LONG else 120.0
    event = find_exit(bars, 0, side, stop, target)
    assert event is not None
    assert (event.bar_index, event.reason) == (at, ExitReason.TARGET)


@pytest.mark.parametrize("at", BOUNDARIES)
def test_a_session_change_on_a_search_window_edge_ends_the_position_before_it(at: int) -> None:
    n = 8 * FIRST_CHUNK
    bars = make_bars([100.0] * n, open=[100.0] * n, high=[101.0] * n, low=[99.0] * n)
    days: IntArray = np.where(np.arange(n) < at, 5, 6).astype(np.int64)
    event = find_exit(bars, 0, Side.LONG, 90.0, 110.0, session_day=days)
    assert event is not None
    assert (event.bar_index, event.reason) == (at - 1, ExitReason.SESSION_END)


# Close-only stops -----------------------------------------------------------------------------------------


def test_a_close_only_stop_ignores_wicks_and_gaps_and_fills_at_the_close() -> None:
    bars = ohlc(
        [
            (100, 101, 90, 99),  # wick far through the stop: not stopped
            (94, 96, 93, 96),  # opens below the stop, closes above: not stopped
            (96, 97, 93, 94.5),  # closes below the stop: stopped at that close
        ]
    )
    event = find_exit(bars, 0, Side.LONG, 95.0, 110.0, stop_trigger=StopTrigger.CLOSE)
    assert event == ExitEvent(2, close_at(4, 0), 94.5, ExitReason.STOP)
    touch = find_exit(bars, 0, Side.LONG, 95.0, 110.0)
    assert touch is not None and touch.bar_index == 0 and touch.price == 95.0  # the default: the wick stops


def test_a_close_only_stop_lets_a_target_touched_in_the_bar_win_and_mirrors_for_shorts() -> None:
    bars = ohlc([(100, 111, 99, 94)])  # touches the target, then closes below the stop
    event = find_exit(bars, 0, Side.LONG, 95.0, 110.0, stop_trigger=StopTrigger.CLOSE)
    assert event is not None and (event.reason, event.price) == (ExitReason.TARGET, 110.0)
    short = ohlc([(100, 108, 99, 101), (101, 106, 100, 105.5)])
    event = find_exit(short, 0, Side.SHORT, 105.0, 90.0, stop_trigger=StopTrigger.CLOSE)
    assert event is not None and (event.bar_index, event.reason, event.price) == (1, ExitReason.STOP, 105.5)
