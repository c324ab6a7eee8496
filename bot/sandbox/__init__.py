"""The local sandbox: an embedded Telegram Bot API server the real bot talks to, with no account or token."""
