"""`tradebot sandbox`: the real bot, with no account and no token, chatting in a local web page.

The same application as `tradebot run` (jobs, desk, paper broker, store, outbox) talks to an embedded Bot API
server (`bot.sandbox.botapi`) instead of Telegram; `bot.sandbox.chat` shows that conversation in a browser.
The sandbox has its own database file (`sandbox.db` beside the bot's), so it never touches a real bot's state.
"""

from __future__ import annotations

import re
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

    async with BotApiServer(SANDBOX_TOKEN, bot_name="tradebot", bot_username="tradebot_sandbox_bot") as server:
        page = await ChatPage(server, port=port, title="tradebot · sandbox").start()
        try:
            sandboxed = sandbox_settings(settings, server)
            print(
                f"tradebot sandbox: chat with the bot at {page.url} (dashboard {page.url}dashboard; "
                f"data {settings.data_source}; "
                f"bot clock {clock.now():%Y-%m-%d %H:%M}Z x{clock.speed:g}; database {sandboxed.db_path}). "
                "Ctrl-C stops it.",
                flush=True,
            )
            return await serve(sandboxed, None, clock, on_runtime=partial(_attach_dashboard, page))
        finally:
            await page.stop()


async def _attach_dashboard(page: ChatPage, runtime: BotRuntime) -> None:
    """The sandbox's dashboard, on the chat page's server (loopback only: no token)."""
    from bot.services.dashboard import Dashboard  # noqa: PLC0415
    from bot.web.server import DashboardSite  # noqa: PLC0415

    page.site = DashboardSite(Dashboard(runtime), runtime.store, require_token=False, banner="sandbox")
