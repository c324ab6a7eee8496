"""Exchange calendars from exchange_calendars, wired through the settings, the scheduler, the runtime and backtests."""

from __future__ import annotations

import json
import logging
import multiprocessing
import pickle
import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from bot.bootstrap import open_runtime
from bot.config import ConfigError, Settings, load_settings
from bot.ops.clock import BotClock
from bot.services.scheduler import Scheduler, build_groups
from data.market import calendars
from data.market.calendars import MarketCalendarError, build_market_calendar, market_calendar
from engine.backtest import BacktestConfig, backtest
from engine.bars import IntArray, to_nanos
from engine.calendars import calendar_warnings, get_calendar
from engine.catalog import default_instrument
from engine.indicators import MarketContext
from engine.pipeline import EngineConfig
from engine.strategy import build_strategy
from engine.trade_book import rejection_key
from engine.trading import ExitReason
from tests.support import shared_context

NSE_HOLIDAY = date(2026, 11, 24)  # Guru Nanak Jayanti
THANKSGIVING = date(2026, 11, 26)
HALF_DAY = date(2026, 11, 27)
NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- The library's calendars ---------------------------------------------------------------------


def test_nse_holidays_come_from_the_library() -> None:
    nse = market_calendar("XNSE")
    assert nse.session(NSE_HOLIDAY) is None and not nse.is_trading_day(NSE_HOLIDAY)
    assert not nse.is_open(utc(2026, 11, 24, 5, 0))
    assert nse.session(date(2026, 11, 23)) == (utc(2026, 11, 23, 3, 45), utc(2026, 11, 23, 10, 0))
    assert nse.last_open_at_or_before(utc(2026, 11, 24, 8, 0)) == utc(2026, 11, 23, 10, 0)
    assert {date(2025, 8, 15), date(2026, 1, 26), date(2026, 12, 25)} <= nse.holidays
    assert nse.holidays_known_until == date(2026, 12, 31)  # the end of the library's hard-coded XBOM list
    built_in = get_calendar("XNSE")
    assert (nse.open_offset, nse.close_offset, nse.weekdays) == (
        built_in.open_offset,
        built_in.close_offset,
        built_in.weekdays,
    )
    assert (nse.entry_cutoff, nse.flat_at) == (built_in.entry_cutoff, built_in.flat_at)


def test_nyse_holidays_and_early_closes_come_from_the_library() -> None:
    nyse = market_calendar("XNYS")
    assert nyse.session(THANKSGIVING) is None
    assert nyse.early_close(HALF_DAY) == timedelta(hours=13)
    assert nyse.session(HALF_DAY) == (utc(2026, 11, 27, 14, 30), utc(2026, 11, 27, 18, 0))  # 13:00 New York
    assert nyse.early_close(date(2026, 12, 24)) == timedelta(hours=13)
    assert nyse.entry_block(utc(2026, 11, 27, 17, 44)) is None
    block = nyse.entry_block(utc(2026, 11, 27, 17, 45))
    assert block == "no new entries in the last 15 min before the XNYS close at 13:00 America/New_York (early close)"
    times = [utc(2026, 11, 27, 17, 50), utc(2026, 11, 27, 17, 55), utc(2026, 11, 27, 18, 0)]
    ids = nyse.exit_session(_nanos(times)).tolist()
    assert ids[0] == ids[1] != ids[2]  # a bar starting at the early close is past the session's end
    assert nyse.holidays_known_until is not None and nyse.holidays_known_until > date(2027, 6, 1)


def test_fx_and_crypto_keep_their_built_in_rules() -> None:
    assert market_calendar("FX") == get_calendar("FX")
    assert market_calendar("CRYPTO") == get_calendar("CRYPTO")


def test_calendars_are_built_once_per_process() -> None:
    assert market_calendar("XNSE") is market_calendar("XNSE")


APART = """
import pickle, sys
from data.market import calendars
calendars.build_apart(["XNSE", "XNYS", "FX"])
assert "exchange_calendars" not in sys.modules, "the library was imported here"
sys.stdout.buffer.write(pickle.dumps({n: calendars.market_calendar(n) for n in ("XNSE", "XNYS", "FX")}))
"""


def test_calendars_built_in_a_child_process_are_the_same_and_keep_the_library_out() -> None:
    done = subprocess.run([sys.executable, "-c", APART], capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    built = pickle.loads(done.stdout)
    assert built == {n: market_calendar(n) for n in ("XNSE", "XNYS", "FX")}
    assert NSE_HOLIDAY in built["XNSE"].holidays


def test_a_child_that_cannot_start_leaves_the_calendars_to_this_process(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    spawn = multiprocessing.get_context("spawn")

    def refuse() -> None:
        raise OSError(12, "Cannot allocate memory")

    class NoProcesses:  # a machine that cannot start another process
        Pipe = staticmethod(spawn.Pipe)

        @staticmethod
        def Process(**kwargs: object) -> object:
            process = spawn.Process(**kwargs)  # type: ignore[arg-type]
            process.start = refuse  # type: ignore[method-assign]
            return process

    monkeypatch.setattr(calendars, "multiprocessing", SimpleNamespace(get_context=lambda method: NoProcesses))
    monkeypatch.setattr(calendars, "_built", {})
    with caplog.at_level(logging.WARNING):
        calendars.build_apart(["XNSE"])
    failed = "building the ['XNSE'] calendars in a child process failed ([Errno 12] Cannot allocate memory)"
    assert failed in caplog.text
    assert calendars._built == {}  # nothing kept: the first use builds it here
    assert NSE_HOLIDAY in calendars.market_calendar("XNSE").holidays


def test_a_calendar_the_library_cannot_build_is_its_error_from_the_child(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[object] = []

    class Sink:
        def send(self, answer: object) -> None:
            sent.append(answer)

        def close(self) -> None:
            pass

    monkeypatch.setitem(sys.modules, "exchange_calendars", None)
    calendars._build_into(["XNSE"], Sink())  # type: ignore[arg-type]
    [answer] = sent
    assert isinstance(answer, MarketCalendarError) and "needs the exchange_calendars library" in str(answer)


CACHED = """
import pickle, sys
sys.modules["exchange_calendars"] = None  # the library cannot be imported: the calendars must come from the files
from pathlib import Path
from data.market import calendars
calendars.multiprocessing = None  # nor can a child process start: both must be read from the files
calendars.build_apart(["XNSE", "XNYS"], Path(sys.argv[1]))
sys.stdout.buffer.write(pickle.dumps({n: calendars.market_calendar(n) for n in ("XNSE", "XNYS")}))
"""


def test_a_calendar_kept_in_the_cache_is_read_back_by_the_next_process_without_the_library(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    for name in ("XNSE", "XNYS"):
        calendars._to_cache(market_calendar(name), cache)
    assert sorted(p.name for p in cache.iterdir()) == ["calendar-XNSE.json", "calendar-XNYS.json"]
    done = subprocess.run([sys.executable, "-c", CACHED, str(cache)], capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    read = pickle.loads(done.stdout)
    assert read == {n: market_calendar(n) for n in ("XNSE", "XNYS")}
    assert read["XNYS"].early_close(HALF_DAY) == timedelta(hours=13) and NSE_HOLIDAY in read["XNSE"].holidays


@pytest.mark.parametrize(
    ("spoil", "why"),
    [
        (lambda kept: kept["key"].update(day="2000-01-01"), None),  # built on another day: another window
        (lambda kept: kept["key"].update(library="0.0.1"), None),  # another version of the library
        (lambda kept: kept["key"]["rules"].__setitem__(1, 0.0), None),  # built-in rules changed since
        (lambda kept: kept.update(holidays=["not a date"]), "Invalid isoformat string"),
        (lambda kept: kept.pop("early_closes"), "early_closes"),
        (lambda kept: kept.update(early_closes=[["2026-11-27", 99_000.0]]), "must fall inside the regular session"),
    ],
    ids=["another day", "another library", "other rules", "a bad date", "a missing field", "an impossible close"],
)
def test_a_stale_or_spoilt_cache_is_built_again_and_written_over(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    spoil: object,
    why: str | None,
) -> None:
    built = market_calendar("XNYS")
    calendars._to_cache(built, tmp_path)
    path = calendars.cache_file(tmp_path, "XNYS")
    kept = json.loads(path.read_text())
    spoil(kept)  # type: ignore[operator]
    path.write_text(json.dumps(kept))
    monkeypatch.setattr(calendars, "_built", {})
    with caplog.at_level(logging.INFO, logger="data.market.calendars"):
        again = market_calendar("XNYS", tmp_path)
    assert again == built
    if why is not None:
        assert f"the XNYS calendar kept in {path} is not usable" in caplog.text and why in caplog.text
    assert json.loads(path.read_text())["key"] == json.loads(json.dumps(calendars._cache_key("XNYS")))


def test_garbage_in_the_cache_file_is_built_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = calendars.cache_file(tmp_path, "XNSE")
    path.write_bytes(b"\xff\x00 not json")
    monkeypatch.setattr(calendars, "_built", {})
    assert NSE_HOLIDAY in market_calendar("XNSE", tmp_path).holidays
    assert json.loads(path.read_text())["holidays_known_until"] == "2026-12-31"


def test_a_cache_folder_that_cannot_be_made_or_written_costs_only_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(calendars, "_built", {})
    absent = tmp_path / "no-such-data-folder" / "cache"
    assert NSE_HOLIDAY in market_calendar("XNSE", absent).holidays
    assert not absent.parent.exists()  # never creates the folders above the cache
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the folder should be")
    monkeypatch.setattr(calendars, "_built", {})
    with caplog.at_level(logging.INFO, logger="data.market.calendars"):
        assert NSE_HOLIDAY in market_calendar("XNSE", blocked).holidays
    assert f"cannot keep the XNSE calendar in {blocked}" in caplog.text
    assert blocked.read_text() == "a file where the folder should be"


def test_built_in_calendars_are_not_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calendars, "_built", {})
    assert market_calendar("FX", tmp_path) == get_calendar("FX")
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_calendar_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown market calendar 'XLON'; known calendars: CRYPTO, FX, XNSE, XNYS"):
        build_market_calendar("XLON")


def test_a_missing_library_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "exchange_calendars", None)  # what Python does for an uninstalled package
    with pytest.raises(MarketCalendarError, match="the XNSE calendar needs the exchange_calendars library"):
        build_market_calendar("XNSE")
    assert build_market_calendar("FX") == get_calendar("FX")  # the built-in rules need no library


# --- The scheduler ------------------------------------------------------------------------------


def test_the_scheduler_does_not_run_on_an_nse_holiday_nor_after_an_early_close() -> None:
    instruments = [default_instrument("RELIANCE"), default_instrument("SPY")]
    calendars = {i.symbol: market_calendar(i.calendar) for i in instruments}
    groups = {g.name: g for g in build_groups((), instruments, calendars)}
    scheduler = Scheduler(list(groups.values()), calendars, BotClock(NOW), _never)
    nse, nyse = groups["xnse-5m"], groups["xnys-5m"]
    assert scheduler.open_symbols(nse, utc(2026, 11, 23, 5, 0, 20)) == ["RELIANCE"]
    assert scheduler.open_symbols(nse, utc(2026, 11, 24, 5, 0, 20)) == []  # the holiday
    assert scheduler.open_symbols(nse, utc(2026, 11, 25, 5, 0, 20)) == ["RELIANCE"]
    assert scheduler.open_symbols(nyse, utc(2026, 11, 27, 18, 0, 20)) == ["SPY"]  # the 12:55 bar just closed
    assert scheduler.open_symbols(nyse, utc(2026, 11, 27, 18, 5, 20)) == []
    assert scheduler.open_symbols(nyse, utc(2026, 11, 26, 16, 0, 20)) == []  # Thanksgiving


async def _never(*_: object) -> None:
    raise AssertionError("no run expected")


# --- Settings -----------------------------------------------------------------------------------


def _settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str) -> Settings:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tradebot.toml").write_text(toml)
    return load_settings({})


def test_configured_holidays_and_rules_are_merged_with_the_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(
        tmp_path,
        monkeypatch,
        "[calendars.XNSE]\n"
        "holidays = [2027-01-26]\n"
        "holidays_known_until = 2027-12-31\n"
        "entry_cutoff_minutes = 30\n"
        "flat_at = 15:00:00\n",
    )
    nse = settings.calendar("XNSE")
    assert date(2027, 1, 26) in nse.holidays and NSE_HOLIDAY in nse.holidays
    assert nse.holidays_known_until == date(2027, 12, 31)
    assert (nse.entry_cutoff, nse.flat_at) == (timedelta(minutes=30), timedelta(hours=15))
    assert nse.entry_block(utc(2026, 11, 20, 9, 29)) is None  # 14:59 IST
    assert nse.entry_block(utc(2026, 11, 20, 9, 30)) is not None
    assert calendar_warnings([nse], NOW) == []
    assert settings.calendar("XNYS") is market_calendar("XNYS")  # nothing configured: the library's as is


def test_the_flat_time_can_move_to_the_bell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nse = _settings(tmp_path, monkeypatch, '[calendars.XNSE]\nflat_at = "15:30"\nentry_cutoff_minutes = 0\n').calendar(
        "XNSE"
    )
    assert nse.flat_at == timedelta(hours=15, minutes=30) and nse.entry_block(utc(2026, 11, 20, 9, 55)) is None


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            "[calendars.XNSE]\nflat_at = 16:00:00\n",
            r"calendars\.XNSE\.flat_at: 16:00 is outside the XNSE session: it must be after the 09:15 open and at or "
            r"before the 15:30 close \(Asia/Kolkata\)",
        ),
        ("[calendars.XNSE]\nflat_at = 09:00:00\n", r"calendars\.XNSE\.flat_at: 09:00 is outside the XNSE session"),
        (
            "[calendars.XNYS]\nentry_cutoff_minutes = 390\n",
            r"calendars\.XNYS\.entry_cutoff_minutes: must be shorter than the XNYS session \(390 min\), was 390",
        ),
        (
            "[calendars.FX]\nentry_cutoff_minutes = -5\n",
            r"calendars\.FX\.entry_cutoff_minutes: .*greater than or equal",
        ),
        ("[calendars.XNSE]\nflat_at = 15:15:30\n", r"calendars\.XNSE\.flat_at: must be a whole minute"),
        ("[calendars.XNSE]\nflat_at = 1515\n", r"calendars\.XNSE\.flat_at"),
    ],
)
def test_calendar_overrides_are_validated_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        _settings(tmp_path, monkeypatch, toml)


def test_an_override_type_is_a_time_of_day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(tmp_path, monkeypatch, '[calendars.XNYS]\nflat_at = "15:45"\n')
    assert settings.calendars["XNYS"].flat_at == time(15, 45)


# --- Runtime warning ----------------------------------------------------------------------------


async def test_the_runtime_warns_when_holidays_run_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings({}, db_path=tmp_path / "bot.db", data_source=f"csv:{tmp_path}", TELEGRAM_ALLOWED_USERS="1")
    with caplog.at_level(logging.WARNING, logger="bot.services.runtime"):
        async with open_runtime(settings, BotClock(NOW)):
            pass
    warned = [r.getMessage() for r in caplog.records if "holidays are known only until" in r.getMessage()]
    assert warned == ["XNSE holidays are known only until 2026-12-31: add [calendars.XNSE].holidays for later dates"]


# --- Backtests on real NSE bars -----------------------------------------------------------------


@pytest.mark.shared_data
def test_real_nse_backtest_flattens_at_15_15_and_refuses_late_entries() -> None:
    ctx = shared_context("RELIANCE")
    result = backtest(ctx, build_strategy("pattern_reversal"), EngineConfig(), BacktestConfig())
    minute = ctx.local_minute
    session_ends = [bt for bt in result.trades if bt.trade.exit_reason is ExitReason.SESSION_END]
    assert len(session_ends) >= 20
    for bt in session_ends:
        assert minute[bt.exit_index] == 15 * 60 + 10  # the 15:10 bar ...
        exit_time = bt.trade.exit_time
        assert exit_time is not None
        local = exit_time.astimezone(ctx.calendar.zone)
        assert (local.hour, local.minute) == (15, 15)  # ... closing at the flat time
    for bt in (*result.trades, *result.open_trades):
        signal_close = int(minute[bt.signal_index]) + 5
        assert not 15 * 60 + 15 <= signal_close < 15 * 60 + 30, f"{bt.trade.trade_id} entered after the flat time"
        held = ctx.exit_session[bt.entry_index : (bt.exit_index or bt.entry_index) + 1]
        assert len(set(held.tolist())) == 1
    flat_rule = rejection_key(
        "intraday positions on XNSE go flat at 15:15 Asia/Kolkata: no new entries from then to the close"
    )
    assert dict(result.rejection_reasons).get(flat_rule, 0) > 0


@pytest.mark.shared_data
def test_real_nse_backtest_with_the_flat_time_at_the_bell_holds_to_the_last_bar() -> None:
    ctx = shared_context("RELIANCE")
    bell = ctx.calendar.replace(flat_at=ctx.calendar.close_offset, entry_cutoff=timedelta(0))
    at_bell = MarketContext(ctx.instrument, ctx.bars, bell)
    result = backtest(at_bell, build_strategy("pattern_reversal"), EngineConfig(), BacktestConfig())
    exits = {
        int(ctx.local_minute[bt.exit_index]) for bt in result.trades if bt.trade.exit_reason is ExitReason.SESSION_END
    }
    assert 15 * 60 + 25 in exits and 15 * 60 + 10 not in exits
    assert not [r for r, _ in result.rejection_reasons if "flat" in r or "no new entries" in r]


def _nanos(times: list[datetime]) -> IntArray:
    return np.array([to_nanos(t) for t in times], dtype=np.int64)


def test_library_calendars_survive_pickling_for_process_workers() -> None:
    nyse = market_calendar("XNYS")
    copy = pickle.loads(pickle.dumps(nyse))
    assert copy == nyse and copy.early_close(HALF_DAY) == timedelta(hours=13)
