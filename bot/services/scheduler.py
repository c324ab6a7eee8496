"""Cron-style analysis schedules per watchlist group, in the market's timezone and in bot time.

Fire times are computed on the bot clock (so a replay at 60x runs its 5-minute schedule every 5 real
seconds) and armed on PTB's JobQueue as one-shot jobs with the equivalent real delay. A group runs only
the symbols whose market was open during the last bar; a run that fails is reported, and the next run is
armed regardless.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from apscheduler.triggers.cron import CronTrigger

from bot.config import ScheduleConfig
from bot.ops.clock import BotClock
from engine.calendars import SessionCalendar
from engine.domain import Instrument, Interval

log = logging.getLogger(__name__)

MAX_LOOKAHEAD_FIRES = 2_000  # a week of 5-minute fires: enough to cross any weekend or holiday run

DEFAULT_CRON: Mapping[Interval, str] = {
    Interval.M1: "* * * * *",
    Interval.M5: "*/5 * * * *",
    Interval.M15: "*/15 * * * *",
    Interval.M30: "*/30 * * * *",
    Interval.H1: "0 * * * *",
    Interval.H4: "0 */4 * * *",
    Interval.D1: "0 0 * * *",
}
DEFAULT_DELAY = timedelta(seconds=20)


@dataclass(frozen=True)
class ScheduleGroup:
    """Symbols analysed together on one cron schedule."""

    name: str
    cron: str
    timezone: str
    symbols: tuple[str, ...]
    interval: timedelta
    delay: timedelta

    @cached_property
    def triggers(self) -> tuple[CronTrigger, ...]:
        """One trigger per cron expression; `cron` may hold several separated by `|` (parsed once)."""
        return tuple(CronTrigger.from_crontab(part.strip(), timezone=self.timezone) for part in self.cron.split("|"))

    def next_fire(self, after: datetime) -> datetime:
        """The first fire time strictly after `after` (UTC), including the delay for bars to arrive."""
        probe = after - self.delay + timedelta(microseconds=1)
        fires = [f for f in (t.get_next_fire_time(None, probe) for t in self.triggers) if f is not None]
        if not fires:
            raise ValueError(f"schedule {self.name} ({self.cron}) never fires again")
        return min(fires).astimezone(after.tzinfo) + self.delay


def build_groups(
    schedules: Sequence[ScheduleConfig],
    instruments: Sequence[Instrument],
    calendars: Mapping[str, SessionCalendar],
) -> list[ScheduleGroup]:
    """Groups from config; without any, one per (calendar, interval) with a cron matching the bar interval."""
    if schedules:
        groups = []
        for s in schedules:
            members = [
                i
                for i in instruments
                if (s.symbols is None or i.symbol in s.symbols) and (s.calendar is None or i.calendar == s.calendar)
            ]
            if not members:
                raise ValueError(f"schedule {s.name} matches no watchlist symbol")
            groups.append(
                ScheduleGroup(
                    s.name,
                    s.cron,
                    calendars[members[0].symbol].timezone,
                    tuple(i.symbol for i in members),
                    max(i.interval.delta for i in members),
                    timedelta(seconds=s.delay_seconds),
                )
            )
        return groups
    by_key: dict[tuple[str, Interval], list[Instrument]] = {}
    for instrument in instruments:
        by_key.setdefault((instrument.calendar, instrument.interval), []).append(instrument)
    return [
        ScheduleGroup(
            f"{calendar.lower()}-{interval.value}",
            session_cron(calendars[members[0].symbol], interval),
            calendars[members[0].symbol].timezone,
            tuple(i.symbol for i in members),
            interval.delta,
            DEFAULT_DELAY,
        )
        for (calendar, interval), members in by_key.items()
    ]


def session_cron(calendar: SessionCalendar, interval: Interval) -> str:
    """The cron of bar closes: the clock grid, or for hourly bars of a session that does not open on the hour
    (NSE 09:15) each hour after its open and the session's close (10:15, 11:15, ..., 15:15, then 15:30)."""
    if interval is not Interval.H1:
        return DEFAULT_CRON[interval]
    open_min, close_min = calendar.open_minute, calendar.open_minute + calendar.session_minutes
    if open_min % 60 == 0 and calendar.session_minutes % 60 == 0:
        return DEFAULT_CRON[interval]
    first, last = open_min + 60, open_min + 60 * (calendar.session_minutes // 60)
    hours = f"{first // 60}-{last // 60}" if last > first else f"{first // 60}"
    crons = [f"{first % 60} {hours} * * *"]
    if close_min != last:
        crons.append(f"{close_min % 60} {close_min // 60} * * *")
    return " | ".join(crons)


def open_symbols(group: ScheduleGroup, calendars: Mapping[str, SessionCalendar], at: datetime) -> list[str]:
    """Symbols of `group` whose market was open at some point during the bar that closed before `at`."""
    since = at - group.delay - group.interval
    return [s for s in group.symbols if calendars[s].open_duration(since, at) > timedelta(0)]


def last_due_run(
    groups: Sequence[ScheduleGroup],
    calendars: Mapping[str, SessionCalendar],
    until: datetime,
    lookback: timedelta,
) -> tuple[datetime, str] | None:
    """The latest fire time in (until - lookback, until] at which some group had an open market, with its group."""
    latest: tuple[datetime, str] | None = None
    for group in groups:
        fires = []
        fire = group.next_fire(until - lookback)
        while fire <= until:
            fires.append(fire)
            fire = group.next_fire(fire)
        # The latest first: the search stops at the first fire with an open market (the last one, while open).
        found = next((f for f in reversed(fires) if open_symbols(group, calendars, f)), None)
        if found is not None and (latest is None or found > latest[0]):
            latest = (found, group.name)
    return latest


RunGroup = Callable[[ScheduleGroup, list[str]], Awaitable[None]]


class Scheduler:
    """Arms each group's next run on the JobQueue, runs open markets only, and re-arms after every run."""

    def __init__(
        self,
        groups: Sequence[ScheduleGroup],
        calendars: Mapping[str, SessionCalendar],
        clock: BotClock,
        run: RunGroup,
    ) -> None:
        self.groups = tuple(groups)
        self.calendars = dict(calendars)
        self.clock = clock
        self.run = run
        self.next_runs: dict[str, datetime] = {}

    def start(self, job_queue: Any) -> None:
        now = self.clock.now()
        for group in self.groups:
            self._arm(job_queue, group, now)

    def next_run(self) -> datetime | None:
        """When the next analysis really runs: the earliest armed fire with a market open (a fire on a weekend or a
        holiday does nothing, so it is not the next run)."""
        runs = []
        by_name = {g.name: g for g in self.groups}
        for name, armed in self.next_runs.items():
            group, fire = by_name.get(name), armed
            for _ in range(MAX_LOOKAHEAD_FIRES):
                if group is None or self.open_symbols(group, fire):
                    runs.append(fire)
                    break
                fire = group.next_fire(fire)
        return min(runs, default=None)

    def open_symbols(self, group: ScheduleGroup, at: datetime) -> list[str]:
        """Symbols whose market was open at some point during the bar that just closed."""
        return open_symbols(group, self.calendars, at)

    def _arm(self, job_queue: Any, group: ScheduleGroup, after: datetime) -> None:
        fire = group.next_fire(after)
        self.next_runs[group.name] = fire
        job_queue.run_once(
            self._fire, when=self.clock.real_seconds_until(fire), data=(group, fire), name=f"run:{group.name}"
        )

    async def _fire(self, context: Any) -> None:
        group, fire = context.job.data
        try:
            symbols = self.open_symbols(group, fire)
            if symbols:
                await self.run(group, symbols)
            else:
                log.debug("schedule %s: markets closed at %s, no run", group.name, fire)
        finally:
            now = self.clock.now()
            if now - fire > group.interval:
                log.warning("schedule %s fell %s behind; skipping missed runs", group.name, now - fire)
            self._arm(context.job_queue, group, max(fire, now))
