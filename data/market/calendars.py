"""Exchange calendars from the exchange_calendars library: holidays and early closes for XNSE and XNYS.

`market_calendar(name)` returns the `SessionCalendar` the bot trades on, built once per process:

* XNSE comes from the library's XBOM (the Bombay exchange keeps the same holidays and hours as the NSE),
  XNYS from XNYS. The weekly hours and the entry rules (`entry_cutoff`, `flat_at`) stay the built-in ones of
  `engine.calendars`; the library must agree on the timezone and the regular open and close, or we refuse.
* The window is the library's default: about 20 years back to one year ahead, cut at the end of a
  hard-coded holiday list. Holidays are the weekdays in it without a session; early closes are the sessions
  that close before the regular close. Late opens and special weekend sessions are not represented.
* `holidays_known_until`: for a calendar built from a hard-coded list (the library's `bound_max`, XBOM's
  list ends 2026-12-31) the end of that list; for a rule-based one (XNYS) the last session of the window,
  because past it our holiday set is empty even though the rules would go on.
* FX and CRYPTO are the built-in rules: they have no holidays to learn.

A missing or broken library, or a calendar it cannot build, raises `MarketCalendarError` naming the cause.

`build_apart(names)` builds them in a child process instead and keeps them as this process's: the running bot
uses only the holidays and early closes, and the library (about 110 modules and 10 MB) then never loads there.

Given a cache folder (the bot's: `cache` beside the database), what the library yielded (holidays, early closes,
the end of its holiday data) is also kept there, one JSON file per calendar, and read back by the next process
on the same local day with the same library version and the same built-in rules: a command or a restart then
skips the library (and pandas) and its half a second of building. Anything else (another day, library or rule
set, a file that cannot be read or does not parse) is built again and written over; a folder that cannot be
written to only costs the next process that build.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import multiprocessing
import os
import tempfile
import warnings
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from engine.calendars import SessionCalendar, get_calendar

LIBRARY_CODES: Final = MappingProxyType({"XNSE": "XBOM", "XNYS": "XNYS"})
APART_TIMEOUT_SECONDS: Final = 120.0  # a fresh interpreter importing pandas and the library on a loaded machine
CACHE_FORMAT: Final = 1
LIBRARY: Final = "exchange_calendars"

log = logging.getLogger(__name__)
_built: dict[str, SessionCalendar] = {}


class MarketCalendarError(RuntimeError):
    """The exchange_calendars library is missing or cannot build a calendar we need."""


def market_calendar(name: str, cache: Path | None = None) -> SessionCalendar:
    """The calendar `name` with the library's holidays and early closes (built once per process; kept in the
    folder `cache` for the next process when given)."""
    calendar = _built.get(name)
    if calendar is None:
        calendar = _from_cache(name, cache)
        if calendar is None:
            calendar = build_market_calendar(name)
            _to_cache(calendar, cache)
        calendar = _built.setdefault(name, calendar)
    return calendar


def build_apart(names: Iterable[str], cache: Path | None = None) -> None:
    """Build the library's calendars among `names` in a child process and keep them as this process's (and in
    the folder `cache` when given); the ones `cache` already holds for today are read from it instead.

    A child that cannot start, dies or takes longer than `APART_TIMEOUT_SECONDS` (then killed) leaves them to be
    built here on first use (logged); a calendar the library cannot build raises its `MarketCalendarError` here.
    """
    wanted = []
    for name in sorted({n for n in names if n in LIBRARY_CODES} - _built.keys()):
        cached = _from_cache(name, cache)
        if cached is None:
            wanted.append(name)
        else:
            _built.setdefault(name, cached)
    if not wanted:
        return
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing of this process is copied
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_build_into, args=(wanted, send), name="tradebot-calendars", daemon=True)
    try:
        child.start()
        send.close()
        if not receive.poll(APART_TIMEOUT_SECONDS):
            raise TimeoutError(f"no answer in {APART_TIMEOUT_SECONDS:.0f} s")
        answer = receive.recv()
    except (OSError, EOFError, TimeoutError) as exc:
        log.warning("building the %s calendars in a child process failed (%s): building them here", wanted, exc)
        return
    finally:
        if child.is_alive():
            child.kill()
        if child.pid is not None:
            child.join()
        receive.close()
    if isinstance(answer, MarketCalendarError):
        raise answer
    for name, calendar in answer.items():
        _to_cache(_built.setdefault(name, calendar), cache)


def _build_into(names: list[str], send: Connection) -> None:
    """In the child: send the calendars built, or the `MarketCalendarError` that stopped one."""
    try:
        answer: dict[str, SessionCalendar] | MarketCalendarError = {n: build_market_calendar(n) for n in names}
    except MarketCalendarError as exc:
        answer = exc
    send.send(answer)
    send.close()


def build_market_calendar(name: str) -> SessionCalendar:
    """Build calendar `name`: the library's data for exchanges, the built-in rules otherwise."""
    base = get_calendar(name)  # raises ValueError naming the known calendars
    code = LIBRARY_CODES.get(name)
    if code is None:
        return base
    try:
        import exchange_calendars  # noqa: PLC0415 - a heavy import, needed only for exchange calendars
    except ImportError as exc:
        raise MarketCalendarError(
            f"the {name} calendar needs the exchange_calendars library (pip install 'exchange_calendars>=4.5'): {exc}"
        ) from exc
    try:
        with warnings.catch_warnings():  # the library's own pandas deprecations are not ours to fix
            warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
            library = exchange_calendars.get_calendar(code)
        return _from_library(base, code, library)
    except MarketCalendarError:
        raise
    except Exception as exc:
        raise MarketCalendarError(f"exchange_calendars cannot build {code} for the {name} calendar: {exc}") from exc


def _from_library(base: SessionCalendar, code: str, library: Any) -> SessionCalendar:
    """`base` with the holidays and early closes of the library calendar `library`."""
    import pandas as pd  # noqa: PLC0415 - with the library, only where an exchange calendar is built

    where = f"exchange_calendars {code} for {base.name}"
    if str(library.tz) != base.timezone:
        raise MarketCalendarError(f"{where} is in {library.tz}, expected {base.timezone}")
    regular_open, regular_close = _offset(library.open_times[-1][1]), _offset(library.close_times[-1][1])
    if (regular_open, regular_close) != (base.open_offset, base.close_offset):
        raise MarketCalendarError(
            f"{where} trades {regular_open}-{regular_close}, expected {base.open_offset}-{base.close_offset}"
        )
    sessions = pd.DatetimeIndex(library.sessions)
    first, last = sessions[0].date(), sessions[-1].date()
    days = pd.date_range(first, last, freq="D")
    weekdays = days[days.day_of_week.isin(sorted(base.weekdays))]
    holidays = frozenset(d.date() for d in weekdays.difference(sessions))

    closes = pd.Series(library.closes).dt.tz_convert(base.timezone).dt.tz_localize(None)
    offsets = closes - pd.DatetimeIndex(closes.index).normalize()
    early = offsets[offsets < base.close_offset]
    early_closes = frozenset((day.date(), offset.to_pytimedelta()) for day, offset in early.items())

    bound = library.bound_max()
    known_until: date = pd.Timestamp(bound).date() if bound is not None else last
    return base.replace(
        holidays=base.holidays | holidays,
        early_closes=early_closes,
        holidays_known_until=known_until,
    )


def _offset(clock: Any) -> timedelta:
    return timedelta(hours=clock.hour, minutes=clock.minute)


def cache_file(cache: Path, name: str) -> Path:
    """Where the folder `cache` keeps what the library yielded for calendar `name`."""
    return cache / f"calendar-{name}.json"


def _cache_key(name: str) -> dict[str, object] | None:
    """What a kept calendar must have been built with to be used now; None when the library is not installed.

    The library's window runs from about twenty years before its local today to a year after, so a calendar is
    kept for the local day it was built on, as one built at a long-running bot's start is."""
    try:
        version = importlib.metadata.version(LIBRARY)
    except importlib.metadata.PackageNotFoundError:
        return None
    base = get_calendar(name)
    return {
        "format": CACHE_FORMAT,
        "library": version,
        "day": datetime.now(UTC).astimezone().date().isoformat(),  # the library's window starts from its local today
        "rules": [
            base.timezone,
            base.open_offset.total_seconds(),
            base.close_offset.total_seconds(),
            sorted(base.weekdays),
            sorted(d.isoformat() for d in base.holidays),
            sorted((d.isoformat(), o.total_seconds()) for d, o in base.early_closes),
        ],
    }


def _from_cache(name: str, cache: Path | None) -> SessionCalendar | None:
    """The calendar `name` as kept in the folder `cache` for today, or None (not kept, stale or unreadable)."""
    if cache is None or name not in LIBRARY_CODES:
        return None
    key = _cache_key(name)
    path = cache_file(cache, name)
    if key is None or not path.is_file():
        return None
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(kept, dict) or kept.get("key") != json.loads(json.dumps(key)):
            return None
        return get_calendar(name).replace(
            holidays=frozenset(date.fromisoformat(d) for d in kept["holidays"]),
            early_closes=frozenset(
                (date.fromisoformat(d), timedelta(seconds=float(s))) for d, s in kept["early_closes"]
            ),
            holidays_known_until=date.fromisoformat(kept["holidays_known_until"]),
        )
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.info("the %s calendar kept in %s is not usable (%s): building it again", name, path, exc)
        return None


def _to_cache(calendar: SessionCalendar, cache: Path | None) -> None:
    """Keep a library calendar in the folder `cache` (created beside an existing parent, never above it)."""
    key = None if cache is None or calendar.name not in LIBRARY_CODES else _cache_key(calendar.name)
    if cache is None or key is None or calendar.holidays_known_until is None:
        return
    kept = {
        "key": key,
        "holidays": sorted(d.isoformat() for d in calendar.holidays),
        "early_closes": sorted((d.isoformat(), o.total_seconds()) for d, o in calendar.early_closes),
        "holidays_known_until": calendar.holidays_known_until.isoformat(),
    }
    try:
        cache.mkdir(exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".calendar-{calendar.name}-", dir=cache)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(kept, out)
            os.replace(temporary, cache_file(cache, calendar.name))
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        log.info("cannot keep the %s calendar in %s (%s): the next process builds it again", calendar.name, cache, exc)
