"""`tradebot sandbox`: the real bot, with no account and no token, chatting in a local web page.

The same application as `tradebot run` (jobs, desk, paper broker, store, outbox) talks to an embedded Bot API
server (`bot.sandbox.botapi`) instead of Telegram; `bot.sandbox.chat` shows that conversation in a browser.
The sandbox has its own database file (`sandbox.db` beside the bot's), so it never touches a real bot's state.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Final

from pydantic import SecretStr

from bot.config import Settings
from bot.ops.clock import BotClock
from bot.sandbox.botapi import BotApiServer
from bot.sandbox.chat import SANDBOX_USER, ChatPage
from bot.services.runtime import BotRuntime

SANDBOX_TOKEN: Final = "1000000001:SandboxLocalTokenNotATelegramToken00"
SANDBOX_DB: Final = "sandbox.db"
REPLAY_SPEED: Final = 60.0  # bot seconds per real second when replaying recent history
DEFAULT_REPLAY: Final = timedelta(days=5)  # what the chat's Replay button replays
REPLAY_DB: Final = "sandbox-replay.db"
QUIET_SECONDS: Final = 60.0  # real seconds without a signal before the chat offers the replay
_DURATION = re.compile(r"^(\d+)([mhd])$")


def duration(text: str) -> timedelta:
    """`90m`, `12h`, `5d` as a timedelta."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"a duration is a number and m, h or d (e.g. 5d), not {text!r}")
    amount, unit = int(match[1]), match[2]
    return {"m": timedelta(minutes=amount), "h": timedelta(hours=amount), "d": timedelta(days=amount)}[unit]


def sandbox_settings(settings: Settings, server: BotApiServer) -> Settings:
    """The bot's settings pointed at the embedded Bot API, one sandbox user, its own database, no metrics."""
    return settings.model_copy(
        update={
            "telegram_bot_token": SecretStr(server.token),
            "telegram_allowed_users": (SANDBOX_USER,),
            "telegram_chat_id": None,
            "telegram_owner_id": None,
            "telegram_api_base_url": server.base_url,
            "db_path": settings.db_path.with_name(SANDBOX_DB),
            "metrics": settings.metrics.model_copy(update={"enabled": False}),
        }
    )


def sandbox_clock(
    settings: Settings, replay: timedelta | None, start: datetime | None, speed: float | None
) -> BotClock:
    """The bot clock: `--clock-start`/`--clock-speed`, else a replay of the last `replay` at 60x, else the
    settings' clock (real time by default)."""
    if start is None and replay is not None:
        start = datetime.now(UTC) - replay
        speed = speed or REPLAY_SPEED
    return BotClock(start or settings.clock_start, speed or settings.clock_speed)


async def run_sandbox(settings: Settings, *, port: int, clock: BotClock) -> int:
    """Serve the chat page and run the bot against the embedded Bot API until Ctrl-C or SIGTERM."""
    from bot.telegram.app import serve  # noqa: PLC0415 - the other commands do not need the Telegram stack

    loop = asyncio.get_running_loop()
    terminated, stop = asyncio.Event(), asyncio.Event()

    def terminate() -> None:
        terminated.set()
        stop.set()

    def listen() -> None:
        """Take SIGTERM and SIGINT: the bot installs its own while it runs and removes them when it returns, so
        these cover the moments before it starts and between a replay's restarts (else the default kills)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, terminate)

    async with BotApiServer(SANDBOX_TOKEN, bot_name="tradebot", bot_username="tradebot_sandbox_bot") as server:
        page = await ChatPage(server, port=port, title="tradebot · sandbox").start()
        listen()
        try:
            sandboxed = sandbox_settings(settings, server)
            print(
                f"tradebot sandbox: chat with the bot at {page.url} (dashboard {page.url}dashboard; "
                f"data {settings.data_source}; "
                f"bot clock {clock.now():%Y-%m-%d %H:%M}Z x{clock.speed:g}; database {sandboxed.db_path}). "
                "Ctrl-C stops it.",
                flush=True,
            )
            while True:
                if terminated.is_set():
                    return 0
                stop, replay = asyncio.Event(), asyncio.Event()

                def request_replay(stop: asyncio.Event = stop, replay: asyncio.Event = replay) -> None:
                    replay.set()
                    stop.set()

                hook = partial(_attached, page, request_replay)
                code = await serve(sandboxed, stop, clock, on_runtime=hook)
                listen()
                if not replay.is_set() or terminated.is_set():
                    return code
                clock = BotClock(datetime.now(UTC) - DEFAULT_REPLAY, REPLAY_SPEED)
                db = settings.db_path.with_name(REPLAY_DB)
                for old in db.parent.glob(f"{REPLAY_DB}*"):
                    old.unlink()
                sandboxed = sandboxed.model_copy(update={"db_path": db})
                print(
                    f"tradebot sandbox: replaying the last {DEFAULT_REPLAY.days} days at {REPLAY_SPEED:g}x", flush=True
                )
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await page.stop()


async def _attached(
    page: ChatPage, request_replay: Callable[[], None], runtime: BotRuntime
) -> Callable[[], Awaitable[None]] | None:
    """Once the bot is up: its dashboard on the chat page's server (loopback only: no token), and, when no
    watched market is open, a word in the chat offering a replay of recent history at speed."""
    from bot.services.dashboard import Dashboard  # noqa: PLC0415
    from bot.web.server import DashboardSite  # noqa: PLC0415

    page.site = DashboardSite(Dashboard(runtime), runtime.store, require_token=False, banner="sandbox")
    now = runtime.clock.now()
    page.notice, page.on_replay = None, None
    if not any(calendar.is_open(now) for calendar in runtime.calendars.values()):
        page.notice = (
            f"No watched market is open at {now:%a %d %b %H:%M}Z (bot clock), so no signal will come soon. "
            f"Replay the last {DEFAULT_REPLAY.days} days at {REPLAY_SPEED:g}x instead?"
        )
        page.on_replay = request_replay
        return None
    quiet = asyncio.get_running_loop().call_later(QUIET_SECONDS, _offer_if_quiet, page, request_replay)

    async def cancel() -> None:  # this bot run ended (a stop, or the replay): its offer would be stale
        quiet.cancel()

    return cancel


def _offer_if_quiet(page: ChatPage, request_replay: Callable[[], None]) -> None:
    """Nothing offered a minute after the start: say so, and offer the replay."""
    if page.has_signal() or page.notice is not None:
        return
    page.notice = (
        f"No signal in the first minute: markets move slowly at real speed. Replay the last "
        f"{DEFAULT_REPLAY.days} days at {REPLAY_SPEED:g}x to see signals, approvals and exits now?"
    )
    page.on_replay = request_replay
