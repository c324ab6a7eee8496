"""Adopting optimised parameters writes one table into the config file and leaves the rest as the trader wrote it."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from bot.config import load_settings
from bot.config.file import adopt_pair_params, restore

TUNED = datetime(2025, 9, 30, 4, tzinfo=UTC)


def test_adoption_adds_the_pair_table_and_keeps_comments_keys_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "tradebot.toml"
    original = (
        '# my settings\n[bot]\nmode = "manual"  # always ask\n\n[strategies.trend_pullback.params]\natr_stop_mult = 2\n'
    )
    path.write_text(original)
    path.chmod(0o600)
    before = adopt_pair_params(path, "trend_pullback", "XAUUSD", {"reward_risk": 3.0, "trend_slow": 225}, TUNED)
    assert before == original
    text = path.read_text()
    assert text.startswith(original)  # nothing the trader wrote moved
    assert "[strategies.trend_pullback.pairs.XAUUSD]\nparams = {reward_risk = 3.0, trend_slow = 225}\n" in text
    assert "tuned_until = 2025-09-30T04:00:00Z" in text
    assert os.stat(path).st_mode & 0o777 == 0o600
    settings = load_settings({"TRADEBOT_CONFIG": str(path)})
    [(strategy, _)] = [
        (s, i) for s, i in settings.traded_pairs() if s.name == "trend_pullback" and i.symbol == "XAUUSD"
    ]
    assert (strategy.params.reward_risk, strategy.params.trend_slow, strategy.params.atr_stop_mult) == (3.0, 225, 2.0)
    assert settings.tuned_until("trend_pullback", "XAUUSD") == TUNED
    assert settings.tuned_until("trend_pullback", "EURUSD") is None
    # Adopting again replaces the pair's table; restoring puts the old text back.
    adopt_pair_params(path, "trend_pullback", "XAUUSD", {}, TUNED)
    assert "params = {}" in path.read_text() and path.read_text().count("pairs.XAUUSD") == 1
    restore(path, before)
    assert path.read_text() == original


def test_a_missing_config_file_is_created_and_restoring_removes_it(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "tradebot.toml"
    before = adopt_pair_params(
        path, "pattern_reversal", "SPY", {"bb_width": 2.5, "bullish_patterns": ("CDLHAMMER",)}, TUNED
    )
    assert before == ""
    settings = load_settings({"TRADEBOT_CONFIG": str(path)})
    spy = {s.name: s for s, i in settings.traded_pairs() if i.symbol == "SPY"}
    assert spy["pattern_reversal"].params.bullish_patterns == ("CDLHAMMER",)
    assert "defining_order" in spy  # naming one strategy in the file leaves the others running
    restore(path, before)
    assert not path.exists()
