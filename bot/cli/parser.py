"""The `tradebot` argument parser: standard library only, so `tradebot --help` answers at once (each command
imports what it needs when it runs)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bot

INTERVALS = ("1m", "5m", "15m", "30m", "1h", "4h", "1d")  # engine.domain.Interval's values (checked by a test)
MAX_KEEP = 10_000  # as `[backup] keep`


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


def _destination(text: str) -> str:
    from data.backup import S3_SCHEME, parse_s3_url  # noqa: PLC0415 - only when the argument is given

    if text.startswith(S3_SCHEME):
        try:
            parse_s3_url(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    elif not text.strip():
        raise argparse.ArgumentTypeError("expected a directory or s3://bucket/prefix")
    return text


def _keep(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= MAX_KEEP:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_KEEP}, was {value}")
    return value


def add_db_parser(commands: argparse._SubParsersAction) -> None:
    """Add `db backup [--to DIR|s3://bucket/prefix] [--keep N]` and `db restore SOURCE [--db PATH]`."""
    db = commands.add_parser("db", help="back up or restore the bot's database")
    actions = db.add_subparsers(dest="db_command", required=True)
    save = actions.add_parser("backup", help="snapshot the database (safe while the bot runs), gzip it, keep N")
    save.add_argument(
        "--to", type=_destination, help="a directory or s3://bucket/prefix (default: [backup] to, else backups/)"
    )
    save.add_argument("--keep", type=_keep, help="how many backups to keep there (default: [backup] keep)")
    back = actions.add_parser("restore", help="replace the database with a backup (the bot must be stopped)")
    back.add_argument(
        "source", help="a .db.gz file, a directory or s3://bucket/prefix (its newest), or s3://bucket/key.db.gz"
    )
    back.add_argument("--db", type=Path, help="the database to replace (default: TRADEBOT_DB_PATH)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tradebot", description="Trading signal bot with human trade approval.")
    parser.add_argument("--version", action="version", version=f"tradebot {bot.version()}")
    parser.add_argument("-c", "--config", type=Path, help="the TOML configuration file (default: TRADEBOT_CONFIG)")
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
    learn.add_argument("--json", action="store_true", help="print the learned model's summary as JSON")
    drift = commands.add_parser("drift", help="print live results vs the baselines for every strategy x instrument")
    drift.add_argument("--json", action="store_true", help="print the table as JSON")
    health = commands.add_parser("health", help="check the database, runs, the running bot, its broker, Telegram")
    health.add_argument("--json", action="store_true", help="print the checks as JSON")
    for name, text in (
        ("pause", "emergency stop from the shell: pause new signals and approvals (as /stop)"),
        ("resume", "resume after a pause (as /resume)"),
    ):
        commands.add_parser(name, help=text).add_argument("--json", action="store_true", help="print the state as JSON")
    report = commands.add_parser("report", help="P&L and performance, as the chat's /profit, /daily, /performance...")
    what = report.add_mutually_exclusive_group()
    for flag, text in (
        ("--daily", "P&L per day"),
        ("--weekly", "P&L per ISO week"),
        ("--monthly", "P&L per month"),
        ("--pairs", "per pair and per strategy, with validation status"),
        ("--trades", "the last closed trades"),
        ("--balance", "equity per broker account"),
    ):
        what.add_argument(flag, action="store_true", help=text)
    report.add_argument("-n", "--count", type=_positive, help="how many periods or trades (default 7 days, 10 trades)")
    report.add_argument("--json", action="store_true", help="print the figures as JSON")
    audit = commands.add_parser("audit", help="the audit trail: who decided and changed what, newest first")
    audit.add_argument("--since", type=_instant, help="only events at or after this instant (UTC)")
    audit.add_argument("-n", "--count", type=_positive, default=50, help="how many, newest first (default 50)")
    audit.add_argument("--json", action="store_true", help="print the events as JSON lines")
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
    test.add_argument("--interval", choices=INTERVALS, help="default: the watchlist's")
    test.add_argument("--from", dest="start", type=_instant, help="first signal bar (history before warms up)")
    test.add_argument("--to", dest="end", type=_instant, help="last bar")
    test.add_argument("--data-source", help="yfinance or csv:DIR (default: TRADEBOT_DATA_SOURCE)")
    test.add_argument("--params", help="strategy parameters, k=v,k2=v2")
    test.add_argument("--json", action="store_true", help="print trades and metrics as JSON")
    test.add_argument("--plot", type=Path, help="write the equity curve and drawdown to this PNG")
    _config_everywhere(parser)
    return parser


def _config_everywhere(parser: argparse.ArgumentParser) -> None:
    """Accept `-c/--config FILE` after any command too (`tradebot scan -c my.toml`)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.add_argument(
                    "-c", "--config", type=Path, default=argparse.SUPPRESS, help="the TOML configuration file"
                )
                _config_everywhere(sub)
