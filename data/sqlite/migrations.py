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

_V2_BOT_LIFECYCLE_OUTBOX_ORDERS_TRADES: Final = Migration(
    version=2,
    name="signal lifecycle, signal messages, outbox, orders, trades and bot state",
    statements=(
        # Lifecycle fields live on the signal row itself, so reading a signal is one primary-key lookup.
        "ALTER TABLE signals ADD COLUMN quantity TEXT",
        "ALTER TABLE signals ADD COLUMN offered_at TEXT",
        "ALTER TABLE signals ADD COLUMN expires_at TEXT",
        "ALTER TABLE signals ADD COLUMN decided_by INTEGER",
        "ALTER TABLE signals ADD COLUMN decided_at TEXT",
        "ALTER TABLE signals ADD COLUMN reason TEXT",
        "ALTER TABLE signals ADD COLUMN updated_at TEXT",
        # Release 1 only ever wrote 'new'; map the statuses it declared onto the new state machine in case
        # a hand-edited database used them.
        """
        UPDATE signals SET status = CASE status
            WHEN 'pending_approval' THEN 'pending'
            WHEN 'executed' THEN 'filled'
            WHEN 'closed' THEN 'filled'
            WHEN 'cancelled' THEN 'dropped'
            ELSE status END
        WHERE status IN ('pending_approval', 'executed', 'closed', 'cancelled')
        """,
        "CREATE INDEX signals_symbol_offered_at ON signals (symbol, offered_at) WHERE offered_at IS NOT NULL",
        # Which Telegram messages show which signals (a digest shows several), so all of them can be edited
        # when a signal is decided. id keeps the order they were added in.
        """
        CREATE TABLE signal_messages (
            id INTEGER PRIMARY KEY,
            signal_id TEXT NOT NULL REFERENCES signals (signal_id),
            chat_id INTEGER NOT NULL,
            message_id INTEGER NOT NULL,
            UNIQUE (chat_id, message_id, signal_id)
        )
        """,
        "CREATE INDEX signal_messages_signal_id ON signal_messages (signal_id)",
        # Messages to send. signal_id is informational (no foreign key): a message is never refused.
        # No CHECK on kind, for the same reason as signals.status.
        """
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            chat_id INTEGER NOT NULL,
            payload TEXT NOT NULL CHECK (json_valid(payload) AND json_type(payload) = 'object'),
            signal_id TEXT,
            created_at TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            next_attempt_at TEXT,
            sent_at TEXT,
            last_error TEXT
        )
        """,
        "CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL",
        # One order per signal: the client order id is the signal id, so a second order cannot exist.
        """
        CREATE TABLE orders (
            client_order_id TEXT PRIMARY KEY REFERENCES signals (signal_id),
            symbol TEXT NOT NULL,
            side TEXT NOT NULL CHECK (side IN ('long', 'short')),
            quantity TEXT NOT NULL,
            submitted_at TEXT NOT NULL,
            fill_price TEXT,
            fill_quantity TEXT,
            fees TEXT,
            filled_at TEXT,
            CHECK ((filled_at IS NULL) = (fill_price IS NULL)),
            CHECK ((filled_at IS NULL) = (fill_quantity IS NULL)),
            CHECK ((filled_at IS NULL) = (fees IS NULL))
        ) WITHOUT ROWID
        """,
        # signal_id has no foreign key: an external trade may be reported for a signal this database never saw.
        """
        CREATE TABLE trades (
            trade_id TEXT PRIMARY KEY CHECK (trade_id <> ''),
            signal_id TEXT NOT NULL CHECK (signal_id <> ''),
            kind TEXT NOT NULL,
            strategy TEXT NOT NULL,
            symbol TEXT NOT NULL,
            side TEXT NOT NULL CHECK (side IN ('long', 'short')),
            quantity TEXT NOT NULL,
            contract_size TEXT NOT NULL,
            entry_time TEXT NOT NULL,
            entry_price TEXT NOT NULL,
            stop TEXT NOT NULL,
            target TEXT NOT NULL,
            entry_fees TEXT NOT NULL,
            exit_time TEXT,
            exit_price TEXT,
            exit_reason TEXT,
            exit_fees TEXT NOT NULL,
            approver_id INTEGER,
            approval_latency_s REAL,
            UNIQUE (signal_id, kind),
            CHECK ((exit_time IS NULL) = (exit_price IS NULL)),
            CHECK ((exit_time IS NULL) = (exit_reason IS NULL))
        ) WITHOUT ROWID
        """,
        "CREATE INDEX trades_open ON trades (kind) WHERE exit_time IS NULL",
        "CREATE INDEX trades_closed ON trades (exit_time) WHERE exit_time IS NOT NULL",
        """
        CREATE TABLE bot_state (
            key TEXT PRIMARY KEY CHECK (key <> ''),
            value TEXT NOT NULL,
            updated_at TEXT NOT NULL
        ) WITHOUT ROWID
        """,
    ),
)

_V3_BASELINES: Final = Migration(
    version=3,
    name="pre-deploy validation results and baselines",
    statements=(
        # One row per validation of a strategy x instrument; the newest version is its current status.
        # r_multiples is the out-of-sample R sample drift detection compares live trades with.
        """
        CREATE TABLE baselines (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            strategy TEXT NOT NULL,
            symbol TEXT NOT NULL,
            interval TEXT NOT NULL,
            version INTEGER NOT NULL CHECK (version >= 1),
            created_at TEXT NOT NULL,
            data_source TEXT NOT NULL,
            data_from TEXT NOT NULL,
            data_to TEXT NOT NULL,
            params TEXT NOT NULL CHECK (json_valid(params)),
            passed INTEGER NOT NULL CHECK (passed IN (0, 1)),
            reasons TEXT NOT NULL CHECK (json_valid(reasons)),
            metrics TEXT NOT NULL CHECK (json_valid(metrics)),
            r_multiples TEXT NOT NULL CHECK (json_valid(r_multiples)),
            UNIQUE (strategy, symbol, interval, version)
        )
        """,
    ),
)

_V4_SHADOW_ORDERS: Final = Migration(
    version=4,
    name="shadow orders: the exact broker requests shadow mode recorded instead of sending",
    statements=(
        # One row per order shadow mode kept back; client_order_id is the signal id, so it joins the paper fill
        # in `orders`. No foreign key: a record of what would have been sent is never refused. Either the request
        # (method, path and the exact JSON body text) or the reason the adapter could not build it is stored.
        """
        CREATE TABLE shadow_orders (
            client_order_id TEXT PRIMARY KEY CHECK (client_order_id <> ''),
            broker TEXT NOT NULL CHECK (broker <> ''),
            symbol TEXT NOT NULL CHECK (symbol <> ''),
            side TEXT NOT NULL CHECK (side IN ('long', 'short')),
            quantity TEXT NOT NULL,
            method TEXT,
            path TEXT,
            body_json TEXT CHECK (body_json IS NULL OR (json_valid(body_json) AND json_type(body_json) = 'object')),
            refusal TEXT,
            created_at TEXT NOT NULL,
            CHECK ((method IS NULL) = (path IS NULL) AND (path IS NULL) = (body_json IS NULL)),
            CHECK ((body_json IS NULL) <> (refusal IS NULL))
        ) WITHOUT ROWID
        """,
        "CREATE INDEX shadow_orders_created_at ON shadow_orders (created_at)",
    ),
)

_V5_DRIFT_AND_LEARNING: Final = Migration(
    version=5,
    name="drift alerts, pair controls, learned model versions and the win estimate shown with each signal",
    statements=(
        # One row per drift verdict told to the chat; the newest per pair drives the alert cooldown across restarts.
        # symbol '*' is the strategy overall.
        """
        CREATE TABLE drift_alerts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            strategy TEXT NOT NULL CHECK (strategy <> ''),
            symbol TEXT NOT NULL CHECK (symbol <> ''),
            severity TEXT NOT NULL CHECK (severity <> ''),
            alerted_at TEXT NOT NULL,
            summary TEXT NOT NULL
        )
        """,
        "CREATE INDEX drift_alerts_pair ON drift_alerts (strategy, symbol, id)",
        # Append-only history of each strategy x instrument's state; the newest row is the state, and its id is
        # what the /enable button carries (so a stale or forged button changes nothing).
        """
        CREATE TABLE pair_controls (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            strategy TEXT NOT NULL CHECK (strategy <> ''),
            symbol TEXT NOT NULL CHECK (symbol <> ''),
            state TEXT NOT NULL CHECK (state IN ('enabled', 'ask_only', 'disabled')),
            source TEXT NOT NULL CHECK (source IN ('drift', 'learning', 'operator')),
            reason TEXT NOT NULL CHECK (reason <> ''),
            at TEXT NOT NULL,
            by INTEGER,
            CHECK (source <> 'operator' OR by IS NOT NULL)
        )
        """,
        "CREATE INDEX pair_controls_pair ON pair_controls (strategy, symbol, id)",
        # Every learning run's output, versioned; bot_state 'learning.active_version' says which one is used.
        """
        CREATE TABLE learned_models (
            version INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at TEXT NOT NULL,
            summary TEXT NOT NULL CHECK (json_valid(summary) AND json_type(summary) = 'object'),
            model TEXT NOT NULL CHECK (json_valid(model) AND json_type(model) = 'object')
        )
        """,
        # The win estimate shown with a signal when it was offered (re-rendered messages keep showing it).
        """
        CREATE TABLE signal_estimates (
            signal_id TEXT PRIMARY KEY REFERENCES signals (signal_id),
            model_version INTEGER NOT NULL,
            p_win REAL CHECK (p_win IS NULL OR p_win BETWEEN 0 AND 1),
            trades INTEGER NOT NULL CHECK (trades >= 0),
            expected_r REAL,
            note TEXT NOT NULL DEFAULT ''
        ) WITHOUT ROWID
        """,
    ),
)

_V6_SYSTEMS: Final = Migration(
    version=6,
    name="the system each baseline validated and each signal was found by, and its status when offered",
    statements=(
        # fingerprint: the hash of everything that decides a system's trades (engine.systems.SystemSpec); '' for
        # baselines stored before: they validate no system the bot trades, so their pairs show as stale.
        "ALTER TABLE baselines ADD COLUMN fingerprint TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE baselines ADD COLUMN system TEXT NOT NULL DEFAULT '{}'"
        " CHECK (json_valid(system) AND json_type(system) = 'object')",
        "ALTER TABLE baselines ADD COLUMN oos_from TEXT",
        "ALTER TABLE baselines ADD COLUMN score TEXT CHECK (score IS NULL OR json_valid(score))",
        "CREATE INDEX baselines_fingerprint ON baselines (strategy, symbol, interval, fingerprint, version)",
        # The validation status shown with a signal (a JSON snapshot), and the system that found it, so drift
        # compares a baseline only with the trades of the system it validated.
        "ALTER TABLE signals ADD COLUMN fingerprint TEXT",
        "ALTER TABLE signals ADD COLUMN validation TEXT CHECK (validation IS NULL OR json_valid(validation))",
        # The score of learned component weights shown beside the hand score, when learning adopted them.
        "ALTER TABLE signal_estimates ADD COLUMN learned_score REAL CHECK (learned_score BETWEEN 0 AND 100)",
    ),
)

_V7_EXPOSURE_AND_CONTROL: Final = Migration(
    version=7,
    name="what a signal's size means in money, and the trader's actions on open positions",
    statements=(
        # The sizing shown with a signal (a JSON snapshot): notional, leverage, risk and expected costs.
        "ALTER TABLE signals ADD COLUMN sizing TEXT CHECK (sizing IS NULL OR json_valid(sizing))",
        # Every close or stop move the trader asked for on an open position. At most one close of a trade is ever
        # in flight (the partial unique index): a double press, two chats or a replay send it once.
        """
        CREATE TABLE trade_actions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            trade_id TEXT NOT NULL REFERENCES trades (trade_id),
            action TEXT NOT NULL CHECK (action IN ('close', 'stop')),
            status TEXT NOT NULL CHECK (status IN ('requested', 'done', 'failed')),
            requested_at TEXT NOT NULL,
            requested_by INTEGER NOT NULL,
            old_stop TEXT,
            new_stop TEXT,
            detail TEXT NOT NULL DEFAULT '',
            finished_at TEXT
        )
        """,
        "CREATE UNIQUE INDEX trade_actions_one_close ON trade_actions (trade_id) WHERE action = 'close'"
        " AND status IN ('requested', 'done')",
        # A "close all N" confirmation: the positions it showed; its button acts on these and only once.
        """
        CREATE TABLE close_batches (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            trade_ids TEXT NOT NULL CHECK (json_valid(trade_ids) AND json_type(trade_ids) = 'array'),
            created_at TEXT NOT NULL,
            created_by INTEGER NOT NULL,
            used_at TEXT,
            used_by INTEGER
        )
        """,
    ),
)

_V8_SPREADS: Final = Migration(
    version=8,
    name="hedged option spreads and their leg fills",
    statements=(
        # One row per spread, its whole record as JSON; `status` moves by compare-and-set.
        """
        CREATE TABLE spreads (
            spread_id TEXT PRIMARY KEY,
            status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'open', 'closing', 'closed',
                                                   'rolled_back', 'rejected', 'expired')),
            updated_at TEXT NOT NULL,
            record TEXT NOT NULL CHECK (json_valid(record))
        )
        """,
        "CREATE INDEX spreads_status ON spreads (status)",
        # Every child order's fill, once by its tag (`<spread id><h|m><o|c|r><n>`).
        """
        CREATE TABLE spread_fills (
            tag TEXT PRIMARY KEY,
            spread_id TEXT NOT NULL REFERENCES spreads (spread_id),
            fill TEXT NOT NULL CHECK (json_valid(fill))
        )
        """,
    ),
)

_V9_AUDIT: Final = Migration(
    9,
    "audit trail and partial exits",
    (
        # Append-only: every decision and setting change, written in the transaction of the change itself.
        """
        CREATE TABLE audit_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            kind TEXT NOT NULL,
            actor TEXT NOT NULL,
            subject TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT ''
        )
        """,
        "CREATE INDEX audit_events_at ON audit_events (at)",
        """
        CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END
        """,
        """
        CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END
        """,
        # Partial exits of a managed position (a partial target), once each by its number; the trade closes
        # with the quantity-weighted average of these and its last fill.
        """
        CREATE TABLE partial_exits (
            trade_id TEXT NOT NULL REFERENCES trades (trade_id),
            seq INTEGER NOT NULL CHECK (seq >= 1),
            at TEXT NOT NULL,
            price TEXT NOT NULL,
            quantity TEXT NOT NULL,
            fees TEXT NOT NULL,
            PRIMARY KEY (trade_id, seq)
        )
        """,
    ),
)

_V10_CLOSE_ORDER: Final = Migration(
    10,
    "the order trades closed in",
    (
        # Each close is numbered as it is written (a trade closes once and never changes after), so what closed
        # since a number is one indexed read, not a walk over every closed trade's id.
        "ALTER TABLE trades ADD COLUMN closed_seq INTEGER",
        """
        UPDATE trades SET closed_seq = (
            SELECT n FROM (
                SELECT trade_id, ROW_NUMBER() OVER (ORDER BY exit_time, trade_id) AS n
                FROM trades WHERE exit_time IS NOT NULL
            ) AS numbered WHERE numbered.trade_id = trades.trade_id
        )
        WHERE exit_time IS NOT NULL
        """,
        "CREATE UNIQUE INDEX trades_closed_seq ON trades (closed_seq) WHERE closed_seq IS NOT NULL",
        """
        CREATE TRIGGER trades_number_a_close AFTER UPDATE OF exit_time ON trades
        WHEN OLD.exit_time IS NULL AND NEW.exit_time IS NOT NULL
        BEGIN
            UPDATE trades SET closed_seq = (SELECT COALESCE(MAX(closed_seq), 0) + 1 FROM trades)
            WHERE trade_id = NEW.trade_id;
        END
        """,
        """
        CREATE TRIGGER trades_number_a_closed_insert AFTER INSERT ON trades
        WHEN NEW.exit_time IS NOT NULL
        BEGIN
            UPDATE trades SET closed_seq = (SELECT COALESCE(MAX(closed_seq), 0) + 1 FROM trades)
            WHERE trade_id = NEW.trade_id;
        END
        """,
    ),
)

MIGRATIONS: Final[tuple[Migration, ...]] = (
    _V1_RUNS_SIGNALS_REJECTIONS,
    _V2_BOT_LIFECYCLE_OUTBOX_ORDERS_TRADES,
    _V3_BASELINES,
    _V4_SHADOW_ORDERS,
    _V5_DRIFT_AND_LEARNING,
    _V6_SYSTEMS,
    _V7_EXPOSURE_AND_CONTROL,
    _V8_SPREADS,
    _V9_AUDIT,
    _V10_CLOSE_ORDER,
)


def check_sequence(migrations: tuple[Migration, ...]) -> int:
    """Return the latest version after checking the versions run 1, 2, 3... without gaps."""
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise ValueError(f"migration #{expected} ({migration.name}) has version {migration.version}")
    return len(migrations)


LATEST_VERSION: Final = check_sequence(MIGRATIONS)
