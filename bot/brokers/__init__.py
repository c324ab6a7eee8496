"""bot.brokers."""
