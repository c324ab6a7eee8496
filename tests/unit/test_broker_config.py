"""`[broker]` settings: shadow mode is OANDA-only, needs the account and token, and never the live switches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.bootstrap import desk_policy
from bot.config import BrokerKind, ConfigError, load_settings
from engine.routing import Market

TOKEN = "oanda-token-for-config-tests"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run each test in an empty directory with no TRADEBOT_ or OANDA_ variables inherited."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("TRADEBOT_", "OANDA_", "KITE_")) or name == "STATE_DIRECTORY":
            monkeypatch.delenv(name)


def test_shadow_with_the_paper_broker_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "tradebot.toml").write_text("[broker]\nshadow = true\n")
    with pytest.raises(ConfigError, match=r"shadow = true needs kind = 'oanda' .*was 'paper'"):
        load_settings({})


def test_shadow_needs_the_oanda_account_and_token() -> None:
    with pytest.raises(ConfigError, match="broker kind 'oanda' needs oanda_account_id"):
        load_settings({}, broker={"kind": "oanda", "shadow": True}, OANDA_TOKEN=TOKEN)
    with pytest.raises(ConfigError, match="needs the OANDA_TOKEN environment variable"):
        load_settings({}, broker={"kind": "oanda", "shadow": True, "oanda_account_id": "101-1"})


def test_shadow_of_the_live_environment_needs_no_live_switches_because_nothing_is_sent() -> None:
    broker = {"kind": "oanda", "shadow": True, "oanda_account_id": "101-1", "oanda_environment": "live"}
    settings = load_settings({}, broker=broker, OANDA_TOKEN=TOKEN)
    assert settings.broker.shadow and not settings.broker.sends_orders
    with pytest.raises(ConfigError, match="the OANDA live environment needs live_trading = true"):
        load_settings({}, broker={**broker, "shadow": False}, OANDA_TOKEN=TOKEN)


def test_only_oanda_without_shadow_sends_orders(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not load_settings({}).broker.sends_orders
    assert load_settings({}).broker.kind is BrokerKind.PAPER
    monkeypatch.setenv("TRADEBOT_BROKER__KIND", "oanda")
    monkeypatch.setenv("TRADEBOT_BROKER__OANDA_ACCOUNT_ID", "101-1")
    monkeypatch.setenv("OANDA_TOKEN", TOKEN)
    assert load_settings({}).broker.sends_orders
    monkeypatch.setenv("TRADEBOT_BROKER__SHADOW", "true")
    assert not load_settings({}).broker.sends_orders


def test_kite_for_nse_needs_the_app_key_and_the_secret_which_is_masked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nse = 'kite' needs kite_api_key"):
        load_settings({}, broker={"nse": "kite"})
    with pytest.raises(ConfigError, match="needs the KITE_API_SECRET environment variable"):
        load_settings({}, broker={"nse": "kite", "kite_api_key": "abc123"})
    settings = load_settings(
        {}, broker={"nse": "kite", "kite_api_key": "abc123"}, KITE_API_SECRET="kite-secret-xyz-123"
    )
    assert "kite-secret-xyz-123" in settings.secret_values()
    assert "kite-secret-xyz-123" not in repr(settings)
    with pytest.raises(ConfigError, match="nse"):
        load_settings({}, broker={"nse": "zerodha"})


def test_routed_accounts_have_their_own_currency_equity_and_protections(tmp_path: Path) -> None:
    (tmp_path / "tradebot.toml").write_text(
        '[bot.accounts.nse]\ncurrency = "INR"\nequity = 500000\n'
        "[bot.accounts.nse.protections]\nmax_open_positions = 2\n"
    )
    policy = desk_policy(load_settings({}))
    kite = policy.accounts[Market.NSE]
    assert (kite.currency, kite.equity, kite.protections.max_open_positions) == ("INR", 500000, 2)
    assert policy.sizing.account_currency == "USD" and Market.FX not in policy.accounts
    (tmp_path / "tradebot.toml").write_text('[bot.accounts.mcx]\ncurrency = "INR"\nequity = 1\n')
    with pytest.raises(ConfigError, match="mcx"):
        load_settings({})
