"""data.market."""
