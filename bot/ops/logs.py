"""Logging for the CLI and the service: one stderr handler that never lets a secret through.

`configure` installs it (text or one JSON object per line) and returns the `Redactor` it uses, so the
notifier and the Telegram error handler can mask the same secrets in what they send. `log_context` tags
every line logged inside it (and in asyncio tasks created inside it) with the analysis run and signal ids.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TextIO

from data.redaction import Redactor

if TYPE_CHECKING:
    from bot.config import LogFormat

# Libraries whose INFO lines are noise, or carry request URLs (a Telegram URL contains the bot token).
QUIET_LOGGERS = ("httpx", "httpcore", "apscheduler", "telegram.ext.Updater", "yfinance", "peewee")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s%(correlation)s: %(message)s"


RUN_ID: ContextVar[int | None] = ContextVar("tradebot_run_id", default=None)
SIGNAL_ID: ContextVar[str | None] = ContextVar("tradebot_signal_id", default=None)


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


RECENT_LINES = 200  # warnings and errors kept in memory for /logs


class RecentLogs(logging.Handler):
    """The latest warnings and errors, redacted, in memory: what `/logs` shows."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__(logging.WARNING)
        self.lines: deque[str] = deque(maxlen=RECENT_LINES)
        self.addFilter(RedactSecrets(redactor))
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%m-%d %H:%M:%SZ"))
        self.formatter.converter = time.gmtime  # type: ignore[union-attr]

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record).splitlines()[0])

    def last(self, count: int) -> list[str]:
        """The newest `count` lines, oldest first."""
        return list(self.lines)[-count:] if count > 0 else []


def recent_logs(redactor: Redactor | None = None) -> RecentLogs:
    """The recent-warnings handler on the root logger, installed on first use (with `redactor`, or the log's)."""
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, RecentLogs):
            return handler
    handler = RecentLogs(redactor if redactor is not None else current_redactor())
    root.addHandler(handler)
    return handler


def add_secret(value: str) -> None:
    """Mask one more secret learnt at run time (a broker's daily access token) in every later log line."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _TradebotHandler | RecentLogs):
            for found in handler.filters:
                if isinstance(found, RedactSecrets):
                    found.redactor = found.redactor.with_secrets([value])


def current_redactor() -> Redactor:
    """Return the redactor of the handler `configure` installed (token shapes only when not configured)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, _TradebotHandler):
            for found in handler.filters:
                if isinstance(found, RedactSecrets):
                    return found.redactor
    return Redactor()


class RedactingStream:
    """A text stream that masks secrets in everything written to it (wraps stdout or stderr)."""

    def __init__(self, stream: TextIO, redactor: Redactor) -> None:
        self._stream = stream
        self._redactor = redactor

    def write(self, text: str) -> int:
        self._stream.write(self._redactor.redact(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding...: the wrapped stream's
        return getattr(self._stream, name)


@contextmanager
def redacted_output(redactor: Redactor) -> Iterator[None]:
    """Mask secrets in everything printed to stdout and stderr inside this block (tracebacks and prints too)."""
    saved = sys.stdout, sys.stderr
    sys.stdout = RedactingStream(saved[0], redactor)
    sys.stderr = RedactingStream(saved[1], redactor)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


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
