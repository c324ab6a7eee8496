"""The bot's lifecycle over Telegram: connect (waiting out an outage), serve with long polling, the outbox sender
and the housekeeping ticks, and stop within the shutdown budget.

One event loop holds the PTB Application (long polling), its JobQueue, the outbox sender and the SQLite
connection. The handlers are in `bot.telegram.handlers`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

from telegram import BotCommand, Update
from telegram.error import InvalidToken, NetworkError, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
)
from telegram.request import HTTPXRequest

from bot.bootstrap import open_runtime
from bot.config import Settings
from bot.ops.clock import BotClock, WallClock
from bot.ops.cloudwatch import build_metrics, close_metrics
from bot.ops.memory import freeze_heap
from bot.ops.metrics import Metrics
from bot.ops.systemd import SystemdNotifier
from bot.services.runtime import BotRuntime
from bot.telegram.handlers import TelegramFrontEnd
from bot.telegram.messages import (
    COMMANDS,
)
from bot.telegram.sender import OutboxSender
from data.backup import DatabaseInUse, DatabaseLock
from data.http import tls_context
from data.redaction import Redactor
from data.sqlite.store import StoreError

log = logging.getLogger(__name__)

GIL_SWITCH_SECONDS = 0.0005


SHUTDOWN_BUDGET_SECONDS = 8.5  # all of a graceful stop (systemd allows 30 s; we promise 10)


HANDLER_GRACE_SECONDS = 4.0  # for commands and clicks in progress to finish


IN_FLIGHT_LEFT = "a command or click was still running (a broker call?); an order it sent is settled at the next start"


CONNECT_RETRY_MAX_SECONDS = 60.0


EXIT_CONFIG = 2  # as the CLI's: a configuration error, which systemd does not restart


TICK_BOT_SECONDS = 60.0


MAX_TICK_SECONDS = 2.0  # expiry is checked at least this often in real time


def _heartbeat(runtime: BotRuntime) -> Callable[[object], Coroutine[Any, Any, None]]:
    """The heartbeat job: a failure is logged and the next beat comes anyway (the health check sees the gap)."""

    async def beat(context: object) -> None:
        try:
            await runtime.heartbeat(context)
        except StoreError as exc:
            log.warning("heartbeat not recorded: %s", exc)
        except Exception:
            log.exception("heartbeat failed")

    return beat


def build_application(settings: Settings) -> Application[Any, Any, Any, Any, Any, Any]:
    token = settings.telegram_bot_token.get_secret_value() if settings.telegram_bot_token else ""
    tls = {"verify": tls_context()}  # PTB's own requests, as its builder makes them, on the process's TLS context
    builder = (
        ApplicationBuilder()
        .token(token)
        .rate_limiter(AIORateLimiter(max_retries=0))
        .concurrent_updates(True)
        .request(HTTPXRequest(connection_pool_size=256, httpx_kwargs=tls))
        .get_updates_request(HTTPXRequest(connection_pool_size=1, httpx_kwargs=tls))
    )
    if settings.telegram_api_base_url:
        builder = builder.base_url(settings.telegram_api_base_url)
    app = builder.build()
    assert app.job_queue is not None
    # A job whose time passed while the loop was busy (a loaded box, a long pause, a suspended machine) runs late,
    # once: APScheduler's default drops it after a second late, which ended a schedule's chain of runs for good.
    late_jobs_run_once = {"misfire_grace_time": None, "coalesce": True}
    app.job_queue.scheduler.configure(job_defaults=late_jobs_run_once, **app.job_queue.scheduler_configuration)
    return app


RuntimeHook = Callable[[BotRuntime], Awaitable[Callable[[], Awaitable[None]] | None]]


async def serve(
    settings: Settings,
    stop: asyncio.Event | None = None,
    clock: BotClock | None = None,
    redactor: Redactor | None = None,
    on_runtime: RuntimeHook | None = None,
) -> int:
    """Run the bot until SIGTERM/SIGINT (or `stop` is set); shut down gracefully; return the exit code.

    Exit 1 without starting when another process holds the database (another bot, or a restore).
    """
    os.environ.setdefault("PTB_TIMEDELTA", "1")  # RetryAfter.retry_after as a timedelta, without warnings
    # A scan's worker threads hold the GIL while they compute; the event loop (a click) gets it back after at most
    # this long instead of CPython's 5 ms, each of the many times a click's SQL and HTTP hops hand it over.
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    settings.db_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        lock = DatabaseLock(settings.db_path).acquire()
    except DatabaseInUse as exc:
        log.error("not starting: %s", exc)
        return 1
    systemd = SystemdNotifier.from_environ(os.environ)
    try:
        metrics = await build_metrics(settings.metrics, WallClock().now)
        try:
            return await _serve(settings, stop or asyncio.Event(), clock, redactor, metrics, systemd, on_runtime)
        finally:
            gc.unfreeze()  # what was frozen at start can be collected again once the bot has stopped
            await close_metrics(metrics)
    finally:
        systemd.close()
        lock.release()


class TokenRejected(Exception):
    """Telegram refused the bot token: a configuration error, not an outage (never retried)."""


async def connect(
    app: Application[Any, Any, Any, Any, Any, Any],
    runtime: BotRuntime,
    announce: Callable[[str], None],
    status: Callable[[str], None],
    stop: asyncio.Event,
) -> bool:
    """Reach Telegram (getMe), retrying with backoff while it is unreachable; False when stopped first.

    Meanwhile the bot tells systemd it runs (READY with a status saying what it waits for, so the unit's start
    timeout and restart limits never turn an outage at boot into a dead service), keeps watching open positions
    and unconfirmed orders, and takes no new entries: nobody could see or stop them. Messages wait in the outbox.
    A rejected token raises TokenRejected.
    """
    delay, since = 1.0, None
    while True:
        try:
            await app.initialize()
        except InvalidToken:
            raise TokenRejected(
                "Telegram rejected TELEGRAM_BOT_TOKEN (Unauthorized): check it with @BotFather (/token)"
            ) from None
        except (NetworkError, TelegramError, OSError) as exc:
            if since is None:
                since = datetime.now(UTC)
                announce("waiting for Telegram")
            detail = f"{type(exc).__name__}: {exc}"
            log.warning(
                "Telegram unreachable (%s); retrying in %.0f s; open positions are still watched", detail, delay
            )
            status(f"Telegram unreachable since {since:%H:%M:%SZ} ({detail}); retrying; no new entries")
            await runtime.tend()
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
                return False
            except TimeoutError:
                delay = min(delay * 2, CONNECT_RETRY_MAX_SECONDS)
            continue
        if since is not None:
            log.warning("Telegram reachable again after %.0f s", (datetime.now(UTC) - since).total_seconds())
        return True


async def _serve(
    settings: Settings,
    stop: asyncio.Event,
    clock: BotClock | None,
    redactor: Redactor | None,
    metrics: Metrics,
    systemd: SystemdNotifier,
    on_runtime: RuntimeHook | None = None,
) -> int:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        return await _serve_runtime(settings, stop, clock, redactor, metrics, systemd, on_runtime)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _serve_runtime(
    settings: Settings,
    stop: asyncio.Event,
    clock: BotClock | None,
    redactor: Redactor | None,
    metrics: Metrics,
    systemd: SystemdNotifier,
    on_runtime: RuntimeHook | None = None,
) -> int:
    async with open_runtime(settings, clock, metrics, redactor) as runtime:
        cleanup = await on_runtime(runtime) if on_runtime is not None else None
        try:
            return await _serve_built(runtime, settings, stop, systemd)
        finally:
            if cleanup is not None:
                await cleanup()


async def _serve_built(runtime: BotRuntime, settings: Settings, stop: asyncio.Event, systemd: SystemdNotifier) -> int:
    """Run the Telegram application over a built runtime until `stop`."""
    app = build_application(settings)
    front = TelegramFrontEnd(runtime, frozenset(settings.telegram_allowed_users))
    front.install(app)
    sender = OutboxSender(
        app.bot,
        runtime.store,
        min_interval=settings.bot.send_interval_seconds,
        redactor=runtime.redactor,
        after_signals=runtime.notifier.refresh_decided,
        wakeup=runtime.outbox_queued,
    )
    watchdog: list[asyncio.Task[None]] = []

    def announce(status: str) -> None:
        """READY with a status; the watchdog pings from then on."""
        systemd.ready(status)
        if not watchdog and (task := systemd.start_watchdog()) is not None:
            watchdog.append(task)

    try:
        return await _run_app(app, front, runtime, sender, settings, stop, systemd, announce)
    finally:
        for task in watchdog:
            task.cancel()


async def _run_app(
    app: Application[Any, Any, Any, Any, Any, Any],
    front: TelegramFrontEnd,
    runtime: BotRuntime,
    sender: OutboxSender,
    settings: Settings,
    stop: asyncio.Event,
    systemd: SystemdNotifier,
    announce: Callable[[str], None],
) -> int:
    """Connect, start polling and the jobs, run until `stop`, then shut down gracefully; return the exit code."""
    try:
        if not await connect(app, runtime, announce, systemd.status, stop):
            return 0
    except TokenRejected as exc:
        log.error("not starting: %s", exc)
        return EXIT_CONFIG
    async with app:
        try:
            await app.bot.set_my_commands([BotCommand(name, text) for name, text in COMMANDS])
        except Exception as exc:
            log.warning("could not set the command menu: %s", exc)
        await app.start()
        assert app.updater is not None and app.job_queue is not None
        await app.updater.start_polling(poll_interval=0.0, timeout=10, allowed_updates=Update.ALL_TYPES)
        sender.start()
        if interrupted := await runtime.settle_interrupted_runs():
            log.warning("marked %d run(s) interrupted by the last stop as failed", interrupted)
        settled = await runtime.desk.reconcile()
        if settled:
            log.warning("settled %d signal(s) left half-way by the last run", settled)
        if runtime.zones is not None and (resumed := await runtime.zones.reconcile()):
            log.warning("finished the legs of %d spread(s) left half-way by the last run", resumed)
        await runtime.revalidate_if_due(runtime.clock.now(), starting=True)
        try:
            await runtime.desk.warm(runtime.clock.now())  # the closed books folded now, not by the first click
        except StoreError as exc:  # only a head start: the first click folds them instead
            log.warning("could not fold the closed books at start (%s); the first click will", exc)
        runtime.scheduler.start(app.job_queue)
        beat = _heartbeat(runtime)
        await beat(None)  # `tradebot health` sees the bot from now, not from its first job (late on a busy start)
        tick = min(max(runtime.clock.real_seconds(timedelta(seconds=TICK_BOT_SECONDS)), 0.5), MAX_TICK_SECONDS)
        app.job_queue.run_repeating(runtime.tick, interval=tick, first=0.1, name="tick")
        app.job_queue.run_repeating(
            beat,
            interval=settings.metrics.heartbeat_seconds,
            first=settings.metrics.heartbeat_seconds,
            name="heartbeat",
        )
        if settings.bot.trade_failed_strategies:
            log.warning("OVERRIDE ACTIVE: strategies that failed pre-deploy validation will be traded")
        log.info(
            "tradebot running (bot time %s, %gx); chats %s", runtime.clock.now(), runtime.clock.speed, runtime.chats
        )
        freeze_heap()
        announce(f"tradebot running: {runtime.desk.broker.name}, mode {(await runtime.state.mode()).value}")
        await stop.wait()
        runtime.stopping = True
        app.job_queue.scheduler.pause()  # no tick, heartbeat or scheduled run starts once the stop has begun
        systemd.stopping("stopping: finishing in-flight work")
        log.info("stopping: no new updates; finishing in-flight work")
        started = time.monotonic()
        deadline = started + SHUTDOWN_BUDGET_SECONDS

        async def step(work: Coroutine[Any, Any, Any], share: float, late: str) -> None:
            """One shutdown step, given at most `share` seconds of what is left of the budget."""
            try:
                await asyncio.wait_for(work, timeout=max(min(share, deadline - time.monotonic()), 0.1))
            except TimeoutError:
                log.warning("shutdown: %s", late)

        await step(app.updater.stop(), 2.0, "polling did not stop in time")
        await step(app.stop(), HANDLER_GRACE_SECONDS, IN_FLIGHT_LEFT)
        if cancelled := await front.cancel_in_flight(1.0):  # while the store is still open
            log.warning("shutdown: cancelled %d command(s) or click(s) still running", cancelled)
        await step(runtime.wait_idle(), 2.0, "an analysis run was still going; it is recorded as interrupted")
        await step(runtime.stop_learning(), 1.0, "the learning run did not stop in time")
        await step(runtime.validation.stop(), 1.0, "the validation worker did not stop in time")
        await step(sender.stop(), 1.0, "a message was still being sent; it stays in the outbox")
        if app.job_queue.scheduler.running:  # app.stop() ran out of time before it stopped the jobs
            await app.job_queue.stop(wait=False)
    log.info("stopped in %.1f s", time.monotonic() - started)
    return 0
