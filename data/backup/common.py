"""Names, records and errors of backups, and how a backup reads in one line."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Protocol

NAME_PREFIX: Final = "tradebot-"
NAME_SUFFIX: Final = ".db.gz"
STAMP_FORMAT: Final = "%Y%m%dT%H%M%SZ"
NAME_PATTERN: Final = re.compile(r"tradebot-\d{8}T\d{6}Z\.db\.gz")
LOCK_SUFFIX: Final = ".lock"
LOCK_FILE_MODE: Final = 0o644
PRE_RESTORE_INFIX: Final = ".pre-restore-"
SIDE_SUFFIXES: Final = ("-wal", "-shm")  # moved before the database: a -wal must never sit beside another database
S3_SCHEME: Final = "s3://"
S3_SSE: Final = "AES256"
S3_CONTENT_TYPE: Final = "application/gzip"
SHA256_METADATA_KEY: Final = "sha256"
GZIP_LEVEL: Final = 6  # on a 65 MB database: 5.8x in 1.6 s; level 1 5.0x in 0.5 s, level 9 6.1x in 4.7 s
CHUNK_BYTES: Final = 1 << 20
READ_TIMEOUT_S: Final = 5.0  # SQLite busy timeout of the snapshot's source connection
INTEGRITY_OK: Final = "ok"
INTEGRITY_LINES_SHOWN: Final = 3
UNKNOWN_PID: Final = 0  # a holder that has not written its pid yet
LOCK_ATTEMPTS: Final = 5  # an `is_locked` probe holds a shared lock for an instant: try a few times before refusing
LOCK_RETRY_S: Final = 0.01
TEMP_PREFIX: Final = ".tradebot-"

_CREATE_TABLE: Final = re.compile(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.IGNORECASE)
_DROP_TABLE: Final = re.compile(r"DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?(\w+)", re.IGNORECASE)


class BackupError(Exception):
    """A backup or restore could not be done; the message says why in one line."""


class RestoreError(BackupError):
    """The backup cannot be restored (unreadable, not a tradebot database, too new); nothing was changed."""


class DatabaseInUse(BackupError):
    """A running tradebot holds the database lock."""

    def __init__(self, db_path: Path, pid: int | None) -> None:
        who = "a process that has not written its pid yet" if not pid else f"pid {pid}"
        super().__init__(
            f"{db_path} is in use by a running tradebot ({who}); stop it first (e.g. systemctl stop trading-bot)"
        )
        self.db_path = db_path
        self.pid = pid


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """What one snapshot holds: SQLite pages, sizes before and after gzip, time taken, sha256 of the .gz."""

    pages: int
    page_size: int
    bytes: int
    compressed_bytes: int
    seconds: float
    sha256: str


@dataclass(frozen=True, slots=True)
class BackupResult:
    """One backup: its name, where it went, the snapshot, and what retention kept and deleted (names)."""

    name: str
    target: str
    snapshot: SnapshotInfo
    kept: tuple[str, ...]
    deleted: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """One restore: what was restored where, and where the previous database went (None: there was none)."""

    source: str
    db_path: Path
    schema_version: int
    pages: int
    bytes: int
    previous: Path | None
    moved: tuple[Path, ...]


class BackupTarget(Protocol):
    """Where backups are kept; `names` lists only files named like ours."""

    def put(self, local: Path, name: str) -> None: ...

    def names(self) -> list[str]: ...

    def fetch(self, name: str, local: Path) -> None: ...

    def delete(self, name: str) -> None: ...

    def describe(self) -> str: ...


def backup_name(now: datetime) -> str:
    """Return the backup file name for the instant `now` (must be tz-aware), e.g. tradebot-20261121T030000Z.db.gz."""
    return f"{NAME_PREFIX}{_stamp(now)}{NAME_SUFFIX}"


def is_backup_name(name: str) -> bool:
    """Tell whether `name` is a backup file name of ours."""
    return NAME_PATTERN.fullmatch(name) is not None


def _stamp(now: datetime) -> str:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, was {now!r}")
    return now.astimezone(UTC).strftime(STAMP_FORMAT)


def _check_name(name: str) -> None:
    if not is_backup_name(name):
        raise ValueError(f"{name!r} is not a tradebot backup name (tradebot-YYYYMMDDTHHMMSSZ.db.gz)")


BYTES_PER_MB: Final = 1_000_000
BYTES_PER_KB: Final = 1_000
SMALL_MB: Final = 0.1  # below this, sizes are shown in kB


def size_text(size: int) -> str:
    """Show a byte count as MB with one decimal (kB below 0.1 MB)."""
    if size < SMALL_MB * BYTES_PER_MB:
        return f"{size / BYTES_PER_KB:.1f} kB"
    return f"{size / BYTES_PER_MB:.1f} MB"


def backup_line(result: BackupResult) -> str:
    """Describe a backup in one line."""
    snap = result.snapshot
    return (
        f"backup {result.name}: {snap.pages:,} pages, {size_text(snap.bytes)} → {size_text(snap.compressed_bytes)},"
        f" to {result.target}; kept {len(result.kept)}, deleted {len(result.deleted)}"
    )


def _side_files(db: Path) -> tuple[Path, ...]:
    return tuple(Path(f"{db}{suffix}") for suffix in SIDE_SUFFIXES)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
