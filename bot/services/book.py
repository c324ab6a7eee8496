"""The account book the protections look at, read from the store: positions, closed trades, equity, the day."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from zoneinfo import ZoneInfo

import numpy as np

from engine.bars import Bars
from engine.ports import BotStore
from engine.protections import BookView
from engine.trading import Trade, TradeKind, closed_order

RECENT_MARGIN = timedelta(days=1)  # kept beyond what the protections' windows need
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


@dataclass(frozen=True, slots=True, eq=False)
class ClosedFold:
    """The closed side of a book: its trades (oldest exit first), their P&L in account money, the realised equity
    and its peak, with each of them after every trade (so a late close refolds only from its place).

    The trades, their exits and the values after each are the first `size` items of lists that a later fold of
    the usual close (after every other) appends to, so that close costs what it adds, not a copy of the history;
    what this fold holds never changes. `account_pnl` may then also hold the later trades' P&L (it is read by
    trade id).
    """

    _trades: list[Trade]
    _pnl: dict[str, Decimal]
    equity: Decimal
    peak: Decimal
    _exits: list[datetime]  # each trade's exit time, in the same order
    last_gain: int  # index of the latest trade that did not lose (P&L >= 0), -1 when none
    _carried: list[tuple[Decimal, Decimal, int]]  # (equity, peak, last_gain) after each trade
    size: int

    @property
    def trades(self) -> tuple[Trade, ...]:
        return tuple(self._trades[: self.size])

    @property
    def exits(self) -> tuple[datetime, ...]:
        return tuple(self._exits[: self.size])

    @property
    def carried(self) -> tuple[tuple[Decimal, Decimal, int], ...]:
        return tuple(self._carried[: self.size])

    @property
    def account_pnl(self) -> Mapping[str, Decimal]:
        return MappingProxyType(self._pnl)

    def recent(self, cutoff: datetime) -> tuple[Trade, ...]:
        """What the protections look at: the trades exited at or after `cutoff`, and before them the current run of
        losses back to the latest trade that did not lose (with every trade exited at that same time, so the run's
        start is the same in any tie order). All trades when none did not lose."""
        if self.last_gain < 0:
            return self.trades
        exits, size = self._exits, self.size
        start = min(bisect_left(exits, cutoff, 0, size), bisect_left(exits, exits[self.last_gain], 0, size))
        return tuple(self._trades[start:size])

    def extended(
        self, new: Sequence[Trade], starting_equity: Decimal, to_account: Callable[[Trade], Decimal] | None
    ) -> ClosedFold:
        """This fold with `new` closed trades (not in it) in their places in exit order; only they are converted,
        and the equity is folded again only from the earliest place one of them took (for the usual close, after
        every other, only the new trade, appended; closes at the same time as others, a bar's close, land among
        them)."""
        if not new:
            return self
        ordered = sorted(new, key=closed_order)  # stable: equal ones keep their order, as inserted one by one
        size = self.size
        last = closed_order(self._trades[size - 1]) if size else None
        if size == len(self._trades) and (last is None or closed_order(ordered[0]) >= last):
            for trade in ordered:  # the usual close: appended to the lists this fold shares, not copied
                self._trades.append(trade)
                self._exits.append(_exit_time(trade))
                self._pnl[trade.trade_id] = _converted(trade, to_account)
            start = (starting_equity, starting_equity, -1) if size == 0 else self._carried[size - 1]
            return _folded(self._trades, self._exits, self._pnl, self._carried, start, shared=True)
        trades, exits = self._trades[:size], self._exits[:size]
        account_pnl = dict(self._pnl)
        first = size
        for trade in ordered:
            at = bisect_right(trades, closed_order(trade), key=closed_order)
            first = min(first, at)
            trades.insert(at, trade)
            exits.insert(at, _exit_time(trade))
            account_pnl[trade.trade_id] = _converted(trade, to_account)
        return self._folded_from(first, trades, exits, account_pnl, starting_equity)

    def reconverted(
        self, symbols: Collection[str], starting_equity: Decimal, to_account: Callable[[Trade], Decimal] | None
    ) -> ClosedFold:
        """This fold with the trades of `symbols` converted again (their conversion prices moved); the equity is
        folded again from the first of them, the other trades' P&L kept."""
        trades, size = self._trades[: self.size], self.size
        account_pnl = dict(self._pnl)
        first = size
        for k, trade in enumerate(trades):
            if trade.symbol in symbols:
                first = min(first, k)
                account_pnl[trade.trade_id] = _converted(trade, to_account)
        if first == size:
            return self
        return self._folded_from(first, trades, self._exits[:size], account_pnl, starting_equity)

    def _folded_from(
        self,
        first: int,
        trades: list[Trade],
        exits: list[datetime],
        account_pnl: dict[str, Decimal],
        starting_equity: Decimal,
    ) -> ClosedFold:
        """The fold of `trades`, this fold's values carried up to `first`, folded again from there."""
        if first == 0:  # nothing before it to carry
            return _folded(trades, exits, account_pnl, [], (starting_equity, starting_equity, -1))
        return _folded(trades, exits, account_pnl, self._carried[:first], self._carried[first - 1])


def _converted(trade: Trade, to_account: Callable[[Trade], Decimal] | None) -> Decimal:
    return to_account(trade) if to_account else trade.pnl or Decimal(0)


def _folded(
    trades: list[Trade],
    exits: list[datetime],
    account_pnl: dict[str, Decimal],
    carried: list[tuple[Decimal, Decimal, int]],
    start: tuple[Decimal, Decimal, int],
    *,
    shared: bool = False,
) -> ClosedFold:
    """The fold of `trades` (oldest exit first) from `start` (equity, peak, last gain) after the first
    `len(carried)` of them, whose values `carried` holds. The lists become the fold's: `carried` is extended in
    place, so it must be a copy unless `shared` (the append of the usual close)."""
    equity, peak, last_gain = start
    for k in range(len(carried), len(trades)):
        pnl = account_pnl[trades[k].trade_id]
        equity += pnl
        peak = max(peak, equity)
        if pnl >= 0:
            last_gain = k
        carried.append((equity, peak, last_gain))
    return ClosedFold(trades, account_pnl, equity, peak, exits, last_gain, carried, len(trades))


def fold_closed(
    closed: Sequence[Trade],
    starting_equity: Decimal,
    to_account: Callable[[Trade], Decimal] | None = None,
    known: Mapping[str, Decimal] | None = None,
) -> ClosedFold:
    """Fold closed trades, oldest exit first: their account-money P&L, the realised equity and its peak.

    `known` holds P&L already converted with the same conversion (reused, not converted again)."""
    known = known or {}
    account_pnl = {t.trade_id: known[t.trade_id] if t.trade_id in known else _converted(t, to_account) for t in closed}
    exits = [_exit_time(t) for t in closed]
    return _folded(list(closed), exits, account_pnl, [], (starting_equity, starting_equity, -1))


@dataclass(frozen=True, slots=True)
class _Kept:
    mark: int  # the number of the latest close the fold holds
    fold: ClosedFold
    inputs: Mapping[str, Hashable]  # by symbol in the fold: what its trades' conversion read when they were converted


class ClosedBooks:
    """Folds of the closed trades, brought up to date only when a trade has closed since, or a conversion moved.

    A trade closes once and never changes after, and the store numbers each close as it is written: one read of
    the trades closed after the last number read says whether anything closed, and only those are converted (a
    close reconciled late, with an earlier exit, takes its place in exit order; folds made at the same time take
    each close once). `key` must name everything else a fold depends on (the starting equity, the account) but
    the conversion prices: with `rates` (what a symbol's conversion reads now, `Sizing.rate_inputs`), a move of a
    price converts again only the trades of the symbols that read it (a cross's P&L is converted at the rate
    book's latest price), and the equity is folded again from the first of them, not the whole book from the start.
    """

    def __init__(self, store: BotStore) -> None:
        self.store = store
        self._closed: list[tuple[int, Trade]] = []  # every closed paper and live trade read so far, in closing order
        self._mark = 0  # the number of the latest close read
        self._folds: dict[Hashable, _Kept] = {}
        self.reads = 0  # trades read from the store (for tests and benchmarks)
        self.conversions = 0  # trades converted into account money (for tests and benchmarks)

    async def fold(
        self,
        key: Hashable,
        starting_equity: Decimal,
        to_account: Callable[[Trade], Decimal] | None = None,
        symbols: frozenset[str] | None = None,
        rates: Callable[[str], Hashable] | None = None,
    ) -> ClosedFold:
        """The fold of the closed paper and live trades (of `symbols`, default all) for `key`."""
        rows = await self.store.closed_after(self._mark, list(REAL_KINDS))  # one read, empty when nothing closed
        new = [row for row in rows if row[0] > self._mark]  # a fold made meanwhile may have taken them already
        if new:
            self.reads += len(new)
            self._closed += new
            self._mark = self._closed[-1][0]
        # From here on nothing awaits: the prices read below are the ones the conversions use.
        known = self._folds.get(key)
        moved = set() if known is None else _moved(known.inputs, rates)
        if known is not None and known.mark == self._mark and not moved:
            return known.fold
        convert = self._counted(to_account)
        since = 0 if known is None else bisect_right(self._closed, known.mark, key=lambda read: read[0])
        mine = [t for _, t in self._closed[since:] if symbols is None or t.symbol in symbols]
        if known is None:
            fold = fold_closed(sorted(mine, key=closed_order), starting_equity, convert)
        else:
            fold = known.fold.reconverted(moved, starting_equity, convert) if moved else known.fold
            fold = fold.extended(mine, starting_equity, convert)  # only the new closes are converted
        inputs = {} if known is None or rates is None else dict(known.inputs)
        if rates is not None:
            inputs.update((symbol, rates(symbol)) for symbol in moved | {t.symbol for t in mine})
        self._folds[key] = _Kept(self._mark, fold, inputs)
        return fold

    def _counted(self, to_account: Callable[[Trade], Decimal] | None) -> Callable[[Trade], Decimal]:
        def convert(trade: Trade) -> Decimal:
            self.conversions += 1
            return _converted(trade, to_account)

        return convert


def _moved(inputs: Mapping[str, Hashable], rates: Callable[[str], Hashable] | None) -> set[str]:
    """The symbols whose conversion reads other prices now than when their trades were converted."""
    return set() if rates is None else {symbol for symbol, used in inputs.items() if rates(symbol) != used}


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
    closed: ClosedFold | None = None,
    reach: timedelta | None = None,
    sent: Sequence[Trade] = (),
) -> BookView:
    """Build the protections' view of the account: equity is the starting equity plus every closed P&L.

    `to_account` converts a closed trade's P&L into the account currency (default: taken as it is);
    `symbols` keeps one broker account's trades only (default: every trade, the bot's overall book); `closed`
    is the closed side already folded (`ClosedBooks`), read from the store when None. With `reach` (the longest
    symbol cooldown), the view holds only the closed trades the protections need (`ClosedFold.recent`: those
    exited since the day start or `reach` before `now`, a day earlier still, and the current losing run). `sent`
    are orders on their way, as open trades (read before this reads the open trades): each counts once, as a
    trade once its fill is recorded.
    """
    if closed is None:
        closed = await ClosedBooks(store).fold(None, starting_equity, to_account, symbols)
    held = [t for t in await store.open_trades(list(REAL_KINDS)) if symbols is None or t.symbol in symbols]
    filled = {t.signal_id for t in held}
    held += [t for t in sent if t.signal_id not in filled and (symbols is None or t.symbol in symbols)]
    return view_of(closed, held, now, timezone=timezone, rollover_hour=rollover_hour, returns=returns, reach=reach)


def view_of(
    closed: ClosedFold,
    open_trades: Sequence[Trade],
    now: datetime,
    *,
    timezone: str,
    rollover_hour: int,
    returns: Mapping[str, np.ndarray] | None = None,
    reach: timedelta | None = None,
) -> BookView:
    """The protections' view of a closed fold and the open trades at `now` (see `book_view`)."""
    day_start, next_day = trading_day(now, timezone, rollover_hour)
    trades = closed.trades if reach is None else closed.recent(min(day_start, now - reach) - RECENT_MARGIN)
    return BookView(
        open_trades=list(open_trades),
        closed_trades=trades,
        equity=closed.equity,
        equity_peak=closed.peak,
        day_start=day_start,
        next_session=next_day,
        returns=dict(returns or {}),
        account_pnl=closed.account_pnl,
    )


def _exit_time(trade: Trade) -> datetime:
    if trade.exit_time is None:
        raise ValueError(f"trade {trade.trade_id} is open; the closed book holds closed trades only")
    return trade.exit_time
