"""The real `tradebot run` process keeps the analysis libraries out of itself: they load in its worker."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from tests.fakes.telegram_server import FakeTelegram
from tests.support import require_market_dir

TOKEN = "123456789:AAHprocessTestTokenOnly_abcdefghijkl"
TRADER = 42
# Loaded by the worker, never by the bot: TA-Lib and matplotlib for the scan and the charts, scikit-learn and
# scipy for learning, the exchange-calendar library once at start in a child process of its own.
WORKER_LIBRARIES = frozenset({"talib", "matplotlib", "scipy", "sklearn", "exchange_calendars"})
# `tradebot run`, writing the modules it holds when it exits (its child processes are other interpreters: their
# imports are not its own, which `-X importtime` on stderr would mix in)
RUN = (
    "import atexit, runpy, sys\n"
    "out = sys.argv[1]\n"
    "atexit.register(lambda: open(out, 'w').write('\\n'.join(sorted(sys.modules))))\n"
    "sys.argv = ['tradebot', 'run']\n"
    "runpy.run_module('bot.cli', run_name='__main__', alter_sys=True)\n"
)


async def test_the_bot_process_analyses_and_learns_without_the_analysis_libraries(tmp_path: Path) -> None:
    market = require_market_dir()
    async with FakeTelegram(token=TOKEN) as tg:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEBOT_", "TELEGRAM_"))}
        env |= tg.env() | {
            "TELEGRAM_ALLOWED_USERS": str(TRADER),
            "TRADEBOT_DATA_SOURCE": f"csv:{market}",
            "TRADEBOT_DB_PATH": str(tmp_path / "bot.db"),
            "TRADEBOT_CLOCK_START": "2025-06-12T09:40:00Z",  # the default watchlist: FX, gold, NSE, US, crypto
            "TRADEBOT_METRICS__ENABLED": "false",
            "TRADEBOT_BACKTEST__VALIDATE_IN_BACKGROUND": "false",
            "TRADEBOT_LEARNING__BACKTEST_BARS": "3000",  # a shorter learning run: where it runs is what is tested
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", RUN, str(tmp_path / "modules.txt"), cwd=tmp_path, env=env,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stderr is not None
        stderr = asyncio.create_task(proc.stderr.read())
        try:
            await tg.wait_for_polling(timeout=60)
            since = len(tg.sent)
            tg.user_message(TRADER, "/signal")
            summary = await tg.wait_for_message(lambda m: m.body.startswith("Run "), since=since, timeout=120)
            since = len(tg.sent)
            tg.user_message(TRADER, "/learn")
            learned = await tg.wait_for_message(lambda m: "learned model" in m.body, since=since, timeout=300)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), timeout=30)
    text = (await stderr).decode()
    assert code == 0, text[-3000:]
    assert "16 instruments" in summary.body or "16 symbols" in summary.body, summary.body
    assert "win" in learned.body  # the posteriors' intervals, shown by the bot itself
    loaded = set((tmp_path / "modules.txt").read_text().split())
    assert "bot.services.scan" in loaded and "pandas" in loaded  # what the bot does need, it did import
    heavy = sorted(name for name in loaded if name.split(".")[0] in WORKER_LIBRARIES)
    assert not heavy, f"the bot process imported {heavy[:8]}"
