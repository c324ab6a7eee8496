"""Bot time, cron schedules in market time, and button data."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from bot.config import ScheduleConfig, load_settings
from bot.ops.clock import BotClock
from bot.services.scheduler import ScheduleGroup, Scheduler, build_groups
from bot.telegram.callbacks import MAX_CALLBACK_BYTES, Action, Callback, parse
from engine.bars import from_nanos, to_nanos
from engine.calendars import get_calendar
from engine.catalog import DEFAULT_WATCHLIST, default_instrument
from engine.domain import Interval

START = datetime(2025, 6, 12, 9, 40, tzinfo=UTC)


class Mono:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_simulated_clock_starts_where_told_and_runs_at_its_speed() -> None:
    mono = Mono()
    clock = BotClock(START, 60.0, monotonic=mono)
    assert clock.now() == START
    mono.t += 2.5
    assert clock.now() == START + timedelta(minutes=2, seconds=30)
    assert clock.real_seconds(timedelta(minutes=5)) == 5.0
    assert clock.real_seconds_until(START) == 0.0  # already past


def test_unset_clock_is_the_wall_clock() -> None:
    clock = BotClock()
    assert not clock.simulated
    assert abs((clock.now() - datetime.now(UTC)).total_seconds()) < 1


@pytest.mark.parametrize("speed", [0.0, -1.0])
def test_clock_speed_must_be_positive(speed: float) -> None:
    with pytest.raises(ValueError, match="clock speed must be positive"):
        BotClock(START, speed)


def default_groups() -> dict[str, ScheduleGroup]:
    calendars = {i.symbol: get_calendar(i.calendar) for i in DEFAULT_WATCHLIST}
    return {g.name: g for g in build_groups((), DEFAULT_WATCHLIST, calendars)}


def test_default_groups_follow_calendar_and_bar_interval() -> None:
    groups = default_groups()
    assert set(groups) == {"fx-1h", "crypto-1h", "xnys-5m", "xnse-5m"}
    assert groups["xnse-5m"].symbols == ("NIFTY50", "RELIANCE", "HDFCBANK", "INFY", "TCS", "SBIN", "ICICIBANK")
    assert groups["fx-1h"].cron == "0 * * * *" and groups["xnse-5m"].cron == "*/5 * * * *"


def test_next_fire_is_in_market_time_after_the_bar_closes() -> None:
    nse = default_groups()["xnse-5m"]
    at = datetime(2025, 6, 12, 3, 47, tzinfo=UTC)  # 09:17 IST
    assert nse.next_fire(at) == datetime(2025, 6, 12, 3, 50, 20, tzinfo=UTC)
    assert nse.next_fire(datetime(2025, 6, 12, 3, 50, 20, tzinfo=UTC)) == datetime(2025, 6, 12, 3, 55, 20, tzinfo=UTC)
    daily = ScheduleGroup("d", "0 16 * * 1-5", "Asia/Kolkata", ("TCS",), timedelta(days=1), timedelta(0))
    assert daily.next_fire(at) == datetime(2025, 6, 12, 10, 30, tzinfo=UTC)  # 16:00 IST


def test_only_markets_open_during_the_last_bar_are_run() -> None:
    calendars = {i.symbol: get_calendar(i.calendar) for i in DEFAULT_WATCHLIST}
    groups = default_groups()
    scheduler = Scheduler(list(groups.values()), calendars, BotClock(START), lambda g, s: None)  # type: ignore[arg-type,return-value]
    saturday = datetime(2025, 6, 14, 12, 0, 20, tzinfo=UTC)
    assert scheduler.open_symbols(groups["fx-1h"], saturday) == []
    assert scheduler.open_symbols(groups["crypto-1h"], saturday) == ["BTCUSDT", "ETHUSDT"]
    last_bar = datetime(2025, 6, 12, 10, 0, 20, tzinfo=UTC)  # NSE closed at 10:00Z; its last bar just closed
    assert scheduler.open_symbols(groups["xnse-5m"], last_bar)[:2] == ["NIFTY50", "RELIANCE"]
    assert scheduler.open_symbols(groups["xnse-5m"], last_bar + timedelta(minutes=10)) == []


def test_configured_schedule_groups(tmp_path: Path) -> None:
    schedules = (
        ScheduleConfig(name="nse", cron="*/15 * * * *", calendar="XNSE"),
        ScheduleConfig(name="gold", cron="1 * * * *", symbols=("XAUUSD",), delay_seconds=0),
    )
    calendars = {i.symbol: get_calendar(i.calendar) for i in DEFAULT_WATCHLIST}
    groups = {g.name: g for g in build_groups(schedules, DEFAULT_WATCHLIST, calendars)}
    assert len(groups["nse"].symbols) == 7 and groups["nse"].timezone == "Asia/Kolkata"
    assert groups["gold"].symbols == ("XAUUSD",) and groups["gold"].timezone == "America/New_York"


def test_bad_cron_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tradebot.toml").write_text('[[bot.schedules]]\nname = "x"\ncron = "every minute"\n')
    with pytest.raises(Exception, match=r"bot\.schedules\.0\.cron: not a 5-field cron expression"):
        load_settings({})


def test_holidays_from_config_close_the_market(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tradebot.toml").write_text("[calendars.XNSE]\nholidays = [2025-08-15]\n")
    calendar = load_settings({}).calendar("XNSE")
    assert date(2025, 8, 15) in calendar.holidays  # merged with the exchange_calendars holidays
    assert not calendar.is_open(datetime(2025, 8, 15, 5, tzinfo=UTC))
    assert calendar.is_open(datetime(2025, 8, 14, 5, tzinfo=UTC))
    (tmp_path / "tradebot.toml").write_text("[calendars.LSE]\nholidays = [2025-08-15]\n")
    with pytest.raises(Exception, match=r"calendars\.LSE: unknown market calendar"):
        load_settings({})


def test_callback_data_round_trips_and_fits_telegram() -> None:
    signal_id = default_instrument("EURUSD").symbol and "0d6d5c562b"
    for action in (Action.APPROVE, Action.REJECT):
        data = Callback(action, signal_id).encode()
        assert len(data.encode()) <= MAX_CALLBACK_BYTES
        assert parse(data) == Callback(action, signal_id)
    assert parse(Callback(Action.KEEP_OPEN).encode()) == Callback(Action.KEEP_OPEN)
    for action in (Action.CLOSE_TRADE, Action.BREAKEVEN):
        for trade_id in ("0d6d5c562b", "0d6d5c562b.2", "oanda-1234"):
            assert parse(Callback(action, trade_id=trade_id).encode()) == Callback(action, trade_id=trade_id)
    batch = Callback(Action.CLOSE_BATCH, batch_id=42)
    assert parse(batch.encode()) == batch
    with pytest.raises(ValueError, match="callback data must be valid"):
        Callback(Action.CLOSE_TRADE, trade_id="x" * 70).encode()
    enable = Callback(Action.ENABLE, control_id=123_456_789_012_345_678)
    assert parse(enable.encode()) == enable and len(enable.encode()) <= MAX_CALLBACK_BYTES


@pytest.mark.parametrize(
    "data",
    [
        None,
        "",
        "ap",
        "ap:",
        "ap:-",
        "ap:0D6D5C562B",
        "ap:0d6d5c562",
        "ap:0d6d5c562b0",
        "xx:0d6d5c562b",
        "ca:0d6d5c562b",
        "ca:-",  # the unbound "close all" of old /stop messages: no longer honoured
        "cl:",
        "cl:-",
        "cl:../x",
        "be:a b",
        "cl:" + "a" * 61,
        "cb:0",
        "cb:-",
        "cb:7x",
        "ap:0d6d5c562b;rj:0d6d5c562b",
        "a" * 65,
        "ap:../../etc",
        "ap:0d6d5c562b\n",
        "en:",
        "en:-",
        "en:0",
        "en:012",
        "en:-5",
        "en:12a",
        "en:0d6d5c562b",
        "en:1234567890123456789",
    ],
)
def test_malformed_or_forged_callback_data_is_rejected(data: str | None) -> None:
    assert parse(data) is None


def test_nse_hourly_runs_follow_its_0915_grid_and_the_1530_close() -> None:
    nifty = default_instrument("NIFTY50")
    hourly = [replace(nifty, interval=Interval.H1)]
    [group] = build_groups((), hourly, {"NIFTY50": get_calendar("XNSE")})
    assert group.cron == "15 10-15 * * * | 30 15 * * *"
    at = datetime(2025, 6, 12, 3, 45, tzinfo=UTC)  # 09:15 IST
    fires = []
    for _ in range(8):
        at = group.next_fire(at)
        fires.append((at + timedelta(hours=5, minutes=30)).strftime("%H:%M:%S"))
    assert fires == ["10:15:20", "11:15:20", "12:15:20", "13:15:20", "14:15:20", "15:15:20", "15:30:20", "10:15:20"]


def test_the_last_nse_hour_is_closed_at_1530_not_1615() -> None:
    calendar = get_calendar("XNSE")
    opens = np.array(
        [to_nanos(datetime(2025, 6, 12, 8, 45, tzinfo=UTC)), to_nanos(datetime(2025, 6, 12, 9, 45, tzinfo=UTC))]
    )
    closes = calendar.bar_closes(opens, Interval.H1)
    assert [from_nanos(int(c)) for c in closes] == [
        datetime(2025, 6, 12, 9, 45, tzinfo=UTC),  # 14:15-15:15 IST
        datetime(2025, 6, 12, 10, 0, tzinfo=UTC),  # 15:15-15:30 IST
    ]
