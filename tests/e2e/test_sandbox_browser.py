"""`tradebot sandbox` in a real headless Chromium: the chat page, /start and /signal on the shared data, a
signal with its buttons, Approve, the fill arriving live; then the dashboard with the position and its
emergency stop pausing the bot and closing it. Screenshots go to the test's folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import require_market_dir

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[str]:
    """A running `tradebot sandbox` on the shared data with the bot clock at 2025-06-12 09:40 UTC; its URL."""
    market = require_market_dir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEBOT_", "TELEGRAM_"))}
    env |= {"TRADEBOT_DATA_SOURCE": f"csv:{market}", "TRADEBOT_BACKTEST__VALIDATE_IN_BACKGROUND": "false"}
    args = [sys.executable, "-m", "bot.cli", "sandbox", "--port", "0", "--clock-start", "2025-06-12T09:40:00Z"]
    log = (tmp_path / "sandbox.log").open("w")  # a file, not a pipe: a full pipe would stall the bot's logging
    process = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "chat with the bot at http://127.0.0.1:" in line, line + (tmp_path / "sandbox.log").read_text()
        yield line.split(" at ", 1)[1].split(" ", 1)[0]
    finally:
        process.terminate()
        assert process.wait(timeout=20) == 0
        log.close()
    assert (tmp_path / "var" / "sandbox.db").is_file() and not (tmp_path / "var" / "tradebot.db").exists()


def wait_for(condition, timeout: float = 90.0):  # type: ignore[no-untyped-def]
    """Poll `condition` until truthy; an element replaced while it was read (the page re-rendered or navigated)
    counts as not yet."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except (StaleElementReferenceException, NoSuchElementException):
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, "the page did not show it in time"
        time.sleep(0.1)


def test_the_sandbox_chat_runs_the_approval_loop_in_a_real_browser(browser, sandbox: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.common.keys import Keys  # noqa: PLC0415

    driver = browser
    driver.get(sandbox)
    assert "SANDBOX" in driver.find_element(By.CLASS_NAME, "badge").text
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#menu button"))  # the command menu from setMyCommands
    box = driver.find_element(By.ID, "text")
    box.send_keys("/start", Keys.ENTER)
    wait_for(lambda: "trading signals with your approval" in driver.find_element(By.ID, "log").text)
    box.send_keys("/signal", Keys.ENTER)

    def signal_text() -> str | None:
        for button in driver.find_elements(By.CSS_SELECTOR, ".bot .keyboard button"):
            if "Approve" in button.text:
                return button.find_element(By.XPATH, "./ancestor::div[contains(@class, 'line')]").get_attribute(
                    "innerHTML"
                )
        return None

    signal = wait_for(signal_text)
    assert "GBPUSD" in signal and "LONG" in signal and "stop" in signal
    assert "<b>" in signal or "<code>" in signal  # the bot's HTML rendered, not shown as text
    driver.save_screenshot(str(tmp_path / "sandbox-signal.png"))

    def press_approve() -> bool | None:
        buttons = [b for b in driver.find_elements(By.CSS_SELECTOR, ".bot .keyboard button") if "Approve" in b.text]
        if not buttons:
            return None
        buttons[0].click()
        return True

    # The signals arrive one by one (each with its chart) and the page redraws as each comes: a press that lands
    # during a redraw is lost, so press again until the fill shows (a second press is refused harmlessly).
    filled = None
    for _ in range(12):
        wait_for(press_approve)
        try:
            filled = wait_for(lambda: "filled" in driver.find_element(By.ID, "log").text, timeout=5.0)
            break
        except AssertionError:
            continue
    assert filled, "no fill after pressing Approve"
    driver.save_screenshot(str(tmp_path / "sandbox-chat.png"))
    driver.get(sandbox + "dashboard")  # the dashboard: the position, then the emergency stop
    wait_for(lambda: "GBPUSD" in driver.find_element(By.ID, "positions").text)
    assert "SANDBOX" in driver.find_element(By.CLASS_NAME, "badge").text
    assert "▶️ running" in driver.find_element(By.ID, "state").text
    driver.save_screenshot(str(tmp_path / "dashboard.png"))
    driver.find_element(By.NAME, "confirm").send_keys("STOP")
    driver.find_element(By.ID, "stop-button").click()
    wait_for(lambda: "paused" in driver.find_element(By.ID, "state").text)
    assert "Closed 1 of 1 listed position" in driver.find_element(By.ID, "notice").text
    assert "No open positions." in driver.find_element(By.ID, "positions").text
    assert driver.find_elements(By.CSS_SELECTOR, "#equity svg polyline")  # the closed trade: an equity curve
    if os.environ.get("TRADEBOT_DOCS_SCREENSHOTS"):  # refresh the README's pictures on demand
        shutil.copy(tmp_path / "sandbox-chat.png", DOCS / "sandbox-chat.png")
        shutil.copy(tmp_path / "dashboard.png", DOCS / "dashboard.png")
