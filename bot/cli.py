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
from datetime import UTC, datetime

from bot.composition import scan_service, watchlist
from bot.config import ConfigError, Settings, load_settings
from bot.logs import configure
from bot.render import scan_json, scan_text
from bot.scan import select

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

log = logging.getLogger("tradebot")


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
    return parser


async def _scan(settings: Settings, args: argparse.Namespace) -> int:
    try:
        select(watchlist(settings), args.symbols, args.strategies)
    except ValueError as exc:
        print(f"tradebot scan: {exc}", file=sys.stderr)
        return EXIT_USAGE
    async with scan_service(settings, args.data_source) as service:
        report = await service.scan(args.as_of, args.symbols, args.strategies)
    print(scan_json(report) if args.json else scan_text(report, args.verbose))
    if report.symbols and report.evaluated == 0:
        first = next((f"{r.symbol}: {r.reason}" for r in report.rejections), report.errors[0] if report.errors else "")
        more = "" if args.verbose else "; --verbose lists every symbol's reason"
        print(f"tradebot scan: no symbol had usable data (first: {first}){more}", file=sys.stderr)
        return EXIT_FAILED
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
    from bot.telegram_app import serve  # noqa: PLC0415 - the scan command does not need the Telegram stack

    return asyncio.run(serve(settings))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tradebot` console script."""
    args = build_parser().parse_args(argv)
    level = logging.INFO if args.command == "run" or getattr(args, "verbose", False) else logging.WARNING
    configure(level)
    overrides = {}
    if getattr(args, "data_source", None):
        overrides["data_source"] = args.data_source
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        print(f"tradebot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if settings.telegram_bot_token is not None:
        configure(level, [settings.telegram_bot_token.get_secret_value()])
    try:
        if args.command == "run":
            return _run(settings)
        return asyncio.run(_scan(settings, args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        log.exception("tradebot %s failed", args.command)
        print(f"tradebot {args.command}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
