"""NIFTY weekly zones: NSE-aligned hourly bars, the weekly context, signals S1-S8 and their close-only exits.

Implements `specs/nifty-weekly-zones.md` (sections 1-6) exactly; the section numbers below are the spec's.
Pure and deterministic. Times inside are UTC nanoseconds; IST (UTC+05:30, no daylight saving) is used only
for the session's times of day, the trading date and the ISO week.

* §1 `nse_hours` builds the hourly bars 09:15, 10:15, ..., 15:15 IST from 5-minute bars of regular
  Mon-Fri sessions whose first bar opens 09:15 (so the 2025-02-01 Budget Saturday and the 2025-10-21
  Muhurat session are dropped); the last hour is 15:15-15:30 and closes at 15:30.
* §2-3 `week_context` reads the previous ISO week's hourly bars: PWH, PWL, PWC, the session-aligned 4-hour
  blocks (09:15-13:15, 13:15-15:30), the resistance and support zones, their margins and the bias.
* §4-5 `scan` walks each week's bars from bar 2, updates the breakout and breakdown triggers (each fires
  once a week), tests S1...S8 in order and keeps the first signal of the week. S6 is implemented but can
  never fire (every S6 case is an S3 case on the same bar, as the spec shows).
* §6 `find_zone_exit`: a long stops when an hourly CLOSE is at or below the stop, a short at or above, on
  each bar after the trigger bar up to and including the expiry bar, filled at that close; otherwise it
  exits at the close of the expiry day's last bar; optionally at Wednesday's 14:15 bar before the expiry day.

The per-week walk is a loop over bars by necessity: a trigger's state depends on every earlier bar of the
week. It reads plain numpy arrays, never pandas rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Final

import numpy as np

from engine.bars import IntArray
from engine.domain import Side
from engine.session_hours import EPOCH as _EPOCH
from engine.session_hours import SessionHours
from engine.trading import ExitReason

FIRST_AFTERNOON_HOUR: Final = 4  # the 13:15 bar starts the day's second 4-hour block
WEDNESDAY_EXIT_HOUR: Final = 5  # the 14:15 bar, which closes at 15:15 IST
MIN_MARGIN: Final = 0.25  # five ticks of 0.05
MARGIN_WIDTHS: Final = 3.0
S7_NEAR_PWH_PCT: Final = 0.40
TUESDAY_EXPIRY_FROM: Final = date(2025, 9, 1)  # weeks whose Monday is on or after this expire on Tuesday
_THURSDAY, _TUESDAY, _WEDNESDAY = 3, 1, 2


class ZoneRule(StrEnum):
    S1 = "S1"  # bear trap
    S2 = "S2"  # support hold
    S3 = "S3"  # resistance hold
    S4 = "S4"  # bias failure, bull
    S5 = "S5"  # bias failure, bear
    S6 = "S6"  # weakness confirmed
    S7 = "S7"  # breakout confirmed
    S8 = "S8"  # breakdown confirmed

    @property
    def side(self) -> Side:
        return Side.LONG if self in _LONG_RULES else Side.SHORT

    @property
    def description(self) -> str:
        return _TITLES[self]


_LONG_RULES: Final = frozenset({ZoneRule.S1, ZoneRule.S2, ZoneRule.S4, ZoneRule.S7})
_TITLES: Final = {
    ZoneRule.S1: "bear trap",
    ZoneRule.S2: "support hold",
    ZoneRule.S3: "resistance hold",
    ZoneRule.S4: "bias failure (bull)",
    ZoneRule.S5: "bias failure (bear)",
    ZoneRule.S6: "weakness confirmed",
    ZoneRule.S7: "breakout confirmed",
    ZoneRule.S8: "breakdown confirmed",
}


class Bias(StrEnum):
    BULLISH = "bullish"
    BEARISH = "bearish"
    NEUTRAL = "neutral"


@dataclass(frozen=True, slots=True)
class WeekContext:
    """§3: the previous week's levels, the zones, their margins and the bias."""

    pwh: float
    pwl: float
    pwc: float
    max4: float
    min4: float

    @property
    def rt(self) -> float:
        return max(self.pwh, self.max4)

    @property
    def rb(self) -> float:
        return min(self.pwh, self.max4)

    @property
    def st(self) -> float:
        return max(self.pwl, self.min4)

    @property
    def sb(self) -> float:
        return min(self.pwl, self.min4)

    @property
    def margin_high(self) -> float:
        return max(MARGIN_WIDTHS * (self.rt - self.rb), MIN_MARGIN)

    @property
    def margin_low(self) -> float:
        return max(MARGIN_WIDTHS * (self.st - self.sb), MIN_MARGIN)

    @property
    def bias(self) -> Bias:
        d_r, d_s = abs(self.pwc - self.max4), abs(self.pwc - self.min4)
        if d_s < d_r:
            return Bias.BULLISH
        if d_r < d_s:
            return Bias.BEARISH
        return Bias.NEUTRAL

    def levels(self) -> str:
        """`resistance 24,510.05-24,590.00 · support 24,102.30-24,150.00 · PWC 24,300.25 · bias bearish`."""
        return (
            f"resistance {self.rb:,.2f}-{self.rt:,.2f} · support {self.sb:,.2f}-{self.st:,.2f} · "
            f"PWC {self.pwc:,.2f} · bias {self.bias}"
        )


def week_context(hours: SessionHours, lo: int, hi: int) -> WeekContext:
    """§3 from the hourly bars [lo, hi) of one week."""
    if hi <= lo:
        raise ValueError("a week context needs at least one hourly bar")
    b = hours.bars
    block = hours.day[lo:hi] * 2 + (hours.hour[lo:hi] >= FIRST_AFTERNOON_HOUR)
    first = np.flatnonzero(np.r_[True, block[1:] != block[:-1]])
    last = np.r_[first[1:], hi - lo] - 1
    o, c = b.open[lo:hi][first], b.close[lo:hi][last]
    return WeekContext(
        pwh=float(b.high[lo:hi].max()),
        pwl=float(b.low[lo:hi].min()),
        pwc=float(b.close[hi - 1]),
        max4=float(np.maximum(o, c).max()),
        min4=float(np.minimum(o, c).min()),
    )


@dataclass(frozen=True, slots=True)
class ZoneSignal:
    """A weekly-zone signal: its rule, trigger bar, entry at that bar's close, stop, and the week's context."""

    rule: ZoneRule
    index: int  # the trigger bar C
    entry: float
    stop: float
    context: WeekContext

    def __post_init__(self) -> None:
        if not (math.isfinite(self.entry) and math.isfinite(self.stop)) or self.stop <= 0:
            raise ValueError(
                f"{self.rule}: entry and stop must be positive finite levels, were {self.entry}, {self.stop}"
            )
        if self.rule.side is Side.LONG and not self.stop < self.entry:
            raise ValueError(f"{self.rule}: stop must be below entry for a long, was {self.stop} vs {self.entry}")
        if self.rule.side is Side.SHORT and not self.stop > self.entry:
            raise ValueError(f"{self.rule}: stop must be above entry for a short, was {self.stop} vs {self.entry}")

    @property
    def side(self) -> Side:
        return self.rule.side


def week_starts(hours: SessionHours) -> IntArray:
    """Index of each ISO week's first hourly bar, plus len(hours) at the end."""
    monday = _monday(hours.day)
    return np.flatnonzero(np.r_[True, monday[1:] != monday[:-1], True]) if len(hours) else np.zeros(1, np.int64)


def _monday(day: IntArray) -> IntArray:
    return day - (day + 3) % 7


class _Trigger:
    """§5: a breakout (up) or breakdown (down) trigger of one week; fires once, then is spent."""

    __slots__ = ("level", "spent", "up")

    def __init__(self, up: bool) -> None:
        self.up = up
        self.level: float | None = None
        self.spent = False

    def update(self, first_day: bool, o: float, h: float, low: float, c: float, f_edge: float, extreme: float) -> bool:
        """Whether the trigger fires at this bar (`f_edge`: F.h or F.l; `extreme`: maxH or minL of P)."""
        if self.spent:
            return False
        up = self.up
        if first_day:
            raw = c > f_edge if up else c < f_edge
        elif self.level is None:
            raw = False
            if up and c > o and c > f_edge and h >= extreme:
                self.level = h
            elif not up and c < o and c < f_edge and low <= extreme:
                self.level = low
        else:
            raw = c > self.level if up else c < self.level
        if raw:
            self.spent = True
        return raw


def scan(hours: SessionHours) -> list[ZoneSignal]:
    """§4: at most one signal per week, from each week's bar 2 on, S1...S8 in priority order."""
    starts = week_starts(hours)
    monday = _monday(hours.day)
    signals: list[ZoneSignal] = []
    for k in range(1, len(starts) - 1):
        lo, hi = int(starts[k]), int(starts[k + 1])
        prev_lo = int(starts[k - 1])
        if monday[prev_lo] != monday[lo] - 7:
            continue  # the ISO week before has no bars: no context, no signal
        signal = _scan_week(hours, lo, hi, week_context(hours, prev_lo, lo))
        if signal is not None:
            signals.append(signal)
    return signals


def _scan_week(hours: SessionHours, lo: int, hi: int, ctx: WeekContext) -> ZoneSignal | None:
    b = hours.bars
    o, h, low, c = b.open, b.high, b.low, b.close
    fo, fh, fl, fc = float(o[lo]), float(h[lo]), float(low[lo]), float(c[lo])
    first_day = hours.day[lo]
    bias = ctx.bias
    rt, rb, st, sb, pwh, pwl, pwc = ctx.rt, ctx.rb, ctx.st, ctx.sb, ctx.pwh, ctx.pwl, ctx.pwc
    near_support = fl <= st or (abs(pwc - sb) <= ctx.margin_low and abs(fo - sb) <= ctx.margin_low)
    near_resistance = fh >= rb or (abs(pwc - rb) <= ctx.margin_high and abs(fo - rb) <= ctx.margin_high)
    breakout, breakdown = _Trigger(up=True), _Trigger(up=False)
    max_h, max_c, min_l, min_c = fh, fc, fl, fc  # over P, the week's bars before C
    touched_rb = fh >= rb
    for i in range(lo + 1, hi):
        co, ch, cl, cc = float(o[i]), float(h[i]), float(low[i]), float(c[i])
        on_first_day = hours.day[i] == first_day
        bar2 = i == lo + 1
        touched_rb = touched_rb or ch >= rb
        up = breakout.update(on_first_day, co, ch, cl, cc, fh, max_h)
        down = breakdown.update(on_first_day, co, ch, cl, cc, fl, min_l)
        b_cond = cc < fl and cc < rb and cc < min_l and cc < min_c
        rule: ZoneRule | None = None
        stop = 0.0
        if bar2 and fo >= sb and fc < sb and cc > fl:
            rule, stop = ZoneRule.S1, fl - abs(fo - fc)
        elif (
            bar2
            and bias is Bias.BULLISH
            and fo > pwl
            and near_support
            and fc >= sb
            and fc >= pwc
            and cc >= fl
            and cc > pwc
            and cc > sb
        ):
            rule, stop = ZoneRule.S2, sb
        elif (
            bias is Bias.BEARISH
            and near_resistance
            and fc <= pwh
            and ((bar2 and cc < fh and cc < rb and (fh >= rb or ch >= rb)) or b_cond)
        ):
            rule, stop = ZoneRule.S3, pwh
        elif bias is Bias.BEARISH and fo > rt and up:
            rule, stop = ZoneRule.S4, fl
        elif bias is Bias.BULLISH and fo < sb and fc < sb and fc < pwl and cc < fl:
            rule, stop = ZoneRule.S5, fh
        elif (
            bias is Bias.BEARISH and fh >= rb and fc <= rt and fc <= pwh and ((bar2 and cc < fh and cc < rb) or b_cond)
        ):
            rule, stop = ZoneRule.S6, pwh
        elif up and not (cc < pwh and 100.0 * (pwh - cc) / cc < S7_NEAR_PWH_PCT) and cc > max_h and cc > max_c:
            rule, stop = ZoneRule.S7, fl
        elif down and touched_rb and cc < rb and cc < min_l and cc < min_c:
            rule, stop = ZoneRule.S8, fh
        if rule is not None:
            return ZoneSignal(rule, i, cc, stop, ctx)
        max_h, max_c, min_l, min_c = max(max_h, ch), max(max_c, cc), min(min_l, cl), min(min_c, cc)
    return None


@dataclass(frozen=True, slots=True)
class Expiry:
    """A week's expiry: its trading date and the index of that day's last hourly bar."""

    day: date
    last_bar: int


def expiries(hours: SessionHours) -> list[Expiry]:
    """§6: each week's expiry, oldest first; a week whose scheduled day lies after the data has none yet."""
    if len(hours) == 0:
        return []
    day = hours.day
    last_of_day = np.flatnonzero(np.r_[day[1:] != day[:-1], True])
    days = day[last_of_day]
    last_day = int(days[-1])
    found: list[Expiry] = []
    for monday in np.unique(_monday(days)).tolist():
        scheduled = monday + (_TUESDAY if _EPOCH + timedelta(days=monday) >= TUESDAY_EXPIRY_FROM else _THURSDAY)
        if scheduled > last_day:
            break  # not known yet
        in_week = np.flatnonzero((days >= monday) & (days <= scheduled))
        if len(in_week):
            k = int(in_week[-1])
            found.append(Expiry(_EPOCH + timedelta(days=int(days[k])), int(last_of_day[k])))
    return found


def position_expiry(hours: SessionHours, signal_index: int, known: list[Expiry]) -> Expiry | None:
    """The first expiry whose last bar closes strictly after the trigger bar's close; None if not known yet."""
    entry_close = hours.close_ns[signal_index]
    for expiry in known:
        if hours.close_ns[expiry.last_bar] > entry_close:
            return expiry
    return None


@dataclass(frozen=True, slots=True)
class ZoneExit:
    """Where a weekly-zone position left: bar index, that bar's close time and close, and the reason."""

    index: int
    at: datetime
    price: float
    reason: ExitReason


def find_zone_exit(
    hours: SessionHours, signal: ZoneSignal, known: list[Expiry], *, wednesday_exit: bool = False
) -> ZoneExit | None:
    """§6: the close-only stop, the optional Wednesday exit and the expiry exit; None while still open."""
    expiry = position_expiry(hours, signal.index, known)
    end = expiry.last_bar if expiry is not None else len(hours) - 1
    wednesday = _wednesday_bar(hours, signal.index, expiry) if wednesday_exit and expiry is not None else None
    closes = hours.bars.close
    window = closes[signal.index + 1 : end + 1]
    hit = window <= signal.stop if signal.side is Side.LONG else window >= signal.stop
    stop_at = signal.index + 1 + int(hit.argmax()) if hit.any() else None
    if stop_at is not None and (wednesday is None or stop_at <= wednesday):
        return _exit(hours, stop_at, ExitReason.STOP)
    if wednesday is not None:
        return _exit(hours, wednesday, ExitReason.TIME)
    if expiry is None:
        return None
    return _exit(hours, expiry.last_bar, ExitReason.EXPIRY)


def _exit(hours: SessionHours, i: int, reason: ExitReason) -> ZoneExit:
    return ZoneExit(i, hours.close_time(i), float(hours.bars.close[i]), reason)


def _wednesday_bar(hours: SessionHours, signal_index: int, expiry: Expiry) -> int | None:
    """The 14:15 bar of the last Wednesday before the expiry day, if it exists and comes after the trigger bar."""
    expiry_day = (expiry.day - _EPOCH).days
    wednesday = expiry_day - ((expiry_day + 3 - _WEDNESDAY) % 7 or 7)
    found = np.flatnonzero((hours.day == wednesday) & (hours.hour == WEDNESDAY_EXIT_HOUR))
    if len(found) == 0 or int(found[0]) <= signal_index:
        return None
    return int(found[0])


def scheduled_expiry(monday: date, is_trading_day: Callable[[date], bool]) -> date | None:
    """The expiry of the week starting `monday` by the exchange calendar: its Thursday (Tuesday for weeks from
    2025-09-01), or the latest earlier trading day of that week when that day is a holiday."""
    day = monday + timedelta(days=_TUESDAY if monday >= TUESDAY_EXPIRY_FROM else _THURSDAY)
    while day >= monday:
        if is_trading_day(day):
            return day
        day -= timedelta(days=1)
    return None


def live_expiry(signal_day: date, signal_close: datetime, session_close: Callable[[date], datetime | None]) -> date:
    """The expiry a live position opened at `signal_close` (on trading date `signal_day`) trades: the first whose
    session closes strictly after it (a signal at the expiry day's last bar rolls to the next week's)."""
    monday = signal_day - timedelta(days=signal_day.weekday())
    for week in range(3):
        start = monday + timedelta(days=7 * week)
        day = scheduled_expiry(start, lambda d: session_close(d) is not None)
        close = session_close(day) if day is not None else None
        if day is not None and close is not None and close > signal_close:
            return day
    raise ValueError(f"no NIFTY expiry found within three weeks of {signal_day}")
