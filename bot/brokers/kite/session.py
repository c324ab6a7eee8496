"""The Kite Connect session: the login link, the request-token exchange, the daily expiry, the token file.

Kite's access token is valid until about 06:00 IST the next morning; a new one needs the owner to log in
through Zerodha in a browser (`login_url`), which redirects to the app's redirect URL with a one-time
`request_token`. `exchange` trades it for an access token (`POST /session/token` with the SHA-256 checksum of
api_key + request_token + api_secret). The access token and the api secret are secrets: they live in
`SecretStr`s, are sent only in the Authorization header or the exchange's form, and the token file is written
0600 (atomically) so the session survives a restart the same day.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Final
from urllib.parse import parse_qs, urlencode, urlsplit

from pydantic import SecretStr

LOGIN_URL: Final = "https://kite.zerodha.com/connect/login"
API_URL: Final = "https://api.kite.trade"
KITE_VERSION: Final = "3"
IST: Final = timedelta(hours=5, minutes=30)
EXPIRES_AT_IST: Final = time(6, 0)  # the access token stops working about 06:00 IST every day
TOKEN_FILE_MODE: Final = 0o600
_TOKEN = re.compile(r"^[A-Za-z0-9]{6,64}$")


@dataclass(frozen=True)
class KiteSettings:
    """The Kite Connect app: its key, its secret (SecretStr), where the API is, and how long to wait."""

    api_key: str
    api_secret: SecretStr
    base_url: str = API_URL
    login_base: str = LOGIN_URL
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.api_key or not self.api_key.isalnum():
            raise ValueError("Kite api_key must be the app's key: letters and digits")
        if not self.api_secret.get_secret_value():
            raise ValueError("Kite api_secret must not be empty")
        if self.timeout_s <= 0:
            raise ValueError(f"Kite timeout_s must be positive, was {self.timeout_s}")

    @property
    def login_url(self) -> str:
        """The page where the owner logs in to Zerodha; it redirects with a request_token."""
        return f"{self.login_base}?{urlencode({'v': KITE_VERSION, 'api_key': self.api_key})}"

    def checksum(self, request_token: str) -> str:
        """SHA-256 of api_key + request_token + api_secret, hex, as `POST /session/token` wants it."""
        text = self.api_key + request_token + self.api_secret.get_secret_value()
        return hashlib.sha256(text.encode()).hexdigest()


def request_token_from(text: str) -> str:
    """The request token in what the owner sent: the redirect URL (its `request_token` parameter) or the token."""
    text = text.strip()
    if "://" in text or text.startswith("?") or "request_token=" in text:
        query = urlsplit(text).query if "://" in text else text.split("?", 1)[-1]
        values = parse_qs(query).get("request_token", [])
        if not values:
            raise ValueError("that link has no request_token: send the whole address Zerodha redirected you to")
        status = parse_qs(query).get("status", ["success"])[0]
        if status != "success":
            raise ValueError(f"Zerodha reported the login as {status!r}: log in again with /login")
        text = values[0]
    if not _TOKEN.fullmatch(text):
        raise ValueError("a request token is letters and digits only: send the redirect address or the token")
    return text


def session_expiry(logged_in: datetime) -> datetime:
    """When a session made at `logged_in` stops working: the next 06:00 IST after it (UTC)."""
    local = logged_in.astimezone(UTC) + IST
    cutoff = datetime.combine(local.date(), EXPIRES_AT_IST, tzinfo=UTC)
    if local >= cutoff:
        cutoff += timedelta(days=1)
    return cutoff - IST


@dataclass(frozen=True)
class KiteSession:
    """A logged-in session: whose, its access token (SecretStr), when it was made and when it expires."""

    user_id: str
    user_name: str
    access_token: SecretStr
    login_time: datetime
    expires_at: datetime

    def __repr__(self) -> str:
        return f"KiteSession({self.user_id}, expires {self.expires_at:%Y-%m-%d %H:%M}Z)"

    def valid_at(self, now: datetime) -> bool:
        return now < self.expires_at


class TokenFile:
    """The session on disk (0600, written atomically), so a restart the same day needs no new login."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def save(self, session: KiteSession) -> None:
        body = {
            "user_id": session.user_id,
            "user_name": session.user_name,
            "access_token": session.access_token.get_secret_value(),
            "login_time": session.login_time.isoformat(),
            "expires_at": session.expires_at.isoformat(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            os.fchmod(fd, TOKEN_FILE_MODE)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(body, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load(self, now: datetime) -> KiteSession | None:
        """The saved session if it is still valid at `now`; None when absent, expired or unreadable."""
        try:
            body = json.loads(self.path.read_text(encoding="utf-8"))
            session = KiteSession(
                user_id=str(body["user_id"]),
                user_name=str(body["user_name"]),
                access_token=SecretStr(str(body["access_token"])),
                login_time=datetime.fromisoformat(body["login_time"]),
                expires_at=datetime.fromisoformat(body["expires_at"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return session if session.valid_at(now) else None

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
