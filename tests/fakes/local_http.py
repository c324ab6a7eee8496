"""Start an aiohttp app on 127.0.0.1: the fake servers share the sandbox's start-up."""

from __future__ import annotations

from bot.sandbox.listen import listen

__all__ = ["listen"]
