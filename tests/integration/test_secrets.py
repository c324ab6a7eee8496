"""Tokens from AWS Secrets Manager: real boto3 clients against moto, offline, never a secret in a message."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from bot.config import ConfigError, load_settings
from bot.ops.secrets import (
    CONNECT_TIMEOUT_SECONDS,
    MAX_ATTEMPTS,
    READ_TIMEOUT_SECONDS,
    SECRETS_ID_ENV,
    SecretsError,
    fetch_secret_values,
    parse_secret,
    secret_overrides,
    secrets_client,
)
from tests.fakes.aws import isolate_aws

REGION = "eu-west-1"
SECRET = "tradebot/prod"
TELEGRAM = "987654321:AAFromSecretsManager_abcdefghijklmnop"
OANDA = "0123456789abcdef0123456789abcdef-fedcba9876543210fedcba9876543210"
ENV_TELEGRAM = "111111111:AAFromTheEnvironment_abcdefghijklmnopq"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in an empty directory with fake AWS credentials and no inherited tokens, config or AWS files."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("TRADEBOT_") or name in ("TELEGRAM_BOT_TOKEN", "OANDA_TOKEN", "STATE_DIRECTORY"):
            monkeypatch.delenv(name)
    isolate_aws(monkeypatch, tmp_path, fake_keys=True)


@pytest.fixture
def aws() -> Iterator[Any]:
    """A moto-backed Secrets Manager, as a real boto3 client in REGION."""
    with mock_aws():
        yield boto3.client("secretsmanager", region_name=REGION)


def store(client: Any, value: object, name: str = SECRET) -> str:
    """Create the secret with this JSON value (or this exact string) and return its ARN."""
    text = value if isinstance(value, str) else json.dumps(value)
    return str(client.create_secret(Name=name, SecretString=text)["ARN"])


def warnings(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


class NoCallsClient:
    """A Secrets Manager client that must not be called."""

    def get_secret_value(self, **kwargs: Any) -> dict[str, Any]:
        raise AssertionError(f"unexpected AWS call: {kwargs}")


def test_a_json_secret_with_both_tokens_gives_their_values(aws: Any) -> None:
    store(aws, {"TELEGRAM_BOT_TOKEN": TELEGRAM, "OANDA_TOKEN": OANDA})
    assert fetch_secret_values(SECRET, REGION) == {"TELEGRAM_BOT_TOKEN": TELEGRAM, "OANDA_TOKEN": OANDA}


def test_the_region_comes_from_the_secret_arn_when_none_is_configured(aws: Any) -> None:
    arn = store(aws, {"OANDA_TOKEN": OANDA})
    assert fetch_secret_values(arn) == {"OANDA_TOKEN": OANDA}


def test_the_given_client_is_used(aws: Any) -> None:
    store(aws, {"OANDA_TOKEN": f"  {OANDA}\n", "TELEGRAM_BOT_TOKEN": ""})
    assert fetch_secret_values(SECRET, client=aws) == {"OANDA_TOKEN": OANDA}  # trimmed; the empty one dropped


def test_unknown_keys_are_warned_about_by_name_only(aws: Any, caplog: pytest.LogCaptureFixture) -> None:
    store(aws, {"TELEGRAM_BOT_TOKEN": TELEGRAM, "DB_PASSWORD": "hunter2-very-secret", "api_key": "k-123456789"})
    with caplog.at_level(logging.WARNING, logger="tradebot.secrets"):
        assert fetch_secret_values(SECRET, REGION) == {"TELEGRAM_BOT_TOKEN": TELEGRAM}
    text = warnings(caplog)
    assert len([r for r in caplog.records if "unknown key" in r.getMessage()]) == 1
    assert "DB_PASSWORD" in text and "api_key" in text
    for value in ("hunter2-very-secret", "k-123456789", TELEGRAM):
        assert value not in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"TELEGRAM_BOT_TOKEN={TELEGRAM}", "is not valid JSON"),
        (f'{{"TELEGRAM_BOT_TOKEN": "{TELEGRAM}"', "is not valid JSON"),
        (json.dumps([TELEGRAM, OANDA]), "must be a JSON object of key to string, was a JSON array"),
        (json.dumps(TELEGRAM), "must be a JSON object of key to string, was a JSON string"),
        (json.dumps({"OANDA_TOKEN": 12345678901234567890}), "OANDA_TOKEN must be a string, was a JSON number"),
        (json.dumps({"TELEGRAM_BOT_TOKEN": [TELEGRAM]}), "TELEGRAM_BOT_TOKEN must be a string, was a JSON array"),
    ],
)
def test_a_malformed_secret_is_refused_without_showing_its_text(aws: Any, text: str, expected: str) -> None:
    store(aws, text)
    with pytest.raises(SecretsError, match=expected) as caught:
        fetch_secret_values(SECRET, REGION)
    message = str(caught.value)
    assert SECRET in message
    for value in (TELEGRAM, OANDA, "12345678901234567890", text):
        assert value not in message
    assert caught.value.__cause__ is None and caught.value.__context__ is None  # no decode error holding the text


def test_a_missing_secret_names_the_id_and_the_reason(aws: Any) -> None:
    with pytest.raises(SecretsError) as caught:
        fetch_secret_values("tradebot/absent", REGION)
    message = str(caught.value)
    assert message.startswith("could not read secret tradebot/absent from AWS Secrets Manager: ")
    assert "ResourceNotFoundException" in message
    assert not caught.value.transient  # systemd should not retry what only a fix can cure


def test_no_credentials_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(
        SecretsError, match=r"could not read secret tradebot/prod .*Unable to locate credentials"
    ) as caught:
        fetch_secret_values(SECRET, REGION)
    assert not caught.value.transient


def test_no_region_is_a_clear_error() -> None:
    with pytest.raises(SecretsError, match=r"could not read secret tradebot/prod .*no AWS region: set AWS_REGION"):
        fetch_secret_values(SECRET)


def test_an_unreachable_endpoint_fails_fast_with_a_clear_error() -> None:
    client = secrets_client(REGION, endpoint_url="http://127.0.0.1:9")  # nothing listens on the discard port
    started = time.monotonic()
    with pytest.raises(SecretsError, match=r"could not read secret tradebot/prod .*EndpointConnectionError") as caught:
        fetch_secret_values(SECRET, client=client)
    assert time.monotonic() - started < 5
    assert caught.value.transient  # worth a restart: the network may come back


def test_the_client_has_short_timeouts_and_few_retries() -> None:
    config = secrets_client(REGION).meta.config
    assert config.connect_timeout == CONNECT_TIMEOUT_SECONDS
    assert config.read_timeout == READ_TIMEOUT_SECONDS
    assert config.retries == {"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"}


def test_without_a_secret_id_there_are_no_overrides_and_no_aws_call() -> None:
    assert secret_overrides({}, NoCallsClient()) == {}
    assert secret_overrides({SECRETS_ID_ENV: "  "}, NoCallsClient()) == {}


def test_overriding_the_environment_is_warned_by_key_name_only(aws: Any, caplog: pytest.LogCaptureFixture) -> None:
    store(aws, {"TELEGRAM_BOT_TOKEN": TELEGRAM, "OANDA_TOKEN": OANDA})
    environ = {SECRETS_ID_ENV: SECRET, "AWS_REGION": REGION, "TELEGRAM_BOT_TOKEN": ENV_TELEGRAM}
    with caplog.at_level(logging.WARNING, logger="tradebot.secrets"):
        assert secret_overrides(environ) == {"TELEGRAM_BOT_TOKEN": TELEGRAM, "OANDA_TOKEN": OANDA}
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "TELEGRAM_BOT_TOKEN" in record.getMessage() and "OANDA_TOKEN" not in record.getMessage()
    for value in (TELEGRAM, OANDA, ENV_TELEGRAM):
        assert value not in record.getMessage()


def test_the_secret_id_and_region_can_come_from_dotenv(
    aws: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store(aws, {"OANDA_TOKEN": OANDA})
    (tmp_path / ".env").write_text(
        f"tradebot_secrets_id={SECRET}\nAWS_REGION={REGION}\noanda_token=from-dotenv-123456\n", encoding="utf-8"
    )
    with caplog.at_level(logging.WARNING, logger="tradebot.secrets"):
        assert secret_overrides({}) == {"OANDA_TOKEN": OANDA}
    assert "OANDA_TOKEN" in warnings(caplog) and "from-dotenv-123456" not in warnings(caplog)
    assert secret_overrides({}, env_file=None) == {}


def test_load_settings_with_the_overrides_validates_an_oanda_broker_and_prefers_the_secret(
    aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tradebot.toml").write_text(
        '[broker]\nkind = "oanda"\noanda_account_id = "101-004-1234567-001"\n', encoding="utf-8"
    )
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", ENV_TELEGRAM)
    with pytest.raises(ConfigError, match="OANDA_TOKEN"):
        load_settings()  # the token is only in Secrets Manager
    store(aws, {"TELEGRAM_BOT_TOKEN": TELEGRAM, "OANDA_TOKEN": OANDA})
    monkeypatch.setenv(SECRETS_ID_ENV, SECRET)
    monkeypatch.setenv("AWS_REGION", REGION)
    settings = load_settings(None, **secret_overrides(os.environ))
    assert settings.secrets_id == SECRET
    assert settings.oanda_token is not None and settings.oanda_token.get_secret_value() == OANDA
    assert settings.telegram_bot_token is not None and settings.telegram_bot_token.get_secret_value() == TELEGRAM


def test_parse_secret_keeps_only_known_keys() -> None:
    assert parse_secret("s", json.dumps({"OANDA_TOKEN": OANDA})) == {"OANDA_TOKEN": OANDA}
    assert parse_secret("s", "{}") == {}
