"""Logging for the CLI and the service: one stderr handler that never lets a secret through."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

# Libraries whose INFO lines are noise, or carry request URLs (a Telegram URL contains the bot token).
QUIET_LOGGERS = ("httpx", "httpcore", "apscheduler", "telegram.ext.Updater", "aiosqlite", "yfinance", "peewee")
REDACTED = "<redacted>"


class RedactSecrets(logging.Filter):
    """Replace every occurrence of a secret in a record's formatted message and traceback."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s and len(s) >= 8)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        for secret in self.secrets:
            message = message.replace(secret, REDACTED)
        record.msg, record.args = message, ()
        return True


def configure(level: int, secrets: Iterable[str] = ()) -> None:
    """Log to stderr at `level`, quieting chatty libraries and redacting `secrets` everywhere."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
