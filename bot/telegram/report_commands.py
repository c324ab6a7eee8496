"""The reporting commands freqtrade users expect, and the audit trail, charts, logs, version and configuration.

Each handler parses its arguments (a wrong one gets its usage), asks one service, and renders a phone-sized table.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Awaitable, Callable, Coroutine
from html import escape
from typing import Any

from telegram import Update
from telegram.ext import ContextTypes

import bot
from bot.ops.logs import recent_logs
from bot.services.reporting import Reporting
from bot.services.reports import DEFAULT_PERIODS, MAX_PERIODS, Period
from bot.services.runtime import BotRuntime
from bot.services.users import UserDirectory, actor_names
from bot.telegram.reports import (
    DEFAULT_TRADES,
    PERIOD_TITLES,
    audit_text,
    balance_text,
    count_text,
    logs_text,
    performance_text,
    periods_text,
    profit_text,
    trades_text,
    version_text,
)

MAX_TRADES = 50
DEFAULT_AUDIT = 15
MAX_AUDIT = 100
DEFAULT_LOGS = 10
MAX_LOGS = 50
SECRET_SETTINGS = ("telegram_bot_token", "oanda_token", "kite_api_secret")


def flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested settings as (dotted key, JSON value) lines, sorted."""
    if isinstance(value, dict) and value:
        return [pair for key in sorted(value) for pair in flatten(value[key], f"{prefix}.{key}" if prefix else key)]
    return [(prefix, json.dumps(value, default=str))]


def count_argument(args: list[str], default: int, most: int, command: str) -> int | str:
    """The optional count argument of a command, or the usage line when it is not a whole number in range."""
    if not args:
        return default
    if len(args) == 1 and args[0].isdigit() and 1 <= int(args[0]) <= most:
        return int(args[0])
    return f"usage: /{command} [n] — n is a whole number from 1 to {most} (default {default})"


class ReportCommands:
    """Handlers of the reporting commands; mixed into the chat front end, which provides `_reply`."""

    rt: BotRuntime
    _reply: Callable[..., Awaitable[None]]

    @property
    def reporting(self) -> Reporting:
        return Reporting(self.rt)

    def report_commands(self) -> dict[str, Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]]:
        return {
            "profit": self.profit,
            "daily": self.daily,
            "weekly": self.weekly,
            "monthly": self.monthly,
            "performance": self.performance,
            "trades": self.trades,
            "balance": self.balance,
            "count": self.count,
            "version": self.version,
            "show_config": self.show_config,
            "logs": self.logs,
            "audit": self.audit,
        }

    async def profit(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._reply(update, profit_text(await self.reporting.profit()))

    async def _periods(self, update: Update, context: ContextTypes.DEFAULT_TYPE, period: Period) -> None:
        command = PERIOD_TITLES[period].lower()
        count = count_argument(context.args or [], DEFAULT_PERIODS[period], MAX_PERIODS, command)
        if isinstance(count, str):
            await self._reply(update, count)
            return
        rows = await self.reporting.periods(period, count)
        await self._reply(update, periods_text(rows, PERIOD_TITLES[period], self.reporting.currency))

    async def daily(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._periods(update, context, Period.DAY)

    async def weekly(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._periods(update, context, Period.WEEK)

    async def monthly(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._periods(update, context, Period.MONTH)

    async def performance(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        pairs, strategies = await self.reporting.performance()
        await self._reply(update, performance_text(pairs, strategies, self.reporting.currency))

    async def trades(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        count = count_argument(context.args or [], DEFAULT_TRADES, MAX_TRADES, "trades")
        if isinstance(count, str):
            await self._reply(update, count)
            return
        await self._reply(update, trades_text(await self.reporting.trades(count), self.reporting.currency))

    async def balance(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._reply(update, balance_text(await self.reporting.balance()))

    async def count(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._reply(update, count_text(await self.reporting.count()))

    async def version(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        import telegram  # noqa: PLC0415

        extra = [f"Python {platform.python_version()} · python-telegram-bot {telegram.__version__}"]
        extra.append(f"mode {(await self.rt.state.mode()).value} · broker {self.rt.broker_status()}")
        await self._reply(update, version_text(bot.version(), self.rt.started_at, extra))

    async def show_config(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        settings = self.rt.settings
        shown: dict[str, Any] = settings.model_dump(mode="json", exclude=set(SECRET_SETTINGS))
        lines = [f"<b>Configuration</b> (sha256 {settings.fingerprint()[:16]}; secrets masked)"]
        for name in SECRET_SETTINGS:  # first: whether each secret is there, never its value
            lines.append(
                f"<code>{name} = {'set (masked)' if getattr(settings, name) is not None else 'not set'}</code>"
            )
        for key, value in flatten(shown):
            lines.append(f"<code>{escape(self.rt.redactor.redact(f'{key} = {value}'))}</code>")
        await self._reply(update, "\n".join(lines))

    async def logs(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        count = count_argument(context.args or [], DEFAULT_LOGS, MAX_LOGS, "logs")
        if isinstance(count, str):
            await self._reply(update, count)
            return
        await self._reply(update, logs_text(recent_logs(self.rt.redactor).last(count), count))

    async def audit(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        count = count_argument(context.args or [], DEFAULT_AUDIT, MAX_AUDIT, "audit")
        if isinstance(count, str):
            await self._reply(update, count)
            return
        events = await self.rt.store.audit_events(limit=count)
        users = self.rt.users or UserDirectory(self.rt.store)
        await self._reply(update, audit_text(events, await actor_names(users, {e.actor for e in events})))
