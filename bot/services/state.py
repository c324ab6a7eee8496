"""The bot's switches that must survive a restart: paused, and the execution mode."""

from __future__ import annotations

from engine.audit import actor_of
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

    async def set_paused(self, paused: bool, by: int | str | None = None) -> None:
        """Pause or resume entries; the audit trail says who."""
        what = "paused: no new entries" if paused else "resumed"
        await self.store.set_state(PAUSED_KEY, "1" if paused else "0", audit_by=actor_of(by), detail=what)

    async def mode(self) -> ExecutionMode:
        stored = await self.store.get_state(MODE_KEY)
        return ExecutionMode(stored) if stored in set(ExecutionMode) else self.default_mode

    async def set_mode(self, mode: ExecutionMode, by: int | str | None = None) -> None:
        """Set the execution mode; the audit trail says who."""
        await self.store.set_state(MODE_KEY, mode.value, audit_by=actor_of(by))
