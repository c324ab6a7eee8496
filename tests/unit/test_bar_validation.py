"""validate_bars: cleaning notes, rejections with reasons, staleness in market time, and robustness."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data.market.validation import BarCheck, validate_bars
from engine.bars import Bars
from engine.calendars import get_calendar
from engine.catalog import default_instrument
from engine.domain import Interval
from tests.support import shared_bars

EURUSD = default_instrument("EURUSD")
BTC = default_instrument("BTCUSDT")
RELIANCE = default_instrument("RELIANCE")
SPY_DAILY = replace(default_instrument("SPY"), interval=Interval.D1)
FX, CRYPTO, XNSE, XNYS = (get_calendar(n) for n in ("FX", "CRYPTO", "XNSE", "XNYS"))
FRIDAY_CLOSE = datetime(2025, 3, 14, 21, 0, tzinfo=UTC)  # FX week ends 17:00 New York (EDT)


def eurusd_until(end: datetime, n: int = 500) -> pd.DataFrame:
    return shared_bars("EURUSD", "1h").visible_at(end).tail(n).to_frame()


def check(frame: pd.DataFrame, now: datetime, **kwargs: object) -> BarCheck:
    kwargs.setdefault("min_bars", 100)
    return validate_bars(frame, EURUSD, FX, now, **kwargs)  # type: ignore[arg-type]


def test_clean_real_bars_pass_untouched() -> None:
    frame = eurusd_until(FRIDAY_CLOSE)
    result = check(frame, FRIDAY_CLOSE)
    assert result.ok and result.notes == () and result.rejection is None
    assert result.bars is not None
    pd.testing.assert_frame_equal(result.bars.to_frame(), frame)


def test_duplicates_keep_the_last_row() -> None:
    frame = eurusd_until(FRIDAY_CLOSE)
    revision = frame.iloc[[100, 200]].copy()
    revision["close"] = revision["high"]
    result = check(pd.concat([frame, revision]), FRIDAY_CLOSE)
    assert result.bars is not None and len(result.bars) == 500
    assert result.bars.close[100] == frame["high"].to_numpy()[100]
    assert result.bars.close[200] == frame["high"].to_numpy()[200]
    assert "dropped 2 duplicate-timestamp row(s), keeping the last (latest revision) of each" in result.notes


def test_unsorted_rows_are_sorted_with_a_note() -> None:
    frame = eurusd_until(FRIDAY_CLOSE)
    shuffled = frame.iloc[np.random.default_rng(7).permutation(len(frame))]
    result = check(shuffled, FRIDAY_CLOSE)
    assert result.bars is not None
    pd.testing.assert_frame_equal(result.bars.to_frame(), frame)
    assert any(note.startswith("sorted out-of-order timestamps") for note in result.notes)


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("close", np.nan, "missing or non-finite price"),
        ("open", np.inf, "missing or non-finite price"),
        ("low", 0.0, "non-positive price"),
        ("high", -1.0, "non-positive price"),
        ("volume", -5.0, "negative or infinite volume"),
    ],
)
def test_a_few_corrupt_bars_are_dropped_with_a_note(column: str, value: float, reason: str) -> None:
    frame = eurusd_until(FRIDAY_CLOSE)
    values = frame[column].to_numpy().copy()
    values[[10, 300]] = value
    frame[column] = values
    result = check(frame, FRIDAY_CLOSE)
    assert result.bars is not None and len(result.bars) == 498
    first = f"{frame.index[10]:%Y-%m-%dT%H:%MZ}"
    assert f"dropped 2 corrupt bar(s) of 500 (first at {first}: {reason})" in result.notes
    assert frame.index[10].value not in result.bars.time


def test_swapped_high_and_low_are_corrupt() -> None:
    frame = eurusd_until(FRIDAY_CLOSE)
    high, low = frame["high"].to_numpy().copy(), frame["low"].to_numpy().copy()
    high[42], low[42] = low[42], high[42]
    frame["high"], frame["low"] = high, low
    result = check(frame, FRIDAY_CLOSE)
    assert result.bars is not None and len(result.bars) == 499
    assert any("high below low" in note for note in result.notes)


def test_high_below_body_and_low_above_body_are_corrupt() -> None:
    frame = eurusd_until(FRIDAY_CLOSE)
    high, low = frame["high"].to_numpy().copy(), frame["low"].to_numpy().copy()
    high[5] = np.minimum(frame["open"].to_numpy()[5], frame["close"].to_numpy()[5]) - 1e-5
    low[6] = np.maximum(frame["open"].to_numpy()[6], frame["close"].to_numpy()[6]) + 1e-5
    high[6] = max(high[6], low[6])
    frame["high"], frame["low"] = high, low
    result = check(frame, FRIDAY_CLOSE)
    assert result.bars is not None and len(result.bars) == 498


def test_too_many_corrupt_bars_reject_the_symbol() -> None:
    frame = eurusd_until(FRIDAY_CLOSE)
    close = frame["close"].to_numpy().copy()
    close[[3, 50, 99, 120, 121, 122]] = np.nan
    frame["close"] = close
    result = check(frame, FRIDAY_CLOSE)
    assert not result.ok and result.bars is None
    assert result.rejection == (
        f"6 of 500 bars are corrupt (first at {frame.index[3]:%Y-%m-%dT%H:%MZ}: missing or non-finite price)"
    )
    assert check(frame, FRIDAY_CLOSE, max_bad_fraction=0.02).ok


def test_missing_volume_becomes_zero() -> None:
    frame = eurusd_until(FRIDAY_CLOSE)
    volume = frame["volume"].to_numpy().copy()
    volume[[1, 2, 3]] = np.nan
    frame["volume"] = volume
    result = check(frame, FRIDAY_CLOSE)
    assert result.bars is not None
    assert result.bars.volume[1:4].tolist() == [0.0, 0.0, 0.0]
    assert "set 3 missing volume(s) to 0" in result.notes


def test_text_in_a_numeric_column_is_corrupt_not_a_crash() -> None:
    frame = eurusd_until(FRIDAY_CLOSE)
    frame["open"] = frame["open"].astype(object)
    frame.loc[frame.index[7], "open"] = "1.08x"
    result = check(frame, FRIDAY_CLOSE)
    assert result.bars is not None and len(result.bars) == 499
    assert any("unparseable value" in note for note in result.notes)


def test_bar_not_closed_at_now_is_dropped() -> None:
    frame = eurusd_until(FRIDAY_CLOSE)
    now = datetime(2025, 3, 14, 19, 30, tzinfo=UTC)  # the 19:00Z bar closes at 20:00Z
    result = check(frame, now)
    assert result.bars is not None
    assert result.bars.bar_time(-1) == datetime(2025, 3, 14, 18, 0, tzinfo=UTC)
    assert "dropped 1 bar(s) not closed at 2025-03-14T19:30Z (first opens 2025-03-14T19:00Z)" in result.notes


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda f: f.drop(columns=["volume"]), "missing column(s) volume (have: open, high, low, close)"),
        (lambda f: f.rename(columns={"close": "Close"}), "missing column(s) close"),
        (lambda f: f.tz_localize(None), "timestamps have no timezone (naive index): cannot tell when bars closed"),
        (lambda f: f.reset_index(drop=True), "bars are not indexed by time (index is RangeIndex)"),
        (lambda f: pd.concat([f, f[["close"]]], axis=1), "duplicate column(s) close"),
        (lambda f: f.assign(high=f.index), "column high does not hold numbers"),
    ],
    ids=["no-volume", "capitalised", "naive", "range-index", "two-closes", "datetime-column"],
)
def test_malformed_frames_are_rejected_with_reason(mutate: object, reason: str) -> None:
    frame = mutate(eurusd_until(FRIDAY_CLOSE))  # type: ignore[operator]
    result = check(frame, FRIDAY_CLOSE)
    assert result.bars is None and result.rejection is not None
    assert result.rejection.startswith(reason)


def test_not_a_frame_is_rejected() -> None:
    result = check(None, FRIDAY_CLOSE)
    assert result.rejection == "bar data is a NoneType, not a table"


def test_insufficient_history() -> None:
    result = check(eurusd_until(FRIDAY_CLOSE, n=120), FRIDAY_CLOSE, min_bars=250)
    assert result.rejection == "insufficient history: 120 bars, need 250"
    empty = check(eurusd_until(FRIDAY_CLOSE).iloc[:0], FRIDAY_CLOSE)
    assert empty.rejection == "insufficient history: 0 bars, need 100"


def test_friday_close_is_not_stale_on_saturday() -> None:
    frame = eurusd_until(FRIDAY_CLOSE)
    assert frame.index[-1] == pd.Timestamp("2025-03-14T19:00Z")  # last bar of the week in the feed
    assert check(frame, datetime(2025, 3, 15, 12, 0, tzinfo=UTC)).ok
    assert check(frame, datetime(2025, 3, 16, 20, 59, tzinfo=UTC)).ok  # Sunday, a minute before the open


def test_friday_bar_is_stale_on_monday_midday() -> None:
    frame = eurusd_until(FRIDAY_CLOSE)
    result = check(frame, datetime(2025, 3, 17, 12, 0, tzinfo=UTC))
    assert result.rejection == (
        "stale feed: last bar closed 2025-03-14T20:00Z, 16.0 h of market time before now (limit 3 bars)"
    )
    assert check(frame, datetime(2025, 3, 16, 22, 59, tzinfo=UTC)).ok  # 1 h Friday + 1 h 59 min Sunday
    assert not check(frame, datetime(2025, 3, 16, 23, 1, tzinfo=UTC)).ok


def test_nse_intraday_staleness_counts_only_session_minutes() -> None:
    frame = shared_bars("RELIANCE", "5m").visible_at(datetime(2025, 6, 12, 9, 40, tzinfo=UTC)).to_frame()
    kwargs = {"min_bars": 100}
    assert validate_bars(frame, RELIANCE, XNSE, datetime(2025, 6, 12, 9, 55, tzinfo=UTC), **kwargs).ok
    late = validate_bars(frame, RELIANCE, XNSE, datetime(2025, 6, 12, 9, 56, tzinfo=UTC), **kwargs)
    assert (
        late.rejection
        == "stale feed: last bar closed 2025-06-12T09:40Z, 16 min of market time before now (limit 3 bars)"
    )
    session_end = shared_bars("RELIANCE", "5m").visible_at(datetime(2025, 6, 12, 10, 0, tzinfo=UTC)).to_frame()
    overnight = datetime(2025, 6, 13, 3, 55, tzinfo=UTC)  # next morning, 10 min after the open
    assert validate_bars(session_end, RELIANCE, XNSE, overnight, **kwargs).ok


def test_daily_staleness_counts_sessions() -> None:
    frame = shared_bars("SPY", "1d").visible_at(datetime(2025, 6, 12, 0, 0, tzinfo=UTC)).to_frame()
    assert frame.index[-1] == pd.Timestamp("2025-06-11T00:00Z")
    assert validate_bars(frame, SPY_DAILY, XNYS, datetime(2025, 6, 12, 18, 0, tzinfo=UTC), min_bars=250).ok
    assert validate_bars(frame, SPY_DAILY, XNYS, datetime(2025, 6, 16, 19, 0, tzinfo=UTC), min_bars=250).ok
    stale = validate_bars(frame, SPY_DAILY, XNYS, datetime(2025, 6, 17, 18, 0, tzinfo=UTC), min_bars=250)
    assert stale.rejection is not None and stale.rejection.startswith("stale feed: last bar closed 2025-06-12T00:00Z")


def test_bad_arguments_raise() -> None:
    frame = eurusd_until(FRIDAY_CLOSE)
    with pytest.raises(ValueError, match="min_bars"):
        check(frame, FRIDAY_CLOSE, min_bars=0)
    with pytest.raises(ValueError, match="max_bad_fraction"):
        check(frame, FRIDAY_CLOSE, max_bad_fraction=1.5)
    with pytest.raises(ValueError, match="now must be a timezone-aware UTC datetime"):
        check(frame, datetime(2025, 3, 15))


def test_barcheck_holds_bars_or_rejection() -> None:
    with pytest.raises(ValueError, match="either bars or a rejection"):
        BarCheck(None, (), None)


# --- property: garbage in never raises, and what comes out is clean ----------------------------------

GARBAGE_VALUES = st.one_of(
    st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -1.0, 1e308, 5e-324]),
    st.floats(allow_nan=True, allow_infinity=True),
)


@st.composite
def garbled(draw: st.DrawFn) -> tuple[pd.DataFrame, datetime]:
    source = shared_bars("BTCUSDT", "1h")
    n = draw(st.integers(1, 40))
    start = draw(st.integers(0, len(source) - n))
    frame = source.head(start + n).tail(n).to_frame()
    now = source.bar_time(start + n - 1) + Interval.H1.delta + timedelta(minutes=draw(st.integers(0, 400)))
    for _ in range(draw(st.integers(0, 8))):
        op = draw(st.sampled_from(["cell", "swap", "dup", "shuffle", "text", "nat", "future"]))
        rows = len(frame)
        if rows == 0:
            break
        i = draw(st.integers(0, rows - 1))
        if op == "cell":
            column = draw(st.sampled_from(["open", "high", "low", "close", "volume"]))
            values = frame[column].to_numpy(dtype=object).copy()
            values[i] = draw(GARBAGE_VALUES)
            frame[column] = pd.Series(values, index=frame.index, dtype=object)
        elif op == "swap":
            high, low = frame["high"].to_numpy().copy(), frame["low"].to_numpy().copy()
            high[i], low[i] = low[i], high[i]
            frame["high"], frame["low"] = high, low
        elif op == "dup":
            copy = frame.iloc[[i]].copy()
            copy["close"] = copy["close"].to_numpy() * draw(st.sampled_from([1.0, 1.01, -1.0]))
            frame = pd.concat([frame, copy])
        elif op == "shuffle":
            frame = frame.iloc[draw(st.permutations(range(rows)))]
        elif op == "text":
            column = draw(st.sampled_from(["open", "volume"]))
            values = frame[column].to_numpy(dtype=object).copy()
            values[i] = draw(st.sampled_from(["abc", "", "1,5", None]))
            frame[column] = pd.Series(values, index=frame.index, dtype=object)
        elif op == "nat":
            stamps = frame.index.tz_convert("UTC").tz_localize(None).to_numpy().copy()
            stamps[i] = np.datetime64("NaT")
            frame.index = pd.DatetimeIndex(stamps).tz_localize("UTC")
        else:
            stamps = frame.index.tz_convert("UTC").tz_localize(None).to_numpy().copy()
            stamps[i] = np.datetime64(now.replace(tzinfo=None)) + np.timedelta64(draw(st.integers(-90, 90)), "m")
            frame.index = pd.DatetimeIndex(stamps).tz_localize("UTC")
    if draw(st.integers(0, 19)) == 7:
        frame = frame.drop(columns=[draw(st.sampled_from(["open", "volume"]))])
    if draw(st.integers(0, 19)) == 7:
        frame.index = pd.DatetimeIndex(frame.index).tz_localize(None)
    return frame, now


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbled(), st.sampled_from([0.0, 0.01, 0.2, 0.9]), st.integers(1, 5))
def test_garbage_never_raises_and_output_is_clean(
    case: tuple[pd.DataFrame, datetime], max_bad: float, min_bars: int
) -> None:
    frame, now = case
    result = validate_bars(frame, BTC, CRYPTO, now, min_bars=min_bars, stale_bars=10, max_bad_fraction=max_bad)
    assert isinstance(result, BarCheck)
    if result.bars is None:
        assert result.rejection
        return
    bars: Bars = result.bars
    assert result.rejection is None and len(bars) >= min_bars
    assert bars.interval is Interval.H1
    assert np.all(np.diff(bars.time) > 0)
    prices = np.vstack([bars.open, bars.high, bars.low, bars.close])
    assert np.all(np.isfinite(prices)) and np.all(prices > 0)
    assert np.all(bars.high >= np.maximum(bars.open, bars.close))
    assert np.all(bars.low <= np.minimum(bars.open, bars.close))
    assert np.all(bars.high >= bars.low)
    assert np.all(np.isfinite(bars.volume)) and np.all(bars.volume >= 0)
    assert np.all(bars.close_time <= pd.Timestamp(now).value)
