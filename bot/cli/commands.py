"""What each `tradebot` command does, run after its arguments were parsed.

Each command imports what it needs when it runs: the ones that only read or flag the database (pause, resume,
audit, shadow, health, db) never load pandas, TA-Lib or the running bot's stack."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from datetime import UTC, datetime
from functools import partial
from typing import Any

from bot.cli.codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from bot.cli.db import run_db
from bot.config import Settings, load_settings
from bot.ops.database import open_store
from bot.ops.memory import freeze_heap
from data.redaction import Redactor

log = logging.getLogger("tradebot")


async def _scan(settings: Settings, args: argparse.Namespace) -> int:
    from bot.services.configure import system_book, watchlist  # noqa: PLC0415 - the scan's stack, for this command only
    from bot.services.scan import select  # noqa: PLC0415

    try:
        select(watchlist(settings), args.symbols, args.strategies)
    except ValueError as exc:
        print(f"tradebot scan: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from bot.bootstrap import scan_service  # noqa: PLC0415 - after the arguments are known good: a usage error is quick
    from bot.cli.render import scan_json, scan_text  # noqa: PLC0415
    from data.sqlite.store import SqliteStore  # noqa: PLC0415

    async with scan_service(settings, args.data_source) as service:
        report = await service.scan(args.as_of, args.symbols, args.strategies)
        assert isinstance(service.store, SqliteStore)  # the CLI's scan service persists its runs there
        systems = await system_book(settings, service.watchlist).refresh(service.store)
    print(scan_json(report, systems) if args.json else scan_text(report, systems, args.verbose))
    if report.symbols and report.evaluated == 0:
        first = next((f"{r.symbol}: {r.reason}" for r in report.rejections), report.errors[0] if report.errors else "")
        more = "" if args.verbose else "; --verbose lists every symbol's reason"
        print(f"tradebot scan: no symbol had usable data (first: {first}){more}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


async def _shadow(settings: Settings, args: argparse.Namespace) -> int:
    """Print the newest shadow orders with their paper fills; a database not created yet has none."""
    from bot.brokers.shadow import shadow_json, shadow_text  # noqa: PLC0415 - only this command needs them

    if not settings.db_path.exists():
        print(shadow_json([]) if args.json else f"No database at {settings.db_path} yet: no shadow orders.")
        return EXIT_OK
    async with await open_store(settings) as store:
        rows = await store.shadow_orders(args.limit)
    print(shadow_json(rows) if args.json else shadow_text(rows))
    return EXIT_OK


async def _learn(settings: Settings, args: argparse.Namespace) -> int:
    """Fit (or roll back) the learned model in the bot's database and print what it holds."""
    from bot.ops.clock import BotClock  # noqa: PLC0415 - only this command needs the learning stack
    from bot.services.configure import cache_dir, system_book, watchlist  # noqa: PLC0415
    from bot.services.learner import Learner  # noqa: PLC0415
    from bot.telegram.events import learned_text  # noqa: PLC0415
    from bot.telegram.messages import plain_text  # noqa: PLC0415
    from data.market.providers import provider_from_source  # noqa: PLC0415

    provider = None if args.no_backtests else provider_from_source(settings.data_source, cache_dir(settings))
    async with await open_store(settings) as store:
        items = watchlist(settings)
        learner = Learner(store, provider, BotClock(), settings, items, system_book(settings, items))
        if args.rollback:
            model = await learner.rollback()
            if model is None:
                print("tradebot learn: no earlier model version to return to", file=sys.stderr)
                return EXIT_FAILED
            print(
                _model_json(model)
                if args.json
                else f"rolled back to v{model.version}\n{plain_text(learned_text(model))}"
            )
            return EXIT_OK
        result = await learner.learn(backtests=not args.no_backtests)
    if isinstance(result, str):
        print(f"tradebot learn: {result}", file=sys.stderr)
        return EXIT_FAILED
    print(_model_json(result) if args.json else plain_text(learned_text(result)))
    return EXIT_OK


def _model_json(model: Any) -> str:
    from bot.cli.report import to_json  # noqa: PLC0415

    shown = {
        "version": model.version,
        "created_at": model.created_at,
        "calibration_note": model.calibration_note,
        "demotions": model.demotions,
        "summary": model.summary,
    }
    return json.dumps(to_json(shown), indent=1, default=str)


async def _drift(settings: Settings, as_json: bool = False) -> int:
    """Print the drift table (nothing is alerted or changed)."""
    from bot.ops.clock import BotClock  # noqa: PLC0415 - only this command needs these
    from bot.services.configure import system_book  # noqa: PLC0415
    from bot.services.drift_watch import DriftWatch  # noqa: PLC0415
    from bot.telegram.events import drift_text  # noqa: PLC0415
    from bot.telegram.messages import plain_text  # noqa: PLC0415
    from bot.telegram.notifier import Notifier  # noqa: PLC0415

    if not settings.db_path.exists():
        print("[]" if as_json else f"No database at {settings.db_path} yet: no baselines and no trades.")
        return EXIT_OK
    async with await open_store(settings) as store:
        clock = BotClock()
        watch = DriftWatch(
            store, Notifier(store, (0,), {}, clock), clock, settings.drift, systems=system_book(settings)
        )
        rows = await watch.table()
        if as_json:
            from bot.cli.report import to_json  # noqa: PLC0415

            print(json.dumps(to_json(rows), indent=1, default=str))
        else:
            print(plain_text(drift_text(rows, await store.pair_controls())))
    return EXIT_OK


def _redactor(settings: Settings) -> Redactor:
    return Redactor(settings.secret_values())


async def _health(settings: Settings, args: argparse.Namespace) -> int:
    """Print every health check; exit 0 when all pass, 1 otherwise."""
    from bot.cli.health import outside_health  # noqa: PLC0415 - only this command needs it

    report = await outside_health(settings, _redactor(settings), datetime.now(UTC))
    print(report.as_json() if args.json else report.text())
    return EXIT_OK if report.ok else EXIT_FAILED


async def _pause(settings: Settings, paused: bool, as_json: bool = False) -> int:
    """Set the persisted pause flag the running bot reads on every offer and click."""
    from bot.services.state import BotState  # noqa: PLC0415
    from engine.audit import CLI_ACTOR  # noqa: PLC0415

    async with await open_store(settings) as store:
        state = BotState(store, settings.bot.mode)
        was = await state.paused()
        await state.set_paused(paused, CLI_ACTOR)
    word = "paused" if paused else "running"
    already = " (it already was)" if was == paused else ""
    shown = {"paused": paused, "was_paused": was, "database": str(settings.db_path)}
    print(json.dumps(shown) if as_json else f"tradebot is {word}{already}: {settings.db_path}")
    return EXIT_OK


TOKEN_HELP = (
    "TELEGRAM_BOT_TOKEN is not set. Create a bot by talking to @BotFather in Telegram (/newbot), then "
    "export TELEGRAM_BOT_TOKEN=<the token it gives you> (or put it in .env)."
)
USERS_HELP = (
    "TELEGRAM_ALLOWED_USERS is empty: nobody could use the bot. Set it to the comma-separated numeric "
    "Telegram user ids allowed to approve trades (ask @userinfobot for yours)."
)


def _run(settings: Settings) -> int:
    """Start the bot, refusing to start without a token or without allowed users."""
    if settings.telegram_bot_token is None or not settings.telegram_bot_token.get_secret_value().strip():
        print(f"tradebot run: {TOKEN_HELP}", file=sys.stderr)
        return EXIT_USAGE
    if not settings.telegram_allowed_users:
        print(f"tradebot run: {USERS_HELP}", file=sys.stderr)
        return EXIT_USAGE
    from bot.telegram.app import serve  # noqa: PLC0415 - the scan command does not need the Telegram stack
    from data.market.calendars import build_apart  # noqa: PLC0415

    build_apart((i.calendar for i in settings.instruments), settings.cache_path)  # the library stays out of the bot
    hook = None
    if settings.web.enabled:
        from bot.web.server import start_dashboard  # noqa: PLC0415 - only a bot with [web] enabled serves pages

        hook = partial(start_dashboard, settings=settings)
    return asyncio.run(serve(settings, redactor=_redactor(settings), on_runtime=hook))


async def _web_token(settings: Settings) -> int:
    from bot.web.server import issue_token  # noqa: PLC0415

    async with await open_store(settings) as store:
        token = await issue_token(store)
    print(f"dashboard token (shown once; only its hash is kept): {token}")
    address = f"http://{settings.web.host}:{settings.web.port}/dashboard"
    print(f"open {address}/login?token=<token>, or send it in the Authorization header")
    return EXIT_OK


def _sandbox(settings: Settings, args: argparse.Namespace) -> int:
    from bot.cli.sandbox import run_sandbox, sandbox_clock  # noqa: PLC0415 - only this command serves pages

    if args.clock_speed is not None and args.clock_speed <= 0:
        print("tradebot sandbox: --clock-speed must be positive", file=sys.stderr)
        return EXIT_USAGE
    clock = sandbox_clock(settings, args.replay, args.clock_start, args.clock_speed)
    return asyncio.run(run_sandbox(settings, port=args.port, clock=clock))


def run_command(args: argparse.Namespace, settings: Settings, overrides: dict[str, Any]) -> int:
    """Run the parsed command; every failure is a one-line message on stderr and an exit code."""
    try:
        if args.command == "run":
            return _run(settings)
        if args.command == "sandbox":
            return _sandbox(settings, args)
        if args.command == "web":
            return asyncio.run(_web_token(settings))
        if args.command == "shadow":
            return asyncio.run(_shadow(settings, args))
        if args.command == "learn":
            return asyncio.run(_learn(settings, args))
        if args.command in ("report", "audit"):
            from bot.cli.report import run_audit, run_report  # noqa: PLC0415

            return asyncio.run((run_report if args.command == "report" else run_audit)(settings, args))
        if args.command == "drift":
            return asyncio.run(_drift(settings, args.json))
        if args.command == "health":
            return asyncio.run(_health(settings, args))
        if args.command == "db":
            return run_db(settings, args)
        if args.command == "ops":
            from bot.ops.alarms import run_alarms  # noqa: PLC0415 - only this command needs boto3's alarms

            return run_alarms(settings, apply=args.apply)
        if args.command in ("pause", "resume"):
            return asyncio.run(_pause(settings, args.command == "pause", args.json))
        if args.command in ("validate", "optimise", "backtest"):
            return _validation(args, settings, overrides)
        return asyncio.run(_scan(settings, args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        raise  # the reader of a pipe left (`| head`): `main` ends quietly, no failure to report
    except Exception as exc:
        log.exception("tradebot %s failed", args.command)
        print(f"tradebot {args.command}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _validation(args: argparse.Namespace, settings: Settings, overrides: dict[str, Any]) -> int:
    """`tradebot validate`, `optimise` and `backtest`."""
    from bot.cli.validation import parse_params, run_backtest, run_optimise, run_validate  # noqa: PLC0415

    freeze_heap()  # the analysis libraries are loaded: the backtests' full collections need not walk them again

    if args.command == "validate":
        return run_validate(
            settings,
            strategies=args.strategies,
            symbols=args.symbols,
            data_source=args.data_source,
            as_json=args.json,
            save=not args.no_save,
            until=args.until,
        )
    if args.command == "optimise":
        return run_optimise(
            settings,
            strategy=args.strategy,
            symbol=args.symbol,
            data_source=args.data_source,
            adopt=args.adopt,
            as_json=args.json,
            reload=lambda: load_settings(**overrides),
        )
    try:
        params = parse_params(args.params)
    except ValueError as exc:
        print(f"tradebot backtest: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return run_backtest(
        settings,
        strategy=args.strategy,
        symbol=args.symbol,
        interval=args.interval,
        start=args.start,
        end=args.end,
        data_source=args.data_source,
        params=params,
        as_json=args.json,
        plot=args.plot,
    )
