"""The account book the protections look at, read from the store: positions, closed trades, equity, the day."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np

from engine.bars import Bars
from engine.ports import BotStore
from engine.protections import BookView
from engine.trading import Trade, TradeKind

REAL_KINDS = (TradeKind.PAPER, TradeKind.LIVE)  # trades that moved the account's money
TRADED_KINDS = (*REAL_KINDS, TradeKind.EXTERNAL)  # and the trader's own trades reported with /report


def trading_day(now: datetime, timezone: str, rollover_hour: int) -> tuple[datetime, datetime]:
    """Start and end (UTC) of the trading day holding `now`: it rolls over at `rollover_hour` local time."""
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    start = local.replace(hour=rollover_hour, minute=0, second=0, microsecond=0)
    if start > local:
        start = (start - timedelta(days=1)).replace(hour=rollover_hour)
    end = start + timedelta(days=1)  # zoneinfo arithmetic is wall-clock: 17:00 the next day across DST too
    return start.astimezone(UTC), end.astimezone(UTC)


def close_returns(bars: Mapping[str, Bars], lookback: int) -> dict[str, np.ndarray]:
    """The last `lookback` close-to-close returns of each symbol (aligned at the end)."""
    out: dict[str, np.ndarray] = {}
    for symbol, b in bars.items():
        close = b.close[-(lookback + 1) :]
        if len(close) >= 2:
            out[symbol] = np.diff(close) / close[:-1]
    return out


async def book_view(
    store: BotStore,
    starting_equity: Decimal,
    now: datetime,
    *,
    timezone: str,
    rollover_hour: int,
    returns: Mapping[str, np.ndarray] | None = None,
    to_account: Callable[[Trade], Decimal] | None = None,
    symbols: frozenset[str] | None = None,
) -> BookView:
    """Build the protections' view of the account: equity is the starting equity plus every closed P&L.

    `to_account` converts a closed trade's P&L into the account currency (default: taken as it is);
    `symbols` keeps one broker account's trades only (default: every trade, the bot's overall book).
    """
    closed = [t for t in await store.trades(list(REAL_KINDS)) if symbols is None or t.symbol in symbols]
    account_pnl = {t.trade_id: to_account(t) if to_account else t.pnl or Decimal(0) for t in closed}
    equity = peak = starting_equity
    for trade in closed:  # oldest exit first: the realised equity curve and its peak
        equity += account_pnl[trade.trade_id]
        peak = max(peak, equity)
    day_start, next_day = trading_day(now, timezone, rollover_hour)
    return BookView(
        open_trades=[t for t in await store.open_trades(list(REAL_KINDS)) if symbols is None or t.symbol in symbols],
        closed_trades=closed,
        equity=equity,
        equity_peak=peak,
        day_start=day_start,
        next_session=next_day,
        returns=dict(returns or {}),
        account_pnl=account_pnl,
    )
