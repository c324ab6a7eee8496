"""The sandbox on a weekend: it says no watched market is open and offers a replay; pressing it restarts the bot
on recent history at speed, in a database of its own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.e2e.test_bot import CONFIG
from tests.support import require_market_dir


def test_a_closed_market_offers_the_replay_and_the_replay_restarts_the_bot(tmp_path: Path) -> None:
    market = require_market_dir()
    (tmp_path / "tradebot.toml").write_text(CONFIG.format(interval=0.05))  # GBPUSD and XAUUSD only
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEBOT_", "TELEGRAM_"))}
    env |= {"TRADEBOT_DATA_SOURCE": f"csv:{market}", "TRADEBOT_CONFIG": str(tmp_path / "tradebot.toml")}
    saturday = "2025-06-14T12:00:00Z"  # FX is closed
    args = [sys.executable, "-m", "bot.cli", "sandbox", "--port", "0", "--clock-start", saturday]
    log = (tmp_path / "sandbox.log").open("w")  # a file, not a pipe: a full pipe would stall the bot's logging
    process = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split(" at ", 1)[1].split(" ", 1)[0]
        with httpx.Client(base_url=url, timeout=10) as client:
            deadline = time.monotonic() + 60
            notice = None
            while notice is None:
                assert time.monotonic() < deadline, "no notice"
                notice = client.get("/api/state").json()["notice"]
                time.sleep(0.2)
            assert "No watched market is open at Sat 14 Jun 12:00Z" in notice["text"] and notice["replay"]
            token = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/").text)
            assert token is not None
            assert client.post("/api/replay", json={}).status_code == 403  # forged: nothing happens
            assert client.post("/api/replay", json={}, headers={"X-CSRF-Token": token.group(1)}).status_code == 200
        restarted = process.stdout.readline()
        assert "replaying the last 5 days at 60x" in restarted, restarted
        deadline = time.monotonic() + 60
        while not (tmp_path / "var" / "sandbox-replay.db").exists():
            assert time.monotonic() < deadline, "the replay did not start"
            time.sleep(0.2)
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0
        log.close()


def test_sigterm_as_soon_as_the_sandbox_gives_its_address_stops_it_cleanly(tmp_path: Path) -> None:
    """The address line is the sandbox's 'ready': a stop right after it (a test, a script, Ctrl-C) exits 0, not by
    the default action of a signal nobody handled yet (the bot installs its own handlers a moment later)."""
    market = require_market_dir()
    (tmp_path / "tradebot.toml").write_text(CONFIG.format(interval=0.05))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEBOT_", "TELEGRAM_"))}
    env |= {"TRADEBOT_DATA_SOURCE": f"csv:{market}", "TRADEBOT_CONFIG": str(tmp_path / "tradebot.toml")}
    args = [sys.executable, "-m", "bot.cli", "sandbox", "--port", "0", "--clock-start", "2025-06-12T09:40:00Z"]
    log = (tmp_path / "sandbox.log").open("w")
    process = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert process.stdout is not None
        assert "chat with the bot at http://127.0.0.1:" in process.stdout.readline()
    finally:
        process.terminate()
        code = process.wait(timeout=30)
        log.close()
    assert code == 0, (tmp_path / "sandbox.log").read_text()
