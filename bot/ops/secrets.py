"""Read the bot's tokens from AWS Secrets Manager at startup.

When TRADEBOT_SECRETS_ID names a secret, its SecretString must be a JSON object such as
`{"TELEGRAM_BOT_TOKEN": "...", "OANDA_TOKEN": "..."}`. Its values win over the environment and `.env`
(one warning names each key that was overridden); `load_settings` receives them as init values by alias.
No error message or log line ever contains a secret value.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from data import aws

SECRET_KEYS: Final = ("TELEGRAM_BOT_TOKEN", "OANDA_TOKEN")
SECRETS_ID_ENV: Final = "TRADEBOT_SECRETS_ID"
REGION_ENVS: Final = ("AWS_REGION", "AWS_DEFAULT_REGION")
CONNECT_TIMEOUT_SECONDS: Final = 3.0
READ_TIMEOUT_SECONDS: Final = 5.0
MAX_ATTEMPTS: Final = 2  # the first call and one retry: a startup must fail fast, not hang
TRANSIENT_CODES: Final = frozenset(  # AWS error codes worth a later retry (a restart by systemd)
    {"ThrottlingException", "InternalServiceError", "InternalFailure", "ServiceUnavailable", "RequestTimeout"}
)

log = logging.getLogger("tradebot.secrets")


class SecretsError(Exception):
    """The secret could not be read or is malformed; the message never contains a secret value.

    `transient` is True when trying again later may work (AWS unreachable, throttled or failing).
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def secrets_client(region: str | None = None, *, endpoint_url: str | None = None) -> Any:
    """Return a Secrets Manager client with short timeouts and few retries (botocore errors propagate)."""
    config = aws.client_config(
        READ_TIMEOUT_SECONDS, MAX_ATTEMPTS, connect_timeout=CONNECT_TIMEOUT_SECONDS, max_pool_connections=None
    )
    return aws.client("secretsmanager", region=region, endpoint_url=endpoint_url, config=config)


def _region_of(secret_id: str) -> str | None:
    """Return the region named in a secret ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)."""
    parts = secret_id.split(":")
    return (parts[3] or None) if len(parts) > 3 and parts[0] == "arn" else None


def _aws_reason(exc: Exception) -> str:
    """Return a short reason for an AWS failure: the error code and AWS's message, or the SDK's text."""
    from botocore.exceptions import ClientError, NoRegionError  # noqa: PLC0415

    if isinstance(exc, NoRegionError):
        return "no AWS region: set AWS_REGION or name the secret by its ARN"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code") or "ClientError"
        message = error.get("Message") or ""
        reason = f"{code}: {message}" if message else str(code)
    else:
        reason = f"{type(exc).__name__}: {exc}"
    return reason if len(reason) <= 300 else reason[:297] + "..."


def _is_transient(exc: Exception) -> bool:
    """Return whether an AWS failure may go away by itself (network, throttling, a service fault)."""
    from botocore.exceptions import ClientError, HTTPClientError  # noqa: PLC0415
    from botocore.exceptions import ConnectionError as AwsConnectionError  # noqa: PLC0415

    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code") in TRANSIENT_CODES
    return isinstance(exc, AwsConnectionError | HTTPClientError)


def _json_type(value: object) -> str:
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, bool):
        return "a JSON boolean"
    if isinstance(value, int | float):
        return "a JSON number"
    if isinstance(value, dict):
        return "a JSON object"
    return "JSON null" if value is None else "a JSON string"


def parse_secret(secret_id: str, text: str) -> dict[str, str]:
    """Return the known keys of a secret's JSON text with non-empty string values; SecretsError otherwise."""
    problem = ""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:  # its message has a position, never the text (but exc.doc has it)
        problem = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    if problem:  # raised outside the handler so the decode error, which holds the text, is not chained
        raise SecretsError(
            f"secret {secret_id} is not valid JSON ({problem}); "
            f'store a JSON object such as {{"TELEGRAM_BOT_TOKEN": "...", "OANDA_TOKEN": "..."}}'
        )
    if not isinstance(data, dict):
        raise SecretsError(
            f"secret {secret_id} must be a JSON object of key to string, was {_json_type(data)}; "
            f"known keys: {', '.join(SECRET_KEYS)}"
        )
    unknown = sorted(str(k) for k in data if k not in SECRET_KEYS)
    if unknown:
        log.warning(
            "secret %s: ignoring unknown key(s) %s (known: %s)", secret_id, ", ".join(unknown), ", ".join(SECRET_KEYS)
        )
    values: dict[str, str] = {}
    for key in SECRET_KEYS:
        if key not in data:
            continue
        value = data[key]
        if not isinstance(value, str):
            raise SecretsError(f"secret {secret_id}: {key} must be a string, was {_json_type(value)}")
        if value.strip():
            values[key] = value.strip()
        else:
            log.warning("secret %s: %s is empty; ignored", secret_id, key)
    return values


def fetch_secret_values(secret_id: str, region: str | None = None, client: Any = None) -> dict[str, str]:
    """Read the secret `secret_id` and return its known keys with non-empty string values."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    if not secret_id.strip():
        raise SecretsError(f"{SECRETS_ID_ENV} is empty: name the secret (its name or ARN)")
    try:
        if client is None:
            client = secrets_client(_region_of(secret_id) or region)
        response = client.get_secret_value(SecretId=secret_id)
    except (BotoCoreError, ClientError) as exc:
        raise SecretsError(
            f"could not read secret {secret_id} from AWS Secrets Manager: {_aws_reason(exc)}",
            transient=_is_transient(exc),
        ) from None
    text = response.get("SecretString")
    if not isinstance(text, str):
        raise SecretsError(
            f"secret {secret_id} has no SecretString (a binary secret is not supported); "
            f"store a JSON object with {', '.join(SECRET_KEYS)}"
        )
    return parse_secret(secret_id, text)


def _dotenv(env_file: str | Path | None) -> dict[str, str]:
    """Return the `.env` file's values (as pydantic-settings reads it), or nothing when there is none."""
    if env_file is None or not Path(env_file).is_file():
        return {}
    from dotenv import dotenv_values  # noqa: PLC0415 - a dependency of pydantic-settings

    return {k: v for k, v in dotenv_values(env_file, encoding="utf-8").items() if v}


def _by_upper_name(values: Mapping[str, str | None]) -> dict[str, str]:
    """Return the non-empty values by upper-case name (pydantic-settings ignores the case of names)."""
    return {k.upper(): v for k, v in values.items() if v}


def secret_overrides(
    environ: Mapping[str, str], client: Any = None, *, env_file: str | Path | None = ".env"
) -> dict[str, str]:
    """Return the secret's values by setting alias when TRADEBOT_SECRETS_ID is set (environment, then `.env`).

    Without TRADEBOT_SECRETS_ID it returns {} and calls nothing. A key also set in the environment or
    `.env` is overridden by the secret, with one warning naming the keys (never the values).
    """
    env, dotenv = _by_upper_name(environ), _by_upper_name(_dotenv(env_file))
    secret_id = (env.get(SECRETS_ID_ENV) or dotenv.get(SECRETS_ID_ENV) or "").strip()
    if not secret_id:
        return {}
    region = next((v for n in REGION_ENVS for v in (env.get(n), dotenv.get(n)) if v), None)
    values = fetch_secret_values(secret_id, region, client)
    overridden = [k for k in values if env.get(k) or dotenv.get(k)]
    if overridden:
        log.warning(
            "secret %s overrides %s set in the environment or .env (the secret's value is used)",
            secret_id,
            ", ".join(overridden),
        )
    return values
