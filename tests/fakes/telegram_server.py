"""The embedded Bot API server (`bot.sandbox.botapi`) under its test name, and PTB's request for tests.

The sandbox and the end-to-end tests use one implementation of the Bot API: the product's.
"""

from __future__ import annotations

import ssl
from typing import Any

from telegram.request import HTTPXRequest

from bot.sandbox.botapi import BotApiServer as FakeTelegram
from bot.sandbox.botapi_state import DEFAULT_TOKEN, NOT_MODIFIED, QUERY_INVALID, Call, CallbackAnswer, SentMessage
from bot.sandbox.entities import EntityParseError, parse_html

__all__ = [
    "DEFAULT_TOKEN",
    "NOT_MODIFIED",
    "QUERY_INVALID",
    "Call",
    "CallbackAnswer",
    "EntityParseError",
    "FakeTelegram",
    "SentMessage",
    "fast_request",
    "parse_html",
]

_SSL_CONTEXT: ssl.SSLContext | None = None


def fast_request(**kwargs: Any) -> HTTPXRequest:
    """Return a PTB HTTPXRequest that reuses one SSL context (a default one loads the CA bundle: ~0.1 s each)."""
    global _SSL_CONTEXT  # noqa: PLW0603
    if _SSL_CONTEXT is None:
        _SSL_CONTEXT = ssl.create_default_context()
    httpx_kwargs = {"verify": _SSL_CONTEXT, **kwargs.pop("httpx_kwargs", {})}
    return HTTPXRequest(httpx_kwargs=httpx_kwargs, **kwargs)
