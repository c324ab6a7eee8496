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

import contextlib
import fcntl
import gzip
import hashlib
import os
import re
import shutil
import sqlite3
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol, Self

from data.sqlite.migrations import LATEST_VERSION, MIGRATIONS

__all__ = [
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
    "backup_name",
    "default_s3_client",
    "file_sha256",
    "is_backup_name",
    "is_locked",
    "lock_path",
    "parse_s3_url",
    "prune",
    "restore",
    "snapshot",
    "target_from_url",
]

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


# --- targets -----------------------------------------------------------------------------------------------


class LocalTarget:
    """Backups in a local directory (created on first use); uploads land atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def put(self, local: Path, name: str) -> None:
        """Copy `local` into the directory as `name`, via a hidden partial file renamed into place."""
        _check_name(name)
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = self.directory / f"{TEMP_PREFIX}{name}.partial"
        try:
            shutil.copyfile(local, partial)
            _fsync_file(partial)
            partial.replace(self.directory / name)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        _fsync_dir(self.directory)

    def names(self) -> list[str]:
        """List our backup files in the directory, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(p.name for p in self.directory.iterdir() if is_backup_name(p.name) and p.is_file())

    def fetch(self, name: str, local: Path) -> None:
        """Copy the file `name` from the directory to `local`."""
        source = self.directory / name
        if not source.is_file():
            raise RestoreError(f"no backup {source}")
        shutil.copyfile(source, local)

    def delete(self, name: str) -> None:
        """Delete the backup `name` (only ever one of ours)."""
        _check_name(name)
        (self.directory / name).unlink(missing_ok=True)

    def describe(self) -> str:
        """Name the directory."""
        return str(self.directory)


class S3Target:
    """Backups under an S3 prefix, encrypted at rest (SSE AES256), each object's sha256 in its metadata."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        if not bucket:
            raise ValueError("an S3 target needs a bucket")
        self._client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def key(self, name: str) -> str:
        """Return the object key of the backup `name`."""
        return f"{self.prefix}/{name}" if self.prefix else name

    def put(self, local: Path, name: str) -> None:
        """Upload `local` as `name` with server-side encryption and its sha256 as metadata."""
        _check_name(name)
        digest = file_sha256(local)
        with _s3_errors(f"upload to {self.url(name)}"), Path(local).open("rb") as body:
            self._client.put_object(
                Bucket=self.bucket,
                Key=self.key(name),
                Body=body,
                ServerSideEncryption=S3_SSE,
                ContentType=S3_CONTENT_TYPE,
                Metadata={SHA256_METADATA_KEY: digest},
            )

    def names(self) -> list[str]:
        """List our backups directly under the prefix, oldest first."""
        start = self.key("")
        found: list[str] = []
        with _s3_errors(f"list {self.describe()}"):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=start, Delimiter="/"
            )
            for page in pages:
                found.extend(
                    name for obj in page.get("Contents", []) if is_backup_name(name := obj["Key"][len(start) :])
                )
        return sorted(found)

    def fetch(self, name: str, local: Path) -> None:
        """Download `name` to `local` and check it against the sha256 recorded at upload, when there is one."""
        digest = hashlib.sha256()
        with _s3_errors(f"download {self.url(name)}"):
            response = self._client.get_object(Bucket=self.bucket, Key=self.key(name))
            with Path(local).open("wb") as out:
                for chunk in response["Body"].iter_chunks(CHUNK_BYTES):
                    digest.update(chunk)
                    out.write(chunk)
        expected = response.get("Metadata", {}).get(SHA256_METADATA_KEY)
        if expected and expected != digest.hexdigest():
            raise RestoreError(
                f"{self.url(name)} does not match the sha256 recorded at upload ({digest.hexdigest()} != {expected})"
            )

    def delete(self, name: str) -> None:
        """Delete the backup `name` (only ever one of ours)."""
        _check_name(name)
        with _s3_errors(f"delete {self.url(name)}"):
            self._client.delete_object(Bucket=self.bucket, Key=self.key(name))

    def describe(self) -> str:
        """Name the bucket and prefix as an s3:// URL."""
        return f"{S3_SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{S3_SCHEME}{self.bucket}"

    def url(self, name: str) -> str:
        """Return the s3:// URL of the backup `name`."""
        return f"{S3_SCHEME}{self.bucket}/{self.key(name)}"


@contextlib.contextmanager
def _s3_errors(what: str) -> Iterator[None]:
    """Turn the SDK's errors (HTTP, credentials, endpoints) into one-line `BackupError`s."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - only S3 targets need botocore

    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise BackupError(f"S3 {what} failed: {exc}") from exc


def default_s3_client() -> Any:
    """Create a boto3 S3 client with the SDK's own region and credential chain."""
    with _s3_errors("client setup"):
        import boto3  # noqa: PLC0415 - only S3 targets need boto3

        return boto3.client("s3")


def parse_s3_url(url: str) -> tuple[str, str]:
    """Split `s3://bucket/rest` into bucket and rest (without surrounding slashes)."""
    if not url.startswith(S3_SCHEME):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, rest = url.removeprefix(S3_SCHEME).partition("/")
    if not bucket:
        raise ValueError(f"an S3 location needs a bucket, e.g. s3://my-bucket/tradebot, was {url!r}")
    return bucket, rest.strip("/")


def target_from_url(
    url: str, default_dir: Path, s3_client_factory: Callable[[], Any] = default_s3_client
) -> BackupTarget:
    """Return the target `url` names: "" the default directory, s3://bucket/prefix an S3 prefix, else a directory."""
    text = url.strip()
    if not text:
        return LocalTarget(default_dir)
    if text.startswith(S3_SCHEME):
        bucket, prefix = parse_s3_url(text)
        return S3Target(s3_client_factory(), bucket, prefix)
    return LocalTarget(Path(text).expanduser())


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


# --- the running bot's lock --------------------------------------------------------------------------------

_HELD_LOCK_FDS: set[int] = set()


def _close_held_locks_in_child() -> None:
    """Drop a forked child's copies of held lock descriptors, so the lock dies with the bot, not its children."""
    for fd in list(_HELD_LOCK_FDS):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD_LOCK_FDS.clear()


os.register_at_fork(after_in_child=_close_held_locks_in_child)


def lock_path(db_path: Path) -> Path:
    """Return the lock file of a database: `<db>.lock` beside it."""
    db_path = Path(db_path)
    return db_path.with_name(db_path.name + LOCK_SUFFIX)


class DatabaseLock:
    """An exclusive, non-blocking `flock` on `<db>.lock` held while the bot runs; the OS drops it when we die.

    The holder's pid is written into the lock file for the message other processes show. The lock file itself
    is never deleted (deleting a lock file races with the next holder). A forked child drops its copy of the
    descriptor, so a child outliving the bot does not keep the lock; the descriptor is not inherited over exec.
    `restore` takes the same lock while it swaps the files, so a bot starting then is refused until it is done.
    """

    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)
        self.path = lock_path(self.db_path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Tell whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> Self:
        """Take the lock or raise `DatabaseInUse` naming the holder's pid."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this DatabaseLock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, LOCK_FILE_MODE)
        try:
            _flock_exclusive(fd, self.db_path)
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        _HELD_LOCK_FDS.add(fd)
        return self

    def release(self) -> None:
        """Let the lock go (releasing twice is harmless)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        _HELD_LOCK_FDS.discard(fd)
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _flock_exclusive(fd: int, db_path: Path) -> None:
    for attempt in range(LOCK_ATTEMPTS):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if attempt + 1 == LOCK_ATTEMPTS:
                raise DatabaseInUse(db_path, _read_pid(fd)) from None
            time.sleep(LOCK_RETRY_S)
        else:
            return


def is_locked(db_path: Path) -> int | None:
    """Return the pid of the process holding the database lock (0 if not written yet), or None when free.

    The probe takes a shared lock for an instant, so it never blocks and two probes never disturb each other.
    """
    try:
        fd = os.open(lock_path(db_path), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            return UNKNOWN_PID if pid is None else pid
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


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
