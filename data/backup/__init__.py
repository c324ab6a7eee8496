"""Backups of the bot's SQLite database: consistent snapshots, where they are kept, retention and restore.

A snapshot is taken through SQLite's online backup API from a read-only connection, every page in one step and
so under one read transaction: it is the database as of one commit, even while the running bot writes (WAL
lets readers and the writer proceed together). The copy is checked with `PRAGMA integrity_check`, switched to
a self-contained rollback journal (no `-wal` beside it) and gzipped as `tradebot-YYYYMMDDTHHMMSSZ.db.gz`, a
name that sorts by time.

Backups go to a `BackupTarget`: a local directory or an S3 prefix. Retention keeps the newest `keep` files
named like ours and never touches any other file. Restore fetches, unpacks and checks a backup beside the
database, refuses while a running bot holds the database lock, then moves the current database (with its
`-wal`/`-shm`) aside and renames the restored file into place; any failure before that leaves it untouched.

Everything here is synchronous and blocking: the bot calls `backup` through `asyncio.to_thread`.
"""

from __future__ import annotations

from data.backup.common import (
    BYTES_PER_KB,
    BYTES_PER_MB,
    CHUNK_BYTES,
    GZIP_LEVEL,
    INTEGRITY_LINES_SHOWN,
    INTEGRITY_OK,
    LOCK_ATTEMPTS,
    LOCK_FILE_MODE,
    LOCK_RETRY_S,
    LOCK_SUFFIX,
    NAME_PATTERN,
    NAME_PREFIX,
    NAME_SUFFIX,
    PRE_RESTORE_INFIX,
    READ_TIMEOUT_S,
    S3_CONTENT_TYPE,
    S3_SCHEME,
    S3_SSE,
    SHA256_METADATA_KEY,
    SIDE_SUFFIXES,
    SMALL_MB,
    STAMP_FORMAT,
    TEMP_PREFIX,
    UNKNOWN_PID,
    BackupError,
    BackupResult,
    BackupTarget,
    DatabaseInUse,
    RestoreError,
    RestoreResult,
    SnapshotInfo,
    backup_line,
    backup_name,
    is_backup_name,
    size_text,
)
from data.backup.lock import DatabaseLock, is_locked, lock_path
from data.backup.restore import restore
from data.backup.snapshot import backup, file_sha256, prune, snapshot
from data.backup.targets import LocalTarget, S3Target, default_s3_client, parse_s3_url, target_from_url

__all__ = [
    "BYTES_PER_KB",
    "BYTES_PER_MB",
    "CHUNK_BYTES",
    "GZIP_LEVEL",
    "INTEGRITY_LINES_SHOWN",
    "INTEGRITY_OK",
    "LOCK_ATTEMPTS",
    "LOCK_FILE_MODE",
    "LOCK_RETRY_S",
    "LOCK_SUFFIX",
    "NAME_PATTERN",
    "NAME_PREFIX",
    "NAME_SUFFIX",
    "PRE_RESTORE_INFIX",
    "READ_TIMEOUT_S",
    "S3_CONTENT_TYPE",
    "S3_SCHEME",
    "S3_SSE",
    "SHA256_METADATA_KEY",
    "SIDE_SUFFIXES",
    "SMALL_MB",
    "STAMP_FORMAT",
    "TEMP_PREFIX",
    "UNKNOWN_PID",
    "BackupError",
    "BackupResult",
    "BackupTarget",
    "DatabaseInUse",
    "DatabaseLock",
    "LocalTarget",
    "RestoreError",
    "RestoreResult",
    "S3Target",
    "SnapshotInfo",
    "backup",
    "backup_line",
    "backup_name",
    "default_s3_client",
    "file_sha256",
    "is_backup_name",
    "is_locked",
    "lock_path",
    "parse_s3_url",
    "prune",
    "restore",
    "size_text",
    "snapshot",
    "target_from_url",
]
