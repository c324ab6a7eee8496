"""Restoring a backup in place of the database, never over a running bot's."""

from __future__ import annotations

import contextlib
import gzip
import shutil
import sqlite3
import tempfile
import zlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from data.backup.common import (
    _CREATE_TABLE,
    _DROP_TABLE,
    CHUNK_BYTES,
    PRE_RESTORE_INFIX,
    S3_SCHEME,
    SIDE_SUFFIXES,
    TEMP_PREFIX,
    BackupTarget,
    DatabaseInUse,
    RestoreError,
    RestoreResult,
    _fsync_dir,
    _fsync_file,
    _stamp,
)
from data.backup.lock import DatabaseLock, is_locked
from data.backup.snapshot import _integrity
from data.backup.targets import LocalTarget, S3Target, default_s3_client, parse_s3_url
from data.sqlite.migrations import LATEST_VERSION, MIGRATIONS

# --- restore -----------------------------------------------------------------------------------------------


def restore(
    source: str | Path, db_path: Path, now: datetime, s3_client_factory: Callable[[], Any] = default_s3_client
) -> RestoreResult:
    """Replace the database with a checked backup, moving the current one (and its -wal/-shm) aside first.

    `source`: a backup file, a directory (its newest backup), `s3://bucket/key.db.gz`, or `s3://bucket/prefix`
    (the newest backup there). Refuses with `DatabaseInUse` while a running bot holds the lock, and with
    `RestoreError` for anything that is not a sound tradebot database this code can run; in every refusal or
    failure the current database is left as it was.
    """
    db_path = Path(db_path)
    stamp = _stamp(now)
    if (holder := is_locked(db_path)) is not None:  # say so before a long download
        raise DatabaseInUse(db_path, holder)
    target, name, described = _resolve_source(str(source), s3_client_factory)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=db_path.parent, prefix=TEMP_PREFIX + "restore-") as work:
        packed, candidate = Path(work) / "backup.db.gz", Path(work) / "restored.db"
        target.fetch(name, packed)
        _gunzip(packed, candidate, described)
        version, pages = _check_restorable(candidate, described)
        _fsync_file(candidate)
        size = candidate.stat().st_size
        with DatabaseLock(db_path):  # a bot starting now is refused until the new file is in place
            moved = _move_aside(db_path, stamp)
            try:
                candidate.replace(db_path)
                _fsync_dir(db_path.parent)
            except BaseException:
                _move_back(moved)
                raise
    previous = next((dst for src, dst in moved if src == db_path), None)
    return RestoreResult(
        source=described,
        db_path=db_path,
        schema_version=version,
        pages=pages,
        bytes=size,
        previous=previous,
        moved=tuple(dst for _, dst in moved),
    )


def _resolve_source(source: str, s3_client_factory: Callable[[], Any]) -> tuple[BackupTarget, str, str]:
    """Return the target holding the backup, its name there, and a description of it for messages."""
    text = source.strip()
    if text.startswith(S3_SCHEME):
        bucket, rest = parse_s3_url(text)
        if rest.endswith(".gz"):
            prefix, _, name = rest.rpartition("/")
            key_target = S3Target(s3_client_factory(), bucket, prefix)
            return key_target, name, key_target.url(name)
        s3 = S3Target(s3_client_factory(), bucket, rest)
        name = _newest(s3)
        return s3, name, s3.url(name)
    path = Path(text).expanduser()
    if path.is_dir():
        local = LocalTarget(path)
        name = _newest(local)
        return local, name, str(path / name)
    if path.is_file():
        return LocalTarget(path.parent), path.name, str(path)
    raise RestoreError(f"no backup file or directory at {path}")


def _newest(target: BackupTarget) -> str:
    names = target.names()
    if not names:
        raise RestoreError(f"no tradebot backups (tradebot-*.db.gz) in {target.describe()}")
    return names[-1]


def _gunzip(packed: Path, out: Path, described: str) -> None:
    try:
        with gzip.open(packed, "rb") as src, out.open("wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK_BYTES)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise RestoreError(f"{described} is not a readable gzip file ({exc}); a tradebot backup is a .db.gz") from exc


def _check_restorable(candidate: Path, described: str) -> tuple[int, int]:
    """Check the unpacked file is a sound tradebot database this code knows; return its version and pages."""
    try:
        with contextlib.closing(sqlite3.connect(candidate)) as conn:  # our own temporary copy
            _integrity(conn, described, RestoreError)
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            tables = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if version > LATEST_VERSION:
                raise RestoreError(
                    f"{described} has schema version {version}, newer than the {LATEST_VERSION} this tradebot "
                    "knows: restore it with the newer tradebot that wrote it"
                )
            missing = sorted(_tables_at(version) - tables) if version >= 1 else []
            if version < 1 or missing:
                detail = "schema version 0" if version < 1 else f"missing tables {', '.join(missing)}"
                raise RestoreError(f"{described} is a SQLite database but not a tradebot one ({detail})")
            conn.execute("PRAGMA journal_mode = DELETE")  # the bot switches it back to WAL when it opens it
            pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise RestoreError(f"{described} is not a usable SQLite database ({exc})") from exc
    return version, pages


def _tables_at(version: int) -> set[str]:
    """Return the tables the migrations up to `version` leave behind."""
    tables: set[str] = set()
    for migration in MIGRATIONS[:version]:
        for statement in migration.statements:
            tables.update(_CREATE_TABLE.findall(statement))
            tables.difference_update(_DROP_TABLE.findall(statement))
    return tables


def _move_aside(db_path: Path, stamp: str) -> list[tuple[Path, Path]]:
    """Rename the database and its -wal/-shm to `<db>.pre-restore-<stamp>` (+ suffix); return the moves."""
    base = db_path.with_name(f"{db_path.name}{PRE_RESTORE_INFIX}{stamp}")
    attempt = 1
    while any(Path(f"{base}{s}").exists() for s in ("", *SIDE_SUFFIXES)):
        attempt += 1
        base = db_path.with_name(f"{db_path.name}{PRE_RESTORE_INFIX}{stamp}-{attempt}")
    moved: list[tuple[Path, Path]] = []
    try:
        for suffix in (*SIDE_SUFFIXES, ""):
            src, dst = Path(f"{db_path}{suffix}"), Path(f"{base}{suffix}")
            if src.exists():
                src.rename(dst)
                moved.append((src, dst))
        _fsync_dir(db_path.parent)
    except BaseException:
        _move_back(moved)
        raise
    return moved


def _move_back(moved: list[tuple[Path, Path]]) -> None:
    for src, dst in reversed(moved):
        dst.rename(src)
    if moved:
        _fsync_dir(moved[0][0].parent)
