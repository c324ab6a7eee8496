"""`tradebot db backup` and `tradebot db restore`, and the backup target the bot's daily backup uses.

Exit codes as in bot/cli/main.py: 0 done; 1 it could not be done (no database, S3 error, corrupt backup, database in
use), with one line on stderr; 2 bad usage.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from datetime import UTC, datetime

from bot.cli.codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from bot.config import Settings
from bot.ops.database import default_backup_dir
from data.backup import (
    BackupError,
    RestoreResult,
    backup,
    backup_line,
    restore,
    size_text,
    target_from_url,
)


def restore_line(result: RestoreResult) -> str:
    """Describe a restore in one line."""
    previous = (
        f"previous database moved to {result.previous}" if result.previous is not None else "there was no database"
    )
    return (
        f"restored {result.source} into {result.db_path} (schema v{result.schema_version}, {result.pages:,} pages,"
        f" {size_text(result.bytes)}); {previous}"
    )


def run_db(settings: Settings, args: argparse.Namespace, now: datetime | None = None) -> int:
    """Run `tradebot db backup|restore`; print one line and return the exit code."""
    command = getattr(args, "db_command", None)
    if command not in ("backup", "restore"):
        print("tradebot db: choose backup or restore", file=sys.stderr)
        return EXIT_USAGE
    at = now or datetime.now(UTC)
    try:
        if command == "backup":
            if not settings.db_path.exists():
                print(f"tradebot db backup: no database at {settings.db_path} yet: nothing to back up", file=sys.stderr)
                return EXIT_FAILED
            destination = settings.backup.to if args.to is None else args.to
            target = target_from_url(destination, default_backup_dir(settings))
            keep = settings.backup.keep if args.keep is None else args.keep
            print(backup_line(backup(settings.db_path, target, keep, at)))
        else:
            db_path = settings.db_path if args.db is None else args.db
            print(restore_line(restore(args.source, db_path, at)))
    except ValueError as exc:
        print(f"tradebot db {command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (BackupError, OSError, sqlite3.Error) as exc:
        print(f"tradebot db {command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
