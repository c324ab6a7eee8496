"""Masking secrets in text: every configured secret (as written, HTML-escaped and URL-encoded), anything shaped
like a Telegram bot token, and Bearer credentials.

One `Redactor` serves every place text leaves the process: log lines, stderr, chat messages and every text the
store writes to the database.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import quote

REDACTED: Final = "<redacted>"
MIN_SECRET_LENGTH: Final = 8  # shorter values would mask ordinary words and numbers

# Shapes masked even when not configured: a Telegram bot token, and the credentials of a Bearer header.
TELEGRAM_TOKEN_PATTERN: Final = r"\d{5,}:[A-Za-z0-9_-]{30,}"
BEARER_PATTERN: Final = r"(?i:\b(?P<scheme>bearer\s+))[A-Za-z0-9\-._~+/]+=*"


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
