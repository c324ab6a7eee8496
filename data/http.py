"""What every HTTPS client of the process shares: one TLS context."""

from __future__ import annotations

import ssl
from functools import cache

import httpx


@cache
def tls_context() -> ssl.SSLContext:
    """Return the TLS context of the process's HTTPS clients: httpx's default (certifi's roots, or SSL_CERT_FILE /
    SSL_CERT_DIR when set), built once. Building one parses the CA bundle, 20-35 ms here, which each client did
    on its own (Telegram's two, the brokers', the news feed's, every health check's)."""
    return httpx.create_ssl_context()
