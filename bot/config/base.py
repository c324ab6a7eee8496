"""Names, errors and the frozen base of every settings section."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

CONFIG_ENV = "TRADEBOT_CONFIG"


DEFAULT_CONFIG_FILE = "tradebot.toml"


ENV_PREFIX = "TRADEBOT_"


DB_FILE_NAME = "tradebot.db"


PositiveDecimal = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]


CURRENCY_PATTERN: Final = r"^[A-Z]{3}$"  # ISO 4217 code, e.g. USD


PAIR_PATTERN: Final = r"^[A-Z]{6}$"  # base then quote currency, e.g. USDINR


class SecretsUnavailable(Exception):
    """AWS Secrets Manager could not be reached now; trying again later may work."""


class ConfigError(Exception):
    """The configuration is invalid; the message names the key and the rule."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Weight = Annotated[float, Field(ge=0.0, le=1.0)]
