"""Pre-deploy gate: run `tradebot validate` and exit with its code (non-zero when nothing passes).

Usage: python scripts/pre_deploy.py [--data-source csv:DIR] [--strategies a,b] [--symbols X,Y] [--json]
Every enabled strategy x instrument is walk-forward validated and Monte Carlo resampled; the results are
stored as baselines, and the live bot will not offer signals of pairs that failed.
"""

from __future__ import annotations

import sys

from bot.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["validate", *sys.argv[1:]]))
