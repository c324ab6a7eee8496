"""Drift detection and learning through the running bot: the real python-telegram-bot against the fake Bot API
server, the CSV data source on the shared market data and a real SQLite file.

Before the bot starts, the database holds a baseline of trend_pullback on GBPUSD (60 out-of-sample trades, half
of them +2R wins) and 30 trades recorded since, of which only 3 won. The drift check the bot runs on its first
tick must call that CRITICAL, tell the chat with the numbers and disable the pair; a restart must neither
repeat the alert nor forget the disabled pair; the trader turns it back on with the alert's button.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.services.configure import system_book
from bot.telegram.callbacks import Action, Callback
from data.sqlite.store import SqliteStore
from tests.builders import baseline_for, gbpusd_trade, record_system_trades
from tests.e2e.test_bot import CONFIG, START, TOKEN, TRADER, ManualMonotonic, bot, bot_env
from tests.fakes.telegram_server import FakeTelegram, SentMessage

LEARNING = """
[learning]
backtest_bars = 3000
min_calibration_trades = 40
"""


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield bot_env(tmp_path, monkeypatch, CONFIG.format(interval=0.05) + LEARNING)


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN) as server:
        yield server


async def seed(db: Path) -> None:
    """A passed baseline of exactly the trend_pullback system the bot trades on GBPUSD, and 30 trades of it."""
    spec = system_book(load_settings()).specs[("trend_pullback", "GBPUSD")]
    made = START - timedelta(days=60)
    async with await SqliteStore.open(db) as store:
        await store.save_baseline(baseline_for(spec, made, r_multiples=tuple([2.0, -1.0] * 30), data_to=made))
        closed = [gbpusd_trade(n, n % 10 == 0, START - timedelta(days=50 - n)) for n in range(30)]  # before the start
        await record_system_trades(store, spec, closed)


def drift_alerts(server: FakeTelegram) -> list[SentMessage]:
    return [m for m in server.sent if m.chat_id == TRADER and m.body.startswith("🚨 Drift")]


async def test_a_critical_drift_alerts_disables_the_pair_survives_a_restart_and_is_enabled_by_button(
    tg: FakeTelegram,
    env: Path,
) -> None:
    db = env / "bot.db"
    await seed(db)
    mono = ManualMonotonic()
    async with bot(tg, env, mono) as b:
        alert = await tg.wait_for_message(lambda m: m.body.startswith("🚨 Drift CRITICAL: trend_pullback GBPUSD"))
        overall = await tg.wait_for_message(lambda m: m.body.startswith("🚨 Drift CRITICAL: trend_pullback (all)"))
        assert "n=30" in alert.body and "win 10% vs 50%" in alert.body and "KS p=" in alert.body
        assert "Disabled for new entries" in alert.body and "Disabled" not in overall.body  # pairs only
        assert alert.buttons == [("Enable trend_pullback on GBPUSD", "en:1")] and not overall.buttons
        [(state, source)] = b.query("SELECT state, source FROM pair_controls")
        assert (state, source) == ("disabled", "drift")
        assert b.query("SELECT strategy, symbol, severity FROM drift_alerts ORDER BY id") == [
            ("trend_pullback", "GBPUSD", "critical"),
            ("trend_pullback", "*", "critical"),
        ]
        run = await b.analyse()
        assert "dropped GBPUSD: trend_pullback on GBPUSD disabled by drift" in run.body

    async with bot(tg, env, mono) as b:  # restart: same bot time, then an hour later the check runs again
        b.advance(timedelta(minutes=61))
        before = b.query("SELECT value FROM bot_state WHERE key = 'drift.last_check'")
        await b.eventually(lambda: b.query("SELECT value FROM bot_state WHERE key = 'drift.last_check'") != before)
        assert len(drift_alerts(tg)) == 2  # the cooldown and the disabled state were kept: nothing told again
        assert len(b.query("SELECT * FROM pair_controls")) == 1

        table = await b.command("/drift")
        assert "CRITICAL</b> trend_pullback GBPUSD · disabled" in (table.source or table.body)
        assert "trend_pullback (all)" in table.body

        since = len(tg.sent)
        tg.click(TRADER, alert, Callback(Action.ENABLE, control_id=999).encode(), allow_stale=True)  # forged
        refused = await tg.wait_for_message(lambda m: m.chat_id == TRADER, since=since, timeout=20)
        assert "no longer valid" in refused.body and b.query("SELECT COUNT(*) FROM pair_controls") == [(1,)]

        since = len(tg.sent)
        press = tg.click(TRADER, alert, button="Enable trend_pullback on GBPUSD")
        done = await tg.wait_for_message(lambda m: "enabled again" in m.body, since=since, timeout=20)
        assert "trend_pullback" in done.body and (await tg.wait_for_answer(press)).text == "Enabling…"
        assert b.query("SELECT state, source, by FROM pair_controls ORDER BY id DESC LIMIT 1") == [
            ("enabled", "operator", TRADER)
        ]
        since = len(tg.sent)
        tg.click(TRADER, alert, button="Enable trend_pullback on GBPUSD")  # a second press: nothing more
        stale = await tg.wait_for_message(lambda m: m.chat_id == TRADER, since=since, timeout=20)
        assert "changed since this button was sent" in stale.body
        assert b.query("SELECT COUNT(*) FROM pair_controls") == [(2,)]


async def test_learn_fits_a_version_and_signals_then_carry_the_win_estimate(
    tg: FakeTelegram,
    env: Path,
) -> None:
    await seed(env / "bot.db")
    async with bot(tg, env) as b:
        await tg.wait_for_message(lambda m: m.body.startswith("🚨 Drift CRITICAL"))
        since = len(tg.sent)
        tg.user_message(TRADER, "/learn")
        learned = await tg.wait_for_message(lambda m: "learned model v1" in m.body, since=since, timeout=60)
        assert "calibration:" in learned.body and "score weights: trend_pullback" in learned.body
        since = len(tg.sent)
        report = await b.command("/report")
        assert "Score weights: trend_pullback" in report.body and "hand weights" in report.body
        chart = await tg.wait_for_message(lambda m: m.body == "reliability, learned model v1", since=since, timeout=30)
        assert (chart.photo_size or 0) > 0  # the report's reliability chart follows its text: later replies wait
        [(version, summary)] = b.query("SELECT version, summary FROM learned_models")
        inputs = json.loads(str(summary))
        assert version == 1 and inputs["outcomes"]["external"] == 30 and inputs["outcomes"]["backtest"] > 0
        await b.analyse()
        gold = await b.signal_message("XAUUSD")
        assert "est. win" in gold.body
        [(p_win, note)] = b.query("SELECT p_win, note FROM signal_estimates")
        assert (p_win is None) == bool(note)  # a number, or the reason there is none

        since = len(tg.sent)
        tg.user_message(TRADER, "/learn rollback")
        back = await tg.wait_for_message(lambda m: m.chat_id == TRADER, since=since, timeout=20)
        assert "No earlier learned model" in back.body
