"""The running bot's services, wired once from settings (the composition root of `tradebot run`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from bot.config import Settings
from bot.ops.clock import BotClock
from bot.ops.health import (
    HEARTBEAT_KEY,
    Check,
    CheckName,
    HealthReport,
    HeartbeatRecord,
    check_database_file,
    health_report,
    with_write_error,
)
from bot.ops.logs import log_context
from bot.ops.memory import release_free_memory
from bot.ops.metrics import Dimension, MetricName, Metrics, NullMetrics, Unit
from bot.services.background_validation import BackgroundValidation
from bot.services.book import TRADED_KINDS, trading_day
from bot.services.broker_login import BrokerLogin
from bot.services.charts import SignalCharts
from bot.services.desk import OfferDecision, SignalDesk
from bot.services.drift_watch import DriftWatch
from bot.services.events import Announcer, ModelLearned, Notice, SummaryReady
from bot.services.learner import LearnedModel, Learner
from bot.services.monitor import MONITORED_KINDS, PositionMonitor
from bot.services.outcomes import OutcomeReports
from bot.services.scan import ScanReport, ScanService
from bot.services.scheduler import DEFAULT_DELAY, ScheduleGroup, Scheduler, build_groups, session_cron
from bot.services.state import BotState
from bot.services.summary import SUMMARY_KEY, DailySummary, day_start, realised, summary_day
from bot.services.trade_control import TradeControl
from bot.services.users import UserDirectory
from bot.services.zones import ZONES_GROUP, ZoneDesk
from data.backup import BackupResult, backup_line
from data.redaction import Redactor
from data.sqlite.store import SqliteStore, StoreError
from engine.calendars import SessionCalendar, calendar_warnings
from engine.domain import Instrument, RejectionKind, RunStatus, SignalStatus
from engine.ports import BarProvider, BreakerState, CircuitView
from engine.systems import ValidationStatus

log = logging.getLogger(__name__)

LAST_SETUP_KEY = "metrics.last_setup_at"  # as-of of the last run that found a setup (the no-signals alarm)
BACKUP_DATE_KEY = "backup.last_date"  # UTC date (bot clock) of the last successful daily backup
BACKUP_FAILED_KEY = "backup.failed_at"
BACKUP_RETRY = timedelta(hours=1)
VALIDATION_DATE_KEY = "validation.last_check"  # UTC date (bot clock) the background validation last looked


def _no_backup(now: datetime) -> BackupResult:
    raise RuntimeError("this runtime was built without a backup target")


@dataclass
class BotRuntime:
    """Everything the Telegram layer calls: one object per process."""

    settings: Settings
    store: SqliteStore
    clock: BotClock
    provider: BarProvider
    scan: ScanService
    state: BotState
    notifier: Announcer
    desk: SignalDesk
    monitor: PositionMonitor
    instruments: dict[str, Instrument]
    calendars: dict[str, SessionCalendar]
    chats: tuple[int, ...]
    learner: Learner
    drift: DriftWatch
    validation: BackgroundValidation
    control: TradeControl
    outcomes: OutcomeReports
    breaker: CircuitView | None = None
    take_backup: Callable[[datetime], BackupResult] = _no_backup
    outbox_queued: asyncio.Event = field(default_factory=asyncio.Event)  # set when a message is queued
    metrics: Metrics = field(default_factory=NullMetrics)
    redactor: Redactor = field(default_factory=Redactor)
    login: BrokerLogin | None = None  # the owner's daily broker login (Kite), when a broker needs one
    zones: ZoneDesk | None = None  # the NIFTY weekly-zone spreads, when `[weekly_zones] enabled`
    users: UserDirectory | None = None  # the names of the chat's users, for messages and the audit trail
    charts: SignalCharts | None = None  # draws signal and /chart pictures; None: text only

    def __post_init__(self) -> None:
        self.stopping = False  # set when the shutdown begins: a step cut short by it is not an error
        self.started_at = self.clock.now()
        self._run_lock = asyncio.Lock()
        self._learning: asyncio.Task[LearnedModel | str] | None = None
        self._backup: asyncio.Task[BackupResult | None] | None = None
        self._backed_up: date | None = None  # today's backup was taken (even if its date could not be stored)
        self._backup_failed: datetime | None = None
        groups = build_groups(self.settings.bot.schedules, list(self.instruments.values()), self.calendars)
        calendars = dict(self.calendars)
        if self.zones is not None:  # after each NSE hourly close (10:15:20 ... 15:15:20, 15:30:20 IST)
            zone = self.zones.instrument
            calendars[zone.symbol] = self.zones.calendar
            tz = self.zones.calendar.timezone
            cron = session_cron(self.zones.calendar, zone.interval)
            groups.append(ScheduleGroup(ZONES_GROUP, cron, tz, (zone.symbol,), zone.interval.delta, DEFAULT_DELAY))
        self.scheduler = Scheduler(groups, calendars, self.clock, self.scheduled_run)

    async def analyse(self, symbols: Collection[str] | None = None) -> tuple[ScanReport, list[OfferDecision]]:
        """Run one analysis now, offer what it found and check open positions (one run at a time)."""
        async with self._run_lock:
            started = time.monotonic()
            if self.charts is not None:
                self.charts.prepare()  # the chart worker starts while the scan runs
            held = await self.store.open_trades(list(MONITORED_KINDS))
            report = await self.scan.scan(symbols=symbols, whole={t.symbol for t in held})  # the monitor's bars
            await self._record_scan(report, time.monotonic() - started)
            with log_context(run_id=report.run_id):
                await self.learner.refresh()
                # The bar's fills and exits first, then its new entries: as the backtester takes them.
                await self.desk.settle_unconfirmed()
                closed = await self.monitor.check(symbols, report.bars)
                closed += await self.monitor.check_live()
                decisions = await self.desk.offer(report.setups, report.bars)
            if closed:
                self.metrics.record(MetricName.TRADES_CLOSED, len(closed))
        await asyncio.to_thread(release_free_memory)  # what the run's bars and tasks freed, back to the system
        if report.errors:
            failed = "; ".join(report.errors[:3])
            await self.notifier.announce(
                Notice(f"run {report.run_id}: {len(report.errors)} symbol(s) failed: {failed}")
            )
        return report, decisions

    async def tend(self) -> None:
        """Look after what is open without taking anything new (Telegram unreachable at start): expire pending
        signals, settle unconfirmed orders, record exits of open positions, and beat the heartbeat."""
        async with self._run_lock:
            await self.tick()
            try:
                closed = await self.monitor.check()
                closed += await self.monitor.check_live()
            except Exception:
                log.exception("watching open positions failed")
                closed = []
            if closed:
                self.metrics.record(MetricName.TRADES_CLOSED, len(closed))
        try:
            await self.heartbeat()
        except Exception:
            log.exception("heartbeat failed")

    async def _record_scan(self, report: ScanReport, seconds: float) -> None:
        """Publish a run's metrics: duration, setups (total, by strategy, quality), data errors, signal drought."""
        m = self.metrics
        last = await self.store.get_state(LAST_SETUP_KEY)
        if report.setups or last is None:  # the first run starts the count
            await self.store.set_state(LAST_SETUP_KEY, report.as_of.isoformat())
        since = report.as_of if report.setups or last is None else datetime.fromisoformat(last)
        drought = market_day_time(since, report.as_of, self.calendars.values())
        m.record(MetricName.HOURS_WITHOUT_SIGNALS, drought / timedelta(hours=1), Unit.NONE)
        m.record(MetricName.SCAN_DURATION, seconds, Unit.SECONDS)
        m.record(MetricName.SIGNALS_GENERATED, len(report.setups))  # no dimension: the no-signals alarm's total
        by_strategy = Counter(s.setup.strategy for s in report.setups)
        for strategy in report.strategies:
            m.record(MetricName.SIGNALS_GENERATED, by_strategy[strategy], dimensions={Dimension.STRATEGY: strategy})
        for scored in report.setups:
            m.record(MetricName.SIGNAL_QUALITY, scored.score.total, Unit.NONE)
        m.record(MetricName.DATA_ERRORS, sum(not o.evaluated for o in report.outcomes))

    async def spread_lines(self) -> list[str]:
        """One line per open option spread, for /status."""
        if self.zones is None:
            return []
        return [
            f"spread {s.spread_id} {s.rule} {s.side.value} {s.status.value}: index entry {s.entry}, close-only stop "
            f"{s.stop}, expiry {s.expiry:%a %d %b}, {s.open_quantity} units"
            for s in await self.zones.open_spreads()
        ]

    def status_notes(self, now: datetime) -> list[str]:
        """Warnings for /status: holiday data running out, conversion rates that are missing."""
        login = [self.login.status()] if self.login is not None else []
        return calendar_warnings(self.calendars.values(), now) + self.desk.rate_notes() + login

    async def validation_status(self, now: datetime) -> str:
        """One line for /status: how many traded systems are validated, and the background run's progress."""
        systems = await self.desk.systems.refresh(self.store)
        counts = systems.counts(now)
        total = sum(counts.values())
        parts = [f"{counts.get(status, 0)} {status.value}" for status in ValidationStatus if counts.get(status)]
        line = f"validation: {' · '.join(parts)} of {total} traded systems"
        if counts.get(ValidationStatus.VALIDATED, 0) < total:
            line += " (only validated ones are ever executed automatically)"
        progress = self.validation.progress.text()
        return f"{line}; {progress}" if progress else line

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
        abandoned = await self.store.abandon_trade_actions(self.clock.now())
        if abandoned:
            log.warning("%d close or stop move(s) on open positions were interrupted by a restart", abandoned)
        return len(interrupted)

    async def scheduled_run(self, group: ScheduleGroup, symbols: list[str]) -> None:
        """A scheduled run: failures are reported, and the scheduler arms the next run anyway."""
        if group.name == ZONES_GROUP and self.zones is not None:
            try:
                async with self._run_lock:
                    await self.zones.run()
            except Exception as exc:
                log.exception("the weekly-zone run failed")
                await self.notifier.announce(Notice(f"the weekly-zone run failed: {type(exc).__name__}: {exc}"))
            return
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
            self.metrics.record(MetricName.SCAN_ERRORS, 1)
            await self.notifier.announce(Notice(f"scheduled run {group.name} failed: {type(exc).__name__}: {exc}"))

    async def tick(self, context: object = None) -> None:
        """Housekeeping on the bot clock: expiry, settlement, drift, learning, validation, summary, backup.

        Each step runs on its own: one failing never stops the others. A database that cannot be written is one
        log line per step (`/health` says it); any other failure is logged whole, and the chat is told of a failed
        drift check or summary.
        """
        del context
        now = self.clock.now()
        steps: list[tuple[str, Callable[[], Awaitable[object]], bool]] = [
            ("the expiry check", self._expire, False),
            ("settling unconfirmed orders", self._settle, False),
            ("the entry pause check", self.desk.announce_pauses, False),
            ("the drift check", self.drift.check_if_due, True),
            ("starting the daily learning run", lambda: self._start_learning(now), False),
            ("starting the background validation", lambda: self.revalidate_if_due(now), False),
            ("the daily summary", lambda: self.summary_if_due(now), True),
            ("starting the daily backup", lambda: self._start_backup(now), False),
            ("the database checkpoint", self.store.checkpoint, False),  # off the store's connection: no commit waits
        ]
        if self.login is not None:
            steps.append(("the broker login check", self.login.check, True))
        if self.zones is not None:
            steps.append(("finishing unconfirmed spread legs", self.zones.reconcile, False))
        for what, step, tell in steps:
            try:
                await step()
            except StoreError as exc:
                log.warning("%s skipped: %s", what, exc)
            except Exception as exc:
                if self.stopping:  # the shutdown closed what the step was using; it runs again at the next start
                    log.warning("%s cut short by the shutdown: %s: %s", what, type(exc).__name__, exc)
                    continue
                log.exception("%s failed", what)
                if tell:
                    with contextlib.suppress(StoreError):
                        await self.notifier.announce(Notice(f"{what} failed: {type(exc).__name__}: {exc}"))

    async def _expire(self) -> None:
        if expired := await self.desk.expire_due():
            log.info("expired %d signal(s)", expired)

    async def _settle(self) -> None:
        if settled := await self.desk.settle_unconfirmed():
            log.info("checked %d unconfirmed order(s) with the broker", settled)

    async def _start_learning(self, now: datetime) -> None:
        if (self._learning is None or self._learning.done()) and await self.learner.due(now):
            self._learning = asyncio.create_task(self.learn("schedule"), name="learning")

    async def _start_backup(self, now: datetime) -> None:
        if (self._backup is None or self._backup.done()) and await self.backup_due(now):
            self._backup = asyncio.create_task(self.backup(), name="backup")

    def heartbeat_record(self, pending: Sequence[object]) -> HeartbeatRecord:
        """This process's heartbeat now: alive, its broker and circuit, the approvals waiting."""
        snap = self.breaker.snapshot() if self.breaker is not None else None
        return HeartbeatRecord(
            at=datetime.now(UTC),
            bot_time=self.clock.now(),
            pid=os.getpid(),
            broker=self.desk.broker.name,
            circuit=snap.state.value if snap is not None else None,
            pending=len(pending),
        )

    async def heartbeat(self, context: object = None) -> HeartbeatRecord:
        """Say the bot is alive: a heartbeat record for `tradebot health`, and the minute's metrics."""
        del context
        record = self.heartbeat_record(await self.store.signals_with_status(SignalStatus.PENDING))
        await self.store.set_state(HEARTBEAT_KEY, record.encode())
        m = self.metrics
        m.record(MetricName.HEARTBEAT, 1)
        m.record(MetricName.APPROVALS_PENDING, record.pending)
        m.record(MetricName.CIRCUIT_OPEN, int(record.circuit == BreakerState.OPEN.value))
        m.record(MetricName.DAILY_PNL, float(await self.today_pnl(record.bot_time)), Unit.NONE)
        return record

    async def health(self) -> HealthReport:
        """Every health check, from inside the bot (`/health`): the same verdicts `tradebot health` gives."""
        database = await asyncio.to_thread(check_database_file, self.settings.db_path)
        runs = await self.store.recent_runs(1)
        record = self.heartbeat_record(await self.store.signals_with_status(SignalStatus.PENDING))
        if database.ok:  # the check must answer at once when the database cannot be written
            with contextlib.suppress(StoreError):
                record = await self.heartbeat()
        database = with_write_error(database, self.store.last_write_error)
        report = await health_report(
            self.settings,
            self.redactor,
            database,
            runs[0] if runs else None,
            (self.scheduler.groups, self.calendars),
            record,
            now=datetime.now(UTC),
            run_time=self.clock.now(),
        )
        if self.login is None:
            return report
        live = self.login.broker.current_session() is not None
        trading = self.login.calendar.is_open(self.clock.now())
        check = Check(CheckName.SESSION, live or not trading, self.login.status())
        return HealthReport((*report.checks, check))

    async def symbol_chart(self, symbol: str) -> tuple[bytes, str] | str:
        """The current chart of `symbol` with its open positions drawn (PNG, caption), or why there is none."""
        if self.charts is None:
            return "Charts are off ([bot] charts = false)."
        bars = await asyncio.to_thread(self.scan.clean_bars, symbol, self.clock.now())
        if isinstance(bars, str):
            return f"No chart: {bars}."
        positions = [t for t in await self.control.open_positions() if t.symbol == symbol]
        stops = await self.control.current_stops(positions)
        png = await self.charts.for_symbol(symbol, bars, positions, stops)
        if png is None:
            return f"The chart of {symbol} could not be drawn now (the log says why)."
        held = f"{len(positions)} open position{'' if len(positions) == 1 else 's'}"
        return png, f"{symbol} {bars.interval} · {held} · last bar {bars.bar_time(len(bars) - 1):%Y-%m-%d %H:%M} UTC"

    async def today_pnl(self, now: datetime) -> Decimal:
        """Realised P&L of the trading day, in the account currency (the protections' day)."""
        policy = self.desk.policy
        day_start, _ = trading_day(now, policy.day_timezone, policy.day_rollover_hour)
        return realised(await self.store.trades(TRADED_KINDS, closed_since=day_start), self.desk.account_pnl)

    async def revalidate_if_due(self, now: datetime, *, starting: bool = False) -> bool:
        """At start and once a bot-clock day, validate in the background the systems without a current baseline of
        their own (new, stale, or never validated)."""
        if not self.settings.backtest.validate_in_background or self.validation.running:
            return False
        if not starting and await self.store.get_state(VALIDATION_DATE_KEY) == now.date().isoformat():
            return False
        await self.store.set_state(VALIDATION_DATE_KEY, now.date().isoformat())
        return await self.validation.start_if_needed()

    async def summary_if_due(self, now: datetime) -> DailySummary | None:
        """Send the daily summary once its local time has passed (once per local day, restarts included)."""
        config = self.settings.summary
        if not config.enabled:
            return None
        last = await self.store.get_state(SUMMARY_KEY)
        day = summary_day(now, config.at, config.timezone, date.fromisoformat(last) if last else None)
        if day is None:
            return None
        summary = await self.daily_summary(day, now)
        await self.store.set_state(SUMMARY_KEY, day.isoformat())
        await self.notifier.announce(SummaryReady(summary))
        return summary

    async def daily_summary(self, day: date, now: datetime) -> DailySummary:
        """The summary of the local `day` up to `now`."""
        config = self.settings.summary
        since = day_start(day, config.timezone)
        closed = await self.store.trades(TRADED_KINDS, closed_since=since)
        view = await self.desk.book(now)
        active = self.desk.active_protections(view, now)
        return DailySummary(
            day=day,
            timezone=config.timezone,
            closed=closed,
            pnl=realised(closed, self.desk.account_pnl),
            currency=self.desk.policy.account_currency,
            open_trades=view.open_trades,
            dropped=await self.store.signals_with_status(SignalStatus.DROPPED, created_since=since),
            protections=active,
            drift=await self.drift.table(),
            controls=await self.store.pair_controls(),
        )

    async def backup_due(self, now: datetime) -> bool:
        """Whether today's (UTC, bot clock) backup is due: its hour has come and none succeeded today."""
        config = self.settings.backup
        if not config.enabled or now.hour < config.hour_utc:
            return False
        if self._backed_up == now.date() or await self.store.get_state(BACKUP_DATE_KEY) == now.date().isoformat():
            return False
        failed = await self.store.get_state(BACKUP_FAILED_KEY)
        tried = self._backup_failed or (None if failed is None else datetime.fromisoformat(failed))
        return tried is None or now - tried >= BACKUP_RETRY

    async def backup(self) -> BackupResult | None:
        """Take the daily backup in a worker thread; a failure is told to the chat and retried an hour later."""
        now = self.clock.now()
        try:
            result = await asyncio.to_thread(self.take_backup, now)
        except Exception as exc:
            log.exception("the daily backup failed")
            self._backup_failed = now  # remembered here too: the database may be what failed
            with contextlib.suppress(StoreError):
                await self.store.set_state(BACKUP_FAILED_KEY, now.isoformat())
                await self.notifier.announce(Notice(f"daily backup failed: {type(exc).__name__}: {exc}"))
            return None
        self._backed_up = now.date()
        try:
            await self.store.set_state(BACKUP_DATE_KEY, now.date().isoformat())
        except StoreError as exc:  # taken; only its date is not recorded (a restart takes one more)
            log.warning("the daily backup was taken, but its date was not recorded: %s", exc)
        log.info("daily %s", backup_line(result))
        return result

    async def learn(self, trigger: str = "command") -> LearnedModel | str:
        """Fit and apply a new learned model and tell the chat what changed; failures are told, not raised."""
        try:
            result = await self.learner.learn(trigger=trigger)
        except Exception as exc:
            log.exception("learning failed")
            with contextlib.suppress(StoreError):
                await self.notifier.announce(Notice(f"learning failed: {type(exc).__name__}: {exc}"))
            return f"learning failed: {exc}"
        if isinstance(result, str):
            return result
        await self.notifier.announce(ModelLearned(result))
        return result

    async def stop_learning(self) -> None:
        """Cancel a scheduled learning run in progress (no model is stored before it has finished fitting)."""
        if self._learning is not None and not self._learning.done():
            self._learning.cancel()
            await asyncio.gather(self._learning, return_exceptions=True)
        if self._backup is not None and not self._backup.done():  # the snapshot thread finishes; the task waits
            await asyncio.gather(self._backup, return_exceptions=True)


def market_day_time(since: datetime, until: datetime, calendars: Iterable[SessionCalendar]) -> timedelta:
    """Time in [since, until) that falls on UTC days when at least one of `calendars` was open."""
    calendars = list(calendars)
    total = timedelta(0)
    day = datetime.combine(since.astimezone(UTC).date(), datetime.min.time(), UTC)
    while day < until:
        end = day + timedelta(days=1)
        if any(c.open_duration(day, end) > timedelta(0) for c in calendars):
            total += min(end, until) - max(day, since)
        day = end
    return max(total, timedelta(0))


def top_rejection_reasons(report: ScanReport, n: int = 3) -> list[tuple[str, int]]:
    """The most common rejection reasons of a run (reason text up to its first colon or number)."""
    counts: Counter[str] = Counter()
    for r in report.rejections:
        head = r.reason.split(":")[0] if r.kind is RejectionKind.SETUP else f"{r.reason.split(':')[0]} (symbol)"
        counts[head.strip()] += 1
    return counts.most_common(n)
