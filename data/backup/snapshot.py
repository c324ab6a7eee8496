"""Snapshots of a live database (online copy, integrity check, gzip), backups and retention."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import shutil
import sqlite3
import tempfile
import time
from datetime import datetime
from pathlib import Path

from data.backup.common import (
    CHUNK_BYTES,
    GZIP_LEVEL,
    INTEGRITY_LINES_SHOWN,
    INTEGRITY_OK,
    READ_TIMEOUT_S,
    TEMP_PREFIX,
    BackupError,
    BackupResult,
    BackupTarget,
    SnapshotInfo,
    _side_files,
    backup_name,
)

# --- snapshots ---------------------------------------------------------------------------------------------


def snapshot(db_path: Path, out_path: Path) -> SnapshotInfo:
    """Write a consistent, integrity-checked, gzipped copy of the database at `db_path` to `out_path`."""
    db_path, out_path = Path(db_path), Path(out_path)
    started = time.monotonic()
    if not db_path.is_file():
        raise BackupError(f"no database at {db_path}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, raw_name = tempfile.mkstemp(dir=out_path.parent, prefix=TEMP_PREFIX + "snapshot-", suffix=".db")
    os.close(fd)
    raw = Path(raw_name)
    try:
        _online_copy(db_path, raw)
        pages, page_size = _check_snapshot(raw, db_path)
        raw_bytes = raw.stat().st_size
        _gzip(raw, out_path)
    finally:
        for path in (raw, *_side_files(raw)):
            path.unlink(missing_ok=True)
    return SnapshotInfo(
        pages=pages,
        page_size=page_size,
        bytes=raw_bytes,
        compressed_bytes=out_path.stat().st_size,
        seconds=time.monotonic() - started,
        sha256=file_sha256(out_path),
    )


def _online_copy(db_path: Path, raw: Path) -> None:
    """Copy every page through the backup API in one step: one read transaction, one consistent instant."""
    uri = db_path.resolve().as_uri() + "?mode=ro"
    try:
        with (
            contextlib.closing(sqlite3.connect(uri, uri=True, timeout=READ_TIMEOUT_S)) as source,
            contextlib.closing(sqlite3.connect(raw)) as copy,
        ):
            source.backup(copy)
    except sqlite3.Error as exc:
        raise BackupError(f"could not snapshot {db_path}: {exc}") from exc


def _check_snapshot(raw: Path, db_path: Path) -> tuple[int, int]:
    """Check the copy's integrity, make it a self-contained rollback-journal file; return pages and page size."""
    try:
        with contextlib.closing(sqlite3.connect(raw)) as conn:
            _integrity(conn, f"the snapshot of {db_path}", BackupError)
            conn.execute("PRAGMA journal_mode = DELETE")
            pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
            page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    except sqlite3.Error as exc:
        raise BackupError(f"the snapshot of {db_path} could not be checked: {exc}") from exc
    return pages, page_size


def _integrity(conn: sqlite3.Connection, what: str, error: type[BackupError]) -> None:
    rows = [str(r[0]) for r in conn.execute("PRAGMA integrity_check").fetchall()]
    if rows != [INTEGRITY_OK]:
        shown = "; ".join(rows[:INTEGRITY_LINES_SHOWN]) + (" ..." if len(rows) > INTEGRITY_LINES_SHOWN else "")
        raise error(f"{what} failed the SQLite integrity check: {shown}")


def _gzip(raw: Path, out_path: Path) -> None:
    with raw.open("rb") as src, out_path.open("wb") as dst:
        inner = out_path.name.removesuffix(".gz")
        # mtime 0: the same database always packs to the same bytes
        with gzip.GzipFile(inner, "wb", GZIP_LEVEL, dst, mtime=0) as packed:
            shutil.copyfileobj(src, packed, CHUNK_BYTES)
        dst.flush()
        os.fsync(dst.fileno())


def file_sha256(path: Path) -> str:
    """Return the hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


# --- backup and retention ----------------------------------------------------------------------------------


def backup(db_path: Path, target: BackupTarget, keep: int, now: datetime) -> BackupResult:
    """Snapshot the database, upload it as the backup of `now`, keep the newest `keep` and delete older ones.

    Blocking (SQLite, gzip, network): the bot runs it with `asyncio.to_thread`. A backup in the same second as an
    earlier one replaces it. The snapshot is staged in a hidden temporary directory beside the database.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, was {keep}")
    db_path = Path(db_path)
    if not db_path.is_file():
        raise BackupError(f"no database at {db_path} yet: nothing to back up")
    name = backup_name(now)
    with tempfile.TemporaryDirectory(dir=db_path.parent, prefix=TEMP_PREFIX + "backup-") as work:
        staged = Path(work) / name
        info = snapshot(db_path, staged)
        target.put(staged, name)
    try:
        kept, deleted = prune(target, keep, protect=name)
    except (BackupError, OSError) as exc:
        raise BackupError(f"{name} is stored in {target.describe()}, but removing old backups failed: {exc}") from exc
    return BackupResult(name=name, target=target.describe(), snapshot=info, kept=kept, deleted=deleted)


def prune(target: BackupTarget, keep: int, protect: str | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Delete all but the newest `keep` backups (never `protect`, never a file not named like ours)."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1, was {keep}")
    newest_first = sorted(target.names(), reverse=True)
    if protect is not None and protect in newest_first:
        newest_first.remove(protect)
        newest_first.insert(0, protect)  # a clock set back must not make the backup just taken the one deleted
    kept, old = newest_first[:keep], newest_first[keep:]
    for name in old:
        target.delete(name)
    return tuple(sorted(kept)), tuple(sorted(old))
