"""What a caller sees of the embedded server, and waiting for it (see `bot.sandbox.botapi`)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from bot.sandbox.botapi_state import Call, CallbackAnswer, SentMessage, T, _State


class _Observing(_State):
    """Sent messages, edits, answers, commands and calls; waits for them from any thread or loop."""

    # ----------------------------------------------------------------------------------------- observing

    @property
    def sent(self) -> list[SentMessage]:
        """Return every message the bot sent, in order, as it was when sent."""
        with self._lock:
            return list(self._sent)

    @property
    def edits(self) -> list[SentMessage]:
        """Return the state after each successful edit, in order."""
        with self._lock:
            return list(self._edits)

    def messages_in(self, chat_id: int) -> list[SentMessage]:
        """Return the current state of the bot's undeleted messages in a chat, oldest first."""
        with self._lock:
            return sorted(
                (m for (c, _), m in self._messages.items() if c == chat_id and not m.deleted),
                key=lambda m: m.message_id,
            )

    def image(self, chat_id: int, message_id: int) -> bytes | None:
        """The photo a bot message uploaded, as uploaded (None for text or a photo sent by id or URL)."""
        with self._lock:
            return self._images.get((chat_id, message_id))

    @property
    def uploaded_bytes(self) -> int:
        """The bytes of the photos kept for `image` (every upload the bot made)."""
        with self._lock:
            return sum(len(upload) for upload in self._images.values())

    def message(self, chat_id: int, message_id: int) -> SentMessage:
        """Return the current state of one bot message (after edits)."""
        with self._lock:
            return self._messages[(chat_id, message_id)]

    @property
    def callback_answers(self) -> dict[str, CallbackAnswer]:
        """Return the answers the bot gave, by callback query id."""
        with self._lock:
            return dict(self._answers)

    @property
    def commands(self) -> list[tuple[str, str]]:
        """Return the default-scope command list set by the bot as (command, description)."""
        return self.commands_for()

    def commands_for(self, scope: dict[str, Any] | None = None, language_code: str = "") -> list[tuple[str, str]]:
        """Return the command list for a scope and language."""
        key = (json.dumps(scope or {"type": "default"}, sort_keys=True), language_code)
        with self._lock:
            return [(c["command"], c["description"]) for c in self._commands.get(key, [])]

    @property
    def calls(self) -> list[Call]:
        """Return every API request received, in arrival order."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str, *, status: int | None = None) -> list[Call]:
        """Return the calls of one method, optionally only those answered with `status`."""
        with self._lock:
            return [
                c for c in self._calls if c.method.lower() == method.lower() and (status is None or c.status == status)
            ]

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Return updates not yet confirmed by the bot."""
        with self._lock:
            return list(self._updates)

    @property
    def polling(self) -> bool:
        """Return whether a getUpdates long poll is currently held."""
        with self._lock:
            return self._held_polls > 0

    # ----------------------------------------------------------------------------------------- waiting

    async def wait_or_none(self, predicate: Callable[[], T | None], timeout: float) -> T | None:
        """The first truthy `predicate()`, or None after `timeout` (no error: for a page that polls on)."""
        return await self._wait(predicate, timeout)

    async def wait_until(
        self, predicate: Callable[[], T | None], timeout: float = 5.0, *, what: str = "condition"
    ) -> T:
        """Wait until `predicate()` is truthy (re-checked on every server state change) and return its value."""
        value = await self._wait(predicate, timeout)
        if not value:
            raise TimeoutError(self._timeout_report(what, timeout))
        return value

    def wait_until_sync(self, predicate: Callable[[], T | None], timeout: float = 5.0, *, what: str = "condition") -> T:
        """Block until `predicate()` is truthy; only for a server running in its own thread."""
        if self._thread is None or threading.current_thread() is self._thread:
            raise RuntimeError("wait_until_sync needs the server running in its own thread (start_in_thread)")
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (value := predicate()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(self._timeout_report(what, timeout))
                self._cond.wait(remaining)
            return value

    async def wait_for_message(
        self,
        predicate: Callable[[SentMessage], bool] | None = None,
        *,
        chat_id: int | None = None,
        since: int = 0,
        timeout: float = 5.0,
    ) -> SentMessage:
        """Wait for the first sent message at index >= `since` (see `len(tg.sent)`) that matches."""

        def find() -> SentMessage | None:
            for m in self._sent[since:]:
                if (chat_id is None or m.chat_id == chat_id) and (predicate is None or predicate(m)):
                    return m
            return None

        return await self.wait_until(find, timeout, what="a matching sent message")

    async def wait_for_answer(self, query_id: str, timeout: float = 5.0) -> CallbackAnswer:
        """Wait until the bot answers callback query `query_id`."""
        return await self.wait_until(lambda: self._answers.get(query_id), timeout, what=f"answer to {query_id}")

    async def wait_for_edit(
        self,
        chat_id: int,
        message_id: int,
        predicate: Callable[[SentMessage], bool] | None = None,
        *,
        min_edits: int = 1,
        timeout: float = 5.0,
    ) -> SentMessage:
        """Wait until a message has been edited at least `min_edits` times and its state matches."""

        def check() -> SentMessage | None:
            m = self._messages.get((chat_id, message_id))
            if m is not None and m.edits >= min_edits and (predicate is None or predicate(m)):
                return m
            return None

        return await self.wait_until(check, timeout, what=f"edit of message {chat_id}/{message_id}")

    async def wait_for_call(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        *,
        status: int | None = None,
        since: int = 0,
        timeout: float = 5.0,
    ) -> Call:
        """Wait for a finished call of `method` at index >= `since` of `calls`."""

        def find() -> Call | None:
            for c in self._calls[since:]:
                if (
                    c.method.lower() == method.lower()
                    and c.finished_at is not None
                    and (status is None or c.status == status)
                    and (predicate is None or predicate(c))
                ):
                    return c
            return None

        return await self.wait_until(find, timeout, what=f"a {method} call")

    async def wait_for_polling(self, timeout: float = 5.0) -> None:
        """Wait until the bot holds a long poll (it is up and listening)."""
        await self.wait_until(lambda: self._held_polls > 0, timeout, what="a held getUpdates long poll")

    async def wait_until_delivered(self, timeout: float = 5.0) -> None:
        """Wait until the bot has confirmed (via offset) every update enqueued so far."""
        await self.wait_until(lambda: not self._updates, timeout, what="all updates confirmed")

    def _timeout_report(self, what: str, timeout: float) -> str:
        with self._lock:
            calls = ", ".join(f"{c.method}:{c.status}" for c in self._calls[-12:])
            sent = "; ".join(repr(m.body[:60]) for m in self._sent[-5:])
        return f"timed out after {timeout}s waiting for {what}. Last calls: [{calls}]. Last sent: [{sent}]"
