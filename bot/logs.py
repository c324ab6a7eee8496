"""Logging for the CLI and the service: one stderr handler that never lets a secret through.

`configure` installs it (text or one JSON object per line) and returns the `Redactor` it uses, so the
notifier and the Telegram error handler can mask the same secrets in what they send. `log_context` tags
every line logged inside it (and in asyncio tasks created inside it) with the analysis run and signal ids.
"""

from __future__ import annotations

import html
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

if TYPE_CHECKING:
    from bot.config import LogFormat

# Libraries whose INFO lines are noise, or carry request URLs (a Telegram URL contains the bot token).
QUIET_LOGGERS = ("httpx", "httpcore", "apscheduler", "telegram.ext.Updater", "aiosqlite", "yfinance", "peewee")
REDACTED: Final = "<redacted>"
MIN_SECRET_LENGTH: Final = 8  # shorter values would mask ordinary words and numbers
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s%(correlation)s: %(message)s"

# Shapes masked even when not configured: a Telegram bot token, and the credentials of a Bearer header.
TELEGRAM_TOKEN_PATTERN: Final = r"\d{5,}:[A-Za-z0-9_-]{30,}"
BEARER_PATTERN: Final = r"(?i:\b(?P<scheme>bearer\s+))[A-Za-z0-9\-._~+/]+=*"

RUN_ID: ContextVar[int | None] = ContextVar("tradebot_run_id", default=None)
SIGNAL_ID: ContextVar[str | None] = ContextVar("tradebot_signal_id", default=None)


class Redactor:
    """Masks known secret values and anything shaped like a bot token or a Bearer credential; immutable."""

    __slots__ = ("_pattern", "_secrets")

    _secrets: tuple[str, ...]
    _pattern: re.Pattern[str]

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        kept = {s for s in secrets if isinstance(s, str) and len(s.strip()) >= MIN_SECRET_LENGTH}
        forms = kept | {html.escape(s) for s in kept} | {quote(s, safe="") for s in kept}
        ordered = tuple(sorted(forms, key=lambda s: (-len(s), s)))  # longest first: a secret containing another
        alternatives = [re.escape(s) for s in ordered] + [TELEGRAM_TOKEN_PATTERN, BEARER_PATTERN]
        object.__setattr__(self, "_secrets", tuple(sorted(kept)))
        object.__setattr__(self, "_pattern", re.compile("|".join(alternatives)))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Redactor is immutable (cannot set {name})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Redactor is immutable (cannot delete {name})")

    def __repr__(self) -> str:
        return f"Redactor({len(self._secrets)} secret(s))"  # never the values

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Redactor) and self._secrets == other._secrets

    def __hash__(self) -> int:
        return hash(self._secrets)

    @property
    def secret_count(self) -> int:
        """Return how many configured secrets are masked (short ones are not counted)."""
        return len(self._secrets)

    def with_secrets(self, secrets: Iterable[str]) -> Redactor:
        """Return a redactor masking these secrets as well as this one's."""
        return Redactor((*self._secrets, *secrets))

    def redact(self, text: str) -> str:
        """Return `text` with every secret and token-shaped value replaced by REDACTED."""
        return self._pattern.sub(_replacement, text)


def _replacement(match: re.Match[str]) -> str:
    scheme = match.group("scheme")
    return f"{scheme}{REDACTED}" if scheme else REDACTED


class RedactSecrets(logging.Filter):
    """Redact a record's message, arguments, traceback (causes too) and stack; stamp the run and signal ids."""

    def __init__(self, secrets: Iterable[str] | Redactor = ()) -> None:
        super().__init__()
        self.redactor = secrets if isinstance(secrets, Redactor) else Redactor(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        redact = self.redactor.redact
        try:
            message = record.getMessage()
        except Exception:  # a bad format string or argument: keep the line rather than lose it
            message = f"{record.msg!r} % {record.args!r}"
        record.msg, record.args = redact(message), ()
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None  # from here on only the redacted text is formatted
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record.run_id = RUN_ID.get()
        record.signal_id = SIGNAL_ID.get()
        return True


def _correlation(record: logging.LogRecord) -> str:
    parts = []
    run_id = getattr(record, "run_id", None)
    signal_id = getattr(record, "signal_id", None)
    if run_id is not None:
        parts.append(f"run {run_id}")
    if signal_id is not None:
        parts.append(f"sig {signal_id}")
    return f" [{' '.join(parts)}]" if parts else ""


class TextFormatter(logging.Formatter):
    """The human format: time, level, logger, `[run 12 sig abcd]` when set, message."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        record.correlation = _correlation(record)
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, run_id and signal_id when set, exc when any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("run_id", "signal_id"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


class _TradebotHandler(logging.StreamHandler):
    """The handler `configure` installs; a later `configure` replaces it."""


def configure(level: int, secrets: Iterable[str] = (), fmt: LogFormat | str = "text") -> Redactor:
    """Log to stderr at `level` as text or JSON lines, redacting `secrets`; return the redactor in use."""
    if str(fmt) not in ("text", "json"):
        raise ValueError(f"unknown log format {fmt!r}: expected 'text' or 'json'")
    redactor = Redactor(secrets)
    handler = _TradebotHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if str(fmt) == "json" else TextFormatter())
    handler.addFilter(RedactSecrets(redactor))
    root = logging.getLogger()
    for old in list(root.handlers):  # every one: a handler left by someone else would not redact
        root.removeHandler(old)
        if isinstance(old, _TradebotHandler):
            old.close()
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    return redactor


def current_redactor() -> Redactor:
    """Return the redactor of the handler `configure` installed (token shapes only when not configured)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _TradebotHandler):
            for found in handler.filters:
                if isinstance(found, RedactSecrets):
                    return found.redactor
    return Redactor()


@contextmanager
def log_context(*, run_id: int | None = None, signal_id: str | None = None) -> Iterator[None]:
    """Tag log lines inside this block with the run and/or signal id; None keeps the enclosing value."""
    run_token = None if run_id is None else RUN_ID.set(run_id)
    signal_token = None if signal_id is None else SIGNAL_ID.set(signal_id)
    try:
        yield
    finally:
        if signal_token is not None:
            SIGNAL_ID.reset(signal_token)
        if run_token is not None:
            RUN_ID.reset(run_token)
