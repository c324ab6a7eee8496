"""The bot's database and its backups as the settings name them: what every command that touches the database
opens, without the running bot's stack (the commands that only read or flag the database start at once)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from bot.config import Settings
from data.backup import BackupResult, BackupTarget, backup, default_s3_client, target_from_url
from data.sqlite.store import SqliteStore
from engine.ports import Clock

BACKUP_DIR_NAME: Final = "backups"


def default_backup_dir(settings: Settings) -> Path:
    """Return `backups/` beside the database: where backups go when `[backup] to` is empty."""
    return settings.db_path.parent / BACKUP_DIR_NAME


def backup_target(settings: Settings, s3_client_factory: Callable[[], Any] = default_s3_client) -> BackupTarget:
    """Return the target `[backup] to` names (a directory, s3://bucket/prefix, or the default directory)."""
    return target_from_url(settings.backup.to, default_backup_dir(settings), s3_client_factory)


def run_backup(settings: Settings, now: datetime) -> BackupResult:
    """Back up the bot's database as configured in `[backup]`; blocking, so call it with `asyncio.to_thread`."""
    return backup(settings.db_path, backup_target(settings), settings.backup.keep, now)


async def open_store(settings: Settings, clock: Clock | None = None, *, autocheckpoint: bool = True) -> SqliteStore:
    """The bot's database, masking the configured secrets in everything written to it, stamped by `clock`;
    without `autocheckpoint`, the caller checkpoints it (the running bot, on its tick)."""
    now = None if clock is None else clock.now
    return await SqliteStore.open(
        settings.db_path,
        busy_timeout_ms=settings.db_busy_timeout_ms,
        secrets=settings.secret_values(),
        now=now,
        autocheckpoint=autocheckpoint,
    )
