"""`tradebot db backup` and `tradebot db restore`, and the backup target the bot's daily backup uses.

Exit codes as in bot/cli/main.py: 0 done; 1 it could not be done (no database, S3 error, corrupt backup, database in
use), with one line on stderr; 2 bad usage.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from bot.bootstrap import default_backup_dir
from bot.cli.render import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from bot.config import Settings
from data.backup import (
    S3_SCHEME,
    BackupError,
    RestoreResult,
    backup,
    backup_line,
    parse_s3_url,
    restore,
    size_text,
    target_from_url,
)

MAX_KEEP: Final = 10_000  # as `[backup] keep`


def restore_line(result: RestoreResult) -> str:
    """Describe a restore in one line."""
    previous = (
        f"previous database moved to {result.previous}" if result.previous is not None else "there was no database"
    )
    return (
        f"restored {result.source} into {result.db_path} (schema v{result.schema_version}, {result.pages:,} pages,"
        f" {size_text(result.bytes)}); {previous}"
    )


def _destination(text: str) -> str:
    if text.startswith(S3_SCHEME):
        try:
            parse_s3_url(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    elif not text.strip():
        raise argparse.ArgumentTypeError("expected a directory or s3://bucket/prefix")
    return text


def _keep(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= MAX_KEEP:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_KEEP}, was {value}")
    return value


def add_db_parser(commands: argparse._SubParsersAction) -> None:
    """Add `db backup [--to DIR|s3://bucket/prefix] [--keep N]` and `db restore SOURCE [--db PATH]`."""
    db = commands.add_parser("db", help="back up or restore the bot's database")
    actions = db.add_subparsers(dest="db_command", required=True)
    save = actions.add_parser("backup", help="snapshot the database (safe while the bot runs), gzip it, keep N")
    save.add_argument(
        "--to", type=_destination, help="a directory or s3://bucket/prefix (default: [backup] to, else backups/)"
    )
    save.add_argument("--keep", type=_keep, help="how many backups to keep there (default: [backup] keep)")
    back = actions.add_parser("restore", help="replace the database with a backup (the bot must be stopped)")
    back.add_argument(
        "source", help="a .db.gz file, a directory or s3://bucket/prefix (its newest), or s3://bucket/key.db.gz"
    )
    back.add_argument("--db", type=Path, help="the database to replace (default: TRADEBOT_DB_PATH)")


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
