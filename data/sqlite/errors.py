"""What the store raises, and how a storage fault reads."""

from __future__ import annotations

import sqlite3
from typing import Final


class StoreError(Exception):
    """The store could not do what was asked; the message says why."""


def storage_problem(exc: BaseException) -> str:
    """What a storage failure means for the trader, in a few words (the disk is full, another process holds
    the database), else SQLite's own words."""
    text = str(exc).lower()
    if "disk is full" in text or "disk full" in text or "no space" in text:
        return "the disk is full"
    if "locked" in text or "busy" in text:
        return "another process holds the database locked"
    if "readonly" in text or "read-only" in text:
        return "the database is read-only"
    return str(exc).rsplit(": ", 1)[-1]


_STORAGE_FAULTS: Final = ("full", "locked", "busy", "readonly", "disk i/o", "unable to open")


def _storage_fault(exc: sqlite3.Error) -> bool:
    """Whether SQLite failed for want of room, access or the lock (not a constraint the write itself broke)."""
    return isinstance(exc, sqlite3.OperationalError) and any(w in str(exc).lower() for w in _STORAGE_FAULTS)


class SchemaVersionError(StoreError):
    """The database was written by a newer tradebot than this one; it is never downgraded."""


class StoreClosedError(StoreError):
    """The store was used after `close()`."""


class UnknownRunError(StoreError, LookupError):
    """No analysis run has the given id."""


class RunStateError(StoreError):
    """The run is not in a state that allows the operation (e.g. finishing a run twice)."""


class CorruptRecordError(StoreError):
    """A stored row cannot be turned back into domain objects."""


class UnknownRecordError(StoreError, LookupError):
    """No trade or outbox item has the given id."""


class DuplicateTradeError(StoreError):
    """The trade (or another trade of its kind for its signal) is already stored."""
