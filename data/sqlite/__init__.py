"""data.sqlite."""
