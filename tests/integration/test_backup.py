"""Backups and restores of real tradebot databases: local directories, S3 (moto), writes during a backup, refusals."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from data.backup import (
    BackupError,
    DatabaseInUse,
    DatabaseLock,
    LocalTarget,
    RestoreError,
    S3Target,
    backup,
    backup_name,
    is_locked,
    lock_path,
    restore,
    target_from_url,
)
from data.sqlite.migrations import LATEST_VERSION
from data.sqlite.store import SqliteStore

NOW = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)
BUCKET = "tradebot-backups"
PREFIX = "prod/tradebot"
REPO = Path(__file__).resolve().parents[2]
REJECTIONS_PER_RUN = 3


async def tradebot_db(path: Path, marker: str = "original", runs: int = 3) -> Path:
    """Create a real tradebot database (the store's own migrations) with a few runs and a marker."""
    async with await SqliteStore.open(path) as store:
        for i in range(runs):
            await store.start_run(NOW + timedelta(minutes=i), NOW, "csv:test", ["EURUSD"])
        await store.set_state("marker", marker)
    return path


async def crashed_db(path: Path) -> Path:
    """The files a SIGKILLed bot leaves: the database, a -wal holding a committed row, and the -shm."""
    scratch = path.parent / "scratch" / path.name
    await tradebot_db(scratch, marker="current")
    conn = sqlite3.connect(scratch)
    conn.execute("PRAGMA wal_autocheckpoint = 0")  # the row stays in the -wal
    conn.execute("INSERT INTO bot_state VALUES ('only-in-wal', 'yes', '2026-11-21T02:59:00Z')")
    conn.commit()
    for suffix in ("", "-wal", "-shm"):
        shutil.copyfile(f"{scratch}{suffix}", f"{path}{suffix}")
    conn.close()
    shutil.rmtree(scratch.parent)
    assert Path(f"{path}-wal").stat().st_size > 0
    return path


def state(db: Path, key: str) -> str | None:
    with closing(sqlite3.connect(db)) as conn:
        row = conn.execute("SELECT value FROM bot_state WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def fingerprint(directory: Path) -> dict[str, str]:
    """Every file under `directory` with the sha256 of its bytes."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A real boto3 S3 client on moto, fake credentials, one bucket."""
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(key, raising=False)
    fake = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}
    for key, value in {**fake, "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


async def test_backup_to_a_directory_is_a_checked_gzipped_sqlite_copy(tmp_path: Path) -> None:
    db = await tradebot_db(tmp_path / "var" / "tradebot.db")
    result = backup(db, LocalTarget(tmp_path / "backups"), keep=14, now=NOW)

    assert result.name == "tradebot-20261121T030000Z.db.gz" == backup_name(NOW)
    assert result.target == str(tmp_path / "backups") and result.kept == (result.name,) and result.deleted == ()
    packed = tmp_path / "backups" / result.name
    info = result.snapshot
    assert info.sha256 == hashlib.sha256(packed.read_bytes()).hexdigest()
    assert info.compressed_bytes == packed.stat().st_size < info.bytes == info.pages * info.page_size
    copy = tmp_path / "copy.db"
    copy.write_bytes(gzip.decompress(packed.read_bytes()))
    with closing(sqlite3.connect(copy)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # self-contained, no -wal needed
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
        assert conn.execute("SELECT count(*) FROM analysis_runs").fetchone()[0] == 3
    assert not [p for p in db.parent.iterdir() if p.name.startswith(".tradebot-")]  # no staging left behind
    india = timezone(timedelta(hours=5, minutes=30))
    assert backup_name(datetime(2026, 11, 21, 8, 30, tzinfo=india)) == result.name  # named in UTC


async def test_retention_keeps_the_newest_and_never_touches_other_files(tmp_path: Path) -> None:
    db = await tradebot_db(tmp_path / "tradebot.db")
    target = LocalTarget(tmp_path / "backups")
    (tmp_path / "backups").mkdir()
    strangers = [
        "notes.txt",
        "tradebot-manual.db.gz",
        "tradebot-20200101T000000Z.db",
        "tradebot-20200101T000000Z.db.gz.bak",
    ]
    for name in strangers:
        (tmp_path / "backups" / name).write_text("keep me")
    names = [backup_name(NOW + timedelta(days=i)) for i in range(5)]
    results = [backup(db, target, keep=3, now=NOW + timedelta(days=i)) for i in range(5)]

    assert target.names() == names[2:]
    assert results[-1].kept == tuple(names[2:]) and results[-1].deleted == (names[1],)
    assert sorted(p.name for p in (tmp_path / "backups").iterdir()) == sorted(strangers + names[2:])

    late = backup(db, target, keep=1, now=NOW - timedelta(days=1))  # a clock set back: the new one still stays
    assert late.kept == (backup_name(NOW - timedelta(days=1)),) and target.names() == list(late.kept)


async def test_backup_to_s3_encrypts_records_the_sha256_and_prunes_only_ours(tmp_path: Path, s3: Any) -> None:
    db = await tradebot_db(tmp_path / "tradebot.db")
    strangers = [
        f"{PREFIX}/notes.txt",
        f"{PREFIX}/nested/tradebot-20200101T000000Z.db.gz",
        "tradebot-20200101T000000Z.db.gz",
    ]
    for key in strangers:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"not ours")
    target = target_from_url(f"s3://{BUCKET}/{PREFIX}/", tmp_path / "unused", lambda: s3)
    assert isinstance(target, S3Target) and target.describe() == f"s3://{BUCKET}/{PREFIX}"

    results = [backup(db, target, keep=3, now=NOW + timedelta(days=i)) for i in range(5)]

    names = [r.name for r in results]
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"])
    assert keys == sorted(strangers + [f"{PREFIX}/{n}" for n in names[2:]])
    head = s3.head_object(Bucket=BUCKET, Key=f"{PREFIX}/{names[-1]}")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["Metadata"] == {"sha256": results[-1].snapshot.sha256}
    assert head["ContentLength"] == results[-1].snapshot.compressed_bytes
    assert results[-1].target == f"s3://{BUCKET}/{PREFIX}" and results[-1].deleted == (names[1],)


async def test_s3_errors_are_one_line_backup_errors(tmp_path: Path, s3: Any) -> None:
    db = await tradebot_db(tmp_path / "tradebot.db")
    with pytest.raises(BackupError, match=r"S3 upload to s3://no-such-bucket/p/tradebot-.*NoSuchBucket"):
        backup(db, S3Target(s3, "no-such-bucket", "p"), keep=3, now=NOW)
    name = backup_name(NOW)
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}/{name}", Body=gzip.compress(b"x"), Metadata={"sha256": "0" * 64})
    with pytest.raises(RestoreError, match="does not match the sha256 recorded at upload"):
        restore(f"s3://{BUCKET}/{PREFIX}/{name}", tmp_path / "other.db", NOW, lambda: s3)
    assert not (tmp_path / "other.db").exists()


@pytest.mark.parametrize("where", ["file", "directory", "s3 key", "s3 prefix"])
async def test_restore_moves_the_current_database_aside_with_its_wal(tmp_path: Path, s3: Any, where: str) -> None:
    source = await tradebot_db(tmp_path / "source" / "tradebot.db", marker="from backup", runs=5)
    older = backup(source, LocalTarget(tmp_path / "backups"), keep=5, now=NOW - timedelta(days=1))
    taken = backup(source, LocalTarget(tmp_path / "backups"), keep=5, now=NOW)
    for result in (older, taken):
        S3Target(s3, BUCKET, PREFIX).put(tmp_path / "backups" / result.name, result.name)
    origin = {
        "file": str(tmp_path / "backups" / taken.name),
        "directory": str(tmp_path / "backups"),
        "s3 key": f"s3://{BUCKET}/{PREFIX}/{taken.name}",
        "s3 prefix": f"s3://{BUCKET}/{PREFIX}",
    }[where]
    db = await crashed_db(tmp_path / "var" / "tradebot.db")

    result = restore(origin, db, NOW + timedelta(hours=1), lambda: s3)

    aside = tmp_path / "var" / "tradebot.db.pre-restore-20261121T040000Z"
    assert result.previous == aside and result.schema_version == LATEST_VERSION
    assert result.source.endswith(taken.name) and result.pages == taken.snapshot.pages
    assert set(result.moved) == {aside, Path(f"{aside}-wal"), Path(f"{aside}-shm")}
    assert not Path(f"{db}-wal").exists() and not Path(f"{db}-shm").exists()
    assert state(aside, "marker") == "current" and state(aside, "only-in-wal") == "yes"  # nothing of it lost
    async with await SqliteStore.open(db) as store:  # the bot opens the restored file as usual
        assert await store.get_state("marker") == "from backup"
        assert len(await store.recent_runs()) == 5
    assert sorted(p.name for p in db.parent.iterdir() if p.name.startswith(".tradebot-")) == []


async def test_restore_into_an_empty_place_has_no_previous_database(tmp_path: Path) -> None:
    source = await tradebot_db(tmp_path / "source.db")
    taken = backup(source, LocalTarget(tmp_path / "backups"), keep=1, now=NOW)
    result = restore(tmp_path / "backups" / taken.name, tmp_path / "new" / "tradebot.db", NOW)
    assert result.previous is None and result.moved == ()
    assert state(tmp_path / "new" / "tradebot.db", "marker") == "original"


def _writer(db: Path, stop: threading.Event, started: threading.Event, errors: list[BaseException]) -> None:
    """Insert complete runs (one run row plus its rejections, one transaction each) until told to stop."""
    try:
        conn = sqlite3.connect(db, isolation_level=None, timeout=10)
        try:
            i = 0
            while not stop.is_set():
                conn.execute("BEGIN IMMEDIATE")
                run_id = conn.execute(
                    "INSERT INTO analysis_runs (started_at, as_of, data_source, symbols) VALUES (?, ?, ?, ?)",
                    ("2026-11-21T03:00:00Z", "2026-11-21T03:00:00Z", f"writer-{i}", json.dumps([f"S{i}"])),
                ).lastrowid
                conn.executemany(
                    "INSERT INTO rejections (run_id, kind, symbol, reason, detail) VALUES (?, 'symbol', ?, ?, ?)",
                    [
                        (run_id, f"S{i}", f"why {i}.{k}", json.dumps({"i": i, "k": k}))
                        for k in range(REJECTIONS_PER_RUN)
                    ],
                )
                conn.execute("COMMIT")
                i += 1
                started.set()
        finally:
            conn.close()
    except BaseException as exc:
        errors.append(exc)
        started.set()


def _runs(db: Path) -> int:
    with closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("SELECT count(*) FROM analysis_runs WHERE data_source LIKE 'writer-%'").fetchone()[0])


async def test_a_backup_taken_during_writes_restores_to_one_consistent_instant(tmp_path: Path) -> None:
    db = await tradebot_db(tmp_path / "live" / "tradebot.db")
    with closing(sqlite3.connect(db)) as conn, conn:  # some bulk, so the copy takes a while
        conn.executemany(
            "INSERT INTO bot_state VALUES (?, ?, '2026-11-21T03:00:00Z')",
            [(f"bulk-{i}", "x" * 200) for i in range(20_000)],
        )
    stop, started, errors = threading.Event(), threading.Event(), []
    thread = threading.Thread(target=_writer, args=(db, stop, started, errors), daemon=True)
    thread.start()
    try:
        assert started.wait(10)
        before = _runs(db)
        result = backup(db, LocalTarget(tmp_path / "backups"), keep=3, now=NOW)
        after = _runs(db)
    finally:
        stop.set()
        thread.join(10)
    assert not errors and after > before

    restored = tmp_path / "restored" / "tradebot.db"
    restore(tmp_path / "backups" / result.name, restored, NOW)
    with closing(sqlite3.connect(restored)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        runs = conn.execute(
            "SELECT r.id, r.data_source, r.symbols, count(j.id),"
            " group_concat(j.reason, '|'), group_concat(j.detail, '|')"
            " FROM analysis_runs r LEFT JOIN rejections j ON j.run_id = r.id"
            " WHERE r.data_source LIKE 'writer-%' GROUP BY r.id ORDER BY r.id"
        ).fetchall()
    assert before <= len(runs) <= after
    for n, (_, source, symbols, count, reasons, details) in enumerate(runs):  # the writer's first rows, each whole
        assert (source, json.loads(symbols), count) == (f"writer-{n}", [f"S{n}"], REJECTIONS_PER_RUN)
        assert sorted(reasons.split("|")) == [f"why {n}.{k}" for k in range(REJECTIONS_PER_RUN)]
        assert sorted(json.loads(d)["k"] for d in details.split("|")) == list(range(REJECTIONS_PER_RUN))


def _not_a_tradebot_db(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('hello')")


def _too_new(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")


def _corrupt_page(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn:
        with conn:
            conn.executemany("INSERT INTO bot_state VALUES (?, ?, 'x')", [(f"k{i}", "v" * 100) for i in range(2_000)])
        page_size, pages = (conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_size", "page_count"))
    data = bytearray(path.read_bytes())
    middle = (pages // 2) * page_size
    data[middle : middle + page_size] = bytes([0xA5]) * page_size
    path.write_bytes(bytes(data))


def _index_out_of_step(path: Path) -> None:
    """Rows the index does not list, as a damaged file would have: `PRAGMA integrity_check` reports them."""
    with closing(sqlite3.connect(path)) as conn:
        with conn:
            run = conn.execute("SELECT min(id) FROM analysis_runs").fetchone()[0]
            conn.executemany(
                "INSERT INTO rejections (run_id, kind, symbol, reason) VALUES (?, 'symbol', 'EURUSD', ?)",
                [(run, f"r{i}") for i in range(50)],
            )
        conn.execute("PRAGMA writable_schema = ON")
        with conn:
            conn.execute(
                "UPDATE sqlite_master SET sql = 'CREATE INDEX rejections_run_id ON rejections (id, run_id)'"
                " WHERE name = 'rejections_run_id'"
            )


async def _packed_tradebot_db(tmp_path: Path, change: Any = None) -> bytes:
    plain = await tradebot_db(tmp_path / "plain" / "tradebot.db")
    if change is not None:
        change(plain)
    return gzip.compress(plain.read_bytes())


async def bad_backup(case: str, tmp_path: Path) -> bytes:
    """The bytes of a file that must not be restored."""
    if case == "not gzip":
        return b"PK\x03\x04 a zip, not a gzip" * 10
    if case == "truncated gzip":
        packed = await _packed_tradebot_db(tmp_path)
        return packed[: len(packed) // 2]
    if case == "gzip of text":
        return gzip.compress(b"hello, not a database\n" * 500)
    if case == "sqlite, not tradebot":
        _not_a_tradebot_db(tmp_path / "plain.db")
        return gzip.compress((tmp_path / "plain.db").read_bytes())
    if case == "schema too new":
        return await _packed_tradebot_db(tmp_path, _too_new)
    if case == "index out of step":
        return await _packed_tradebot_db(tmp_path, _index_out_of_step)
    assert case == "corrupt page"
    return await _packed_tradebot_db(tmp_path, _corrupt_page)


REFUSALS = {
    "not gzip": "not a readable gzip file",
    "truncated gzip": "not a readable gzip file",
    "gzip of text": r"is not a usable SQLite database \(file is not a database\)",
    "sqlite, not tradebot": r"is a SQLite database but not a tradebot one \(schema version 0\)",
    "schema too new": f"schema version {LATEST_VERSION + 1}, newer than the {LATEST_VERSION} this tradebot knows",
    "index out of step": "failed the SQLite integrity check: row .* missing from index rejections_run_id",
    "corrupt page": "failed the SQLite integrity check|is not a usable SQLite database",
}


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_a_bad_backup_is_refused_and_the_database_is_untouched(tmp_path: Path, case: str) -> None:
    db = await crashed_db(tmp_path / "var" / "tradebot.db")
    bad = tmp_path / "incoming" / backup_name(NOW)
    bad.parent.mkdir()
    bad.write_bytes(await bad_backup(case, tmp_path))
    before = fingerprint(db.parent)

    with pytest.raises(RestoreError, match=REFUSALS[case]) as refused:
        restore(bad, db, NOW)

    assert str(bad) in str(refused.value)
    assert fingerprint(db.parent) == before  # byte for byte, and nothing added (no staging, no pre-restore)


LOCK_HOLDER = (
    "import sys; from pathlib import Path; from data.backup import DatabaseLock\n"
    "with DatabaseLock(Path(sys.argv[1])):\n"
    "    print('held', flush=True); sys.stdin.read()\n"
)


async def test_a_database_held_by_a_running_bot_is_not_replaced_until_the_bot_dies(tmp_path: Path) -> None:
    db = await crashed_db(tmp_path / "var" / "tradebot.db")
    source = await tradebot_db(tmp_path / "source.db", marker="from backup")
    taken = backup(source, LocalTarget(tmp_path / "backups"), keep=1, now=NOW)
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(db)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert is_locked(db) == holder.pid
        before = fingerprint(db.parent)
        with pytest.raises(DatabaseInUse, match=rf"{db} is in use by a running tradebot \(pid {holder.pid}\)"):
            restore(tmp_path / "backups" / taken.name, db, NOW)
        with pytest.raises(DatabaseInUse):
            DatabaseLock(db).acquire()
        assert fingerprint(db.parent) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.close()
        holder.stdout.close()
    assert holder.returncode == -signal.SIGKILL
    assert is_locked(db) is None  # the OS let go of it with the process
    result = restore(tmp_path / "backups" / taken.name, db, NOW)
    assert result.previous is not None and state(db, "marker") == "from backup"


def test_the_lock_names_its_holder_and_is_reentrant_after_release(tmp_path: Path) -> None:
    db = tmp_path / "var" / "tradebot.db"
    assert is_locked(db) is None
    with DatabaseLock(db) as lock:
        assert lock.held and lock_path(db).read_text() == f"{os.getpid()}\n"
        assert is_locked(db) == os.getpid()
        with pytest.raises(DatabaseInUse, match=rf"pid {os.getpid()}"):
            DatabaseLock(db).acquire()
        with pytest.raises(DatabaseInUse):  # restore takes the same lock
            restore(tmp_path / "missing.db.gz", db, NOW)
    assert not lock.held and is_locked(db) is None and lock_path(db).read_text() == ""
    DatabaseLock(db).acquire().release()


def test_a_missing_source_or_empty_prefix_is_a_clear_error(tmp_path: Path, s3: Any) -> None:
    with pytest.raises(RestoreError, match="no backup file or directory"):
        restore(tmp_path / "nope.db.gz", tmp_path / "tradebot.db", NOW)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RestoreError, match="no tradebot backups"):
        restore(tmp_path / "empty", tmp_path / "tradebot.db", NOW)
    with pytest.raises(RestoreError, match=f"no tradebot backups .* in s3://{BUCKET}/nothing-here"):
        restore(f"s3://{BUCKET}/nothing-here", tmp_path / "tradebot.db", NOW, lambda: s3)
    with pytest.raises(BackupError, match="no database at"):
        backup(tmp_path / "absent.db", LocalTarget(tmp_path / "b"), keep=1, now=NOW)
