"""Gather the trader's reports from the running bot's services (the figures are computed in `reports`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from bot.services.book import REAL_KINDS, TRADED_KINDS
from bot.services.reports import (
    CENT,
    BalanceRow,
    PerformanceRow,
    Period,
    PeriodRow,
    ProfitReport,
    balance_row,
    by_period,
    performance_rows,
    profit,
)
from engine.performance import PerformanceSummary, summarize
from engine.ports import BrokerError
from engine.routing import Account
from engine.sizing import Sizing
from engine.trading import Trade, TradeKind

if TYPE_CHECKING:
    from bot.services.runtime import BotRuntime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CountReport:
    open_positions: int
    max_open: int
    trades_today: int
    max_per_day: int | None
    by_symbol: dict[str, int]


Money = Callable[..., Decimal]  # a closed trade (and an account's sizing) -> its P&L in account money


@dataclass(frozen=True)
class Overview:
    """What /report shows first: the traded book, each strategy's part of it, and the shadow trades."""

    closed: PerformanceSummary
    by_strategy: dict[str, PerformanceSummary]
    shadow: PerformanceSummary


class Reporting:
    """The figures behind /report, /profit, /daily, /weekly, /monthly, /performance, /trades, /balance and /count.

    The figures over the whole closed book (thousands of trades) are computed in a thread, with the conversion
    prices copied first: the event loop, and every click, runs on meanwhile.
    """

    def __init__(self, runtime: BotRuntime, *, quotes: bool = True) -> None:
        self.rt = runtime
        self.quotes = quotes  # False: open positions are not priced (the shell's report never waits on a broker)

    @property
    def currency(self) -> str:
        return self.rt.desk.policy.account_currency

    async def _closed(self) -> list[Trade]:
        return await self.rt.store.trades(TRADED_KINDS)

    def _money(self) -> Money:
        """The desk's conversion of closed P&L into account money at today's prices, copied now (for a thread)."""
        return self.rt.desk.money_now()

    async def overview(self) -> Overview:
        closed = await self._closed()
        shadow = await self.rt.store.trades([TradeKind.SHADOW])
        money = self._money()

        def compute() -> Overview:
            names = sorted({t.strategy for t in closed})
            by_strategy = {n: summarize([t for t in closed if t.strategy == n], money) for n in names}
            return Overview(summarize(closed, money), by_strategy, summarize(shadow, money))

        return await asyncio.to_thread(compute)

    async def marks(self, trades: list[Trade]) -> dict[str, Decimal]:
        """The broker's mid price of each open position's symbol (left out when the broker cannot say)."""
        marks: dict[str, Decimal] = {}
        for trade in trades if self.quotes else []:
            broker = self.rt.control.brokers.get(trade.kind)
            instrument = self.rt.instruments.get(trade.symbol)
            if trade.symbol in marks or broker is None or instrument is None:
                continue
            try:
                marks[trade.symbol] = (await broker.quote(instrument)).mid
            except BrokerError as exc:
                log.info("no mark for %s: %s", trade.symbol, exc)
        return marks

    def open_pnl(self, trade: Trade, mark: Decimal | None, sizing: Sizing | None = None) -> Decimal | None:
        """An open position's P&L at `mark` in the account currency (entry fees counted); None if unknown."""
        instrument = self.rt.instruments.get(trade.symbol)
        if mark is None or instrument is None:
            return None
        raw = (mark - trade.entry_price) * trade.side.sign * trade.quantity * trade.contract_size - trade.entry_fees
        try:
            converted = (sizing or self.rt.desk.policy.sizing).to_account(
                instrument, raw, mark, self.rt.desk.rates.prices()
            )
        except ValueError:
            return None
        return converted.quantize(CENT)

    async def profit(self) -> ProfitReport:
        closed = await self._closed()
        positions = await self.rt.control.open_positions()
        marks = await self.marks(positions)
        open_pnl = {t.trade_id: self.open_pnl(t, marks.get(t.symbol)) for t in positions}
        equity = self.rt.desk.policy.equity
        return await asyncio.to_thread(profit, closed, self._money(), open_pnl, equity, self.currency)

    async def periods(self, period: Period, count: int) -> list[PeriodRow]:
        today = self.rt.clock.now().date()
        return await asyncio.to_thread(by_period, await self._closed(), self._money(), period, count, today)

    async def performance(self) -> tuple[list[PerformanceRow], list[PerformanceRow]]:
        now = self.rt.clock.now()
        systems = await self.rt.desk.systems.refresh(self.rt.store)
        return await asyncio.to_thread(performance_rows, await self._closed(), self._money(), systems, now)

    async def trades(self, count: int) -> list[tuple[Trade, Decimal]]:
        """The newest `count` closed trades with their P&L in the account currency, newest first."""
        closed, money = await self._closed(), self._money()

        def newest() -> list[tuple[Trade, Decimal]]:
            ended = sorted(
                (t for t in closed if t.exit_time is not None), key=lambda t: (t.exit_time, t.trade_id), reverse=True
            )
            return [(t, money(t).quantize(CENT)) for t in ended[:count]]

        return await asyncio.to_thread(newest)

    async def balance(self) -> list[BalanceRow]:
        """Each broker account's equity, open positions, exposure and leverage (the default account first)."""
        desk = self.rt.desk
        closed = await self.rt.store.trades(list(REAL_KINDS))
        positions = await self.rt.control.open_positions()
        marks = await self.marks(positions)
        rows = []
        accounts: list[tuple[Account | None, Sizing, Decimal, str]] = [
            (None, desk.policy.sizing, desk.policy.equity, self.rt.settings.broker.kind.value)
        ]
        accounts += [(a, a.sizing, a.equity, f"{m.value}: {a.name}") for m, a in desk.policy.accounts.items()]
        money = self._money()

        def realised() -> list[Decimal]:
            return [
                sum((money(t, sizing) for t in closed if desk.account_of(t.symbol) is account), Decimal(0))
                for account, sizing, _, _ in accounts
            ]

        pnls = await asyncio.to_thread(realised)
        for (account, sizing, start, name), pnl in zip(accounts, pnls, strict=True):
            held = [t for t in positions if desk.account_of(t.symbol) is account]
            exposure = self._notional(held, marks, sizing)
            currency = sizing.account_currency or ""
            rows.append(balance_row(account, name, start, currency, pnl, len(held), exposure))
        return rows

    def _notional(self, held: list[Trade], marks: dict[str, Decimal], sizing: Sizing) -> Decimal | None:
        """The open positions' notional in the account's money at their marks (entry where there is none); None
        when an instrument or a conversion rate is unknown."""
        total = Decimal(0)
        for trade in held:
            instrument = self.rt.instruments.get(trade.symbol)
            if instrument is None:
                return None
            price = marks.get(trade.symbol, trade.entry_price)
            try:
                total += sizing.notional(instrument, trade.quantity, price, self.rt.desk.rates.prices())
            except ValueError:  # no conversion rate into the account's currency
                return None
        return total

    async def count(self) -> CountReport:
        now = self.rt.clock.now()
        view = await self.rt.desk.book(now)
        limits = self.rt.desk.policy.protections
        today = [t for t in view.closed_trades if t.entry_time >= view.day_start]
        today += [t for t in view.open_trades if t.entry_time >= view.day_start]
        symbols: dict[str, int] = {}
        for trade in view.open_trades:
            symbols[trade.symbol] = symbols.get(trade.symbol, 0) + 1
        return CountReport(
            len(view.open_trades), limits.max_open_positions, len(today), limits.max_trades_per_day, symbols
        )
