"""The `tradebot` command line.

Exit codes: 0 the command did its job (a scan with no setups included); 1 it ran but could not do its job
(no symbol had usable data, an unexpected failure); 2 bad usage or configuration (nothing was done).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from bot.cli.codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from bot.cli.parser import build_parser

log = logging.getLogger("tradebot")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tradebot` console script."""
    args = build_parser().parse_args(argv)
    try:
        code = _main(args)
        sys.stdout.flush()  # inside the guard: a reader that left shows here, not as a message at exit
        return code
    except BrokenPipeError:  # `tradebot report | head`: the reader left; nothing more to say, and no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


def _main(args: argparse.Namespace) -> int:
    from bot.config import ConfigError, SecretsUnavailable, load_settings  # noqa: PLC0415 - not for --help
    from bot.ops.logs import configure, redacted_output  # noqa: PLC0415

    level = logging.INFO if args.command in ("run", "sandbox") or getattr(args, "verbose", False) else logging.WARNING
    configure(level)
    if args.config is not None:
        if not args.config.is_file():
            print(f"tradebot: --config {args.config}: no such file", file=sys.stderr)
            return EXIT_USAGE
        os.environ["TRADEBOT_CONFIG"] = str(args.config)
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
    from bot.cli.commands import run_command  # noqa: PLC0415 - the command's own imports

    with redacted_output(redactor):  # what a command prints (an error echoing a token too) never shows a secret
        return run_command(args, settings, overrides)


if __name__ == "__main__":
    sys.exit(main())
