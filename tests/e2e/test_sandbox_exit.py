"""The sandbox in a real browser with the bot clock in the test's hands: Approve, then five days of bot time
later the position's exit in the chat, and the dashboard's equity curve with that closed trade.

The sandbox runs in the test's event loop; every browser call runs in a thread so the page's server (on the
same loop) keeps answering.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from bot.cli.sandbox import run_sandbox
from bot.config import load_settings
from bot.ops.clock import BotClock
from tests.e2e.test_bot import CONFIG, START, ManualMonotonic, bot_env


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = bot_env(tmp_path, monkeypatch, CONFIG.format(interval=0.05))
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN")
    monkeypatch.delenv("TELEGRAM_ALLOWED_USERS")
    yield folder


async def until(check, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    """Poll a blocking browser check in a thread until truthy (a replaced element counts as not yet)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            value = await asyncio.to_thread(check)
        except (StaleElementReferenceException, NoSuchElementException):
            value = None
        if value:
            return value
        assert loop.time() < deadline, "the page did not show it in time"
        await asyncio.sleep(0.1)


async def test_an_approved_position_exits_as_bot_time_runs(
    env: Path, browser, capsys: pytest.CaptureFixture[str]
) -> None:
    from selenium.webdriver.common.by import By  # noqa: PLC0415
    from selenium.webdriver.common.keys import Keys  # noqa: PLC0415

    mono = ManualMonotonic()
    task = asyncio.create_task(run_sandbox(load_settings(), port=0, clock=BotClock(START, 1.0, monotonic=mono)))
    try:
        url = None
        for _ in range(200):
            found = re.search(r"at (http://127\.0\.0\.1:\d+/) ", capsys.readouterr().out)
            if found:
                url = found.group(1)
                break
            await asyncio.sleep(0.1)
        assert url is not None
        driver = browser
        await asyncio.to_thread(driver.get, url)
        log = lambda: driver.find_element(By.ID, "log").text  # noqa: E731
        await until(lambda: driver.find_elements(By.CSS_SELECTOR, "#menu button"))
        box = await asyncio.to_thread(driver.find_element, By.ID, "text")
        await asyncio.to_thread(box.send_keys, "/signal", Keys.ENTER)

        def press_approve() -> bool | None:
            buttons = [b for b in driver.find_elements(By.CSS_SELECTOR, ".bot .keyboard button") if "Approve" in b.text]
            if not buttons:
                return None
            buttons[0].click()
            return True

        # The signals arrive one by one (each with its chart) and the page redraws as each comes: a press that
        # lands during a redraw is lost, so press again until the fill shows (a second press is refused harmlessly).
        filled = None
        for _ in range(12):
            await until(press_approve)
            try:
                filled = await until(lambda: "filled" in log(), timeout=5.0)
                break
            except AssertionError:
                continue
        assert filled, f"no fill after pressing Approve; the chat shows: {log()[-1500:]}"
        mono.t += timedelta(days=5).total_seconds()  # five days of bot time pass
        box = await asyncio.to_thread(driver.find_element, By.ID, "text")
        await asyncio.to_thread(box.send_keys, "/signal", Keys.ENTER)  # a run checks the open positions
        exit_line = await until(lambda: re.search(r"GBPUSD .*closed \((stop|target|time)\)", log()))
        assert exit_line is not None
        await asyncio.to_thread(driver.get, url + "dashboard")
        await until(lambda: driver.find_elements(By.CSS_SELECTOR, "#equity svg polyline"))
        assert "No open positions." in await asyncio.to_thread(lambda: driver.find_element(By.ID, "positions").text)
    finally:
        os.kill(os.getpid(), signal.SIGINT)  # the sandbox's own Ctrl-C: a graceful stop
        assert await asyncio.wait_for(task, timeout=20) == 0
