"""The web dashboard: positions, equity, signals, systems and the emergency stop, in the bot's event loop."""
