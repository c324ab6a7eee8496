"""bot.ops."""
