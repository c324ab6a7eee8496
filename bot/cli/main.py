"""The `tradebot` command line.

Exit codes: 0 the command did its job (a scan with no setups included); 1 it ran but could not do its job
(no symbol had usable data, an unexpected failure); 2 bad usage or configuration (nothing was done).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from bot.bootstrap import open_store, scan_service
from bot.cli.db import add_db_parser, run_db
from bot.cli.render import EXIT_FAILED, EXIT_OK, EXIT_USAGE, scan_json, scan_text
from bot.cli.validation import parse_params, run_backtest, run_optimise, run_validate
from bot.config import ConfigError, SecretsUnavailable, Settings, load_settings
from bot.ops.logs import configure, redacted_output
from bot.services.configure import cache_dir, system_book, watchlist
from bot.services.scan import select
from bot.telegram.messages import plain_text
from data.redaction import Redactor
from data.sqlite.store import SqliteStore
from engine.domain import Interval

log = logging.getLogger("tradebot")


def _duration(text: str) -> timedelta:
    from bot.cli.sandbox import duration  # noqa: PLC0415

    try:
        return duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _instant(text: str) -> datetime:
    """Parse an ISO-8601 instant that names its timezone (`Z` or an offset)."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 instant: {text!r} (e.g. 2025-06-12T09:40:00Z)") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no timezone; add Z for UTC (e.g. 2025-06-12T09:40:00Z)")
    return value.astimezone(UTC)


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of names")
    return names


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, was {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tradebot", description="Trading signal bot with human trade approval.")
    commands = parser.add_subparsers(dest="command", required=True)
    scan = commands.add_parser("scan", help="run one analysis of the watchlist and persist it")
    scan.add_argument("--symbols", type=_names, help="comma-separated symbols (default: the whole watchlist)")
    scan.add_argument("--strategies", type=_names, help="comma-separated strategy names (default: all enabled)")
    scan.add_argument("--data-source", help="yfinance or csv:DIR (default: TRADEBOT_DATA_SOURCE)")
    scan.add_argument("--as-of", type=_instant, help="evaluate as if the clock were at this instant (UTC)")
    scan.add_argument("--json", action="store_true", help="print the run as JSON")
    scan.add_argument("--verbose", action="store_true", help="also list rejected setups and symbols with reasons")
    commands.add_parser("run", help="run the Telegram bot until SIGTERM/SIGINT")
    web_commands = commands.add_parser("web", help="the web dashboard").add_subparsers(
        dest="web_command", required=True
    )
    web_commands.add_parser("token", help="issue a dashboard token (needed off loopback); printed once, kept hashed")
    sandbox = commands.add_parser("sandbox", help="run the bot with no account, chatting in a local web page")
    sandbox.add_argument("--port", type=int, default=8765, help="the chat page's port on 127.0.0.1 (default 8765)")
    sandbox.add_argument("--data-source", help="yfinance or csv:DIR (default: TRADEBOT_DATA_SOURCE)")
    sandbox.add_argument("--replay", type=_duration, help="replay the last DURATION (e.g. 5d) on the bot clock at 60x")
    sandbox.add_argument("--clock-start", type=_instant, help="start the bot clock at this instant (UTC)")
    sandbox.add_argument("--clock-speed", type=float, help="bot seconds per real second")
    shadow = commands.add_parser("shadow", help="list the orders shadow mode recorded, beside their paper fills")
    shadow.add_argument("--limit", type=_positive, default=20, help="how many, newest first (default 20)")
    shadow.add_argument("--json", action="store_true", help="print them as JSON")
    validate = commands.add_parser(
        "validate", help="the pre-deploy gate on the parameters each system trades; stores baselines"
    )
    validate.add_argument("--strategies", type=_names, help="comma-separated strategy names (default: all enabled)")
    validate.add_argument("--symbols", type=_names, help="comma-separated symbols (default: the whole watchlist)")
    validate.add_argument("--data-source", help="yfinance or csv:DIR (default: TRADEBOT_DATA_SOURCE)")
    validate.add_argument("--json", action="store_true", help="print the results as JSON")
    validate.add_argument("--no-save", action="store_true", help="do not store the results as baselines")
    validate.add_argument(
        "--until",
        type=_instant,
        help="validate on the data closed by this instant (default: now), e.g. before a replay",
    )
    optimise = commands.add_parser(
        "optimise", help="walk-forward parameter search for one strategy x symbol; --adopt writes the proposal"
    )
    optimise.add_argument("--strategy", required=True)
    optimise.add_argument("--symbol", required=True)
    optimise.add_argument("--data-source", help="yfinance or csv:DIR (default: TRADEBOT_DATA_SOURCE)")
    optimise.add_argument("--json", action="store_true", help="print the report as JSON")
    optimise.add_argument(
        "--adopt", action="store_true", help="write the proposal into the config file, validate it, store its baseline"
    )
    learn = commands.add_parser("learn", help="fit the learned model (posteriors, calibration, demotions) now")
    learn.add_argument("--rollback", action="store_true", help="return to the previous model version instead")
    learn.add_argument("--no-backtests", action="store_true", help="fit from recorded outcomes only (faster)")
    learn.add_argument("--data-source", help="yfinance or csv:DIR for the backtests (default: TRADEBOT_DATA_SOURCE)")
    commands.add_parser("drift", help="print live results vs the baselines for every strategy x instrument")
    health = commands.add_parser("health", help="check the database, runs, the running bot, its broker, Telegram")
    health.add_argument("--json", action="store_true", help="print the checks as JSON")
    commands.add_parser("pause", help="emergency stop from the shell: pause new signals and approvals (as /stop)")
    commands.add_parser("resume", help="resume after a pause (as /resume)")
    add_db_parser(commands)
    ops = commands.add_parser("ops", help="operations on AWS: the CloudWatch alarms")
    ops_commands = ops.add_subparsers(dest="ops_command", required=True)
    alarms = ops_commands.add_parser("alarms", help="create or update the tradebot-* CloudWatch alarms (idempotent)")
    how = alarms.add_mutually_exclusive_group(required=True)
    how.add_argument("--apply", action="store_true", help="create the missing alarms and update the changed ones")
    how.add_argument("--dry-run", action="store_true", help="print what --apply would do; change nothing")
    test = commands.add_parser("backtest", help="backtest one strategy on one instrument's history")
    test.add_argument("--strategy", required=True)
    test.add_argument("--symbol", required=True)
    test.add_argument("--interval", choices=[i.value for i in Interval], help="default: the watchlist's")
    test.add_argument("--from", dest="start", type=_instant, help="first signal bar (history before warms up)")
    test.add_argument("--to", dest="end", type=_instant, help="last bar")
    test.add_argument("--data-source", help="yfinance or csv:DIR (default: TRADEBOT_DATA_SOURCE)")
    test.add_argument("--params", help="strategy parameters, k=v,k2=v2")
    test.add_argument("--json", action="store_true", help="print trades and metrics as JSON")
    test.add_argument("--plot", type=Path, help="write the equity curve and drawdown to this PNG")
    return parser


async def _scan(settings: Settings, args: argparse.Namespace) -> int:
    try:
        select(watchlist(settings), args.symbols, args.strategies)
    except ValueError as exc:
        print(f"tradebot scan: {exc}", file=sys.stderr)
        return EXIT_USAGE
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
    from bot.services.learner import Learner  # noqa: PLC0415
    from bot.telegram.events import learned_text  # noqa: PLC0415
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
            print(f"rolled back to v{model.version}\n{plain_text(learned_text(model))}")
            return EXIT_OK
        result = await learner.learn(backtests=not args.no_backtests)
    if isinstance(result, str):
        print(f"tradebot learn: {result}", file=sys.stderr)
        return EXIT_FAILED
    print(plain_text(learned_text(result)))
    return EXIT_OK


async def _drift(settings: Settings) -> int:
    """Print the drift table (nothing is alerted or changed)."""
    from bot.ops.clock import BotClock  # noqa: PLC0415 - only this command needs these
    from bot.services.drift_watch import DriftWatch  # noqa: PLC0415
    from bot.telegram.events import drift_text  # noqa: PLC0415
    from bot.telegram.notifier import Notifier  # noqa: PLC0415

    if not settings.db_path.exists():
        print(f"No database at {settings.db_path} yet: no baselines and no trades.")
        return EXIT_OK
    async with await open_store(settings) as store:
        clock = BotClock()
        watch = DriftWatch(
            store, Notifier(store, (0,), {}, clock), clock, settings.drift, systems=system_book(settings)
        )
        rows = await watch.table()
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


async def _pause(settings: Settings, paused: bool) -> int:
    """Set the persisted pause flag the running bot reads on every offer and click."""
    from bot.services.state import BotState  # noqa: PLC0415
    from engine.audit import CLI_ACTOR  # noqa: PLC0415

    async with await open_store(settings) as store:
        state = BotState(store, settings.bot.mode)
        was = await state.paused()
        await state.set_paused(paused, CLI_ACTOR)
    word = "paused" if paused else "running"
    already = " (it already was)" if was == paused else ""
    print(f"tradebot is {word}{already}: {settings.db_path}")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tradebot` console script."""
    args = build_parser().parse_args(argv)
    level = logging.INFO if args.command in ("run", "sandbox") or getattr(args, "verbose", False) else logging.WARNING
    configure(level)
    overrides: dict[str, Any] = {}
    if getattr(args, "data_source", None):
        overrides["data_source"] = args.data_source
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        print(f"tradebot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SecretsUnavailable as exc:  # exit 1: systemd restarts the service and the secret is asked for again
        print(f"tradebot: {exc}", file=sys.stderr)
        return EXIT_FAILED
    redactor = configure(level, settings.secret_values(), settings.logging.format)
    with redacted_output(redactor):  # what a command prints (an error echoing a token too) never shows a secret
        return _command(args, settings, overrides)


def _command(args: argparse.Namespace, settings: Settings, overrides: dict[str, Any]) -> int:
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
        if args.command == "drift":
            return asyncio.run(_drift(settings))
        if args.command == "health":
            return asyncio.run(_health(settings, args))
        if args.command == "db":
            return run_db(settings, args)
        if args.command == "ops":
            from bot.ops.alarms import run_alarms  # noqa: PLC0415 - only this command needs boto3's alarms

            return run_alarms(settings, apply=args.apply)
        if args.command in ("pause", "resume"):
            return asyncio.run(_pause(settings, args.command == "pause"))
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
        if args.command == "backtest":
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
        return asyncio.run(_scan(settings, args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        log.exception("tradebot %s failed", args.command)
        print(f"tradebot {args.command}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
