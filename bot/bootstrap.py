"""The one composition root: the only place that builds adapters (providers, brokers, notifier) and wires the
services of `tradebot run` and the commands; the store comes from `bot.ops.database`, which the commands that only
read or flag the database use without this module's imports."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial

from bot.brokers.children import ChildOrderBroker
from bot.brokers.kite.broker import KiteBroker, Product
from bot.brokers.kite.client import KiteClient
from bot.brokers.kite.session import API_URL, LOGIN_URL, KiteSettings, TokenFile
from bot.brokers.oanda import OandaBroker, OandaEnvironment, OandaSettings, market_order
from bot.brokers.paper import FillModel, PaperBroker
from bot.brokers.paper_options import PaperOptionLegs
from bot.brokers.resilience import BreakerState, CircuitBreaker, ResilientBroker, RetryPolicy
from bot.brokers.routing import RoutingBroker
from bot.brokers.shadow import ShadowBroker
from bot.charts.worker import ChartWorker
from bot.config import BrokerKind, Settings
from bot.config.settings import config_path
from bot.config.trading import NseBroker
from bot.ops.clock import BotClock, WallClock
from bot.ops.database import open_store, run_backup
from bot.ops.logs import add_secret
from bot.ops.metrics import MetricName, Metrics, NullMetrics
from bot.ops.worker import WorkerProcess
from bot.services.background_validation import BackgroundValidation
from bot.services.broker_login import BrokerLogin
from bot.services.charts import SignalCharts
from bot.services.configure import (
    accounts,
    backtest_config,
    bar_rules,
    baseline_max_age,
    cache_dir,
    cost_model,
    kept_bars,
    sizing,
    traded_systems,
    watchlist,
)
from bot.services.desk import DeskPolicy, SignalDesk
from bot.services.drift_watch import DriftWatch
from bot.services.learner import Learner
from bot.services.monitor import PositionMonitor
from bot.services.outcomes import OutcomeReports
from bot.services.rates import RateBook, needed_pairs
from bot.services.runtime import BotRuntime
from bot.services.scan import ScanService
from bot.services.state import BotState
from bot.services.systems import SystemBook
from bot.services.trade_control import TradeControl
from bot.services.users import UserDirectory
from bot.services.validate import GateJob, gate_jobs
from bot.services.zones import ZoneConfig, ZoneDesk
from bot.telegram.notifier import Notifier
from data.market.news_feed import NewsSource
from data.market.providers import provider_from_source
from data.redaction import Redactor
from data.sqlite.store import SqliteStore
from engine.audit import BOT_ACTOR, AuditEvent, AuditKind
from engine.calendars import calendar_warnings
from engine.costs import CostModel
from engine.domain import Instrument, Interval
from engine.ports import BarProvider, Broker, Clock
from engine.routing import NSE_CALENDAR, Market, market_of
from engine.systems import SystemSpec
from engine.trading import TradeKind

log = logging.getLogger(__name__)
KITE_SESSION_FILE = "kite-session.json"  # beside the database, 0600: today's Kite session across restarts


@asynccontextmanager
async def scan_service(
    settings: Settings, data_source: str | None = None, clock: Clock | None = None
) -> AsyncIterator[ScanService]:
    """A ScanService over the configured provider and the SQLite store, closed on exit."""
    provider = provider_from_source(data_source or settings.data_source, cache_dir(settings))
    store = await open_store(settings)
    scan = ScanService(
        provider, store, watchlist(settings), settings.engine_config(), bar_rules(settings), clock or WallClock()
    )
    try:
        yield scan
    finally:
        scan.close()
        await store.close()


REPORT_ONLY_CHAT = 0  # the chat of a runtime that only reads (a report from the shell): nothing is sent to it


def target_chats(settings: Settings) -> tuple[int, ...]:
    """TELEGRAM_CHAT_ID, or each allowed user's private chat (a private chat's id is the user's id)."""
    if settings.telegram_chat_id is not None:
        return (settings.telegram_chat_id,)
    return tuple(settings.telegram_allowed_users)


def live_markets(settings: Settings) -> frozenset[Market]:
    """The markets whose orders a real broker fills (their trades are LIVE)."""
    live = {Market.FX} if settings.broker.sends_orders else set()
    if settings.broker.nse is NseBroker.KITE:
        live.add(Market.NSE)
    return frozenset(live)


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
        sizing=sizing(settings),
        costs=cost_model(settings),
        trade_failed_strategies=b.trade_failed_strategies,
        protections=b.protections.engine_config(),
        day_timezone=b.protections.day_timezone,
        day_rollover_hour=b.protections.day_rollover_hour,
        embargo=b.news.embargo(),
        accounts=accounts(settings),
        live_markets=live_markets(settings),
        exit_plans=backtest_config(settings).exit_plans,
    )


def rate_book(settings: Settings, provider: BarProvider | None) -> RateBook:
    """The conversion prices the watchlist needs into the account currency (feed, then `[bot.fx_rates]`)."""
    quotes = {w.symbol: w.quote_currency for w in settings.watchlist}
    pairs = needed_pairs(settings.instruments, settings.bot.account_currency, quotes)
    return RateBook(pairs, provider, settings.bot.fx_rates)


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    clock: BotClock | None = None,
    metrics: Metrics | None = None,
    redactor: Redactor | None = None,
    *,
    read_only: bool = False,
) -> AsyncIterator[BotRuntime]:
    """Build the runtime over one SQLite connection; close it on exit (after the current transaction).

    `read_only`: for a report from the shell: it talks to no chat (messages would stay queued, so none is made)
    and records no start in the audit trail.
    """
    clock = clock or BotClock(settings.clock_start, settings.clock_speed)
    metrics = metrics or NullMetrics()
    provider = provider_from_source(settings.data_source, cache_dir(settings))
    if not read_only:
        provider.built()  # the running bot loads its data source (and pandas) at start, not in its first run
    items = watchlist(settings)
    instruments = {w.instrument.symbol: w.instrument for w in items}
    calendars = {w.instrument.symbol: w.calendar for w in items}
    for line in calendar_warnings(calendars.values(), clock.now()):
        log.warning(line)
    chats = target_chats(settings) or ((REPORT_ONLY_CHAT,) if read_only else ())
    costs = cost_model(settings)
    store = await open_store(settings, clock, autocheckpoint=read_only)  # the bot's tick checkpoints: no commit does
    exits = AsyncExitStack()
    try:
        if not read_only:
            loaded = f"settings sha256 {settings.fingerprint()[:16]}, mode {settings.bot.mode.value}"
            loaded += f", broker {settings.broker.kind.value}"
            event = AuditEvent(clock.now(), AuditKind.CONFIG_LOADED, BOT_ACTOR, str(config_path()), loaded)
            await store.audit(event)
        state = BotState(store, settings.bot.mode)
        freeze = {w.symbol: w.freeze_quantity for w in settings.watchlist if w.freeze_quantity is not None}
        queued = asyncio.Event()
        charts_dir = settings.db_path.parent / "charts"
        users = UserDirectory(store)
        notifier = Notifier(
            store,
            chats,
            instruments,
            clock,
            queued.set,
            freeze=freeze,
            redactor=redactor,
            charts_dir=charts_dir,
            users=users,
        )
        worker = WorkerProcess()  # the scan's, the charts' and the learning's CPU work, off the event loop
        exits.callback(worker.close)
        charts = SignalCharts(items, ChartWorker(worker)) if settings.bot.charts else None
        broker, breaker, paper = await _broker(
            settings, provider, instruments, clock, costs, notifier, exits, store, metrics
        )

        def mask(secret: str) -> None:  # a daily broker token: masked in logs, the database and the chat
            add_secret(secret)
            store.mask(secret)
            notifier.redactor = notifier.redactor.with_secrets([secret])

        kite = _kite(settings, instruments, clock, exits, mask)
        if kite is not None:
            kite_breaker = _breaker(kite.name, settings, clock, notifier, metrics)
            routed = ResilientBroker(kite, kite_breaker, RetryPolicy(attempts=settings.broker.retry_attempts))
            broker = RoutingBroker({Market.FX: broker, Market.NSE: routed}, paper)
            breaker = breaker or kite_breaker
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
            stop_triggers={s.name: s.stop_trigger for item in items for s in item.strategies},
            exit_plans=backtest_config(settings).exit_plans,
            managed_live=[s for s, i in instruments.items() if kite is not None and market_of(i) is Market.NSE],
        )
        traded = {t.spec.pair: t for t in traded_systems(settings, items)}
        systems = await SystemBook((t.spec for t in traded.values()), max_age=baseline_max_age(settings)).refresh(store)
        learner = Learner(store, provider, clock, settings, items, systems, worker)

        def jobs_for(specs: Sequence[SystemSpec], end: datetime) -> list[GateJob]:
            chosen = [traded[s.pair] for s in specs]
            return gate_jobs(settings, chosen, data_source=settings.data_source, end=end)

        await learner.refresh()
        engine, rules = settings.engine_config(), bar_rules(settings)
        scan = ScanService(provider, store, items, engine, rules, clock, worker, kept_bars=kept_bars(settings))
        exits.callback(scan.close)
        yield BotRuntime(
            settings=settings,
            store=store,
            clock=clock,
            provider=provider,
            scan=scan,
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
                metrics,
                systems,
                charts,
            ),
            monitor=monitor,
            instruments=instruments,
            calendars=calendars,
            chats=chats,
            learner=learner,
            drift=DriftWatch(store, notifier, clock, settings.drift, metrics, systems),
            validation=BackgroundValidation(systems, store, notifier, clock, jobs_for, settings.db_path),
            outcomes=OutcomeReports(store, clock, instruments),
            control=TradeControl(
                store,
                {TradeKind.PAPER: paper, TradeKind.LIVE: broker}
                if settings.broker.sends_orders or kite is not None
                else {TradeKind.PAPER: broker},
                notifier,
                clock,
                instruments,
                settings.owner if settings.owner is not None else 0,
                metrics,
            ),
            breaker=breaker,
            take_backup=partial(run_backup, settings),
            outbox_queued=queued,
            metrics=metrics,
            redactor=redactor or Redactor(),
            zones=_zones(settings, store, provider, instruments, notifier, clock, kite),
            users=users,
            charts=charts,
            login=None
            if kite is None
            else BrokerLogin(
                kite,
                store,
                notifier,
                clock,
                settings.calendar(NSE_CALENDAR),
                remind_before=timedelta(minutes=settings.broker.kite_reminder_minutes),
            ),
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


def _breaker(name: str, settings: Settings, clock: BotClock, notifier: Notifier, metrics: Metrics) -> CircuitBreaker:
    """A circuit breaker that tells the chat and the metrics when it opens or closes."""
    b = settings.broker

    async def alert(state: BreakerState, reason: str) -> None:
        metrics.record(MetricName.CIRCUIT_OPEN, int(state is BreakerState.OPEN))
        await notifier.text(f"⚠️ broker {name}: circuit {state.value}: {reason}")

    return CircuitBreaker(
        name, b.breaker_failures, timedelta(seconds=b.breaker_cool_down_seconds), clock, on_change=alert
    )


def _kite(
    settings: Settings,
    instruments: dict[str, Instrument],
    clock: BotClock,
    exits: AsyncExitStack,
    mask: Callable[[str], None],
) -> KiteBroker | None:
    """Kite for NSE when configured, with the session saved today (0600 file beside the database) restored."""
    b = settings.broker
    if b.nse is not NseBroker.KITE:
        return None
    assert settings.kite_api_secret is not None  # the settings refuse kite without it
    kite_settings = KiteSettings(
        b.kite_api_key,
        settings.kite_api_secret,
        base_url=b.kite_base_url or API_URL,
        login_base=b.kite_login_url or LOGIN_URL,
        timeout_s=b.timeout_seconds,
    )
    client = KiteClient(kite_settings)
    exits.push_async_callback(client.aclose)
    nse = {s: i for s, i in instruments.items() if market_of(i) is Market.NSE}
    kite = KiteBroker(
        client,
        nse,
        product=Product(b.kite_product),
        now=clock.now,
        session_file=TokenFile(settings.db_path.parent / KITE_SESSION_FILE),
        on_token=mask,
    )
    restored = kite.restore_saved()
    log.warning("NSE orders go to Kite (%s); %s", b.kite_product, "session restored" if restored else "no session yet")
    return kite


def _zones(
    settings: Settings,
    store: SqliteStore,
    provider: BarProvider,
    instruments: dict[str, Instrument],
    notifier: Notifier,
    clock: BotClock,
    kite: KiteBroker | None,
) -> ZoneDesk | None:
    """The weekly-zone desk when enabled: its legs through Kite when NSE is routed there, else modelled paper."""
    z = settings.weekly_zones
    if not z.enabled:
        return None
    instrument = replace(instruments[z.symbol], interval=Interval.H1)
    config = ZoneConfig(z.lots, z.wednesday_exit, settings.broker.nfo_freeze_quantity, z.risk_per_spread)
    calendar = settings.calendar(NSE_CALENDAR)
    if kite is not None and not z.paper:
        return ZoneDesk(store, provider, kite, kite, notifier, clock, instrument, calendar, config, margins=kite)
    paper = PaperOptionLegs(kite)
    log.warning("weekly-zone spreads fill on %s", paper.name)
    return ZoneDesk(store, provider, paper, paper, notifier, clock, instrument, calendar, config, market=paper)


async def _broker(
    settings: Settings,
    provider: BarProvider,
    instruments: dict[str, Instrument],
    clock: BotClock,
    costs: CostModel,
    notifier: Notifier,
    exits: AsyncExitStack,
    store: SqliteStore,
    metrics: Metrics,
) -> tuple[Broker, CircuitBreaker | None, PaperBroker]:
    """Build the broker: paper, OANDA behind retries and an alerting breaker, or paper recording OANDA's orders;
    and the paper broker (paper positions close there whatever the broker)."""
    b = settings.broker
    paper = PaperBroker(
        provider,
        instruments,
        clock,
        costs,
        settings.bot.account_equity,
        fill_model=FillModel(b.paper_fill),
        calendars={s: settings.calendar(i.calendar) for s, i in instruments.items()},
        max_wait_bars=settings.validation.max_setup_age_bars,
        stale_bars=settings.validation.stale_bars,
    )
    if b.kind is BrokerKind.PAPER:
        return paper, None, paper
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
        shadow = ShadowBroker(paper, partial(market_order, oanda_settings), store, clock, target=BrokerKind.OANDA)
        return shadow, None, paper
    oanda = OandaBroker(oanda_settings, instruments)
    exits.push_async_callback(oanda.aclose)
    breaker = _breaker(oanda.name, settings, clock, notifier, metrics)
    log.warning("orders go to OANDA %s (account %s)", b.oanda_environment, b.oanda_account_id)
    return ResilientBroker(oanda, breaker, RetryPolicy(attempts=b.retry_attempts)), breaker, paper
