"""Secrets never reach the logs: not in messages, arguments or tracebacks."""

from __future__ import annotations

import logging

import pytest

from bot.logs import REDACTED, RedactSecrets, configure

TOKEN = "123456789:AAHsecretTokenValue_abcdefghijk"


def test_messages_arguments_and_tracebacks_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure(logging.INFO, [TOKEN])
    log = logging.getLogger("tradebot.test")
    log.info("calling https://api.telegram.org/bot%s/getUpdates", TOKEN)
    try:
        raise RuntimeError(f"request to /bot{TOKEN}/sendMessage failed")
    except RuntimeError:
        log.exception("send failed")
    err = capsys.readouterr().err
    assert TOKEN not in err
    assert err.count(REDACTED) == 2  # the message and the exception text in the traceback
    assert "RuntimeError" in err


def test_http_client_request_lines_are_not_logged_at_info(capsys: pytest.CaptureFixture[str]) -> None:
    configure(logging.INFO, [TOKEN])
    logging.getLogger("httpx").info("HTTP Request: POST https://api.telegram.org/bot%s/getMe", TOKEN)
    assert capsys.readouterr().err == ""


def test_short_or_empty_secrets_are_ignored() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "value %s", ("abc",), None)
    assert RedactSecrets(["", "abc"]).filter(record)
    assert record.getMessage() == "value abc"
