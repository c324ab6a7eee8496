"""Schema migrations of the SQLite store, applied in order by `PRAGMA user_version`.

Rules for adding one: append a new `Migration` with the next version; never edit or reorder a released one
(databases in the field already ran it). The SQL is literal text, not generated from today's enums, so an
old migration means the same thing forever. Each migration is a tuple of single statements, run inside one
transaction together with the `user_version` bump (so `executescript`, which commits first, is not used).

Conventions: money and prices are TEXT holding `str(Decimal)`; instants are TEXT ISO-8601 UTC
(`2025-06-12T09:40:00Z`, microseconds only when non-zero); JSON columns are checked with `json_valid`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: the version it brings the database to and the statements that do it."""

    version: int
    name: str
    statements: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.version < 1:
            raise ValueError(f"migration version must be at least 1, was {self.version}")
        if not self.statements:
            raise ValueError(f"migration {self.version} ({self.name}) has no statements")


_V1_RUNS_SIGNALS_REJECTIONS: Final = Migration(
    version=1,
    name="analysis runs, signals and rejections",
    statements=(
        # AUTOINCREMENT: run ids are shown to traders, so one must never be reused after a deletion.
        """
        CREATE TABLE analysis_runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            as_of TEXT NOT NULL,
            data_source TEXT NOT NULL CHECK (data_source <> ''),
            symbols TEXT NOT NULL CHECK (json_valid(symbols) AND json_type(symbols) = 'array'),
            setups_count INTEGER NOT NULL DEFAULT 0 CHECK (setups_count >= 0),
            rejected_setups_count INTEGER NOT NULL DEFAULT 0 CHECK (rejected_setups_count >= 0),
            rejected_symbols_count INTEGER NOT NULL DEFAULT 0 CHECK (rejected_symbols_count >= 0),
            errors TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(errors) AND json_type(errors) = 'array'),
            status TEXT NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'finished', 'failed')),
            CHECK ((status = 'running') = (finished_at IS NULL))
        )
        """,
        # One row per distinct setup (signal_id is deterministic); run_id is the run that first saw it.
        # No CHECK on status: later issues add statuses, and SQLite cannot alter a CHECK without a rebuild.
        """
        CREATE TABLE signals (
            signal_id TEXT PRIMARY KEY CHECK (signal_id <> ''),
            run_id INTEGER NOT NULL REFERENCES analysis_runs (id),
            strategy TEXT NOT NULL,
            symbol TEXT NOT NULL,
            side TEXT NOT NULL CHECK (side IN ('long', 'short')),
            timeframe TEXT NOT NULL,
            bar_time TEXT NOT NULL,
            entry TEXT NOT NULL,
            stop TEXT NOT NULL,
            targets TEXT NOT NULL CHECK (json_valid(targets) AND json_type(targets) = 'array'),
            reasons TEXT NOT NULL CHECK (json_valid(reasons) AND json_type(reasons) = 'array'),
            quality REAL NOT NULL CHECK (quality BETWEEN 0 AND 100),
            components TEXT NOT NULL CHECK (json_valid(components) AND json_type(components) = 'array'),
            status TEXT NOT NULL DEFAULT 'new',
            created_at TEXT NOT NULL
        )
        """,
        "CREATE INDEX signals_symbol_bar_time ON signals (symbol, bar_time)",
        "CREATE INDEX signals_status ON signals (status)",
        "CREATE INDEX signals_run_id ON signals (run_id)",
        # Which setups each run produced, in the run's order: a setup already stored by an earlier run is
        # still listed for the later run that saw it again.
        """
        CREATE TABLE run_signals (
            run_id INTEGER NOT NULL REFERENCES analysis_runs (id),
            signal_id TEXT NOT NULL REFERENCES signals (signal_id),
            position INTEGER NOT NULL CHECK (position >= 0),
            PRIMARY KEY (run_id, signal_id),
            UNIQUE (run_id, position)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX run_signals_signal_id ON run_signals (signal_id)",
        """
        CREATE TABLE rejections (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES analysis_runs (id),
            kind TEXT NOT NULL CHECK (kind IN ('setup', 'symbol')),
            symbol TEXT NOT NULL,
            strategy TEXT,
            bar_time TEXT,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail) AND json_type(detail) = 'object')
        )
        """,
        "CREATE INDEX rejections_run_id ON rejections (run_id, id)",
    ),
)

MIGRATIONS: Final[tuple[Migration, ...]] = (_V1_RUNS_SIGNALS_REJECTIONS,)


def check_sequence(migrations: tuple[Migration, ...]) -> int:
    """Return the latest version after checking the versions run 1, 2, 3... without gaps."""
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise ValueError(f"migration #{expected} ({migration.name}) has version {migration.version}")
    return len(migrations)


LATEST_VERSION: Final = check_sequence(MIGRATIONS)
