"""The learning loop over a real SQLite file: fit a version from baselines and recorded trades, demote and lift
pairs (never overriding drift), roll back, stay frozen; and the desk ranking, gating and annotating signals with it.

No backtests run here (`provider=None`): the outcomes are the recorded trades the tests put in the store.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import Any, cast

import pytest

from bot.config import Settings, load_settings
from bot.services.learner import LAST_RUN_KEY, LearnedModel, Learner
from bot.services.scan import WatchItem
from bot.services.systems import SystemBook
from bot.telegram.events import learned_text
from bot.telegram.messages import signal_message
from data.outbox import OutboxKind
from data.sqlite.store import SqliteStore
from engine.calendars import get_calendar
from engine.catalog import default_instrument
from engine.controls import ControlSource, PairControl, PairState
from engine.domain import Side, SignalStatus
from engine.learning import Verdict
from engine.ports import SignalEstimate
from engine.score_weights import WeightsComparison, compare_weights
from engine.systems import Baseline
from engine.trading import ExecutionMode, ExitReason, Trade, TradeKind
from tests.builders import baseline_for
from tests.fakes.clock import SteppingClock
from tests.integration.test_desk import AS_OF, Desk, build
from tests.unit.test_score_weights import outcomes as synthetic_outcomes

TP = "trend_pullback"
EURUSD = (TP, "EURUSD")
NO_CALIBRATION = (
    "n/a: 0 scored outcomes; at least 100 are needed to fit a calibration on the earlier 70% and test it on the "
    "later 30%"
)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No inherited TRADEBOT_ variables or `.env`: the settings come from the test's TOML only."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("TRADEBOT_", "TELEGRAM_")) or name == "STATE_DIRECTORY":
            monkeypatch.delenv(name)


def make_settings(folder: Path, demote_action: str = "ask_only", extra: str = "") -> Settings:
    """Settings read from a `tradebot.toml` with this `[learning]` table."""
    config = folder / "tradebot.toml"
    config.write_text(f'[learning]\ndemote_action = "{demote_action}"\n{extra}', encoding="utf-8")
    return load_settings({"TRADEBOT_CONFIG": str(config)})


def watch(*symbols: str) -> list[WatchItem]:
    instruments = [default_instrument(s) for s in symbols]
    return [WatchItem(i, get_calendar(i.calendar), ()) for i in instruments]


def baseline(systems: SystemBook, symbol: str, r_multiples: tuple[float, ...], created_at: datetime) -> Baseline:
    """A passing baseline of exactly the trend_pullback system traded on `symbol`."""
    spec = systems.specs[(TP, symbol)]
    made = baseline_for(spec, created_at, r_multiples=r_multiples, metrics={"oos_trades": len(r_multiples)})
    return replace(made, data_from=created_at - timedelta(days=900))


def closed_trade(
    n: int, symbol: str, won: bool, entry_time: datetime, kind: TradeKind = TradeKind.EXTERNAL, tag: str = ""
) -> Trade:
    """A trend_pullback long risking 0.00100 that closed 5 hours after entry at +2R (target) or -1R (stop)."""
    instrument = default_instrument(symbol)
    opened = Trade(
        trade_id=f"{symbol}-{tag}{n:04d}-{kind.value}",
        signal_id=f"{symbol}-{tag}{n:04d}",
        kind=kind,
        strategy=TP,
        symbol=symbol,
        side=Side.LONG,
        quantity=Decimal(1),
        contract_size=instrument.contract_size,
        entry_time=entry_time,
        entry_price=Decimal("1.10000"),
        stop=Decimal("1.09900"),
        target=Decimal("1.10200"),
    )
    if kind is TradeKind.SHADOW:
        return opened
    exit_price, reason = (opened.target, ExitReason.TARGET) if won else (opened.stop, ExitReason.STOP)
    return opened.closed(entry_time + timedelta(hours=5), exit_price, reason, Decimal(0))


async def record_losing_run(store: SqliteStore, symbol: str, now: datetime) -> None:
    """40 external trades of the last 41 days of which only 4 won: -0.26R expected, P(R < 0) 0.93 on the prior."""
    for n in range(40):
        entry = now - timedelta(days=41) + timedelta(days=n, hours=n % 8)
        await store.record_external_trade(closed_trade(n, symbol, n % 10 == 0, entry))


async def record_winning_run(store: SqliteStore, symbol: str, now: datetime) -> None:
    """40 external +2R trades entered in the last 20 hours."""
    for n in range(40):
        entry = now - timedelta(hours=20) + timedelta(minutes=25 * n)
        await store.record_external_trade(closed_trade(n, symbol, True, entry, tag="w"))


async def record_shadow(store: SqliteStore, n: int, symbol: str, won: bool, entry: datetime) -> None:
    trade = closed_trade(n, symbol, won, entry, kind=TradeKind.SHADOW)
    assert await store.open_shadow_trade(trade)
    price, reason = (trade.target, ExitReason.TARGET) if won else (trade.stop, ExitReason.STOP)
    assert await store.close_trade(trade.trade_id, entry + timedelta(hours=5), price, reason, Decimal(0))


@dataclass
class Lab:
    store: SqliteStore
    clock: SteppingClock
    learner: Learner

    async def learn(self) -> LearnedModel:
        model = await self.learner.learn(backtests=False)
        assert isinstance(model, LearnedModel), model
        return model

    async def control(self, key: tuple[str, str] = EURUSD) -> PairControl | None:
        return (await self.store.pair_controls()).get(key)


@asynccontextmanager
async def open_lab(tmp_path: Path, demote_action: str = "ask_only", extra: str = "") -> AsyncIterator[Lab]:
    settings = make_settings(tmp_path, demote_action, extra)  # before the store: a bad TOML leaks nothing
    clock = SteppingClock(AS_OF)
    store = await SqliteStore.open(tmp_path / "bot.db")
    try:
        yield Lab(store, clock, Learner(store, None, clock, settings, watch("EURUSD", "GBPUSD")))
    finally:
        await store.close()


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    async with open_lab(tmp_path) as built:
        yield built


@asynccontextmanager
async def desk(tmp_path: Path) -> AsyncIterator[Desk]:
    """test_desk's desk over the shared market data; its store is closed even when the test fails."""
    built = cast(AsyncGenerator[Desk, None], build(tmp_path))
    try:
        yield await anext(built)
    finally:
        await built.aclose()


async def seed_demotion(lab: Lab) -> None:
    """A passing EURUSD baseline (+0.5R over 60 trades) from before the 40 mostly losing trades recorded since."""
    await lab.store.save_baseline(baseline(lab.learner.systems, "EURUSD", (2.0, -1.0) * 30, AS_OF - timedelta(days=60)))
    await record_losing_run(lab.store, "EURUSD", AS_OF)


DEMOTION = (
    "P(expected R < 0) = 0.93, expected R -0.26 ± 0.18 after 40 recorded outcomes: at or above the 0.90 demotion "
    "threshold"
)


async def test_learn_fits_v1_makes_it_active_and_demotes_the_losing_pair_to_ask_only(lab: Lab) -> None:
    await seed_demotion(lab)
    await record_shadow(lab.store, 1, "GBPUSD", False, AS_OF - timedelta(days=3))
    await record_shadow(lab.store, 2, "GBPUSD", True, AS_OF - timedelta(days=2))

    model = await lab.learn()

    assert model.version == 1 and model.created_at == AS_OF
    stored = await lab.store.active_model()
    assert stored is not None and stored.version == 1
    assert stored.summary["outcomes"] == {"external": 40, "shadow": 2}
    assert stored.summary["baselines"] == 1 and stored.summary["pairs"] == 2 and stored.summary["demoted"] == 1
    assert stored.summary["trigger"] == "command" and stored.summary["calibration"] == NO_CALIBRATION
    assert stored.summary["config"]["demote_confidence"] == 0.9 and stored.summary["config"]["method"] == "isotonic"
    assert set(model.posteriors) == {(TP, None), EURUSD, (TP, "GBPUSD")}
    eur = model.posteriors[EURUSD]
    assert eur.live_n == 40 and eur.prior_n == 20.0 and eur.prior_expected_r == 0.5
    assert round(eur.expected_r, 2) == -0.26 and round(eur.p_negative, 2) == 0.93
    assert model.posteriors[(TP, "GBPUSD")].prior == "no baseline: weak prior"
    assert model.demotions == ((TP, "EURUSD", Verdict.ASK_ONLY, DEMOTION),)
    assert model.calibration is None and model.calibration_note == NO_CALIBRATION

    control = await lab.control()
    assert control is not None
    assert (control.state, control.source, control.at) == (PairState.ASK_ONLY, ControlSource.LEARNING, AS_OF)
    assert control.reason == f"learning v1: {DEMOTION}"
    assert "P(expected R < 0)" in control.reason
    assert await lab.control((TP, "GBPUSD")) is None  # 2 outcomes: too few to demote
    assert await lab.store.get_state(LAST_RUN_KEY) == "2025-06-12"

    text = learned_text(model)
    assert text.startswith("🧠 <b>learned model v1</b> (command): 40 external, 2 shadow; 1 baseline")
    assert f"⬇️ trend_pullback EURUSD → ask_only: {escape(DEMOTION)}" in text


async def test_learning_again_changes_nothing_that_is_already_demoted(lab: Lab) -> None:
    await seed_demotion(lab)
    await lab.learn()
    first = await lab.control()
    lab.clock.advance(timedelta(hours=1))
    again = await lab.learn()
    assert again.version == 2 and again.demotions[0][2] is Verdict.ASK_ONLY
    assert await lab.control() == first  # the same record: no second ASK_ONLY row


async def test_pause_action_disables_the_pair(tmp_path: Path) -> None:
    async with open_lab(tmp_path, "pause") as lab:
        await seed_demotion(lab)
        model = await lab.learn()
        assert model.demotions == ((TP, "EURUSD", Verdict.PAUSE, DEMOTION),)
        control = await lab.control()
        assert control is not None and (control.state, control.source) == (PairState.DISABLED, ControlSource.LEARNING)


async def test_demote_action_none_reports_but_changes_no_control(tmp_path: Path) -> None:
    async with open_lab(tmp_path, "none") as lab:
        await seed_demotion(lab)
        model = await lab.learn()
        assert model.demotions == () and model.summary["demoted"] == 0
        assert await lab.store.pair_controls() == {}


async def test_a_pair_disabled_by_drift_stays_disabled_whatever_learning_says(lab: Lab) -> None:
    await seed_demotion(lab)
    drift = await lab.store.set_pair_control(
        PairControl(TP, "EURUSD", PairState.DISABLED, ControlSource.DRIFT, "CRITICAL: win 10% vs 50%", AS_OF)
    )
    assert drift is not None

    v1 = await lab.learn()
    assert v1.demotions[0][:3] == (TP, "EURUSD", Verdict.ASK_ONLY)  # learning would demote it too...
    assert await lab.control() == drift  # ...but never overrides drift's DISABLED with its milder ASK_ONLY

    lab.clock.advance(timedelta(days=1))
    await record_winning_run(lab.store, "EURUSD", lab.clock.now())
    v2 = await lab.learn()
    assert v2.version == 2 and v2.demotions == ()
    assert await lab.control() == drift  # and a recovered posterior does not lift what drift disabled


async def test_a_recovered_posterior_lifts_learnings_demotion(lab: Lab) -> None:
    await seed_demotion(lab)
    await lab.learn()
    lab.clock.advance(timedelta(days=1))
    await record_winning_run(lab.store, "EURUSD", lab.clock.now())

    v2 = await lab.learn()

    assert v2.version == 2 and v2.demotions == ()
    assert v2.summary["outcomes"] == {"external": 80}
    assert v2.posteriors[EURUSD].live_n == 80 and v2.posteriors[EURUSD].expected_r > 0.5
    stored = await lab.store.active_model()
    assert stored is not None and stored.version == 2
    control = await lab.control()
    assert control is not None
    assert (control.state, control.source) == (PairState.ENABLED, ControlSource.LEARNING)
    assert control.reason == "learning v2: the posterior no longer calls for a demotion"
    assert control.at == AS_OF + timedelta(days=1)


async def test_rollback_returns_to_v1_and_reapplies_its_demotion_then_stops_at_v1(lab: Lab) -> None:
    await seed_demotion(lab)
    await lab.learn()
    lab.clock.advance(timedelta(days=1))
    await record_winning_run(lab.store, "EURUSD", lab.clock.now())
    await lab.learn()
    lab.clock.advance(timedelta(hours=2))

    back = await lab.learner.rollback()

    assert back is not None and back.version == 1 and lab.learner.model == back
    assert back.demotions == ((TP, "EURUSD", Verdict.ASK_ONLY, DEMOTION),)
    stored = await lab.store.active_model()
    assert stored is not None and stored.version == 1
    control = await lab.control()
    assert control is not None
    assert (control.state, control.source) == (PairState.ASK_ONLY, ControlSource.LEARNING)
    assert control.reason == f"learning v1: {DEMOTION}" and control.at == AS_OF + timedelta(days=1, hours=2)

    controls = await lab.store.pair_controls()
    assert await lab.learner.rollback() is None  # nothing before v1
    assert await lab.store.pair_controls() == controls
    stored = await lab.store.active_model()
    assert stored is not None and stored.version == 1 and lab.learner.model == back


async def test_rollback_without_any_model_returns_none(lab: Lab) -> None:
    assert await lab.learner.rollback() is None
    assert await lab.store.active_model() is None and lab.learner.model is None


async def test_reapplying_an_old_version_leaves_a_pair_the_trader_enabled_since(lab: Lab) -> None:
    await seed_demotion(lab)
    await lab.learn()
    lab.clock.advance(timedelta(hours=1))
    await lab.learn()  # v2: the same data, the same demotion
    enabled = await lab.store.set_pair_control(
        PairControl(TP, "EURUSD", PairState.ENABLED, ControlSource.OPERATOR, "/enable", lab.clock.now(), by=42)
    )
    back = await lab.learner.rollback()
    assert back is not None and back.version == 1
    assert await lab.control() == enabled  # v1 was fitted before the trader's /enable: it is not re-imposed
    lab.clock.advance(timedelta(hours=1))
    await lab.learn()  # a fit after the /enable decides again
    control = await lab.control()
    assert control is not None and (control.state, control.source) == (PairState.ASK_ONLY, ControlSource.LEARNING)


async def test_frozen_learning_fits_nothing_and_changes_nothing(tmp_path: Path) -> None:
    async with open_lab(tmp_path, extra="frozen = true\n") as lab:
        await seed_demotion(lab)
        result = await lab.learner.learn(backtests=False)
        assert result == "learning is frozen ([learning] frozen = true): nothing was fitted or changed"
        assert await lab.store.active_model() is None and lab.learner.model is None
        assert await lab.store.pair_controls() == {}
        assert await lab.store.get_state(LAST_RUN_KEY) is None
        assert not await lab.learner.due(AS_OF.replace(hour=23))


async def test_refresh_loads_a_version_another_process_stored_and_drops_an_unreadable_one(lab: Lab) -> None:
    assert await lab.learner.refresh() is None
    await seed_demotion(lab)
    v1 = await lab.learn()
    stored = await lab.store.active_model()
    assert stored is not None
    other = Learner(lab.store, None, lab.clock, lab.learner.settings, lab.learner.items)
    loaded = await other.refresh()
    assert loaded is not None and loaded.version == 1 and loaded.posteriors == v1.posteriors
    assert loaded.demotions == v1.demotions

    await lab.store.save_model(AS_OF, stored.summary, {**stored.model, "schema": 99})
    assert await other.refresh() is None  # v2 cannot be decoded: signals go unranked, nothing crashes


# --- the desk with learning as its advisor ---------------------------------------------------------------------


async def desk_with_learner(d: Desk, folder: Path) -> Learner:
    learner = Learner(d.store, None, d.clock, make_settings(folder), watch("GBPUSD", "XAUUSD"), d.desk.systems)
    d.desk.advisor = learner
    return learner


async def test_an_ask_only_pair_is_asked_in_auto_mode_and_others_execute(tmp_path: Path) -> None:
    async with desk(tmp_path) as d:
        learner = await desk_with_learner(d, tmp_path)
        await d.store.save_baseline(baseline(d.desk.systems, "GBPUSD", (2.0, -1.0) * 30, AS_OF - timedelta(days=60)))
        await record_losing_run(d.store, "GBPUSD", AS_OF)
        model = await learner.learn(backtests=False)
        assert isinstance(model, LearnedModel) and model.demotions[0][:3] == (TP, "GBPUSD", Verdict.ASK_ONLY)
        await d.state.set_mode(ExecutionMode.AUTO)
        await d.validate("XAUUSD")

        report = await d.scan.scan()
        decisions = {x.symbol: x for x in await d.desk.offer(report.setups)}

        gbp, xau = decisions["GBPUSD"], decisions["XAUUSD"]
        assert gbp.status is SignalStatus.PENDING
        assert gbp.reason == f"ask-only (learning 2025-06-12: learning v1: {DEMOTION}): asking"
        assert await d.status(gbp.signal_id) is SignalStatus.PENDING
        assert (xau.status, xau.reason) == (SignalStatus.APPROVED, "auto mode")  # no control: the mode decides
        assert await d.status(xau.signal_id) is SignalStatus.FILLED
        assert [o.client_order_id for o in d.broker.orders] == [xau.signal_id]
        (asked,) = await d.outbox(OutboxKind.SIGNAL)
        assert asked["signal_ids"] == [gbp.signal_id]


async def test_a_disabled_pair_is_dropped_with_who_disabled_it(tmp_path: Path) -> None:
    async with desk(tmp_path) as d:
        await desk_with_learner(d, tmp_path)
        await d.state.set_mode(ExecutionMode.AUTO)
        await d.validate("GBPUSD", "XAUUSD")
        why = "CRITICAL: win 10% vs 50% over 30 trades"
        await d.store.set_pair_control(
            PairControl(TP, "XAUUSD", PairState.DISABLED, ControlSource.DRIFT, why, AS_OF - timedelta(days=1))
        )
        report = await d.scan.scan()
        decisions = {x.symbol: x for x in await d.desk.offer(report.setups)}
        xau, gbp = decisions["XAUUSD"], decisions["GBPUSD"]
        assert xau.status is SignalStatus.DROPPED
        assert xau.reason == f"trend_pullback on XAUUSD disabled by drift 2025-06-11: {why} (/enable)"
        assert (gbp.status, gbp.reason) == (SignalStatus.APPROVED, "auto mode")
        assert [o.client_order_id for o in d.broker.orders] == [gbp.signal_id]
        assert await d.store.estimates([xau.signal_id, gbp.signal_id]) == {}  # no learning run yet: no estimate


async def test_learning_ranks_the_higher_expectancy_pair_first_even_below_the_other_quality(tmp_path: Path) -> None:
    async with desk(tmp_path) as d:
        report = await d.scan.scan()
        quality = {s.setup.symbol: round(s.score.total) for s in report.setups}
        assert quality == {"GBPUSD": 74, "XAUUSD": 66}  # without learning GBPUSD goes first

        learner = await desk_with_learner(d, tmp_path)
        await d.store.save_baseline(
            baseline(d.desk.systems, "GBPUSD", (2.0, -1.0) * 30, AS_OF - timedelta(days=60))
        )  # +0.5R
        await d.store.save_baseline(
            baseline(d.desk.systems, "XAUUSD", (3.0, -1.0) * 30, AS_OF - timedelta(days=60))
        )  # +1.0R
        model = await learner.learn(backtests=False)
        assert isinstance(model, LearnedModel) and model.demotions == ()
        assert model.posteriors[(TP, "XAUUSD")].expected_r == 1.0
        assert model.posteriors[(TP, "GBPUSD")].expected_r == 0.5

        decisions = await d.desk.offer(report.setups)

        assert [(x.symbol, x.status) for x in decisions] == [
            ("XAUUSD", SignalStatus.PENDING),
            ("GBPUSD", SignalStatus.PENDING),
        ]
        messages = await d.outbox(OutboxKind.SIGNAL)
        assert [m["signal_ids"] for m in messages] == [[decisions[0].signal_id], [decisions[1].signal_id]]
        estimates = await d.store.estimates([x.signal_id for x in decisions])
        assert {x.symbol: estimates[x.signal_id].expected_r for x in decisions} == {"XAUUSD": 1.0, "GBPUSD": 0.5}


async def test_a_signal_without_a_calibration_carries_why_and_shows_est_win_na(tmp_path: Path) -> None:
    async with desk(tmp_path) as d:
        learner = await desk_with_learner(d, tmp_path)
        await d.store.save_baseline(baseline(d.desk.systems, "GBPUSD", (2.0, -1.0) * 30, AS_OF - timedelta(days=60)))
        await record_shadow(d.store, 1, "GBPUSD", True, AS_OF - timedelta(days=2))
        model = await learner.learn(backtests=False)
        assert isinstance(model, LearnedModel) and model.calibration is None

        decisions = {x.symbol: x for x in await d.desk.offer((await d.scan.scan()).setups)}

        gbp, xau = decisions["GBPUSD"], decisions["XAUUSD"]
        estimates = await d.store.estimates([gbp.signal_id, xau.signal_id])
        assert estimates[gbp.signal_id] == SignalEstimate(
            gbp.signal_id, 1, None, 0, round(model.posteriors[(TP, "GBPUSD")].expected_r, 4), NO_CALIBRATION
        )
        assert estimates[xau.signal_id] == SignalEstimate(xau.signal_id, 1, None, 0, None, NO_CALIBRATION)

        record = await d.store.signal(gbp.signal_id)
        assert record is not None
        rendered = signal_message([record], d.desk.instruments, estimates=estimates)
        assert "est. win n/a: " in rendered.text  # the reason follows
        assert NO_CALIBRATION.removeprefix("n/a: ") in rendered.text
        sent = [str(m["text"]) for m in await d.outbox(OutboxKind.SIGNAL)]
        assert len(sent) == 2 and all("est. win n/a" in t for t in sent)


async def test_a_signal_with_a_shadow_and_a_reported_trade_counts_once_as_what_was_traded(lab: Lab) -> None:
    # Rejected (so tracked in shadow, where it was stopped out), then reported as traded outside with a win.
    entry = AS_OF - timedelta(days=2)
    await record_shadow(lab.store, 0, "EURUSD", False, entry)
    await lab.store.record_external_trade(closed_trade(0, "EURUSD", True, entry))
    model = await lab.learn()
    assert model.summary["outcomes"] == {"external": 1}
    assert model.posteriors[EURUSD].live_n == 1


async def test_a_pending_signal_of_a_pair_disabled_since_its_offer_is_refused_at_the_click(tmp_path: Path) -> None:
    async with desk(tmp_path) as d:
        await desk_with_learner(d, tmp_path)
        report = await d.scan.scan()
        decisions = {x.symbol: x for x in await d.desk.offer(report.setups)}  # manual mode: both asked
        xau = decisions["XAUUSD"]
        assert xau.status is SignalStatus.PENDING
        why = "CRITICAL: win 10% vs 50% over 30 trades"
        await d.store.set_pair_control(PairControl(TP, "XAUUSD", PairState.DISABLED, ControlSource.DRIFT, why, AS_OF))
        outcome = await d.desk.approve(xau.signal_id, 42)
        assert outcome.message == f"Refused: trend_pullback on XAUUSD is disabled (drift: {why}); /enable first."
        assert await d.status(xau.signal_id) is SignalStatus.PENDING and d.broker.orders == []


async def test_adopted_score_weights_rank_and_select_in_quality_mode_and_are_shown(tmp_path: Path) -> None:
    async with desk(tmp_path) as d:
        learner = await desk_with_learner(d, tmp_path)
        adopted = compare_weights(synthetic_outcomes(400, 1, informative=True), TP)
        assert isinstance(adopted, WeightsComparison) and adopted.adopted  # level_room alone ranks R
        learner.model = LearnedModel(1, AS_OF, {}, None, NO_CALIBRATION, (), {}, {TP: adopted})
        report = await d.scan.scan()
        hand = {s.setup.symbol: s.score.total for s in report.setups}
        learned = {s.setup.symbol: learner.score(s) for s in report.setups}
        assert hand == {"GBPUSD": 74.3, "XAUUSD": 66.4}
        assert learned != hand and all(learned[s] == adopted.score(x.score.as_dict()) for s, x in _by_symbol(report))
        await d.validate("GBPUSD", "XAUUSD")
        await d.state.set_mode(ExecutionMode.QUALITY)
        threshold = (min(learned.values()) + max(learned.values())) / 2  # the learned score decides, not the hand one
        d.desk.policy = replace(d.desk.policy, auto_threshold=threshold, ask_threshold=0.0)
        decisions = {x.symbol: x for x in await d.desk.offer(report.setups)}
        best = max(learned, key=learned.__getitem__)
        assert decisions[best].status is SignalStatus.APPROVED
        assert {x.status for s, x in decisions.items() if s != best} == {SignalStatus.PENDING}
        estimates = await d.store.estimates([x.signal_id for x in decisions.values()])
        assert {s: estimates[x.signal_id].learned_score for s, x in decisions.items()} == learned
        [asked] = await d.outbox(OutboxKind.SIGNAL)
        assert f"learned score {learned[next(s for s in learned if s != best)]:.0f}" in str(asked["text"])


def _by_symbol(report: Any) -> list[tuple[str, Any]]:
    return [(s.setup.symbol, s) for s in report.setups]
