"""The process's HTTPS clients share one TLS context: the CA bundle is parsed once, not once per client."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.brokers.kite.client import KiteClient
from bot.brokers.kite.session import KiteSettings
from bot.brokers.oanda import OandaBroker, OandaSettings
from bot.config import load_settings
from bot.ops.health import check_telegram
from bot.telegram.app import build_application
from data.http import tls_context
from data.market.news_feed import NewsSource
from data.redaction import Redactor
from engine.catalog import default_instrument
from tests.fakes.telegram_server import FakeTelegram

TOKEN = "123456789:AAHtlsContextTestTokenOnly_abcdefghij"


@pytest.fixture
def contexts_built(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """The TLS contexts built from now on (the process's shared one forgotten first)."""
    built: list[Any] = []
    real = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        built.append(kwargs.get("cafile") or kwargs.get("capath"))
        return real(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counting)
    tls_context.cache_clear()
    yield built
    tls_context.cache_clear()


async def test_the_bots_https_clients_build_one_tls_context_between_them(
    contexts_built: list[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    app = build_application(load_settings())  # PTB's two clients: updates and everything else
    oanda = OandaBroker(
        OandaSettings(account_id="101-004-1-001", token=SecretStr("oanda-token"), base_url="https://oanda.invalid"),
        {"EURUSD": default_instrument("EURUSD")},
    )
    kite = KiteClient(KiteSettings("key", SecretStr("secret"), base_url="https://kite.invalid"))
    async with FakeTelegram(token=TOKEN) as tg:
        for _ in range(3):  # `/health` and `tradebot health` each make a client
            assert (await check_telegram(tg.base_url, TOKEN, 5.0, Redactor([TOKEN]))).ok
    with socket.socket() as probe:  # a port nobody listens on: refused at once, after its client was made
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    news = NewsSource(f"forexfactory:https://127.0.0.1:{port}/calendar.json", timeout_seconds=1.0)
    result = await news.calendar(datetime(2025, 6, 12, tzinfo=UTC))
    assert result.calendar is None and "ConnectError" in result.status
    await oanda.aclose()
    await kite.aclose()
    await app.shutdown()
    assert len(contexts_built) == 1, f"{len(contexts_built)} TLS contexts built"
    assert tls_context().verify_mode is ssl.CERT_REQUIRED and tls_context().check_hostname  # httpx's default
