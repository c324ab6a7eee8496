"""The running bot's services, wired once from settings (the composition root of `tradebot run`)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Collection
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from bot.children import ChildOrderBroker
from bot.clock import BotClock
from bot.composition import bar_rules, cache_dir, cost_model, watchlist
from bot.config import BrokerKind, Settings
from bot.desk import DeskPolicy, OfferDecision, SignalDesk
from bot.drift_watch import DriftWatch
from bot.learner import LearnedModel, Learner, learned_text
from bot.monitor import PositionMonitor
from bot.notifier import Notifier
from bot.oanda import OandaBroker, OandaEnvironment, OandaSettings, market_order
from bot.paper_broker import PaperBroker
from bot.rates import RateBook, needed_pairs
from bot.resilience import BreakerState, CircuitBreaker, ResilientBroker, RetryPolicy
from bot.scan import ScanReport, ScanService
from bot.scheduler import ScheduleGroup, Scheduler, build_groups
from bot.shadow import ShadowBroker
from bot.state import BotState
from data.news_feed import NewsSource
from data.providers import provider_from_source
from data.store import SqliteStore
from engine.calendars import SessionCalendar, calendar_warnings
from engine.costs import CostModel
from engine.domain import Instrument, RejectionKind, RunStatus, SignalStatus
from engine.ports import BarProvider, Broker
from engine.trading import TradeKind

log = logging.getLogger(__name__)


@dataclass
class BotRuntime:
    """Everything the Telegram layer calls: one object per process."""

    settings: Settings
    store: SqliteStore
    clock: BotClock
    provider: BarProvider
    scan: ScanService
    state: BotState
    notifier: Notifier
    desk: SignalDesk
    monitor: PositionMonitor
    instruments: dict[str, Instrument]
    calendars: dict[str, SessionCalendar]
    chats: tuple[int, ...]
    learner: Learner
    drift: DriftWatch
    breaker: CircuitBreaker | None = None

    def __post_init__(self) -> None:
        self._run_lock = asyncio.Lock()
        self._learning: asyncio.Task[LearnedModel | str] | None = None
        groups = build_groups(self.settings.bot.schedules, list(self.instruments.values()), self.calendars)
        self.scheduler = Scheduler(groups, self.calendars, self.clock, self.scheduled_run)

    async def analyse(self, symbols: Collection[str] | None = None) -> tuple[ScanReport, list[OfferDecision]]:
        """Run one analysis now, offer what it found and check open positions (one run at a time)."""
        async with self._run_lock:
            report = await self.scan.scan(symbols=symbols)
            await self.learner.refresh()
            decisions = await self.desk.offer(report.setups, report.bars)
            await self.monitor.check(symbols, report.bars)
            await self.monitor.check_live()
        if report.errors:
            await self.notifier.text(
                f"⚠️ run {report.run_id}: {len(report.errors)} symbol(s) failed: " + "; ".join(report.errors[:3])
            )
        return report, decisions

    def status_notes(self, now: datetime) -> list[str]:
        """Warnings for /status: holiday data running out, conversion rates that are missing."""
        return calendar_warnings(self.calendars.values(), now) + self.desk.rate_notes()

    def broker_status(self) -> str:
        """One line for /status: the broker and, behind a circuit breaker, its state; or that orders are shadowed."""
        name = self.desk.broker.name
        b = self.settings.broker
        if b.shadow:
            return f"{name} · shadow mode: orders for OANDA {b.oanda_environment} are recorded, not sent"
        if self.breaker is None:
            return name
        snap = self.breaker.snapshot()
        line = f"{name} · circuit {snap.state.value}"
        if snap.failures:
            line += f" · {snap.failures} failure(s) in a row"
        if snap.retry_at is not None:
            line += f" · retry at {snap.retry_at:%H:%M} UTC"
        return line

    async def wait_idle(self) -> None:
        """Wait for the analysis in progress, if any, to finish."""
        async with self._run_lock:
            return

    async def settle_interrupted_runs(self) -> int:
        """Mark runs a crash left 'running' as failed, so run history never claims a run is still going."""
        interrupted = [r for r in await self.store.recent_runs(100) if r.status is RunStatus.RUNNING]
        for run in interrupted:
            # A replay restarted at the same bot time may be "before" the run it settles.
            at = max(self.clock.now(), run.started_at)
            await self.store.mark_run_failed(run.run_id, at, "interrupted: the bot stopped during the run")
        return len(interrupted)

    async def scheduled_run(self, group: ScheduleGroup, symbols: list[str]) -> None:
        """A scheduled run: failures are reported, and the scheduler arms the next run anyway."""
        try:
            report, decisions = await self.analyse(symbols)
            log.info(
                "run %s (%s): %d symbols, %d setups, %d offered",
                report.run_id,
                group.name,
                len(report.symbols),
                len(report.setups),
                sum(d.status is not SignalStatus.DROPPED for d in decisions),
            )
        except Exception as exc:
            log.exception("scheduled run %s failed", group.name)
            await self.notifier.text(f"⚠️ scheduled run {group.name} failed: {type(exc).__name__}: {exc}")

    async def tick(self, context: object = None) -> None:
        """Housekeeping on the bot clock: expire pending signals whose time is up, settle unconfirmed orders."""
        del context
        try:
            expired = await self.desk.expire_due()
            if expired:
                log.info("expired %d signal(s)", expired)
        except Exception:
            log.exception("expiry check failed")
        try:
            settled = await self.desk.settle_unconfirmed()
            if settled:
                log.info("checked %d unconfirmed order(s) with the broker", settled)
        except Exception:
            log.exception("settling unconfirmed orders failed")
        now = self.clock.now()
        try:
            await self.drift.check_if_due()
        except Exception as exc:
            log.exception("the drift check failed")
            await self.notifier.text(f"⚠️ drift check failed: {type(exc).__name__}: {exc}")
        try:
            if (self._learning is None or self._learning.done()) and await self.learner.due(now):
                self._learning = asyncio.create_task(self.learn("schedule"), name="learning")
        except Exception:
            log.exception("starting the daily learning run failed")

    async def learn(self, trigger: str = "command") -> LearnedModel | str:
        """Fit and apply a new learned model and tell the chat what changed; failures are told, not raised."""
        try:
            result = await self.learner.learn(trigger=trigger)
        except Exception as exc:
            log.exception("learning failed")
            await self.notifier.text(f"⚠️ learning failed: {type(exc).__name__}: {exc}")
            return f"learning failed: {exc}"
        if isinstance(result, str):
            return result
        await self.notifier.text(learned_text(result))
        return result

    async def stop_learning(self) -> None:
        """Cancel a scheduled learning run in progress (no model is stored before it has finished fitting)."""
        if self._learning is not None and not self._learning.done():
            self._learning.cancel()
            await asyncio.gather(self._learning, return_exceptions=True)


def top_rejection_reasons(report: ScanReport, n: int = 3) -> list[tuple[str, int]]:
    """The most common rejection reasons of a run (reason text up to its first colon or number)."""
    counts: Counter[str] = Counter()
    for r in report.rejections:
        head = r.reason.split(":")[0] if r.kind is RejectionKind.SETUP else f"{r.reason.split(':')[0]} (symbol)"
        counts[head.strip()] += 1
    return counts.most_common(n)


def target_chats(settings: Settings) -> tuple[int, ...]:
    """TELEGRAM_CHAT_ID, or each allowed user's private chat (a private chat's id is the user's id)."""
    if settings.telegram_chat_id is not None:
        return (settings.telegram_chat_id,)
    return tuple(settings.telegram_allowed_users)


def desk_policy(settings: Settings) -> DeskPolicy:
    b = settings.bot
    return DeskPolicy(
        default_mode=b.mode,
        auto_threshold=b.auto_threshold,
        ask_threshold=b.ask_threshold,
        ttl_bars=b.signal_ttl_bars,
        max_price_drift_r=b.max_price_drift_r,
        cooldown=timedelta(minutes=b.symbol_cooldown_minutes),
        digest_threshold=b.digest_threshold,
        max_signals_per_run=b.max_signals_per_run,
        equity=b.account_equity,
        risk_fraction=b.risk_per_trade,
        costs=cost_model(settings),
        trade_failed_strategies=b.trade_failed_strategies,
        protections=b.protections.engine_config(),
        day_timezone=b.protections.day_timezone,
        day_rollover_hour=b.protections.day_rollover_hour,
        embargo=b.news.embargo(),
        account_currency=b.account_currency,
        quote_currencies={w.symbol: w.quote_currency for w in settings.watchlist if w.quote_currency},
        limits={w.symbol: w.size_limits() for w in settings.watchlist},
    )


def rate_book(settings: Settings, provider: BarProvider | None) -> RateBook:
    """The conversion prices the watchlist needs into the account currency (feed, then `[bot.fx_rates]`)."""
    quotes = {w.symbol: w.quote_currency for w in settings.watchlist}
    pairs = needed_pairs(settings.instruments, settings.bot.account_currency, quotes)
    return RateBook(pairs, provider, settings.bot.fx_rates)


@asynccontextmanager
async def open_runtime(settings: Settings, clock: BotClock | None = None) -> AsyncIterator[BotRuntime]:
    """Build the runtime over one SQLite connection; close it on exit (after the current transaction)."""
    clock = clock or BotClock(settings.clock_start, settings.clock_speed)
    provider = provider_from_source(settings.data_source, cache_dir(settings))
    items = watchlist(settings)
    instruments = {w.instrument.symbol: w.instrument for w in items}
    calendars = {w.instrument.symbol: w.calendar for w in items}
    for line in calendar_warnings(calendars.values(), clock.now()):
        log.warning(line)
    chats = target_chats(settings)
    costs = cost_model(settings)
    store = await SqliteStore.open(settings.db_path)
    exits = AsyncExitStack()
    try:
        state = BotState(store, settings.bot.mode)
        freeze = {w.symbol: w.freeze_quantity for w in settings.watchlist if w.freeze_quantity is not None}
        notifier = Notifier(store, chats, instruments, clock, freeze=freeze)
        broker, breaker = await _broker(settings, provider, instruments, clock, costs, notifier, exits, store)
        if freeze:
            broker = ChildOrderBroker(broker, freeze)
        monitor = PositionMonitor(
            store,
            provider,
            notifier,
            clock,
            instruments,
            calendars,
            history_bars=settings.scan.history_bars,
            max_hold_bars=settings.bot.max_hold_bars,
            costs=costs,
            broker=broker,
        )
        learner = Learner(store, provider, clock, settings, items)
        await learner.refresh()
        yield BotRuntime(
            settings=settings,
            store=store,
            clock=clock,
            provider=provider,
            scan=ScanService(provider, store, items, settings.engine_config(), bar_rules(settings), clock),
            state=state,
            notifier=notifier,
            desk=SignalDesk(
                store,
                broker,
                notifier,
                state,
                clock,
                instruments,
                desk_policy(settings),
                TradeKind.LIVE if settings.broker.sends_orders else TradeKind.PAPER,
                _news(settings),
                rate_book(settings, provider),
                calendars,
                learner,
            ),
            monitor=monitor,
            instruments=instruments,
            calendars=calendars,
            chats=chats,
            learner=learner,
            drift=DriftWatch(store, notifier, clock, settings.drift),
            breaker=breaker,
        )
    finally:
        await exits.aclose()
        await store.close()


def _news(settings: Settings) -> NewsSource | None:
    """The news calendar source, or None when the embargo is off."""
    news = settings.bot.news
    if news.source == "none":
        return None
    return NewsSource(news.source, cache_dir(settings) / "news", news.fallback)


async def _broker(
    settings: Settings,
    provider: BarProvider,
    instruments: dict[str, Instrument],
    clock: BotClock,
    costs: CostModel,
    notifier: Notifier,
    exits: AsyncExitStack,
    store: SqliteStore,
) -> tuple[Broker, CircuitBreaker | None]:
    """Build the broker: paper, OANDA behind retries and an alerting breaker, or paper recording OANDA's orders."""
    b = settings.broker
    paper = PaperBroker(provider, instruments, clock, costs, settings.bot.account_equity)
    if b.kind is BrokerKind.PAPER:
        return paper, None
    assert settings.oanda_token is not None  # the settings refuse an OANDA broker without it
    oanda_settings = OandaSettings(
        account_id=b.oanda_account_id,
        token=settings.oanda_token,
        environment=OandaEnvironment(b.oanda_environment),
        base_url=b.oanda_base_url,
        timeout_s=b.timeout_seconds,
    )
    if b.shadow:
        log.warning(
            "shadow mode: orders for OANDA %s (account %s) are recorded, not sent; fills are paper",
            b.oanda_environment,
            b.oanda_account_id,
        )
        return ShadowBroker(paper, partial(market_order, oanda_settings), store, clock, target=BrokerKind.OANDA), None
    oanda = OandaBroker(oanda_settings, instruments)
    exits.push_async_callback(oanda.aclose)

    async def alert(state: BreakerState, reason: str) -> None:
        await notifier.text(f"⚠️ broker {oanda.name}: circuit {state.value}: {reason}")

    breaker = CircuitBreaker(
        oanda.name, b.breaker_failures, timedelta(seconds=b.breaker_cool_down_seconds), clock, on_change=alert
    )
    log.warning("orders go to OANDA %s (account %s)", b.oanda_environment, b.oanda_account_id)
    return ResilientBroker(oanda, breaker, RetryPolicy(attempts=b.retry_attempts)), breaker
