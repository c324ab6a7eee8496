"""`tradebot report` and `tradebot audit`: the chat's reports and the audit trail from the shell, as text or JSON."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any

from bot.cli.codes import EXIT_OK
from bot.config import Settings
from bot.services.reports import DEFAULT_PERIODS, Period
from bot.services.users import UserDirectory, actor_names
from bot.telegram.messages import plain_text
from bot.telegram.reports import (
    DEFAULT_TRADES,
    PERIOD_TITLES,
    audit_text,
    balance_text,
    performance_text,
    periods_text,
    profit_text,
    trades_text,
)
from engine.trading import Trade

if TYPE_CHECKING:
    from bot.services.runtime import BotRuntime


def to_json(value: Any) -> Any:
    """Plain JSON of the reports' dataclasses: exact money as strings, instants in ISO-8601 UTC."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if isinstance(value, Trade):
            return {
                "trade_id": value.trade_id,
                "symbol": value.symbol,
                "strategy": value.strategy,
                "side": value.side.value,
                "quantity": str(value.quantity),
                "entry_time": value.entry_time.isoformat(),
                "entry_price": str(value.entry_price),
                "exit_time": None if value.exit_time is None else value.exit_time.isoformat(),
                "exit_price": None if value.exit_price is None else str(value.exit_price),
                "exit_reason": None if value.exit_reason is None else value.exit_reason.value,
                "pnl": None if value.pnl is None else str(value.pnl),
                "r": None if value.pnl_r is None else str(value.pnl_r),
            }
        return {
            f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value) if not f.name.startswith("_")
        }
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    return value


@asynccontextmanager
async def _runtime(settings: Settings) -> AsyncIterator[BotRuntime]:
    from bot.bootstrap import open_runtime  # noqa: PLC0415 - the report reads through the bot's own services

    async with open_runtime(settings, read_only=True) as runtime:
        yield runtime


async def run_report(settings: Settings, args: argparse.Namespace) -> int:
    """Print one report (the profit summary by default)."""
    from bot.services.reporting import Reporting  # noqa: PLC0415 - the bot's services: not for the audit trail

    if not settings.db_path.exists():
        print(json.dumps({}) if args.json else f"No database at {settings.db_path} yet: no trades to report.")
        return EXIT_OK
    async with _runtime(settings) as runtime:
        reporting = Reporting(runtime, quotes=False)  # the shell never waits on a broker: open P&L is the chat's
        currency = reporting.currency
        period = Period.DAY if args.daily else Period.WEEK if args.weekly else Period.MONTH if args.monthly else None
        data: Any
        if period is not None:
            data = await reporting.periods(period, args.count or DEFAULT_PERIODS[period])
            text = periods_text(data, PERIOD_TITLES[period], currency)
        elif args.pairs:
            pairs, strategies = await reporting.performance()
            data, text = {"pairs": pairs, "strategies": strategies}, performance_text(pairs, strategies, currency)
        elif args.trades:
            rows = await reporting.trades(args.count or DEFAULT_TRADES)
            data = [{"trade": t, "account_pnl": pnl} for t, pnl in rows]
            text = trades_text(rows, currency)
        elif args.balance:
            data = await reporting.balance()
            text = balance_text(data)
        else:
            data = await reporting.profit()
            text = profit_text(data)
    print(json.dumps(to_json(data), indent=1) if args.json else plain_text(text))
    return EXIT_OK


async def run_audit(settings: Settings, args: argparse.Namespace) -> int:
    """Print the audit trail, newest first (JSON: one event per line)."""
    from bot.ops.database import open_store  # noqa: PLC0415

    if not settings.db_path.exists():
        print(f"No database at {settings.db_path} yet: the audit trail is empty.")
        return EXIT_OK
    async with await open_store(settings) as store:
        events = await store.audit_events(args.since, args.count)
        names = await actor_names(UserDirectory(store), {e.actor for e in events})
    if args.json:
        for event in events:
            print(json.dumps(to_json(event) | {"actor_name": names.get(event.actor)}))
    else:
        print(plain_text(audit_text(events, names)))
    return EXIT_OK
