"""The analysis run: fetch bars, validate them, run the engine, persist what it found.

The same service serves `tradebot scan`, the bot's scheduled runs and replays (a fixed clock per bar).
One bad symbol never aborts a run: provider errors, rejected bar data and even unexpected exceptions are
recorded against that symbol and the run goes on.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import traceback
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.ops.logs import log_context
from bot.ops.worker import WorkerProcess
from data.market.validation import BarCheck, validate_bars
from engine.bars import Bars
from engine.calendars import SessionCalendar
from engine.domain import Instrument, Rejection, RejectionKind, ScoredSetup, ensure_utc
from engine.indicators import MarketContext
from engine.pipeline import EngineConfig, scan_instrument
from engine.ports import BarProvider, Clock, ProviderError, SignalStore
from engine.strategy import Strategy

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

MAX_CONCURRENT_FETCHES = 4
WORKER_DEADLINE_SECONDS = 60.0  # one symbol's evaluation in the worker process (its start included)


@dataclass(frozen=True)
class WatchItem:
    """An instrument with its calendar and the strategies that run on it."""

    instrument: Instrument
    calendar: SessionCalendar
    strategies: tuple[Strategy[Any], ...]


@dataclass(frozen=True)
class BarRules:
    """How much history to load (at least; see `ScanService.history_bars`) and how strict the bar validation is."""

    history_bars: int = 2000
    min_bars: int = 100
    stale_bars: int = 3
    max_bad_fraction: float = 0.01


@dataclass(frozen=True)
class SymbolOutcome:
    symbol: str
    setups: tuple[ScoredSetup, ...] = ()
    rejections: tuple[Rejection, ...] = ()
    notes: tuple[str, ...] = ()
    error: str | None = None
    # The clean bars the engine saw: all of them for a symbol with a setup (its chart) or asked for whole (an open
    # position's monitor replays from its entry), else the last `ScanService.kept_bars` (its latest close and returns).
    bars: Bars | None = field(default=None, compare=False, repr=False)

    @property
    def evaluated(self) -> bool:
        """Whether the engine ran on this symbol's bars (its data was usable)."""
        return self.error is None and not any(
            r.kind is RejectionKind.SYMBOL and r.strategy is None for r in self.rejections
        )


@dataclass(frozen=True)
class ScanReport:
    """Everything one run produced, in watchlist order."""

    run_id: int | None
    started_at: datetime
    as_of: datetime
    data_source: str
    outcomes: tuple[SymbolOutcome, ...]
    strategies: tuple[str, ...] = field(default_factory=tuple)

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(o.symbol for o in self.outcomes)

    @property
    def setups(self) -> tuple[ScoredSetup, ...]:
        ranked = [s for o in self.outcomes for s in o.setups]
        return tuple(sorted(ranked, key=lambda s: (-s.score.total, s.setup.symbol, s.setup.strategy)))

    @property
    def rejections(self) -> tuple[Rejection, ...]:
        return tuple(r for o in self.outcomes for r in o.rejections)

    @property
    def bars(self) -> dict[str, Bars]:
        """The clean bars each evaluated symbol was scanned on, or their tail (see `SymbolOutcome.bars`)."""
        return {o.symbol: o.bars for o in self.outcomes if o.bars is not None}

    @property
    def errors(self) -> tuple[str, ...]:
        return tuple(f"{o.symbol}: {o.error}" for o in self.outcomes if o.error)

    @property
    def evaluated(self) -> int:
        return sum(o.evaluated for o in self.outcomes)


class ScanService:
    """Runs analysis over the watchlist and persists each run."""

    def __init__(
        self,
        provider: BarProvider,
        store: SignalStore | None,
        watchlist: Sequence[WatchItem],
        engine: EngineConfig,
        rules: BarRules,
        clock: Clock,
        worker: WorkerProcess | None = None,
        kept_bars: int | None = None,
    ) -> None:
        if kept_bars is not None and kept_bars < 1:
            raise ValueError(f"kept_bars must be at least 1 bar or None (all), was {kept_bars}")
        self.provider = provider
        self.store = store
        self.watchlist = tuple(watchlist)
        self.engine = engine
        self.rules = rules
        self.clock = clock
        # Fetches wait on the network in up to MAX_CONCURRENT_FETCHES threads; the CPU work (validation,
        # indicators, strategies, scores) runs in the worker process when there is one (the running bot: a click
        # never waits for the GIL behind a scan), else on this one thread, symbol after symbol (more threads would
        # not compute faster under the GIL; each one more competes with the event loop for it). A worker that dies
        # or misses its deadline costs nothing: that symbol is computed here.
        self.worker = worker
        # What a run keeps of a symbol with no setup that it was not asked to keep whole: its last `kept_bars` clean
        # bars. The rest would only cross back from the worker to be dropped (up to 27,276 5m bars a symbol).
        self.kept_bars = kept_bars
        self._sent_to: int | None = None  # the worker process the items in `_sent` were sent to
        self._sent: set[ItemKey] = set()
        self._compute = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scan")

    def close(self) -> None:
        """Stop the compute thread (a run in progress finishes its current symbol)."""
        self._compute.shutdown(wait=False, cancel_futures=True)

    def history_bars(self, item: WatchItem) -> int:
        """Bars fetched for `item`: what its strategies and the score need to converge, at least the configured.

        With that much history the scan at the last bar finds the setups, scores and reasons a backtest over
        all of history finds at that bar (`Strategy.history`); a provider that holds less serves what it has.
        """
        needs = (s.history(item.instrument) for s in item.strategies)
        return max(self.rules.history_bars, self.engine.scorer.history(item.instrument.interval), *needs)

    def select(
        self, symbols: Collection[str] | None = None, strategies: Collection[str] | None = None
    ) -> list[WatchItem]:
        """Watchlist items restricted to `symbols` and `strategies`; unknown names raise ValueError."""
        return select(self.watchlist, symbols, strategies)

    async def scan(
        self,
        as_of: datetime | None = None,
        symbols: Collection[str] | None = None,
        strategies: Collection[str] | None = None,
        whole: Collection[str] = (),
    ) -> ScanReport:
        """Run one analysis at `as_of` (default: the clock's now) and persist it; the report keeps all the clean
        bars of the symbols in `whole` and of those with a setup, the last `kept_bars` of the others."""
        items = self.select(symbols, strategies)
        started_at = self.clock.now()
        now = ensure_utc(as_of, "as_of") if as_of is not None else started_at
        names = [i.instrument.symbol for i in items]
        run_id = None
        if self.store is not None:
            run_id = await self.store.start_run(started_at, now, self.provider.name, names)
        with log_context(run_id=run_id):  # worker threads copy the context: their log lines carry the run id
            return await self._scan(items, started_at, now, run_id, frozenset(whole))

    async def _scan(
        self, items: list[WatchItem], started_at: datetime, now: datetime, run_id: int | None, whole: frozenset[str]
    ) -> ScanReport:
        gate = asyncio.Semaphore(MAX_CONCURRENT_FETCHES)
        loop = asyncio.get_running_loop()
        # The run waits for a starting worker (a second or two after a start) rather than computing here: TA-Lib
        # and a run's indicators stay out of the bot's memory; only a worker that cannot start leaves it to the bot.
        in_worker = self.worker is not None and await self.worker.prepare(__name__)

        async def one(item: WatchItem) -> SymbolOutcome:
            async with gate:
                fetched = await asyncio.to_thread(self.fetch, item, now)
            if isinstance(fetched, SymbolOutcome):
                return fetched
            keep = None if item.instrument.symbol in whole else self.kept_bars
            if self.worker is not None and in_worker and self.worker.ready:
                try:
                    return _reported(item, await self._in_worker(self.worker, item, fetched, now, keep))
                except Exception as exc:  # it died, was late, or could not take the task (pickling): compute here
                    symbol = item.instrument.symbol
                    log.warning(
                        "the scan worker failed on %s (%s: %s); computed in the bot", symbol, type(exc).__name__, exc
                    )
            context = contextvars.copy_context()  # the compute thread's log lines carry the run id too
            return await loop.run_in_executor(self._compute, context.run, self.evaluate_bars, item, fetched, now, keep)

        try:
            outcomes = tuple(await asyncio.gather(*(one(i) for i in items)))
        except BaseException as exc:
            if self.store is not None and run_id is not None:
                await asyncio.shield(self.store.mark_run_failed(run_id, self.clock.now(), repr(exc)))
            raise
        strategy_names = tuple(sorted({s.name for i in items for s in i.strategies}))
        report = ScanReport(run_id, started_at, now, self.provider.name, outcomes, strategy_names)
        if self.store is not None and run_id is not None:
            await self.store.finish_run(run_id, self.clock.now(), report.setups, report.rejections, report.errors)
        return report

    async def _in_worker(
        self, worker: WorkerProcess, item: WatchItem, frame: pd.DataFrame, now: datetime, keep: int | None
    ) -> tuple[SymbolOutcome, str | None]:
        """`evaluate_frame` in the worker, sending `item` (its strategies, its calendar's holidays: most of a task's
        bytes) only to a worker that has not had it yet."""
        key: ItemKey = (item.instrument.symbol, id(item.calendar), *(id(s) for s in item.strategies))
        pid = worker.pid()
        if pid != self._sent_to:
            self._sent_to, self._sent = pid, set()
        args = (frame, now, self.engine, self.rules, self.history_bars(item), keep)
        if key in self._sent:
            try:
                return await worker.call(WORKER_DEADLINE_SECONDS, evaluate_known, key, None, *args)
            except UnknownItem:  # a new worker: send it
                self._sent.discard(key)
        outcome = await worker.call(WORKER_DEADLINE_SECONDS, evaluate_known, key, item, *args)
        if worker.pid() == self._sent_to:
            self._sent.add(key)
        return outcome

    def clean_bars(self, symbol: str, now: datetime) -> Bars | str:
        """The validated bars of `symbol` a scan would use now, or why there are none."""
        item = next((w for w in self.watchlist if w.instrument.symbol == symbol), None)
        if item is None:
            return f"{symbol} is not in the watchlist"
        try:
            check = checked_bars(
                item, self.provider.fetch(item.instrument, now, self.history_bars(item)), now, self.rules
            )
        except Exception as exc:  # the data source's own words: a missing file, an unreachable feed
            return f"no data for {symbol}: {exc}"
        return check.bars if check.bars is not None else f"{symbol}: {check.rejection or 'bar data rejected'}"

    def evaluate(self, item: WatchItem, now: datetime) -> SymbolOutcome:
        """Fetch, validate and scan one instrument; never raises."""
        fetched = self.fetch(item, now)
        return fetched if isinstance(fetched, SymbolOutcome) else self.evaluate_bars(item, fetched, now)

    def fetch(self, item: WatchItem, now: datetime) -> pd.DataFrame | SymbolOutcome:
        """The bars of one instrument from the provider, or the outcome saying why there are none; never raises."""
        symbol = item.instrument.symbol
        try:
            return self.provider.fetch(item.instrument, now, self.history_bars(item))
        except ProviderError as exc:
            return SymbolOutcome(symbol, rejections=(_symbol_rejection(symbol, f"no data: {exc}"),))
        except Exception as exc:
            log.exception("fetching %s failed", symbol)
            return SymbolOutcome(symbol, error=f"fetching bars failed: {type(exc).__name__}: {exc}")

    def evaluate_bars(
        self, item: WatchItem, frame: pd.DataFrame, now: datetime, keep: int | None = None
    ) -> SymbolOutcome:
        """Validate and scan one instrument's fetched bars here (keeping the last `keep` bars without a setup; None:
        all); never raises."""
        return _reported(item, evaluate_frame(item, frame, now, self.engine, self.rules, self.history_bars(item), keep))


def _reported(item: WatchItem, evaluated: tuple[SymbolOutcome, str | None]) -> SymbolOutcome:
    """The outcome of `evaluate_frame`, its failure's traceback logged here (in the bot, with its redaction)."""
    outcome, failure = evaluated
    if failure is not None:
        log.error("evaluating %s failed\n%s", item.instrument.symbol, failure)
    return outcome


def checked_bars(item: WatchItem, frame: pd.DataFrame, now: datetime, rules: BarRules) -> BarCheck:
    """The bars of `frame` checked by a scan's rules."""
    return validate_bars(
        frame,
        item.instrument,
        item.calendar,
        now,
        min_bars=rules.min_bars,
        stale_bars=rules.stale_bars,
        max_bad_fraction=rules.max_bad_fraction,
    )


def evaluate_frame(
    item: WatchItem,
    frame: pd.DataFrame,
    now: datetime,
    engine: EngineConfig,
    rules: BarRules,
    needed: int,
    keep: int | None = None,
) -> tuple[SymbolOutcome, str | None]:
    """Validate and scan one instrument's fetched bars (pure: it runs in the worker process too); the outcome, and
    the traceback of a failure for the caller to log. Never raises. The outcome holds all the clean bars when it
    has a setup or `keep` is None, else their last `keep`."""
    symbol = item.instrument.symbol
    try:
        check = checked_bars(item, frame, now, rules)
        if check.bars is None:
            reason = check.rejection or "bar data rejected"
            return SymbolOutcome(symbol, rejections=(_symbol_rejection(symbol, reason),), notes=check.notes), None
        ctx = MarketContext(item.instrument, check.bars, item.calendar)
        result = scan_instrument(ctx, list(item.strategies), engine, now)
    except Exception as exc:
        error = f"evaluation failed: {type(exc).__name__}: {exc}"
        return SymbolOutcome(symbol, error=error), traceback.format_exc()
    notes = check.notes
    if len(check.bars) < needed:
        notes = (*notes, short_history_note(len(check.bars), needed))
    bars = check.bars if keep is None or result.setups else check.bars.tail(keep)
    return SymbolOutcome(symbol, result.setups, result.rejections, notes, bars=bars), None


ItemKey = tuple[str | int, ...]  # a watchlist item's symbol and the identities of its calendar and strategies
_KNOWN_ITEMS: dict[ItemKey, WatchItem] = {}  # in the worker process: the items the bot has sent, by its key
MAX_KNOWN_ITEMS = 1_000


class UnknownItem(LookupError):
    """The worker process was not sent this watchlist item (it is a new one)."""


def evaluate_known(
    key: ItemKey,
    item: WatchItem | None,
    frame: pd.DataFrame,
    now: datetime,
    engine: EngineConfig,
    rules: BarRules,
    needed: int,
    keep: int | None = None,
) -> tuple[SymbolOutcome, str | None]:
    """`evaluate_frame` in the worker process for the item sent with `key` now (`item`) or on an earlier task."""
    if item is not None:
        if len(_KNOWN_ITEMS) >= MAX_KNOWN_ITEMS:
            _KNOWN_ITEMS.clear()
        _KNOWN_ITEMS[key] = item
    else:
        item = _KNOWN_ITEMS.get(key)
        if item is None:
            raise UnknownItem(key)
    return evaluate_frame(item, frame, now, engine, rules, needed, keep)


def short_history_note(bars: int, needed: int) -> str:
    """Say that a scan ran on less history than its slowest indicators need to converge."""
    return (
        f"short history: {bars:,} of the {needed:,} bars the strategies and the score need to converge; slow "
        "averages may differ from a backtest over longer history until the provider holds more"
    )


def select(
    watchlist: Sequence[WatchItem], symbols: Collection[str] | None, strategies: Collection[str] | None
) -> list[WatchItem]:
    """Watchlist items restricted to `symbols` and `strategies`; unknown names raise ValueError."""
    why = unknown_names(
        {w.instrument.symbol for w in watchlist}, {s.name for w in watchlist for s in w.strategies}, symbols, strategies
    )
    if why is not None:
        raise ValueError(why)
    chosen = []
    for item in watchlist:
        if symbols is not None and item.instrument.symbol not in symbols:
            continue
        runs = tuple(s for s in item.strategies if strategies is None or s.name in strategies)
        if runs:
            chosen.append(WatchItem(item.instrument, item.calendar, runs))
    return chosen


def _symbol_rejection(symbol: str, reason: str) -> Rejection:
    return Rejection(RejectionKind.SYMBOL, symbol, reason)


def unknown_names(
    known_symbols: Collection[str],
    known_strategies: Collection[str],
    symbols: Collection[str] | None,
    strategies: Collection[str] | None,
) -> str | None:
    """Why `symbols` or `strategies` name something the watchlist does not have (None: they do not)."""
    if symbols is not None and (unknown := sorted(set(symbols) - set(known_symbols))):
        return f"unknown symbol(s) {', '.join(unknown)}; watchlist: {', '.join(sorted(known_symbols))}"
    if strategies is not None and (unknown := sorted(set(strategies) - set(known_strategies))):
        return f"unknown or disabled strategy(ies) {', '.join(unknown)}; enabled: {', '.join(sorted(known_strategies))}"
    return None
