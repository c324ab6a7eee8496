"""bot.telegram."""
