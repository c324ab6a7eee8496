"""Exit codes of every `tradebot` command: 0 done; 1 it ran but could not do its job; 2 bad usage or configuration
(nothing was done)."""

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
