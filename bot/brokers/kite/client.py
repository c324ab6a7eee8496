"""Kite Connect v3 over `httpx`: the headers, Kite's published rate limits, and Kite's errors in our terms.

Every answer is `{"status": "success", "data": ...}` or `{"status": "error", "message": ..., "error_type":
...}`. Errors map to `BrokerError` kinds: TokenException is SESSION (the owner must log in again; Kite entries
pause), InputException / OrderException / MarginException / HoldingException / PermissionException are
REJECTED in Kite's words, NetworkException / DataException / GeneralException, any 5xx, 429, timeouts and
connection errors are TRANSIENT (retried with backoff behind the breaker). Kite's words are scrubbed of the
api key's credentials before they go anywhere: a gateway that echoes the Authorization header leaks nothing.

Rate limits (Kite's documentation): quotes 1 request a second, order placement 10 a second, everything else
10 a second; the limiter spaces calls of each class so we never meet a 429 by our own doing.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

import httpx

from bot.brokers.kite.session import KITE_VERSION, KiteSettings
from data.http import tls_context
from data.redaction import Redactor
from engine.ports import BrokerError, BrokerErrorKind

SESSION_EXCEPTION: Final = "TokenException"
TRANSIENT_EXCEPTIONS: Final = frozenset({"NetworkException", "DataException", "GeneralException"})


class RateClass(StrEnum):
    QUOTE = "quote"
    ORDER = "order"
    OTHER = "other"


RATE_PER_SECOND: Final = {RateClass.QUOTE: 1.0, RateClass.ORDER: 10.0, RateClass.OTHER: 10.0}


class RateLimiter:
    """Spaces the calls of each rate class at least 1/rate seconds apart (monotonic time)."""

    def __init__(
        self,
        rates: Mapping[RateClass, float] = RATE_PER_SECOND,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._gap = {k: 1.0 / v for k, v in rates.items()}
        self._next: dict[RateClass, float] = {}
        self._monotonic = monotonic
        self._sleep = sleep
        self._lock = asyncio.Lock()

    async def wait(self, rate: RateClass) -> None:
        async with self._lock:
            now = self._monotonic()
            at = max(now, self._next.get(rate, now))
            self._next[rate] = at + self._gap[rate]
        if at > now:
            await self._sleep(at - now)


class KiteClient:
    """One HTTP client for Kite with the session's token in its Authorization header, once there is one."""

    def __init__(
        self,
        settings: KiteSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.settings = settings
        self._token: str | None = None
        self.on_session_expired: Callable[[], None] | None = None  # Kite said the token no longer works
        self._redactor = Redactor([settings.api_secret.get_secret_value()])
        self._limiter = limiter or RateLimiter()
        self._client = httpx.AsyncClient(
            base_url=settings.base_url.rstrip("/"),
            headers={"X-Kite-Version": KITE_VERSION},
            timeout=settings.timeout_s,
            transport=transport,
            verify=tls_context(),
        )

    def __repr__(self) -> str:
        return f"KiteClient({self.settings.base_url}, {'with' if self._token else 'without'} a session)"

    def use_token(self, access_token: str | None) -> None:
        """Send `access_token` from now on (None: no session)."""
        self._token = access_token
        secrets = [self.settings.api_secret.get_secret_value()]
        if access_token:
            secrets += [access_token, f"{self.settings.api_key}:{access_token}"]
        self._redactor = Redactor(secrets)

    @property
    def has_token(self) -> bool:
        return self._token is not None

    def scrub(self, text: str) -> str:
        """`text` with the api secret and the access token masked."""
        return self._redactor.redact(text)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def call(
        self,
        method: str,
        path: str,
        *,
        rate: RateClass = RateClass.OTHER,
        params: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
        json_body: Any = None,
        what: str,
        authenticated: bool = True,
    ) -> Any:
        """Send one request and return its `data`, or raise BrokerError in our terms (see the module docstring)."""
        headers = {}
        if authenticated:
            if self._token is None:
                raise BrokerError(
                    f"{what}: no Kite session today; the owner must log in with /login", BrokerErrorKind.SESSION
                )
            headers["Authorization"] = f"token {self.settings.api_key}:{self._token}"
        await self._limiter.wait(rate)
        content = None if json_body is None else json.dumps(json_body)
        if content is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = await self._client.request(
                method, path, params=params, data=form, content=content, headers=headers
            )
        except httpx.TimeoutException as exc:
            raise BrokerError(
                f"{what}: Kite did not answer within {self.settings.timeout_s:g} s", BrokerErrorKind.TRANSIENT
            ) from exc
        except httpx.TransportError as exc:
            raise BrokerError(f"{what}: cannot reach Kite ({type(exc).__name__})", BrokerErrorKind.TRANSIENT) from exc
        return self._data(response, what)

    async def text(self, path: str, *, what: str) -> str:
        """A plain-text (CSV) answer such as the instrument master."""
        if self._token is None:
            raise BrokerError(
                f"{what}: no Kite session today; the owner must log in with /login", BrokerErrorKind.SESSION
            )
        await self._limiter.wait(RateClass.OTHER)
        headers = {"Authorization": f"token {self.settings.api_key}:{self._token}"}
        try:
            response = await self._client.get(path, headers=headers)
        except httpx.TimeoutException as exc:
            raise BrokerError(f"{what}: Kite did not answer in time", BrokerErrorKind.TRANSIENT) from exc
        except httpx.TransportError as exc:
            raise BrokerError(f"{what}: cannot reach Kite ({type(exc).__name__})", BrokerErrorKind.TRANSIENT) from exc
        if response.status_code != 200:
            self._data(response, what)  # raises in our terms
        return response.text

    def _data(self, response: httpx.Response, what: str) -> Any:
        status = response.status_code
        try:
            body = json.loads(response.text, parse_float=Decimal) if response.content else {}
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if status < 400 and body.get("status") == "success":
            return body.get("data")
        kind_name = str(body.get("error_type") or "")
        message = self.scrub(str(body.get("message") or f"HTTP {status}"))
        if kind_name == SESSION_EXCEPTION:
            if self._token is not None and self.on_session_expired is not None:
                self.on_session_expired()
            raise BrokerError(
                f"{what}: the Kite session has expired ({message}); the owner must log in with /login",
                BrokerErrorKind.SESSION,
            )
        if status == 429:
            raise BrokerError(f"{what}: Kite is rate limiting requests (429)", BrokerErrorKind.TRANSIENT)
        if status >= 500 or kind_name in TRANSIENT_EXCEPTIONS:
            raise BrokerError(f"{what}: Kite is unavailable ({message})", BrokerErrorKind.TRANSIENT)
        if status < 400:
            raise BrokerError(f"{what}: Kite sent an unreadable answer", BrokerErrorKind.TRANSIENT)
        raise BrokerError(f"{what}: {message}")
