"""The bot's switches that must survive a restart: paused, and the execution mode."""

from __future__ import annotations

from engine.ports import BotStore
from engine.trading import ExecutionMode

PAUSED_KEY = "paused"
MODE_KEY = "mode"


class BotState:
    """Paused flag and execution mode, persisted in the store (the config gives the initial mode)."""

    def __init__(self, store: BotStore, default_mode: ExecutionMode) -> None:
        self.store = store
        self.default_mode = default_mode

    async def paused(self) -> bool:
        return await self.store.get_state(PAUSED_KEY) == "1"

    async def set_paused(self, paused: bool) -> None:
        await self.store.set_state(PAUSED_KEY, "1" if paused else "0")

    async def mode(self) -> ExecutionMode:
        stored = await self.store.get_state(MODE_KEY)
        return ExecutionMode(stored) if stored in set(ExecutionMode) else self.default_mode

    async def set_mode(self, mode: ExecutionMode) -> None:
        await self.store.set_state(MODE_KEY, mode.value)
