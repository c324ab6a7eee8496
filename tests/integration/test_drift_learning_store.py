"""The store's drift alerts, pair controls, learned model versions and signal estimates, on a real SQLite file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from data.sqlite.store import SqliteStore, StoreError
from engine.controls import ControlSource, DriftAlert, PairControl, PairState
from engine.ports import SignalEstimate
from tests.integration.test_bot_store import new_signal

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with await SqliteStore.open(tmp_path / "bot.db") as opened:
        yield opened


def control(state: PairState, source: ControlSource = ControlSource.DRIFT, by: int | None = None) -> PairControl:
    return PairControl("trend_pullback", "EURUSD", state, source, f"{state.value} for a test", T0, by)


async def test_drift_alerts_survive_a_reopen_and_the_newest_per_pair_is_read(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    async with await SqliteStore.open(path) as store:
        assert await store.last_drift_alert("trend_pullback", "EURUSD") is None
        await store.record_drift_alert(DriftAlert("trend_pullback", "EURUSD", "high", T0, "n=40"))
        await store.record_drift_alert(
            DriftAlert("trend_pullback", "EURUSD", "critical", T0 + timedelta(hours=1), "n=41")
        )
        await store.record_drift_alert(DriftAlert("trend_pullback", "*", "high", T0 + timedelta(hours=2), "all"))
    async with await SqliteStore.open(path) as store:
        last = await store.last_drift_alert("trend_pullback", "EURUSD")
        assert last == DriftAlert("trend_pullback", "EURUSD", "critical", T0 + timedelta(hours=1), "n=41")
        overall = await store.last_drift_alert("trend_pullback", "*")
        assert overall is not None and overall.summary == "all"


async def test_pair_controls_keep_history_and_the_newest_record_is_the_state(store: SqliteStore) -> None:
    first = await store.set_pair_control(control(PairState.DISABLED))
    assert first is not None and first.control_id > 0
    enabled = await store.set_pair_control(control(PairState.ENABLED, ControlSource.OPERATOR, by=7), first.control_id)
    assert enabled is not None and enabled.control_id > first.control_id
    states = await store.pair_controls()
    assert states == {("trend_pullback", "EURUSD"): enabled}
    assert await store.pair_control(first.control_id) == first  # history kept


async def test_a_stale_enable_changes_nothing(store: SqliteStore) -> None:
    first = await store.set_pair_control(control(PairState.DISABLED))
    assert first is not None
    again = await store.set_pair_control(control(PairState.DISABLED))
    assert again is not None
    stale = await store.set_pair_control(control(PairState.ENABLED, ControlSource.OPERATOR, by=7), first.control_id)
    assert stale is None
    assert (await store.pair_controls())[("trend_pullback", "EURUSD")] == again


async def test_two_enables_at_once_append_exactly_one_record(store: SqliteStore) -> None:
    disabled = await store.set_pair_control(control(PairState.DISABLED))
    assert disabled is not None
    enable = control(PairState.ENABLED, ControlSource.OPERATOR, by=7)
    results = await asyncio.gather(*(store.set_pair_control(enable, disabled.control_id) for _ in range(5)))
    assert sum(r is not None for r in results) == 1


def test_an_operator_change_must_say_who_made_it() -> None:
    with pytest.raises(ValueError, match="must say who made it"):
        control(PairState.ENABLED, ControlSource.OPERATOR)


async def test_models_are_versioned_and_rollback_returns_to_the_previous_one(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    async with await SqliteStore.open(path) as store:
        assert await store.active_model() is None
        assert await store.rollback_model() is None
        v1 = await store.save_model(T0, {"outcomes": 10}, {"calibration": None})
        v2 = await store.save_model(T0 + timedelta(days=1), {"outcomes": 12}, {"calibration": {"x": [1, 2]}})
        assert (v1, v2) == (1, 2)
        active = await store.active_model()
        assert active is not None and active.version == 2 and active.summary == {"outcomes": 12}
    async with await SqliteStore.open(path) as store:
        back = await store.rollback_model()
        assert back is not None and back.version == 1
        active = await store.active_model()
        assert active is not None and active.version == 1 and active.model == {"calibration": None}
        assert await store.rollback_model() is None  # nothing before v1: stays on v1
        assert (await store.active_model()) == active
        v3 = await store.save_model(T0 + timedelta(days=2), {"outcomes": 13}, {})
        assert v3 == 3 and (await store.active_model()).version == 3  # type: ignore[union-attr]


async def test_a_model_must_be_plain_json(store: SqliteStore) -> None:
    with pytest.raises(ValueError, match="read back unchanged"):
        await store.save_model(T0, {"t": (1, 2)}, {})


async def test_the_first_estimate_of_a_signal_stands(store: SqliteStore) -> None:
    signal_id = await new_signal(store, "EURUSD")
    await store.save_estimate(SignalEstimate(signal_id, 1, 0.58, 143, 0.21))
    await store.save_estimate(SignalEstimate(signal_id, 2, 0.70, 150, 0.4))
    assert await store.estimates([signal_id, "nosuchsignal"]) == {
        signal_id: SignalEstimate(signal_id, 1, 0.58, 143, 0.21)
    }
    assert await store.estimates([]) == {}


async def test_an_estimate_for_an_unknown_signal_is_refused(store: SqliteStore) -> None:
    with pytest.raises(StoreError, match="FOREIGN KEY"):
        await store.save_estimate(SignalEstimate("0123456789", 1, None, 0, None, "no model"))


def test_an_estimate_outside_0_1_is_refused() -> None:
    with pytest.raises(ValueError, match=r"p_win must be within 0\.\.1"):
        SignalEstimate("0123456789", 1, 1.2, 10)
