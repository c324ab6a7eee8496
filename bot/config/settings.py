"""The settings model and how it is loaded (file, .env, environment, secrets), with the environment check."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bot.config.base import CONFIG_ENV, DB_FILE_NAME, DEFAULT_CONFIG_FILE, ENV_PREFIX, ConfigError, SecretsUnavailable
from bot.config.market import (
    BacktestSettings,
    CalendarConfig,
    InstrumentConfig,
    QualityConfig,
    ScanConfig,
    StrategyConfig,
    ValidationConfig,
    strategy_params,
)
from bot.config.operations import (
    AlarmSettings,
    BackupSettings,
    DriftSettings,
    HealthSettings,
    LearningSettings,
    LoggingSettings,
    MetricsSettings,
    SummarySettings,
    WebSettings,
)
from bot.config.trading import BotConfig, BrokerConfig, BrokerKind, NseBroker, WeeklyZonesConfig
from bot.ops.secrets import SecretsError, secret_overrides
from data.market.calendars import market_calendar
from data.market.sources import parse_source
from engine.calendars import BUILTIN_CALENDARS, SessionCalendar
from engine.catalog import DEFAULT_WATCHLIST
from engine.domain import Instrument
from engine.pipeline import EngineConfig, ValidationRules
from engine.quality import Component, QualityScorer, QualityWeights
from engine.strategy import REGISTRY, Strategy, strategy_names


def _user_ids(value: Any) -> Any:
    """Parse TELEGRAM_ALLOWED_USERS: comma-separated numeric ids."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        bad = [p for p in parts if not p.lstrip("-").isdigit()]
        if bad:
            raise ValueError(f"must be comma-separated numeric Telegram user ids, got {', '.join(bad)}")
        return tuple(int(p) for p in parts)
    return value


def _default_db_path() -> Path:
    """Under systemd's StateDirectory when set, else `var/` in the working directory."""
    state = os.environ.get("STATE_DIRECTORY")
    base = Path(state.split(":")[0]) if state else Path("var")
    return base / DB_FILE_NAME


class _OwnDotEnv(DotEnvSettingsSource):
    """`.env` reader that leaves other programs' keys alone but still rejects unknown TRADEBOT_ keys."""

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        names = {n.lower() for n in self.settings_cls.model_fields}
        names |= {
            f.validation_alias.lower()
            for f in self.settings_cls.model_fields.values()
            if isinstance(f.validation_alias, str)
        }
        prefix = ENV_PREFIX.lower()
        return {k: v for k, v in data.items() if k.lower() in names or k.lower().startswith(prefix)}


def _default_strategies() -> dict[str, StrategyConfig]:
    return {name: StrategyConfig() for name in strategy_names()}


class Settings(BaseSettings):
    """Everything tradebot is configured with; built once at startup and passed down."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )
    toml_path: ClassVar[Path | None] = None

    data_source: str = "yfinance"
    db_path: Path = Field(default_factory=_default_db_path)
    # How long a write waits for another process's lock before it fails (and writes then pause as long).
    db_busy_timeout_ms: Annotated[int, Field(ge=100, le=600_000)] = 5_000
    cache_dir: Path | None = None
    watchlist: tuple[InstrumentConfig, ...] = Field(
        default_factory=lambda: tuple(InstrumentConfig.from_instrument(i) for i in DEFAULT_WATCHLIST)
    )
    strategies: dict[str, StrategyConfig] = Field(default_factory=_default_strategies)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    scan: ScanConfig = Field(default_factory=ScanConfig)
    bot: BotConfig = Field(default_factory=BotConfig)
    backtest: BacktestSettings = Field(default_factory=BacktestSettings)
    broker: BrokerConfig = Field(default_factory=BrokerConfig)
    weekly_zones: WeeklyZonesConfig = Field(default_factory=WeeklyZonesConfig)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    learning: LearningSettings = Field(default_factory=LearningSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    alarms: AlarmSettings = Field(default_factory=AlarmSettings)
    backup: BackupSettings = Field(default_factory=BackupSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    summary: SummarySettings = Field(default_factory=SummarySettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    secrets_id: str | None = None  # TRADEBOT_SECRETS_ID: an AWS Secrets Manager secret read at startup
    calendars: dict[str, CalendarConfig] = Field(default_factory=dict)
    clock_start: datetime | None = None
    clock_speed: Annotated[float, Field(gt=0, le=100_000)] = 1.0

    telegram_bot_token: SecretStr | None = Field(default=None, validation_alias="TELEGRAM_BOT_TOKEN")
    telegram_allowed_users: Annotated[tuple[int, ...], NoDecode] = Field(
        default=(), validation_alias="TELEGRAM_ALLOWED_USERS"
    )
    telegram_chat_id: int | None = Field(default=None, validation_alias="TELEGRAM_CHAT_ID")
    # Who may close positions and move their stops (default: the first allowed user); must be an allowed user.
    telegram_owner_id: int | None = Field(default=None, validation_alias="TELEGRAM_OWNER_ID")
    telegram_api_base_url: str | None = Field(default=None, validation_alias="TELEGRAM_API_BASE_URL")
    oanda_token: SecretStr | None = Field(default=None, validation_alias="OANDA_TOKEN")
    kite_api_secret: SecretStr | None = Field(default=None, validation_alias="KITE_API_SECRET")

    def secret_values(self) -> list[str]:
        """Every secret value in the settings: masked wherever text leaves the process (logs, stderr, chat, DB)."""
        held = (self.telegram_bot_token, self.oanda_token, self.kite_api_secret)
        return [s.get_secret_value() for s in held if s is not None]

    @field_validator("strategies", mode="before")
    @classmethod
    def _over_default_strategies(cls, value: Any) -> Any:
        """Strategies named in config override the built-in ones one by one; the others keep running.

        Naming one strategy (to set its parameters) never turns the others off; `enabled = false` does.
        """
        if isinstance(value, dict):
            return {**{name: {} for name in strategy_names()}, **value}
        return value

    @field_validator("telegram_allowed_users", mode="before")
    @classmethod
    def _allowed_users(cls, value: Any) -> Any:
        return _user_ids(value)

    @field_validator("clock_start")
    @classmethod
    def _utc_start(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must name its timezone, e.g. 2025-06-09T03:45:00Z")
        return None if value is None else value.astimezone(UTC)

    @field_validator("data_source")
    @classmethod
    def _data_source(cls, value: str) -> str:
        parse_source(value)  # a typo or a folder that is not there stops the command before it starts
        return value.strip()

    @model_validator(mode="after")
    def _broker_secret(self) -> Settings:
        if self.broker.kind is BrokerKind.OANDA and (
            self.oanda_token is None or not self.oanda_token.get_secret_value()
        ):
            raise ValueError("broker kind 'oanda' needs the OANDA_TOKEN environment variable")
        if self.broker.nse is NseBroker.KITE and (
            self.kite_api_secret is None or not self.kite_api_secret.get_secret_value()
        ):
            raise ValueError("broker nse = 'kite' needs the KITE_API_SECRET environment variable")
        return self

    @model_validator(mode="after")
    def _owner_is_allowed(self) -> Settings:
        owner = self.telegram_owner_id
        if owner is not None and owner not in self.telegram_allowed_users:
            raise ValueError(f"TELEGRAM_OWNER_ID {owner} must be one of TELEGRAM_ALLOWED_USERS")
        return self

    @model_validator(mode="after")
    def _zones_symbol(self) -> Settings:
        if not self.weekly_zones.enabled:
            return self
        match = [w for w in self.watchlist if w.symbol == self.weekly_zones.symbol]
        if not match:
            raise ValueError(f"weekly_zones.symbol {self.weekly_zones.symbol} is not in the watchlist")
        if match[0].calendar != "XNSE":
            raise ValueError(f"weekly_zones.symbol {self.weekly_zones.symbol} must trade on the XNSE calendar")
        return self

    def fingerprint(self) -> str:
        """SHA-256 of the effective settings with every secret left out: equal hashes, the same configuration."""
        secrets = {"telegram_bot_token", "oanda_token", "kite_api_secret"}
        shown = self.model_dump(mode="json", exclude=secrets)
        return hashlib.sha256(json.dumps(shown, sort_keys=True, default=str).encode()).hexdigest()

    @property
    def owner(self) -> int | None:
        """The user who may act on open positions: TELEGRAM_OWNER_ID, else the first allowed user."""
        if self.telegram_owner_id is not None:
            return self.telegram_owner_id
        return self.telegram_allowed_users[0] if self.telegram_allowed_users else None

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        symbols = [i.symbol for i in self.watchlist]
        duplicates = sorted({s for s in symbols if symbols.count(s) > 1})
        if duplicates:
            raise ValueError(f"watchlist: symbol(s) listed twice: {', '.join(duplicates)}")
        known = set(strategy_names())
        for name, config in self.strategies.items():
            if name not in known:
                raise ValueError(f"strategies.{name}: unknown strategy; known: {', '.join(sorted(known))}")
            missing = sorted(set(config.symbols or ()) - set(symbols))
            if missing:
                raise ValueError(f"strategies.{name}.symbols: not in the watchlist: {', '.join(missing)}")
            strategy_params(name, config.params)
            for symbol in config.pairs:
                if symbol not in symbols:
                    raise ValueError(f"strategies.{name}.pairs.{symbol}: not in the watchlist")
                try:
                    strategy_params(name, config.params_for(symbol))
                except ValueError as exc:
                    raise ValueError(f"{exc} (strategies.{name}.pairs.{symbol})") from None
        for name in self.calendars:
            if name not in BUILTIN_CALENDARS:
                raise ValueError(
                    f"calendars.{name}: unknown market calendar; known: {', '.join(sorted(BUILTIN_CALENDARS))}"
                )
        for schedule in self.bot.schedules:
            missing = sorted(set(schedule.symbols or ()) - set(symbols))
            if missing:
                raise ValueError(f"bot.schedules.{schedule.name}.symbols: not in the watchlist: {', '.join(missing)}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        del file_secret_settings, dotenv_settings
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, _OwnDotEnv(settings_cls)]
        if cls.toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls.toml_path))
        return tuple(sources)

    @model_validator(mode="after")
    def _calendar_overrides(self) -> Settings:
        for name, config in self.calendars.items():
            if name in BUILTIN_CALENDARS:
                config.check(name)
        return self

    @property
    def cache_path(self) -> Path:
        """Where downloaded bars, news and built calendars are kept: `cache_dir`, or `cache` beside the database."""
        return self.cache_dir or self.db_path.parent / "cache"

    def calendar(self, name: str) -> SessionCalendar:
        """The market calendar `name` (exchange holidays from exchange_calendars) with its configured overrides."""
        base = market_calendar(name, self.cache_path)
        extra = self.calendars.get(name)
        return extra.apply(base) if extra is not None else base

    @property
    def instruments(self) -> tuple[Instrument, ...]:
        return tuple(i.to_instrument() for i in self.watchlist)

    def engine_config(self) -> EngineConfig:
        v = self.validation
        rules = ValidationRules(v.min_stop_ticks, v.min_stop_spreads, v.max_setup_age_bars)
        weights = QualityWeights({Component(k): w for k, w in self.quality.weights.items()})
        return EngineConfig(rules, QualityScorer(weights), self.quality.min_score)

    def build_strategies(self) -> list[tuple[Strategy[Any], frozenset[str] | None]]:
        """Enabled strategies with their strategy-wide parameters and the symbols each is restricted to (None: all
        it applies to). What trades on a symbol is `traded_pairs`' (pair parameters included)."""
        built: list[tuple[Strategy[Any], frozenset[str] | None]] = []
        for name, config in sorted(self.strategies.items()):
            if config.enabled:
                allowed = frozenset(config.symbols) if config.symbols is not None else None
                built.append((REGISTRY[name](strategy_params(name, config.params)), allowed))
        return built

    def traded_pairs(self) -> list[tuple[Strategy[Any], Instrument]]:
        """Every enabled strategy on every watchlist instrument it applies to (and is allowed on), each with the
        exact parameters it trades there, in watchlist order."""
        pairs: list[tuple[Strategy[Any], Instrument]] = []
        for instrument in self.instruments:
            for shared, allowed in self.build_strategies():
                if not shared.applies_to(instrument) or (allowed is not None and instrument.symbol not in allowed):
                    continue
                config = self.strategies[shared.name]
                own = instrument.symbol in config.pairs
                params = strategy_params(shared.name, config.params_for(instrument.symbol)) if own else None
                pairs.append((REGISTRY[shared.name](params) if own else shared, instrument))
        return pairs

    def tuned_until(self, strategy: str, symbol: str) -> datetime | None:
        """Until when the parameters `strategy` trades on `symbol` were tuned (None: not tuned on data)."""
        config = self.strategies.get(strategy)
        return None if config is None else config.tuned_until_for(symbol)


_SECRET_WORDS = ("token", "secret", "password", "key", "credential")


def _describe(error: Mapping[str, Any]) -> str:
    parts = [str(p) for p in error["loc"]]
    where = ".".join(parts)
    if error["type"] == "extra_forbidden":
        msg, given = "unknown key (check the spelling against README's configuration table)", None
    else:
        msg, given = str(error["msg"]).removeprefix("Value error, "), error.get("input")
    shown = ""
    if any(word in where.lower() for word in _SECRET_WORDS):
        shown = " (value hidden)" if given is not None else ""
    elif not isinstance(given, dict | list | tuple) and given is not None and repr(given) not in msg:
        shown = f" (got {given!r})"
    if not parts:
        return f"{msg}{shown}"
    if parts[0].upper().startswith(ENV_PREFIX):  # an unknown key from `.env` arrives under its raw name
        return f"{parts[0].upper()}: {msg}{shown}"
    hint = f" [env {ENV_PREFIX}{parts[0].upper()}]" if len(parts) == 1 and not parts[0].isupper() else ""
    return f"{where}{hint}: {msg}{shown}"


# TRADEBOT_ variables read outside the settings model.
OTHER_ENV: Final = frozenset({CONFIG_ENV})


def env_names(model: type[BaseModel] | None = None, prefix: str = "") -> list[str]:
    """Every environment name a setting can be given by (`BOT__RISK_PER_TRADE`, after the prefix); `*` for a free
    key. `model` None: the settings themselves."""
    model = Settings if model is None else model
    names: list[str] = []
    for field, info in model.model_fields.items():
        if isinstance(info.validation_alias, str):  # read under its own name (TELEGRAM_BOT_TOKEN), not the prefix's
            continue
        name = f"{prefix}{field.upper()}"
        names.append(name)
        value = _dict_value_of(info.annotation)
        inner = None if value is not None else _model_of(info.annotation)
        if inner is not None:
            names += env_names(inner, f"{name}__")
        elif value is not None:
            names.append(f"{name}__*")
            if (inner := _model_of(value)) is not None:
                names += env_names(inner, f"{name}__*__")
    return names


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The settings model an annotation holds (through Optional and Annotated), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, typing.Annotated):
        return next((m for a in typing.get_args(annotation) if (m := _model_of(a)) is not None), None)
    return None


def _dict_value_of(annotation: Any) -> Any:
    """The value type of a `dict[str, X]` annotation (through Optional), or None."""
    origin = typing.get_origin(annotation)
    if origin is dict:
        return typing.get_args(annotation)[1]
    if origin in (typing.Union, types.UnionType):
        return next((v for a in typing.get_args(annotation) if (v := _dict_value_of(a)) is not None), None)
    return None


def _aliases() -> list[str]:
    """The names settings read without the prefix (TELEGRAM_BOT_TOKEN, OANDA_TOKEN...)."""
    return [a for f in Settings.model_fields.values() if isinstance(a := f.validation_alias, str)]


def unknown_env(environ: Mapping[str, str]) -> list[str]:
    """A line for every TRADEBOT_ variable no setting reads, naming the nearest valid name."""
    known = [f"{ENV_PREFIX}{n}" for n in env_names()] + sorted(OTHER_ENV)
    patterns = [re.compile(re.escape(n).replace(r"\*", "[^_]+(?:_[^_]+)*") + "$") for n in known]
    lines = []
    for key in sorted(environ):
        name = key.upper()
        if not name.startswith(ENV_PREFIX) or any(p.match(name) for p in patterns):
            continue
        tail = name.rsplit("__", 1)[-1].removeprefix(ENV_PREFIX)
        same_tail = [n for n in known if n.rsplit("__", 1)[-1].removeprefix(ENV_PREFIX) == tail and "*" not in n]
        same_tail += [a for a in _aliases() if a == tail]
        plain = [n for n in known if "*" not in n] + _aliases()
        close = same_tail or difflib.get_close_matches(name, plain, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else "; see the README's configuration table"
        lines.append(f"{key}: no setting has this name{hint}")
    return lines


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """The TOML config file settings come from (`TRADEBOT_CONFIG`, else `tradebot.toml`), whether or not it exists."""
    env = os.environ if environ is None else environ
    return Path(env.get(CONFIG_ENV) or DEFAULT_CONFIG_FILE)


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Load settings from the environment, `.env` and the config file; raise ConfigError on any problem."""
    env = os.environ if environ is None else environ
    explicit = env.get(CONFIG_ENV)
    path = config_path(env)
    if explicit and not path.is_file():
        raise ConfigError(f"{CONFIG_ENV}: config file not found: {path}")
    unknown = unknown_env(env)
    if unknown:
        raise ConfigError("unknown environment variable(s):\n  " + "\n  ".join(unknown))
    toml_path = path if path.is_file() else None
    if toml_path is not None:
        try:
            with toml_path.open("rb") as handle:
                document = tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{toml_path}: not valid TOML: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{toml_path}: not UTF-8 text (at byte offset {exc.start}): save it as UTF-8") from None
        except OSError as exc:
            raise ConfigError(f"{toml_path}: cannot read it: {exc.strerror}") from None
        if "secrets_id" in document:
            raise ConfigError(
                f"{toml_path}: secrets_id: set TRADEBOT_SECRETS_ID in the environment or .env instead "
                "(the secret is read before the config file)"
            )
    try:
        secret = secret_overrides(env)
    except SecretsError as exc:
        raise SecretsUnavailable(str(exc)) if exc.transient else ConfigError(str(exc)) from None
    bound = type("Settings", (Settings,), {"toml_path": toml_path})
    try:
        return bound(**{**secret, **overrides})
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors()]
        source = f" (config file {toml_path})" if toml_path else ""
        raise ConfigError(f"invalid configuration{source}:\n  " + "\n  ".join(lines)) from None
    except ValueError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None
