"""Typed, frozen settings loaded once: environment, then `.env`, then the TOML config file, then defaults.

The config file is `TRADEBOT_CONFIG` (default `tradebot.toml` in the working directory; when that default
file is absent the built-in defaults apply). Any unknown key, wrong type or impossible value raises
`ConfigError` whose message names the key and the rule; the CLI prints it and exits with code 2.

Schema and loading only: `base` (names, errors), the sections (`market`, `trading`, `operations`), the model
and its loading (`settings`), and `file` (writing adopted parameters into the config file).
"""

from __future__ import annotations

from bot.config.base import (
    CONFIG_ENV,
    CURRENCY_PATTERN,
    DB_FILE_NAME,
    DEFAULT_CONFIG_FILE,
    ENV_PREFIX,
    PAIR_PATTERN,
    ConfigError,
    PositiveDecimal,
    SecretsUnavailable,
    Weight,
)
from bot.config.market import (
    BacktestSettings,
    CalendarConfig,
    GateConfig,
    InstrumentConfig,
    PairConfig,
    QualityConfig,
    ScanConfig,
    StrategyConfig,
    ValidationConfig,
    strategy_params,
)
from bot.config.operations import (
    AlarmSettings,
    BackupSettings,
    DemoteAction,
    DriftSettings,
    HealthSettings,
    LearningSettings,
    LogFormat,
    LoggingSettings,
    MetricsSettings,
    SummarySettings,
)
from bot.config.settings import OTHER_ENV, Settings, config_path, env_names, load_settings, unknown_env
from bot.config.trading import (
    LIVE_CONFIRMATION,
    BotConfig,
    BrokerConfig,
    BrokerKind,
    CostsConfig,
    ExposureConfig,
    NewsConfig,
    ProtectionsConfig,
    ScheduleConfig,
)

__all__ = [
    "CONFIG_ENV",
    "CURRENCY_PATTERN",
    "DB_FILE_NAME",
    "DEFAULT_CONFIG_FILE",
    "ENV_PREFIX",
    "LIVE_CONFIRMATION",
    "OTHER_ENV",
    "PAIR_PATTERN",
    "AlarmSettings",
    "BacktestSettings",
    "BackupSettings",
    "BotConfig",
    "BrokerConfig",
    "BrokerKind",
    "CalendarConfig",
    "ConfigError",
    "CostsConfig",
    "DemoteAction",
    "DriftSettings",
    "ExposureConfig",
    "GateConfig",
    "HealthSettings",
    "InstrumentConfig",
    "LearningSettings",
    "LogFormat",
    "LoggingSettings",
    "MetricsSettings",
    "NewsConfig",
    "PairConfig",
    "PositiveDecimal",
    "ProtectionsConfig",
    "QualityConfig",
    "ScanConfig",
    "ScheduleConfig",
    "SecretsUnavailable",
    "Settings",
    "StrategyConfig",
    "SummarySettings",
    "ValidationConfig",
    "Weight",
    "config_path",
    "env_names",
    "load_settings",
    "strategy_params",
    "unknown_env",
]
