"""The running bot's single-instance lock on its database."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from data.backup.common import LOCK_ATTEMPTS, LOCK_FILE_MODE, LOCK_RETRY_S, LOCK_SUFFIX, UNKNOWN_PID, DatabaseInUse

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
