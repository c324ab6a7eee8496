"""Secrets never reach the logs: not in messages, arguments, tracebacks (chained ones too) or JSON lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from bot.config import LogFormat
from bot.ops.logs import (
    RUN_ID,
    SIGNAL_ID,
    RedactSecrets,
    configure,
    current_redactor,
    log_context,
    redacted_output,
)
from data.redaction import REDACTED, Redactor

TOKEN = "123456789:AAHsecretTokenValue_abcdefghijk"
OANDA = "0123456789abcdef0123456789abcdef-fedcba9876543210fedcba9876543210"
UNCONFIGURED = "7654321:AAE_unconfiguredBotToken-abcdefghijklmno"
log = logging.getLogger("tradebot.test")


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    """Leave the root logger as the test found it (configure installs a handler on a captured stderr)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def json_lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def fail_with_token() -> None:
    raise RuntimeError(f"request to /bot{TOKEN}/sendMessage failed")


def test_messages_arguments_and_tracebacks_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure(logging.INFO, [TOKEN])
    log.info("calling https://api.telegram.org/bot%s/getUpdates", TOKEN)
    try:
        fail_with_token()
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
    assert Redactor(["", "abc", "1234567"]).redact("abc 1234567 abcdef") == "abc 1234567 abcdef"
    assert Redactor(["", "abc"]).secret_count == 0


@pytest.mark.parametrize("fmt", [LogFormat.TEXT, LogFormat.JSON])
def test_a_chained_cause_and_its_context_are_redacted(capsys: pytest.CaptureFixture[str], fmt: LogFormat) -> None:
    configure(logging.INFO, [TOKEN], fmt)
    try:
        try:
            fail_with_token()
        except RuntimeError as exc:
            raise ValueError("the send failed") from exc
    except ValueError:
        log.exception("handler failed")
    err = capsys.readouterr().err
    assert TOKEN not in err
    text = json_lines(err)[0]["exc"] if fmt is LogFormat.JSON else err
    assert "The above exception was the direct cause of the following exception" in text
    assert f"RuntimeError: request to /bot{REDACTED}/sendMessage failed" in text
    assert "ValueError: the send failed" in text


def test_implicitly_chained_exceptions_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure(logging.INFO, [OANDA])
    try:
        try:
            raise ConnectionError(f"Authorization: Bearer {OANDA}")
        except ConnectionError:
            raise RuntimeError(f"retry with {OANDA} failed")  # noqa: B904 - the implicit chain is the point
    except RuntimeError:
        log.exception("order failed")
    err = capsys.readouterr().err
    assert OANDA not in err
    assert "During handling of the above exception, another exception occurred" in err
    assert f"Authorization: Bearer {REDACTED}" in err and f"retry with {REDACTED} failed" in err


def test_arguments_of_every_kind_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure(logging.INFO, [OANDA])
    log.warning("headers %r token %s n=%d", {"Authorization": f"Bearer {OANDA}"}, OANDA, 3)
    log.warning({"token": OANDA})  # a non-string message
    err = capsys.readouterr().err
    assert OANDA not in err
    assert "n=3" in err and err.count(REDACTED) == 3


def test_a_bad_format_call_is_kept_redacted_not_raised() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "two %s %s", (OANDA,), None)
    assert RedactSecrets([OANDA]).filter(record)
    assert record.getMessage() == f"'two %s %s' % ('{REDACTED}',)"


def test_stack_info_is_redacted() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None, sinfo=f"Stack:\n  call({TOKEN!r})")
    assert RedactSecrets([TOKEN]).filter(record)
    assert record.stack_info is not None and TOKEN not in record.stack_info and REDACTED in record.stack_info


def test_unconfigured_bot_tokens_and_bearer_credentials_are_masked(capsys: pytest.CaptureFixture[str]) -> None:
    configure(logging.INFO)
    log.info("GET https://api.telegram.org/bot%s/getMe", UNCONFIGURED)
    log.info("sent headers {'authorization': 'bearer abc.DEF-123_x~+/=='}; retrying")
    log.info("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig")
    err = capsys.readouterr().err
    assert UNCONFIGURED not in err and "abc.DEF" not in err and "eyJhbGci" not in err
    assert f"/bot{REDACTED}/getMe" in err
    assert f"'bearer {REDACTED}'}}; retrying" in err
    assert f"Authorization: Bearer {REDACTED}" in err


def test_the_redactor_masks_encoded_forms_and_is_immutable() -> None:
    secret = "p&ss<word>:with/slash"
    redactor = Redactor([secret, TOKEN])
    assert redactor.redact(f"a {secret} b p&amp;ss&lt;word&gt;:with/slash c p%26ss%3Cword%3E%3Awith%2Fslash") == (
        f"a {REDACTED} b {REDACTED} c {REDACTED}"
    )
    assert redactor.redact("nothing here, 12345:short") == "nothing here, 12345:short"
    assert secret not in repr(redactor) and TOKEN not in repr(redactor)
    assert redactor == Redactor([TOKEN, secret, "short"]) and redactor.secret_count == 2
    assert Redactor([TOKEN]).with_secrets([OANDA]).redact(f"{TOKEN} {OANDA}") == f"{REDACTED} {REDACTED}"
    with pytest.raises(AttributeError, match="immutable"):
        redactor._secrets = ()


def test_configure_returns_the_redactor_in_use_and_replaces_its_handler(capsys: pytest.CaptureFixture[str]) -> None:
    configure(logging.WARNING)
    redactor = configure(logging.INFO, [OANDA], LogFormat.JSON)
    assert current_redactor() is redactor and redactor.redact(OANDA) == REDACTED
    log.info("once")
    assert len(json_lines(capsys.readouterr().err)) == 1
    with pytest.raises(ValueError, match="unknown log format"):
        configure(logging.INFO, fmt="xml")


def test_configure_leaves_no_handler_that_would_not_redact() -> None:
    stray = io.StringIO()
    logging.getLogger().addHandler(logging.StreamHandler(stray))
    configure(logging.INFO, [OANDA])
    configure(logging.INFO, [OANDA])
    assert [type(h).__name__ for h in logging.getLogger().handlers] == ["_TradebotHandler"]
    log.warning("token %s", OANDA)
    assert stray.getvalue() == ""


def test_without_configure_the_current_redactor_still_masks_token_shapes() -> None:
    for handler in [h for h in logging.getLogger().handlers if type(h).__name__ == "_TradebotHandler"]:
        logging.getLogger().removeHandler(handler)
    assert current_redactor().redact(UNCONFIGURED) == REDACTED


def test_json_lines_parse_and_carry_the_fields(capsys: pytest.CaptureFixture[str]) -> None:
    configure(logging.INFO, [TOKEN], LogFormat.JSON)
    log.info('line with "quotes", a newline\nand %s', TOKEN)
    try:
        fail_with_token()
    except RuntimeError:
        log.exception("send failed")
    err = capsys.readouterr().err
    assert TOKEN not in err
    first, second = json_lines(err)
    assert set(first) == {"ts", "level", "logger", "msg"}
    assert first["level"] == "INFO" and first["logger"] == "tradebot.test"
    assert first["msg"] == f'line with "quotes", a newline\nand {REDACTED}'
    stamp = datetime.fromisoformat(first["ts"])
    assert stamp.utcoffset() == timedelta(0)
    assert second["level"] == "ERROR" and second["msg"] == "send failed"
    assert (
        second["exc"].startswith("Traceback")
        and f"RuntimeError: request to /bot{REDACTED}/sendMessage" in (second["exc"])
    )


def test_json_lines_carry_the_ids_inside_log_context_only(capsys: pytest.CaptureFixture[str]) -> None:
    configure(logging.INFO, fmt=LogFormat.JSON)
    log.info("before")
    with log_context(run_id=12):
        log.info("in the run")
        with log_context(signal_id="abcd"):
            log.info("on a signal")
        log.info("back in the run")
    log.info("after")
    lines = json_lines(capsys.readouterr().err)
    assert [(x["msg"], x.get("run_id"), x.get("signal_id")) for x in lines] == [
        ("before", None, None),
        ("in the run", 12, None),
        ("on a signal", 12, "abcd"),
        ("back in the run", 12, None),
        ("after", None, None),
    ]
    assert "run_id" not in lines[0] and "signal_id" not in lines[-1]
    assert RUN_ID.get() is None and SIGNAL_ID.get() is None


def test_the_text_format_shows_the_ids_when_set(capsys: pytest.CaptureFixture[str]) -> None:
    configure(logging.INFO)
    with log_context(run_id=12, signal_id="abcd"):
        log.info("offered")
    log.info("idle")
    first, second = capsys.readouterr().err.splitlines()
    assert first.endswith("INFO tradebot.test [run 12 sig abcd]: offered")
    assert second.endswith("INFO tradebot.test: idle")


def test_the_ids_are_reset_when_the_block_raises() -> None:
    with pytest.raises(KeyError), log_context(run_id=3, signal_id="x"):
        raise KeyError("boom")
    assert RUN_ID.get() is None and SIGNAL_ID.get() is None


async def test_tasks_created_inside_log_context_inherit_the_ids(capsys: pytest.CaptureFixture[str]) -> None:
    configure(logging.INFO, fmt=LogFormat.JSON)

    async def work(name: str) -> None:
        await asyncio.sleep(0)
        log.info(name)

    with log_context(run_id=7, signal_id="sig-1"):
        inside = asyncio.create_task(work("inside"))
    outside = asyncio.create_task(work("outside"))
    await asyncio.gather(inside, outside)
    lines = {x["msg"]: x for x in json_lines(capsys.readouterr().err)}
    assert (lines["inside"]["run_id"], lines["inside"]["signal_id"]) == (7, "sig-1")
    assert "run_id" not in lines["outside"] and "signal_id" not in lines["outside"]


def test_an_error_without_a_traceback_object_is_still_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure(logging.INFO, [TOKEN], LogFormat.JSON)
    error = RuntimeError(f"token {TOKEN}")
    log.error("handler failed", exc_info=error)
    [line] = json_lines(capsys.readouterr().err)
    assert TOKEN not in line["exc"] and f"RuntimeError: token {REDACTED}" in line["exc"]
    assert sys.exc_info() == (None, None, None)


def test_everything_printed_inside_redacted_output_is_masked_and_the_streams_come_back(
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = sys.stdout, sys.stderr
    with redacted_output(Redactor([OANDA])):
        print(f"tradebot run: failed: InvalidToken: The token `{TOKEN}` was rejected by the server.", file=sys.stderr)
        print(f"broker said: bad key {OANDA}")
        sys.stderr.writelines([f"{UNCONFIGURED}\n"])
    assert (sys.stdout, sys.stderr) == before
    out, err = capsys.readouterr()
    assert out == f"broker said: bad key {REDACTED}\n"
    assert (
        err == f"tradebot run: failed: InvalidToken: The token `{REDACTED}` was rejected by the server.\n{REDACTED}\n"
    )
