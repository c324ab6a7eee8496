"""The one way the bot talks to AWS: clients with short timeouts and few retries, and one-line failure reasons.

boto3 and botocore are imported inside the functions: a bot that uses no AWS service never loads the SDK.
"""

from __future__ import annotations

from typing import Any, Final

CONNECT_TIMEOUT_SECONDS: Final = 2.0
READ_TIMEOUT_SECONDS: Final = 5.0
MAX_ATTEMPTS: Final = 2  # botocore `total_max_attempts`: the first call and one retry
NO_REGION: Final = "no AWS region (set [metrics] region, AWS_REGION or AWS_DEFAULT_REGION)"


def client_config(
    read_timeout: float = READ_TIMEOUT_SECONDS,
    max_attempts: int = MAX_ATTEMPTS,
    *,
    connect_timeout: float | None = None,
    max_pool_connections: int | None = 2,
) -> Any:
    """A botocore `Config` with short timeouts and few retries (connect: at most the read timeout by default)."""
    from botocore.config import Config  # noqa: PLC0415

    pool = {} if max_pool_connections is None else {"max_pool_connections": max_pool_connections}
    return Config(
        connect_timeout=connect_timeout if connect_timeout is not None else min(CONNECT_TIMEOUT_SECONDS, read_timeout),
        read_timeout=read_timeout,
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
        **pool,
    )


def client(service: str, *, region: str | None = None, endpoint_url: str | None = None, config: Any = None) -> Any:
    """A boto3 client of `service` with the SDK's credential chain and, by default, `client_config()`."""
    import boto3  # noqa: PLC0415

    return boto3.client(
        service, region_name=region, endpoint_url=endpoint_url, config=config if config is not None else client_config()
    )


_ACCESS_DENIED: Final = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"})


_BAD_CREDENTIALS: Final = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "ExpiredToken",
        "ExpiredTokenException",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
    }
)


def error_message(exc: BaseException, service: str = "CloudWatch") -> str:
    """Return a one-line reason for an AWS failure (no traceback, at most 300 characters)."""
    from botocore import exceptions as aws  # noqa: PLC0415

    if isinstance(exc, aws.NoCredentialsError | aws.PartialCredentialsError):
        text = "no AWS credentials"
    elif isinstance(exc, aws.NoRegionError):
        text = NO_REGION
    elif isinstance(exc, aws.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "ClientError")
        message = str(error.get("Message") or "")
        if code in _ACCESS_DENIED:
            text = f"access denied: {message or code}"
        elif code in _BAD_CREDENTIALS:
            text = f"AWS rejected the credentials ({code}): {message}"
        else:
            text = f"{code}: {message}" if message else code
    elif isinstance(exc, aws.EndpointConnectionError | aws.ConnectTimeoutError | aws.ReadTimeoutError):
        text = f"cannot reach {service}: {exc}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."
