"""Settings: sources and precedence, defaults, and a clear error for every kind of bad input."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings, unknown_env
from bot.services.configure import sizing
from engine.catalog import DEFAULT_WATCHLIST, default_instrument
from engine.exposure import ExposureClass
from engine.quality import Component
from engine.strategy import strategy_names


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run each test in an empty directory with no TRADEBOT_ variables inherited."""
    monkeypatch.chdir(tmp_path)
    for name in list(__import__("os").environ):
        if name.startswith("TRADEBOT_") or name == "STATE_DIRECTORY":
            monkeypatch.delenv(name)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_any_config() -> None:
    s = load_settings({})
    assert s.data_source == "yfinance"
    assert s.db_path == Path("var/tradebot.db")
    assert [i.symbol for i in s.instruments] == [i.symbol for i in DEFAULT_WATCHLIST]
    assert set(s.strategies) == set(strategy_names())
    assert s.quality.min_score == 50.0


def test_state_directory_from_systemd_sets_default_db_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/tradebot")
    assert load_settings({}).db_path == Path("/var/lib/tradebot/tradebot.db")


def test_settings_are_frozen() -> None:
    s = load_settings({})
    with pytest.raises(Exception, match="frozen"):
        s.data_source = "csv:/tmp"  # type: ignore[misc]


def test_toml_file_in_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    write(tmp_path / "tradebot.toml", f'data_source = "csv:{tmp_path}/data"\n[quality]\nmin_score = 55\n')
    s = load_settings({})
    assert s.data_source == f"csv:{tmp_path}/data"
    assert s.quality.min_score == 55


def test_precedence_environment_over_dotenv_over_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("from-toml", "from-dotenv", "from-env"):
        (tmp_path / name).mkdir()
    write(
        tmp_path / "tradebot.toml", 'data_source = "csv:from-toml"\ndb_path = "toml.db"\n[scan]\nhistory_bars = 900\n'
    )
    write(tmp_path / ".env", "TRADEBOT_DATA_SOURCE=csv:from-dotenv\nTRADEBOT_DB_PATH=dotenv.db\n")
    monkeypatch.setenv("TRADEBOT_DATA_SOURCE", "csv:from-env")
    s = load_settings()
    assert s.data_source == "csv:from-env"
    assert s.db_path == Path("dotenv.db")
    assert s.scan.history_bars == 900


def test_nested_environment_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEBOT_SCAN__HISTORY_BARS", "3000")
    assert load_settings().scan.history_bars == 3000


def test_a_conversion_price_can_be_set_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEBOT_BOT__FX_RATES__USDINR", "86.0")  # environment names arrive lower-cased
    assert load_settings().bot.fx_rates == {"USDINR": Decimal("86.0")}


def test_dotenv_keys_of_other_programs_are_ignored_but_unknown_tradebot_keys_are_not(tmp_path: Path) -> None:
    write(tmp_path / ".env", "TELEGRAM_BOT_TOKEN=123:secret\nAWS_REGION=eu-west-1\n")
    assert load_settings().data_source == "yfinance"
    write(tmp_path / ".env", "TRADEBOT_DATA_SOURCES=csv:/typo\n")
    with pytest.raises(ConfigError, match="TRADEBOT_DATA_SOURCES: unknown key"):
        load_settings()


def test_explicit_config_path_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"TRADEBOT_CONFIG: config file not found: .*missing\.toml"):
        load_settings({"TRADEBOT_CONFIG": str(tmp_path / "missing.toml")})


def test_explicit_config_path_is_used(tmp_path: Path) -> None:
    path = write(tmp_path / "elsewhere.toml", f'data_source = "csv:{tmp_path}"\n')
    assert load_settings({"TRADEBOT_CONFIG": str(path)}).data_source == f"csv:{tmp_path}"


def test_example_config_file_loads() -> None:
    example = Path(__file__).resolve().parents[2] / "tradebot.example.toml"
    s = load_settings({"TRADEBOT_CONFIG": str(example)})
    assert [i.symbol for i in s.instruments] == ["EURUSD", "RELIANCE"]
    eurusd = s.instruments[0]
    assert eurusd.tick_size == Decimal("0.00001") and eurusd.contract_size == Decimal(100000)
    assert s.instruments[1].timezone == "Asia/Kolkata"  # defaulted from the XNSE calendar


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("bogus = 1\n", r"bogus \[env TRADEBOT_BOGUS\]: unknown key"),
        ('data_source = "ftp://x"\n', r"data_source \[env TRADEBOT_DATA_SOURCE\]: must be 'yfinance' or 'csv:DIR'"),
        ('[scan]\nhistory_bars = "many"\n', r"scan\.history_bars: Input should be a valid integer"),
        ("[scan]\nhistory_bars = 10\n", r"scan\.history_bars: Input should be greater than or equal to 300"),
        ("[quality.weights]\nmomentum = 1.5\n", r"quality\.weights\.momentum: Input should be less than or equal to 1"),
        (
            "[quality.weights]\nmomentum = -0.1\n",
            r"quality\.weights\.momentum: Input should be greater than or equal to 0",
        ),
        ("[quality.weights]\nluck = 0.5\n", r"quality\.weights\.luck"),
        ("[quality]\nmin_score = 101\n", r"quality\.min_score"),
        ("[strategies.martingale]\nenabled = true\n", r"strategies\.martingale: unknown strategy"),
        (
            "[strategies.trend_pullback.params]\nmagic = 3\n",
            r"strategies\.trend_pullback\.params: unknown parameter\(s\) magic; allowed: ",
        ),
        (
            '[strategies.trend_pullback.params]\natr_stop_mult = "wide"\n',
            r"strategies\.trend_pullback\.params\.atr_stop_mult: Input should be a valid number",
        ),
        (
            '[strategies.defining_order]\nsymbols = ["NOPE"]\n',
            r"strategies\.defining_order\.symbols: not in the watchlist: NOPE",
        ),
        ("this is = = not toml", r"not valid TOML"),
        ('[bot]\naccount_currency = "dollars"\n', r"bot\.account_currency: String should match pattern"),
        ('[bot.fx_rates]\nUSDINR = "-84"\n', r"bot\.fx_rates\.USDINR: Input should be greater than 0"),
        ('[bot.fx_rates]\nRUPEE = "84"\n', r"bot\.fx_rates\.RUPEE\.\[key\]: String should match pattern"),
        (
            "[drift]\nwindow = 500\n",
            r"drift \[env TRADEBOT_DRIFT\]: min_trades <= window <= horizon must hold, were 10, 500, 100",
        ),
        ("[drift]\nfalse_alarm = 0.7\n", r"drift\.false_alarm: Input should be less than 0\.5"),
        ("[drift]\nsensitivity = 3\n", r"drift\.sensitivity: .*"),
        ('[learning]\ndemote_action = "close"\n', r"learning\.demote_action: Input should be 'ask_only', 'pause'"),
        ('[learning]\nmethod = "neural"\n', r"learning\.method: Input should be 'isotonic' or 'logistic'"),
        ("[learning]\nhalf_life_days = 0\n", r"learning\.half_life_days: Input should be greater than 0"),
        (
            '[bot.exposure]\nmax_leverage = {stocks = "1"}\n',
            r"bot\.exposure\.max_leverage\.stocks\.\[key\]: Input should be",
        ),
        (
            '[bot.exposure]\nmax_leverage = {crypto = "0"}\n',
            r"bot\.exposure\.max_leverage\.crypto: Input should be greater",
        ),
        ('[bot.exposure]\nmax_total_leverage = "-1"\n', r"bot\.exposure\.max_total_leverage: Input should be greater"),
        (
            "db_busy_timeout_ms = 5\n",
            r"db_busy_timeout_ms \[env TRADEBOT_DB_BUSY_TIMEOUT_MS\]: Input should be greater",
        ),
    ],
)
def test_bad_config_names_key_and_rule(tmp_path: Path, toml: str, expected: str) -> None:
    write(tmp_path / "tradebot.toml", toml)
    with pytest.raises(ConfigError, match=expected):
        load_settings({})


WATCH = """
[[watchlist]]
symbol = "EURUSD"
asset_class = "fx"
interval = "1h"
tick_size = "{tick}"
pip_size = "0.0001"
lot_size = "0.01"
contract_size = "100000"
calendar = "{calendar}"
{extra}
"""


@pytest.mark.parametrize(
    ("tick", "calendar", "extra", "expected"),
    [
        ("-0.00001", "FX", "", r"watchlist\.0\.tick_size: Input should be greater than 0"),
        ("0", "FX", "", r"watchlist\.0\.tick_size: Input should be greater than 0"),
        ("abc", "FX", "", r"watchlist\.0\.tick_size: Input should be a valid decimal"),
        ("0.00001", "LSE", "", r"watchlist\.0\.calendar: unknown market calendar 'LSE'; known calendars: CRYPTO, FX"),
        ("0.00001", "FX", 'timezone = "Mars/Olympus"', r"watchlist\.0\.timezone: unknown timezone 'Mars/Olympus'"),
        ("0.00001", "FX", 'asset_class = "bond"', r"watchlist\.0\.asset_class"),
        ("0.00001", "FX", 'spread = "-1"', r"watchlist\.0\.spread: Input should be greater than or equal to 0"),
        ("0.00001", "FX", "lots = 3", r"watchlist\.0\.lots: unknown key"),
        ("0.00001", "FX", 'freeze_quantity = "0.001"', r"freeze_quantity 0\.001 is below one lot step 0\.01"),
        (
            "0.00001",
            "FX",
            'min_quantity = "2"\nmax_quantity = "1"',
            r"watchlist\.0: .*min_quantity must not exceed max_quantity, was 2 > 1",
        ),
        ("0.00001", "FX", 'quote_currency = "usd"', r"watchlist\.0\.quote_currency: String should match pattern"),
    ],
)
def test_bad_instrument_names_key_and_rule(tmp_path: Path, tick: str, calendar: str, extra: str, expected: str) -> None:
    text = WATCH.format(tick=tick, calendar=calendar, extra=extra)
    if 'asset_class = "bond"' in extra:
        text = text.replace('asset_class = "fx"\n', "")
    write(tmp_path / "tradebot.toml", text)
    with pytest.raises(ConfigError, match=expected):
        load_settings({})


def test_exposure_caps_come_from_the_config_with_careful_defaults(tmp_path: Path) -> None:
    text = WATCH.format(tick="0.00001", calendar="FX", extra='max_leverage = "10"')
    write(
        tmp_path / "tradebot.toml", text + '[bot.exposure]\nmax_leverage = {crypto = "1"}\nmax_total_leverage = "12"\n'
    )
    exposure = sizing(load_settings({})).exposure
    assert exposure.max_leverage[ExposureClass.CRYPTO] == Decimal(1)  # as configured
    assert exposure.max_leverage[ExposureClass.CASH_EQUITY] == Decimal(1)  # the defaults for the rest
    assert exposure.max_leverage[ExposureClass.FX_MAJOR] == Decimal(30)
    assert exposure.cap(default_instrument("EURUSD")) == (Decimal(10), "EURUSD's")  # the watchlist's own
    assert exposure.max_total_leverage == Decimal(12)


def test_duplicate_watchlist_symbol(tmp_path: Path) -> None:
    entry = WATCH.format(tick="0.00001", calendar="FX", extra="")
    write(tmp_path / "tradebot.toml", entry + entry)
    with pytest.raises(ConfigError, match="symbol\\(s\\) listed twice: EURUSD"):
        load_settings({})


def test_secret_looking_values_are_never_echoed(tmp_path: Path) -> None:
    write(tmp_path / ".env", "TRADEBOT_API_TOKEN=123456:ultra-secret\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "ultra-secret" not in str(info.value)
    assert "TRADEBOT_API_TOKEN" in str(info.value)


def test_engine_config_and_strategies_follow_settings(tmp_path: Path) -> None:
    write(
        tmp_path / "tradebot.toml",
        "[quality]\nmin_score = 20\n[quality.weights]\nmomentum = 0\n"
        "[validation]\nmin_stop_ticks = 5\n"
        "[strategies.pattern_reversal]\nenabled = false\n"
        '[strategies.trend_pullback]\nsymbols = ["EURUSD"]\n[strategies.trend_pullback.params]\nreward_risk = 3\n',
    )
    s = load_settings({})
    engine = s.engine_config()
    assert engine.min_score == 20 and engine.rules.min_stop_ticks == 5
    assert engine.scorer.weights.weights[Component.MOMENTUM] == 0
    built = {strategy.name: (strategy, allowed) for strategy, allowed in s.build_strategies()}
    assert "pattern_reversal" not in built
    strategy, allowed = built["trend_pullback"]
    assert allowed == frozenset({"EURUSD"})
    assert strategy.params.reward_risk == 3


@pytest.mark.parametrize(
    ("name", "nearest"),
    [
        ("TRADEBOT_RISK_PER_TRADE", "TRADEBOT_BOT__RISK_PER_TRADE"),
        ("TRADEBOT_LOGGING_FORMAT", "TRADEBOT_LOGGING__FORMAT"),
        ("TRADEBOT_CONFG", "TRADEBOT_CONFIG"),
        ("TRADEBOT_TELEGRAM_BOT_TOKEN", "TELEGRAM_BOT_TOKEN"),
        ("tradebot_bot__risk_per_trad", "TRADEBOT_BOT__RISK_PER_TRADE"),
    ],
)
def test_a_mistyped_environment_variable_stops_startup_naming_the_nearest_setting(name: str, nearest: str) -> None:
    with pytest.raises(
        ConfigError,
        match=rf"unknown environment variable\(s\):\n  {name}: no setting has this name; "
        rf"did you mean {nearest}\?",
    ):
        load_settings({name: "0.05"})


def test_every_name_a_setting_reads_passes_the_environment_check(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {
        "TRADEBOT_BOT__FX_RATES__USDINR": "86",
        "TRADEBOT_STRATEGIES__TREND_PULLBACK__PAIRS__XAUUSD__PARAMS__ATR_STOP_MULT": "2.0",
        "TRADEBOT_SCAN__HISTORY_BARS": "3000",
        "TRADEBOT_DB_BUSY_TIMEOUT_MS": "2000",
        "TRADEBOT_BOT__PROTECTIONS__MAX_OPEN_POSITIONS": "3",
        "TRADEBOT_CLOCK_START": "2025-06-09T03:45:00Z",
        "TRADEBOT_SECRETS_ID": "tradebot/prod",
        "TRADEBOT_CONFIG": "tradebot.toml",
        "PATH": "/usr/bin",
    }
    assert unknown_env(environ) == []


def test_a_config_file_that_is_not_utf8_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "tradebot.toml").write_bytes(b'[bot]\nmode = "manual"  # caf\xe9 in latin-1\n')
    with pytest.raises(ConfigError, match=r"tradebot.toml: not UTF-8 text \(at byte offset 28\): save it as UTF-8"):
        load_settings({})


def test_a_csv_folder_that_does_not_exist_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"data_source \[env TRADEBOT_DATA_SOURCE\]: names the folder '.*nope', "
        "which does not exist",
    ):
        load_settings({}, data_source=f"csv:{tmp_path / 'nope'}")


def test_the_owner_defaults_to_the_first_allowed_user_and_must_be_one() -> None:
    assert load_settings({}, TELEGRAM_ALLOWED_USERS="42,43").owner == 42
    assert load_settings({}, TELEGRAM_ALLOWED_USERS="42,43", TELEGRAM_OWNER_ID="43").owner == 43
    with pytest.raises(ConfigError, match="TELEGRAM_OWNER_ID 7 must be one of TELEGRAM_ALLOWED_USERS"):
        load_settings({}, TELEGRAM_ALLOWED_USERS="42,43", TELEGRAM_OWNER_ID="7")
