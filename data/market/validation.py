"""Check and clean one instrument's raw bars before the engine sees them.

`validate_bars` never raises for bad data: it returns a `BarCheck` with either clean `Bars` and notes of
every cleaning action (with counts), or the reason the symbol is rejected for this run. Rules, in order:

1. The frame needs open/high/low/close/volume columns holding numbers and a timezone-aware DatetimeIndex;
   otherwise the symbol is rejected. Rows without a timestamp count as corrupt (rule 5).
2. Unsorted timestamps are sorted (stably). Duplicate timestamps keep the LAST row: a later row is the
   feed's latest revision of that bar.
3. Bars that have not closed by `now` (open + interval > now) are dropped.
4. A bar is corrupt if a price is missing, non-finite or not positive, high < max(open, close),
   low > min(open, close), high < low, or volume is negative, infinite or not a number. Missing volume
   becomes 0 (noted; indexes such as NIFTY 50 publish none).
5. Corrupt bars are dropped while they are at most `max_bad_fraction` of the bars; beyond that the feed
   is not trusted and the symbol is rejected ("N of M bars are corrupt (first at ...)").
6. Fewer than `min_bars` clean bars: rejected ("insufficient history: 120 bars, need 250").
7. Stale feed: rejected when the last bar closed more than `stale_bars` bars of MARKET-OPEN time before
   `now` (`SessionCalendar.open_duration`, so nights, weekends and holidays do not count). For daily bars
   one bar of market time is one session, not 24 hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final

import numpy as np

from engine.bars import OHLCV_COLUMNS, Bars, BoolArray, FloatArray, from_nanos, to_nanos
from engine.calendars import SessionCalendar
from engine.domain import Instrument, ensure_utc, human_duration

if TYPE_CHECKING:
    import pandas as pd

PRICE_COLUMNS: Final = ("open", "high", "low", "close")


@dataclass(frozen=True, eq=False, slots=True)
class BarCheck:
    """Outcome of validating one instrument's bars: clean bars, or why the symbol is rejected."""

    bars: Bars | None
    notes: tuple[str, ...] = ()
    rejection: str | None = None

    def __post_init__(self) -> None:
        if (self.bars is None) == (self.rejection is None):
            raise ValueError("a BarCheck carries either bars or a rejection, not both or neither")

    @property
    def ok(self) -> bool:
        return self.rejection is None


def validate_bars(
    frame: pd.DataFrame,
    instrument: Instrument,
    calendar: SessionCalendar,
    now: datetime,
    *,
    min_bars: int,
    stale_bars: int = 3,
    max_bad_fraction: float = 0.01,
) -> BarCheck:
    """Validate and clean raw bars (see the module docstring for the rules)."""
    import pandas as pd  # noqa: PLC0415 - bars arrive as frames; commands that never see bars never load pandas

    ensure_utc(now, "now")
    if min_bars < 1:
        raise ValueError(f"min_bars must be at least 1, was {min_bars}")
    if stale_bars < 1:
        raise ValueError(f"stale_bars must be at least 1, was {stale_bars}")
    if not 0.0 <= max_bad_fraction < 1.0:
        raise ValueError(f"max_bad_fraction must be within [0, 1), was {max_bad_fraction}")
    notes: list[str] = []

    def reject(reason: str) -> BarCheck:
        return BarCheck(None, tuple(notes), reason)

    shape_problem = _shape_problem(frame)
    if shape_problem is not None:
        return reject(shape_problem)
    index = frame.index
    assert isinstance(index, pd.DatetimeIndex)
    values: dict[str, FloatArray] = {}
    unparseable = np.zeros(len(frame), dtype=np.bool_)
    for name in OHLCV_COLUMNS:
        parsed = _numbers(frame[name])
        if parsed is None:
            return reject(f"column {name} does not hold numbers (dtype {frame[name].dtype})")
        values[name], garbage = parsed
        unparseable |= garbage

    has_time = ~np.asarray(index.isna(), dtype=np.bool_)
    no_time = int(len(has_time) - has_time.sum())
    times = index.tz_convert("UTC").as_unit("ns").asi8[has_time]
    arrays = {name: values[name][has_time] for name in OHLCV_COLUMNS}
    unparseable = unparseable[has_time]

    steps_back = int(np.count_nonzero(np.diff(times) < 0))
    if steps_back:
        order = np.argsort(times, kind="stable")
        times, unparseable = times[order], unparseable[order]
        arrays = {name: a[order] for name, a in arrays.items()}
        notes.append(f"sorted out-of-order timestamps ({steps_back} step(s) back in time)")

    keep = np.r_[times[1:] != times[:-1], True] if len(times) else np.ones(0, dtype=np.bool_)
    duplicates = int(len(keep) - keep.sum())
    if duplicates:
        notes.append(f"dropped {duplicates} duplicate-timestamp row(s), keeping the last (latest revision) of each")

    open_ns = times[keep]
    forming = calendar.bar_closes(open_ns, instrument.interval) > to_nanos(now)
    if forming.any():
        first_forming = from_nanos(int(open_ns[forming][0]))
        notes.append(f"dropped {int(forming.sum())} bar(s) not closed at {_ts(now)} (first opens {_ts(first_forming)})")
    keep[keep] = ~forming
    times, unparseable = times[keep], unparseable[keep]
    o, h, lo, c, v = (arrays[name][keep] for name in OHLCV_COLUMNS)

    problems = _corruption(o, h, lo, c, v, unparseable)
    corrupt = np.logical_or.reduce([mask for _, mask in problems])
    bad = int(corrupt.sum()) + no_time
    total = len(times) + no_time
    if bad:
        where = _first_problem(times, corrupt, problems)
        if bad > max_bad_fraction * total:
            return reject(f"{bad} of {total} bars are corrupt (first at {where})")
        notes.append(f"dropped {bad} corrupt bar(s) of {total} (first at {where})")
        good = ~corrupt
        times, o, h, lo, c, v = times[good], o[good], h[good], lo[good], c[good], v[good]

    missing_volume = np.isnan(v)
    if missing_volume.any():
        notes.append(f"set {int(missing_volume.sum())} missing volume(s) to 0")
        v = np.where(missing_volume, 0.0, v)

    if len(times) < min_bars:
        return reject(f"insufficient history: {len(times)} bars, need {min_bars}")

    last_close = from_nanos(int(calendar.bar_closes(times[-1:], instrument.interval)[0]))
    session = calendar.close_offset - calendar.open_offset
    limit = min(instrument.interval.delta, session) * stale_bars
    age = calendar.open_duration(last_close, now)
    if age > limit:
        return reject(
            f"stale feed: last bar closed {_ts(last_close)}, {human_duration(age)} of market time before now "
            f"(limit {stale_bars} bars)"
        )

    bars = Bars(
        instrument.interval,
        np.ascontiguousarray(times, dtype=np.int64),
        *(np.ascontiguousarray(a, dtype=np.float64) for a in (o, h, lo, c, v)),
    )
    return BarCheck(bars, tuple(notes), None)


def _shape_problem(frame: object) -> str | None:
    import pandas as pd  # noqa: PLC0415 - bars arrive as frames; commands that never see bars never load pandas

    if not isinstance(frame, pd.DataFrame):
        return f"bar data is a {type(frame).__name__}, not a table"
    names = [str(c) for c in frame.columns]
    missing = [c for c in OHLCV_COLUMNS if c not in names]
    if missing:
        return f"missing column(s) {', '.join(missing)} (have: {', '.join(names) or 'none'})"
    doubled = sorted({c for c in OHLCV_COLUMNS if names.count(c) > 1})
    if doubled:
        return f"duplicate column(s) {', '.join(doubled)}"
    if any(not isinstance(c, str) for c in frame.columns if str(c) in OHLCV_COLUMNS):
        return "column labels must be plain strings"
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex):
        return f"bars are not indexed by time (index is {type(index).__name__})"
    if index.tz is None:
        return "timestamps have no timezone (naive index): cannot tell when bars closed"
    return None


def _numbers(column: pd.Series) -> tuple[FloatArray, BoolArray] | None:
    """Column as floats plus a mask of cells that held something other than a number; None if not numeric."""
    import pandas as pd  # noqa: PLC0415 - bars arrive as frames; commands that never see bars never load pandas

    dtype = column.dtype
    if dtype == np.float64:  # what the CSV reader and the feeds give: nothing to convert, NaN stays NaN
        return column.to_numpy(), np.zeros(len(column), dtype=np.bool_)
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        return None
    if pd.api.types.is_numeric_dtype(dtype):
        try:
            floats = column.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            return None
        return floats, np.zeros(len(floats), dtype=np.bool_)
    try:
        numbers = pd.to_numeric(column, errors="coerce")
        floats = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        return None
    garbage = np.asarray(numbers.isna(), dtype=np.bool_) & np.asarray(column.notna(), dtype=np.bool_)
    return floats, garbage


def _corruption(
    o: FloatArray, h: FloatArray, lo: FloatArray, c: FloatArray, v: FloatArray, unparseable: BoolArray
) -> list[tuple[str, BoolArray]]:
    """Named masks of the corruption rules, in the order a bar's first problem is reported."""
    prices = np.vstack([o, h, lo, c])
    with np.errstate(invalid="ignore"):
        return [
            ("unparseable value", unparseable),
            ("missing or non-finite price", ~np.all(np.isfinite(prices), axis=0)),
            ("non-positive price", np.any(prices <= 0, axis=0)),
            ("high below low", h < lo),
            ("high below open/close", h < np.maximum(o, c)),
            ("low above open/close", lo > np.minimum(o, c)),
            ("negative or infinite volume", (v < 0) | np.isinf(v)),
        ]


def _first_problem(times: np.ndarray, corrupt: BoolArray, problems: list[tuple[str, BoolArray]]) -> str:
    if not corrupt.any():
        return "a row with no timestamp"
    i = int(np.flatnonzero(corrupt)[0])
    reason = next(name for name, mask in problems if mask[i])
    return f"{_ts(from_nanos(int(times[i])))}: {reason}"


def _ts(ts: datetime) -> str:
    return f"{ts:%Y-%m-%dT%H:%MZ}"
