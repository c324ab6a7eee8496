"""The names of the Telegram users the bot has seen, so messages and the audit trail say who, not a number."""

from __future__ import annotations

from collections.abc import Iterable

from engine.ports import KeyValueState

NAME_KEY_PREFIX = "user_name:"


class UserDirectory:
    """User id → display name, remembered in the bot's state (a name is written only when it changes)."""

    def __init__(self, store: KeyValueState) -> None:
        self.store = store
        self._names: dict[int, str] = {}

    async def seen(self, user_id: int, name: str) -> None:
        """Remember the name a user showed with their latest command or press."""
        name = " ".join(name.split())[:64]
        if not name or self._names.get(user_id) == name:
            return
        self._names[user_id] = name
        await self.store.set_state(f"{NAME_KEY_PREFIX}{user_id}", name)

    async def name(self, user_id: int) -> str | None:
        if user_id not in self._names:
            stored = await self.store.get_state(f"{NAME_KEY_PREFIX}{user_id}")
            if stored is None:
                return None
            self._names[user_id] = stored
        return self._names[user_id]

    async def names(self, user_ids: Iterable[int | None]) -> dict[int, str]:
        """The known names of these users."""
        found = {}
        for user_id in {u for u in user_ids if u}:
            if (name := await self.name(user_id)) is not None:
                found[user_id] = name
        return found


async def actor_names(users: UserDirectory, actors: Iterable[str]) -> dict[str, str]:
    """Display names of the Telegram users among audit actors (user ids as text; 'bot', 'cli' stay as they are)."""
    known = await users.names(int(a) for a in actors if a.isdigit())
    return {str(user_id): name for user_id, name in known.items()}


def who(user_id: int | None, names: dict[int, str]) -> str:
    """A user's name with the id, or the id alone when the name is unknown."""
    if not user_id:
        return "the bot"
    name = names.get(user_id)
    return f"{name} ({user_id})" if name else str(user_id)
