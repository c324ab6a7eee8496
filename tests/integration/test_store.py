"""SqliteStore against a real SQLite file: migrations, pragmas, exact round-trips, atomicity, concurrency, WAL."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import data.sqlite.connection as connection_module
import data.sqlite.runs as runs_module
from data.sqlite.migrations import LATEST_VERSION, MIGRATIONS, Migration
from data.sqlite.store import (
    CorruptRecordError,
    RunStateError,
    SchemaVersionError,
    SqliteStore,
    StoreClosedError,
    StoreError,
    UnknownRunError,
)
from engine.domain import (
    Interval,
    QualityScore,
    Rejection,
    RejectionKind,
    RunStatus,
    ScoreComponent,
    ScoredSetup,
    Setup,
    Side,
    SignalStatus,
)
from engine.ports import SignalStore

T0 = datetime(2025, 6, 12, 9, 40, tzinfo=UTC)
COMPONENTS = (
    ScoreComponent("trend_alignment", 1.0, 0.2, "close above EMA50 and EMA50 above EMA200"),
    ScoreComponent("momentum", 0.5, 0.15, "RSI 58 in the long sweet spot, MACD histogram negative"),
    ScoreComponent("reward_risk", 0.6666666666666666, 0.15, "2.0R to the first target"),
)


def make_setup(
    symbol: str = "EURUSD",
    strategy: str = "breakout",
    side: Side = Side.LONG,
    entry: str = "1.08725",
    stop: str = "1.08600",
    targets: Sequence[str] = ("1.08975", "1.09100"),
    bar_time: datetime = T0,
    timeframe: Interval = Interval.M5,
    reasons: Sequence[str] = ("range breakout on 1.8x volume", "above VWAP"),
) -> Setup:
    return Setup(
        strategy,
        symbol,
        side,
        Decimal(entry),
        Decimal(stop),
        tuple(Decimal(t) for t in targets),
        bar_time,
        timeframe,
        tuple(reasons),
    )


def scored(setup: Setup, total: float = 71.3, components: tuple[ScoreComponent, ...] = COMPONENTS) -> ScoredSetup:
    return ScoredSetup(setup, QualityScore(total, components))


def symbol_rejection(symbol: str = "GBPJPY") -> Rejection:
    return Rejection(RejectionKind.SYMBOL, symbol, "provider returned no bars", detail={"provider": "yahoo"})


def setup_rejection(symbol: str = "EURUSD") -> Rejection:
    return Rejection(
        RejectionKind.SETUP, symbol, "stop distance 0.00020 is under 3 ticks", "breakout", T0, {"ticks": "2"}
    )


@contextmanager
def plain(path: Path, timeout: float = 5.0) -> Iterator[sqlite3.Connection]:
    """A separate, ordinary sqlite3 connection to the same file (autocommit)."""
    with closing(sqlite3.connect(path, timeout=timeout, isolation_level=None)) as conn:
        yield conn


def scalar(path: Path, sql: str, params: Sequence[Any] = ()) -> Any:
    with plain(path) as conn:
        return conn.execute(sql, params).fetchone()[0]


def schema(path: Path) -> list[tuple[str, str, str]]:
    with plain(path) as conn:
        return conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name").fetchall()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "nested" / "tradebot.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteStore]:
    async with await SqliteStore.open(db_path) as opened:
        yield opened


async def finished_run(
    store: SqliteStore,
    setups: Sequence[ScoredSetup] = (),
    rejections: Sequence[Rejection] = (),
    errors: Sequence[str] = (),
    started_at: datetime = T0,
) -> int:
    run_id = await store.start_run(started_at, T0, "yahoo", ["EURUSD", "GBPJPY"])
    await store.finish_run(run_id, started_at + timedelta(seconds=7), setups, rejections, errors)
    return run_id


# --- migrations -------------------------------------------------------------------------------------------


async def test_open_creates_folder_and_applies_every_migration(db_path: Path) -> None:
    assert not db_path.parent.exists()
    async with await SqliteStore.open(db_path) as store:
        assert store.schema_version == LATEST_VERSION == len(MIGRATIONS)
    assert db_path.is_file()
    assert scalar(db_path, "PRAGMA user_version") == LATEST_VERSION
    names = {name for _, name, _ in schema(db_path)}
    assert {"analysis_runs", "signals", "run_signals", "rejections"} <= names
    assert {"signals_symbol_bar_time", "signals_status", "rejections_run_id"} <= names


async def test_reopening_an_up_to_date_database_changes_no_schema(db_path: Path) -> None:
    async with await SqliteStore.open(db_path) as store:
        await finished_run(store, [scored(make_setup())])
    before = schema(db_path)
    cookie = scalar(db_path, "PRAGMA schema_version")  # bumped by SQLite on any DDL

    async with await SqliteStore.open(db_path) as store:
        assert store.schema_version == LATEST_VERSION
        assert len(await store.recent_runs()) == 1

    assert schema(db_path) == before
    assert scalar(db_path, "PRAGMA schema_version") == cookie
    assert scalar(db_path, "PRAGMA user_version") == LATEST_VERSION


async def test_database_from_a_newer_release_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with plain(path) as conn:
        conn.execute("CREATE TABLE from_the_future (x)")
        conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 5}")
    before = schema(path)

    with pytest.raises(
        SchemaVersionError, match=rf"schema version {LATEST_VERSION + 5}, newer than the {LATEST_VERSION}"
    ):
        await SqliteStore.open(path)

    assert scalar(path, "PRAGMA user_version") == LATEST_VERSION + 5
    assert schema(path) == before
    assert scalar(path, "PRAGMA journal_mode") == "delete"  # refused before switching to WAL


async def test_failing_migration_rolls_back_its_statements_and_version_bump(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with await SqliteStore.open(db_path):
        pass
    next_version = LATEST_VERSION + 1
    broken = Migration(
        next_version, "approvals", ("CREATE TABLE approvals (id INTEGER PRIMARY KEY)", "INSERT INTO nowhere VALUES (1)")
    )
    monkeypatch.setattr(connection_module, "MIGRATIONS", (*MIGRATIONS, broken))

    with pytest.raises(StoreError, match=rf"migration {next_version} \(approvals\) failed.*no such table: nowhere"):
        await SqliteStore.open(db_path)

    assert scalar(db_path, "PRAGMA user_version") == LATEST_VERSION
    assert "approvals" not in {name for _, name, _ in schema(db_path)}

    fixed = Migration(next_version, "approvals", ("CREATE TABLE approvals (id INTEGER PRIMARY KEY)",))
    monkeypatch.setattr(connection_module, "MIGRATIONS", (*MIGRATIONS, fixed))
    async with await SqliteStore.open(db_path) as store:
        assert store.schema_version == next_version
    assert "approvals" in {name for _, name, _ in schema(db_path)}


async def test_a_file_that_is_not_sqlite_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"this is a text file, not a database" * 100)
    with pytest.raises(StoreError, match="is not a usable SQLite database"):
        await SqliteStore.open(path)
    assert path.read_bytes().startswith(b"this is a text file")


# --- connection settings ----------------------------------------------------------------------------------


async def test_connection_pragmas_are_set(store: SqliteStore, db_path: Path) -> None:
    pragmas = await store.pragmas()
    assert pragmas.journal_mode == "wal"
    assert pragmas.busy_timeout_ms == 5000
    assert pragmas.foreign_keys is True
    assert pragmas.synchronous == 1  # NORMAL
    assert scalar(db_path, "PRAGMA journal_mode") == "wal"  # persistent: seen by other connections too


async def test_a_sqlite_without_returning_is_refused_with_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    with pytest.raises(StoreError, match=r"SQLite 3\.31\.1 is too old: tradebot needs 3\.35\.0 or newer"):
        await SqliteStore.open(tmp_path / "old.db")
    assert not (tmp_path / "old.db").exists()  # refused before anything is created


async def test_busy_timeout_is_configurable(tmp_path: Path) -> None:
    async with await SqliteStore.open(tmp_path / "t.db", busy_timeout_ms=1234) as store:
        assert (await store.pragmas()).busy_timeout_ms == 1234


def in_the_file(path: Path, sql: str) -> Any:
    """What the database file itself holds, without its write-ahead log."""
    with closing(sqlite3.connect(f"file:{path}?immutable=1", uri=True)) as conn:
        return conn.execute(sql).fetchone()


async def test_without_autocheckpoint_commits_stay_in_the_log_until_a_checkpoint_copies_them(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    await (await SqliteStore.open(path)).close()  # the schema in the file (the last connection's close copies it)
    async with await SqliteStore.open(path, autocheckpoint=False) as store:
        assert [tuple(r) for r in await store._require_open().execute_fetchall("PRAGMA wal_autocheckpoint")] == [(0,)]
        for k in range(1_200):  # past SQLite's default of a checkpoint by the commit that fills 1,000 pages
            await store.set_state(f"key{k}", "x" * 2_000)
        assert in_the_file(path, "SELECT COUNT(*) FROM bot_state") == (0,)  # no commit copied the log
        log, copied = await store.checkpoint()  # on its own connection, while the store's stays open
        assert log > 1_000 and copied == log
        assert in_the_file(path, "SELECT COUNT(*) FROM bot_state") == (1_200,)
        assert await store.get_state("key1199") == "x" * 2_000
    async with await SqliteStore.open(path) as default:  # SQLite's own checkpoints, as every other process has
        assert [tuple(r) for r in await default._require_open().execute_fetchall("PRAGMA wal_autocheckpoint")] == [
            (1000,)
        ]
        await default.close()
        with pytest.raises(StoreClosedError):
            await default.checkpoint()


# --- round-trips ------------------------------------------------------------------------------------------


async def test_prices_round_trip_exactly_as_decimal_text(store: SqliteStore, db_path: Path) -> None:
    fx = make_setup()
    micro = make_setup("SHIBUSD", side=Side.SHORT, entry="0.00001", stop="0.000012", targets=("0.0000080",))
    index = make_setup("NIFTY", entry="123456.78", stop="123400.00", targets=("123600.5",), timeframe=Interval.M15)
    originals = [scored(fx), scored(micro, 88.8), scored(index, 0.0, ())]

    run_id = await finished_run(store, originals)
    loaded = await store.setups_for_run(run_id)

    assert [item for item, _ in loaded] == originals
    assert [status for _, status in loaded] == [SignalStatus.NEW] * 3
    for (item, _), original in zip(loaded, originals, strict=True):
        got, want = item.setup, original.setup
        assert [str(got.entry), str(got.stop), *map(str, got.targets)] == [
            str(want.entry),
            str(want.stop),
            *map(str, want.targets),
        ]
        assert got.bar_time.tzinfo is UTC
        assert item.score.components == original.score.components  # same order
    with plain(db_path) as conn:
        rows = conn.execute("SELECT entry, typeof(entry), stop, targets FROM signals ORDER BY symbol").fetchall()
    assert rows == [
        ("1.08725", "text", "1.08600", '["1.08975","1.09100"]'),
        ("123456.78", "text", "123400.00", '["123600.5"]'),
        ("0.00001", "text", "0.000012", '["0.0000080"]'),
    ]


async def test_timestamps_are_stored_as_iso_utc_text(store: SqliteStore, db_path: Path) -> None:
    started = datetime(2025, 6, 12, 9, 40, 0, 123456, tzinfo=UTC)
    run_id = await store.start_run(started, T0, "yahoo", ["EURUSD"])
    await store.finish_run(run_id, started + timedelta(seconds=3), [scored(make_setup())], [symbol_rejection()], [])

    with plain(db_path) as conn:
        run = conn.execute("SELECT started_at, as_of, finished_at FROM analysis_runs").fetchone()
        bar_time = conn.execute("SELECT bar_time FROM signals").fetchone()[0]
        rejection_bar_time = conn.execute("SELECT bar_time FROM rejections").fetchone()[0]
    assert run == ("2025-06-12T09:40:00.123456Z", "2025-06-12T09:40:00Z", "2025-06-12T09:40:03.123456Z")
    assert bar_time == "2025-06-12T09:40:00Z"
    assert rejection_bar_time is None

    summary = await store.run(run_id)
    assert summary is not None
    assert summary.started_at == started and summary.started_at.tzinfo is UTC
    assert summary.finished_at == started + timedelta(seconds=3)


async def test_run_summary_and_rejections_round_trip(store: SqliteStore) -> None:
    port: SignalStore = store  # type-checked conformance to the engine's port
    rejections = [setup_rejection(), symbol_rejection(), symbol_rejection("XAUUSD")]
    run_id = await port.start_run(T0, T0 - timedelta(days=1), "csv:replay", ["EURUSD", "GBPJPY", "XAUUSD"])

    running = await store.run(run_id)
    assert running is not None
    assert (running.status, running.finished_at, running.setups) == (RunStatus.RUNNING, None, 0)

    await store.finish_run(run_id, T0 + timedelta(seconds=9), [scored(make_setup())], rejections, ["XAUUSD: timeout"])

    summary = await store.run(run_id)
    assert summary is not None
    assert summary.run_id == run_id
    assert summary.status is RunStatus.FINISHED
    assert summary.as_of == T0 - timedelta(days=1)
    assert summary.data_source == "csv:replay"
    assert summary.symbols == ("EURUSD", "GBPJPY", "XAUUSD")
    assert (summary.setups, summary.rejected_setups, summary.rejected_symbols) == (1, 1, 2)
    assert summary.errors == ("XAUUSD: timeout",)
    assert await store.rejections_for_run(run_id) == rejections


async def test_recent_runs_are_newest_first_and_limited(store: SqliteStore) -> None:
    ids = [await finished_run(store, started_at=T0 + timedelta(minutes=i)) for i in range(4)]
    assert [r.run_id for r in await store.recent_runs()] == ids[::-1]
    assert [r.run_id for r in await store.recent_runs(limit=2)] == ids[:1:-1]
    assert await store.run(ids[-1] + 100) is None
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        await store.recent_runs(0)


_COUNTER = itertools.count()
_TEXT = st.text(st.characters(codec="utf-8"), max_size=30)
_PRICES = st.lists(
    st.decimals(min_value=Decimal("1E-12"), max_value=Decimal("1E+9"), allow_nan=False, allow_infinity=False),
    min_size=3,
    max_size=5,
    unique=True,
)
_COMPONENTS = st.lists(
    st.builds(
        ScoreComponent,
        name=_TEXT,
        value=st.floats(min_value=0.0, max_value=1.0),
        weight=st.floats(min_value=0.0, max_value=1.0),
        reason=_TEXT,
    ),
    max_size=8,
).map(tuple)


def test_any_setup_round_trips_exactly(tmp_path: Path) -> None:
    with asyncio.Runner() as runner:
        store = runner.run(SqliteStore.open(tmp_path / "property.db"))

        @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(
            prices=_PRICES,
            side=st.sampled_from(Side),
            bar_time=st.datetimes(
                min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
            ),
            timeframe=st.sampled_from(Interval),
            symbol=_TEXT.filter(str.strip),
            reasons=st.lists(_TEXT, max_size=4),
            total=st.floats(min_value=0.0, max_value=100.0),
            components=_COMPONENTS,
        )
        def check(
            prices: list[Decimal],
            side: Side,
            bar_time: datetime,
            timeframe: Interval,
            symbol: str,
            reasons: list[str],
            total: float,
            components: tuple[ScoreComponent, ...],
        ) -> None:
            ordered = sorted(prices) if side is Side.LONG else sorted(prices, reverse=True)
            stop, entry, *targets = ordered
            setup = Setup(
                f"prop-{next(_COUNTER)}", symbol, side, entry, stop, tuple(targets), bar_time, timeframe, tuple(reasons)
            )
            original = ScoredSetup(setup, QualityScore(total, components))

            async def round_trip() -> list[tuple[ScoredSetup, SignalStatus]]:
                run_id = await store.start_run(bar_time, bar_time, "property", [symbol])
                await store.finish_run(run_id, bar_time, [original], [], [])
                return await store.setups_for_run(run_id)

            [(loaded, status)] = runner.run(round_trip())
            assert loaded == original
            assert status is SignalStatus.NEW
            assert [str(p) for p in (loaded.setup.entry, loaded.setup.stop, *loaded.setup.targets)] == [
                str(p) for p in (entry, stop, *targets)
            ]
            assert loaded.setup.bar_time.tzinfo is UTC

        try:
            check()
        finally:
            runner.run(store.close())


# --- idempotency ------------------------------------------------------------------------------------------


async def test_same_setup_in_two_runs_is_stored_once_under_the_first_run(store: SqliteStore, db_path: Path) -> None:
    a = scored(make_setup("EURUSD"))
    b = scored(make_setup("GBPUSD", entry="1.27010", stop="1.26900", targets=("1.27300",)), 64.0)
    b_rescored = replace(b, score=QualityScore(90.0, COMPONENTS[:1]))  # same signal id, later view
    c = scored(make_setup("USDJPY", entry="157.120", stop="156.900", targets=("157.600",)))

    first = await finished_run(store, [a, b])
    second = await finished_run(store, [b_rescored, c], started_at=T0 + timedelta(minutes=5))

    assert b.setup.signal_id == b_rescored.setup.signal_id
    with plain(db_path) as conn:
        stored = dict(conn.execute("SELECT signal_id, run_id FROM signals").fetchall())
    assert stored == {a.setup.signal_id: first, b.setup.signal_id: first, c.setup.signal_id: second}
    assert [item for item, _ in await store.setups_for_run(second)] == [b, c]  # b as first stored
    summary = await store.run(second)
    assert summary is not None and summary.setups == 2


async def test_seeing_a_signal_again_keeps_its_lifecycle_status(store: SqliteStore, db_path: Path) -> None:
    setup = scored(make_setup())
    await finished_run(store, [setup])
    with plain(db_path) as conn:  # a later issue's approval flow, done by hand here
        conn.execute(
            "UPDATE signals SET status = ? WHERE signal_id = ?", (SignalStatus.APPROVED, setup.setup.signal_id)
        )

    again = await finished_run(store, [setup], started_at=T0 + timedelta(minutes=5))

    assert await store.setups_for_run(again) == [(setup, SignalStatus.APPROVED)]


async def test_one_run_reporting_a_setup_twice_is_refused_without_writing(store: SqliteStore, db_path: Path) -> None:
    run_id = await store.start_run(T0, T0, "yahoo", ["EURUSD"])
    setup = scored(make_setup())
    with pytest.raises(ValueError, match=rf"setups\[1\].*same signal id {setup.setup.signal_id} as setups\[0\]"):
        await store.finish_run(run_id, T0, [setup, scored(make_setup(), 12.0)], [], [])
    assert scalar(db_path, "SELECT count(*) FROM signals") == 0
    summary = await store.run(run_id)
    assert summary is not None and summary.status is RunStatus.RUNNING


# --- atomicity --------------------------------------------------------------------------------------------


async def assert_nothing_written_and_still_running(store: SqliteStore, db_path: Path, run_id: int) -> None:
    for table in ("signals", "run_signals", "rejections"):
        assert scalar(db_path, f"SELECT count(*) FROM {table}") == 0, table
    summary = await store.run(run_id)
    assert summary is not None
    assert (summary.status, summary.finished_at, summary.setups, summary.errors) == (RunStatus.RUNNING, None, 0, ())


async def test_finish_run_is_atomic_when_a_write_step_raises(
    store: SqliteStore, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_insert_rejections = runs_module._insert_rejections

    async def failing_insert_rejections(*args: Any) -> None:
        await real_insert_rejections(*args)
        raise RuntimeError("simulated crash after the rejections were written")

    monkeypatch.setattr(runs_module, "_insert_rejections", failing_insert_rejections)
    run_id = await store.start_run(T0, T0, "yahoo", ["EURUSD"])

    with pytest.raises(RuntimeError, match="simulated crash"):
        await store.finish_run(run_id, T0, [scored(make_setup())], [setup_rejection()], [])

    await assert_nothing_written_and_still_running(store, db_path, run_id)
    await store.mark_run_failed(run_id, T0 + timedelta(seconds=1), "RuntimeError: simulated crash")
    failed = await store.run(run_id)
    assert failed is not None
    assert failed.status is RunStatus.FAILED
    assert failed.finished_at == T0 + timedelta(seconds=1)
    assert failed.errors == ("RuntimeError: simulated crash",)


async def test_finish_run_is_atomic_when_sqlite_refuses_an_insert(store: SqliteStore, db_path: Path) -> None:
    with plain(db_path) as conn:  # a real constraint failure in the middle of the transaction
        conn.execute(
            "CREATE TRIGGER refuse_boom BEFORE INSERT ON rejections WHEN NEW.symbol = 'BOOM'"
            " BEGIN SELECT RAISE(ABORT, 'BOOM is not allowed'); END"
        )
    run_id = await store.start_run(T0, T0, "yahoo", ["EURUSD", "BOOM"])

    with pytest.raises(StoreError, match=rf"could not finish run {run_id} .*BOOM is not allowed"):
        await store.finish_run(run_id, T0, [scored(make_setup())], [symbol_rejection(), symbol_rejection("BOOM")], [])

    await assert_nothing_written_and_still_running(store, db_path, run_id)
    await store.finish_run(run_id, T0, [scored(make_setup())], [symbol_rejection()], [])  # connection still usable
    assert scalar(db_path, "SELECT count(*) FROM signals") == 1


# --- bad input ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda s, r: s.start_run(datetime(2025, 6, 12, 9, 40), T0, "yahoo", ["X"]), ValueError, "started_at"),
        (lambda s, r: s.start_run(T0, T0, "yahoo", "EURUSD"), TypeError, "symbols must be a sequence"),
        (lambda s, r: s.start_run(T0, T0, " ", ["X"]), ValueError, "data_source"),
        (lambda s, r: s.finish_run(r, T0 - timedelta(seconds=1), [], [], []), ValueError, "before run"),
        (lambda s, r: s.finish_run(r + 1, T0, [], [], []), UnknownRunError, "no analysis run"),
        (lambda s, r: s.finish_run(r, T0, [make_setup()], [], []), TypeError, r"setups\[0\] must be a ScoredSetup"),
        (
            lambda s, r: s.finish_run(r, T0, [], [replace(symbol_rejection(), kind=cast(RejectionKind, "bogus"))], []),
            ValueError,
            r"rejections\[0\] \(GBPJPY\) has unknown kind 'bogus'",
        ),
        (lambda s, r: s.finish_run(r, T0, [], [], ["ok", ""]), ValueError, r"errors\[1\] must not be empty"),
        (lambda s, r: s.mark_run_failed(r, T0, ""), ValueError, "error must be a non-empty string"),
        (lambda s, r: s.setups_for_run(r + 1), UnknownRunError, "no analysis run"),
        (lambda s, r: s.rejections_for_run(0), ValueError, "run_id must be a positive integer"),
    ],
)
async def test_bad_input_is_refused_with_a_clear_error_and_nothing_lost(
    store: SqliteStore,
    db_path: Path,
    call: Callable[[SqliteStore, int], Awaitable[object]],
    error: type[Exception],
    message: str,
) -> None:
    run_id = await store.start_run(T0, T0, "yahoo", ["EURUSD"])
    with pytest.raises(error, match=message):
        await call(store, run_id)
    await assert_nothing_written_and_still_running(store, db_path, run_id)
    assert scalar(db_path, "SELECT count(*) FROM analysis_runs") == 1


async def test_a_run_can_be_closed_only_once(store: SqliteStore) -> None:
    run_id = await finished_run(store)
    with pytest.raises(RunStateError, match=f"run {run_id} is already finished"):
        await store.finish_run(run_id, T0 + timedelta(minutes=1), [], [], [])
    with pytest.raises(RunStateError, match="only a running run can be marked failed"):
        await store.mark_run_failed(run_id, T0 + timedelta(minutes=1), "late crash")
    summary = await store.run(run_id)
    assert summary is not None and summary.status is RunStatus.FINISHED and summary.errors == ()


async def test_a_corrupted_row_is_reported_not_misread(store: SqliteStore, db_path: Path) -> None:
    setup = scored(make_setup())
    run_id = await finished_run(store, [setup])
    with plain(db_path) as conn:
        conn.execute("UPDATE signals SET entry = '1,08725'")
    with pytest.raises(CorruptRecordError, match=rf"signal {setup.setup.signal_id} entry is not a decimal number"):
        await store.setups_for_run(run_id)


# --- concurrency, durability, WAL ---------------------------------------------------------------------------


async def test_concurrent_tasks_writing_through_one_store_lose_nothing(store: SqliteStore, db_path: Path) -> None:
    shared = scored(make_setup("XAUUSD", entry="2330.10", stop="2325.00", targets=("2340.00",)))

    async def writer(name: str, runs: int) -> list[tuple[int, list[ScoredSetup]]]:
        done = []
        for i in range(runs):
            run_id = await store.start_run(T0, T0, name, [name])
            own = [
                scored(make_setup(f"{name}{i}", strategy=f"s{k}", entry="100.00", stop="99.00", targets=("103.00",)))
                for k in range(3)
            ]
            await store.recent_runs(3)  # reads interleave with the other task's writes
            await store.finish_run(run_id, T0, [*own, shared], [symbol_rejection(f"{name}{i}")], [])
            done.append((run_id, [*own, shared]))
        return done

    results = await asyncio.gather(writer("alpha", 15), writer("beta", 15))

    written = [item for result in results for item in result]
    assert len({run_id for run_id, _ in written}) == 30
    for run_id, setups in written:
        assert [item for item, _ in await store.setups_for_run(run_id)] == setups
        assert len(await store.rejections_for_run(run_id)) == 1
    assert all(r.status is RunStatus.FINISHED for r in await store.recent_runs(limit=100))
    assert scalar(db_path, "SELECT count(*) FROM signals") == 30 * 3 + 1
    assert scalar(db_path, "SELECT count(*) FROM run_signals") == 30 * 4
    assert scalar(db_path, "PRAGMA integrity_check") == "ok"
    with plain(db_path) as conn:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


async def test_two_tasks_finishing_the_same_run_cannot_both_win(store: SqliteStore, db_path: Path) -> None:
    run_id = await store.start_run(T0, T0, "yahoo", ["EURUSD"])
    outcomes = await asyncio.gather(
        store.finish_run(run_id, T0, [scored(make_setup())], [], []),
        store.finish_run(run_id, T0, [scored(make_setup("GBPUSD"))], [], []),
        return_exceptions=True,
    )
    assert outcomes[0] is None
    assert isinstance(outcomes[1], RunStateError)
    assert scalar(db_path, "SELECT count(*) FROM signals") == 1


async def test_data_survives_close_and_reopen(db_path: Path) -> None:
    setups = [scored(make_setup()), scored(make_setup("GBPUSD"), 55.5)]
    rejections = [setup_rejection(), symbol_rejection()]
    async with await SqliteStore.open(db_path) as store:
        run_id = await finished_run(store, setups, rejections, ["GBPJPY: no data"])
        summary = await store.run(run_id)
    with pytest.raises(StoreClosedError, match="is closed"):
        await store.recent_runs()
    await store.close()  # closing twice is harmless

    async with await SqliteStore.open(db_path) as reopened:
        assert await reopened.run(run_id) == summary
        assert await reopened.setups_for_run(run_id) == [(s, SignalStatus.NEW) for s in setups]
        assert await reopened.rejections_for_run(run_id) == rejections


def blocking_in_the_store_thread(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Make `finish_run` stop inside its transaction, in the store's thread, until the second event is set; the
    first is set when it is there."""
    holding, release = threading.Event(), threading.Event()
    real_insert_rejections = runs_module._insert_rejections

    async def pausing_insert_rejections(*args: Any) -> None:
        await real_insert_rejections(*args)
        holding.set()
        release.wait(timeout=10)  # the whole transaction is one trip: this blocks the store's own thread

    monkeypatch.setattr(runs_module, "_insert_rejections", pausing_insert_rejections)
    return holding, release


async def test_plain_reader_reads_while_the_store_holds_a_write_open(
    store: SqliteStore, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    holding, release = blocking_in_the_store_thread(monkeypatch)
    run_id = await store.start_run(T0, T0, "yahoo", ["EURUSD"])
    finishing = asyncio.create_task(store.finish_run(run_id, T0, [scored(make_setup())], [symbol_rejection()], []))
    assert await asyncio.to_thread(holding.wait, 5)

    with plain(db_path, timeout=0) as reader:  # timeout 0: any lock wait fails at once
        assert reader.execute("SELECT status FROM analysis_runs WHERE id = ?", (run_id,)).fetchone() == ("running",)
        assert reader.execute("SELECT count(*) FROM signals").fetchone() == (0,)
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            reader.execute("BEGIN IMMEDIATE")  # the store's write really is open
        release.set()
        await asyncio.wait_for(finishing, timeout=5)
        assert reader.execute("SELECT status FROM analysis_runs WHERE id = ?", (run_id,)).fetchone() == ("finished",)
        assert reader.execute("SELECT count(*) FROM signals").fetchone() == (1,)


async def test_cancelling_a_task_mid_transaction_rolls_back_and_frees_the_store(
    store: SqliteStore, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    holding, release = blocking_in_the_store_thread(monkeypatch)
    run_id = await store.start_run(T0, T0, "yahoo", ["EURUSD"])
    finishing = asyncio.create_task(store.finish_run(run_id, T0, [scored(make_setup())], [symbol_rejection()], []))
    assert await asyncio.to_thread(holding.wait, 5)
    finishing.cancel()
    await asyncio.sleep(0.01)  # the task takes its cancellation while its statements are still running
    release.set()  # they finish; the commit is not made for a caller that is gone
    with pytest.raises(asyncio.CancelledError):
        await finishing

    await assert_nothing_written_and_still_running(store, db_path, run_id)
    await store.mark_run_failed(run_id, T0, "cancelled during shutdown")
    failed = await store.run(run_id)
    assert failed is not None and failed.status is RunStatus.FAILED


async def test_a_write_that_waits_for_anything_but_its_statements_is_refused_and_writes_nothing(
    store: SqliteStore, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_insert_rejections = runs_module._insert_rejections

    async def waiting_insert_rejections(*args: Any) -> None:
        await real_insert_rejections(*args)
        await asyncio.sleep(0)  # a store body runs in the store's thread, where nothing else can be awaited

    monkeypatch.setattr(runs_module, "_insert_rejections", waiting_insert_rejections)
    run_id = await store.start_run(T0, T0, "yahoo", ["EURUSD"])
    with pytest.raises(RuntimeError, match="one-trip store body waited for something"):
        await store.finish_run(run_id, T0, [scored(make_setup())], [symbol_rejection()], [])
    await assert_nothing_written_and_still_running(store, db_path, run_id)


async def test_a_full_disk_fails_writes_clearly_pauses_them_keeps_reads_and_recovers(tmp_path: Path) -> None:
    async with await SqliteStore.open(tmp_path / "bot.db", busy_timeout_ms=200) as store:
        await store.set_state("probe", "x")
        db = store._require_open()  # the disk fills up: SQLite may not grow the file by a single page
        [(pages,)] = await db.execute_fetchall("PRAGMA page_count")
        await db.execute_fetchall(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(StoreError, match="database or disk is full"):
            await store.set_state("big", "y" * 100_000)
        assert store.last_write_error is not None and store.last_write_error[1] == "the disk is full"
        with pytest.raises(StoreError, match=r"the disk is full \(writes paused for a moment\)"):
            await store.set_state("probe", "z")  # at once, without waiting on SQLite
        assert await store.get_state("probe") == "x"  # reads still answer
        await db.execute_fetchall(f"PRAGMA max_page_count = {pages * 100}")  # space again
        await asyncio.sleep(0.25)
        await store.set_state("big", "y" * 100_000)
        assert store.last_write_error is None and await store.get_state("big") == "y" * 100_000
