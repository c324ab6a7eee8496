"""The embedded Telegram Bot API server: the part of the Bot API tradebot uses, spoken over real HTTP.

The sandbox and the end-to-end tests run the real bot against this one implementation. The bot talks to
`BotApiServer.base_url` (`http://127.0.0.1:PORT/bot`) exactly as it would talk to
`https://api.telegram.org/bot`: PTB posts `{base_url}{token}/{method}` with form-encoded parameters (objects such
as `reply_markup` JSON-encoded as strings) or multipart/form-data when a file is uploaded, and reads back
`{"ok": true, "result": ...}` or `{"ok": false, "error_code": ..., "description": ..., "parameters": ...}`.

Behaviour copied from the real server because bots trip over it:
- HTML is parsed with tdlib's rules (same error texts); the stored text is the plain text plus entities, trimmed.
- `editMessageText` without `reply_markup` removes the inline keyboard; identical edits are 400 "not modified".
- `getUpdates` long-polls, confirms by `offset`, remembers `allowed_updates`, and answers an older concurrent
  poll with 409 Conflict.
- A request that fails (a fault a test injects) has no side effect, unless the fault says the response was lost.

The server runs on the caller's event loop (`async with BotApiServer(...)`) or on its own thread (`with ...`);
all state is guarded by one lock, so the test side may drive it from either, and the bot may be in-process or a
subprocess (`env={**os.environ, **tg.env()}`). Typical use:

    async with BotApiServer() as tg:
        app = ApplicationBuilder().token(tg.token).base_url(tg.base_url).build()
        ...start polling...
        tg.user_message(42, "/start")
        signal = await tg.wait_for_message(lambda m: "BUY" in m.text, chat_id=42)
        query_id = tg.click(42, signal, button="Approve")
        assert (await tg.wait_for_answer(query_id)).text == "Approved"
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from aiohttp import web

from bot.sandbox.botapi_methods import _decode_param, _Methods
from bot.sandbox.botapi_observe import _Observing
from bot.sandbox.botapi_state import (
    _DROPPED,
    _SEND_METHODS,
    _STATUS_TEXT,
    Call,
    SentMessage,
    _ApiError,
    _bad,
    _Fault,
    _Query,
)
from bot.sandbox.entities import _command_entities
from bot.sandbox.listen import listen


class BotApiServer(_Observing, _Methods):
    """A local Bot API server: drive it as users, inject faults, and observe what the bot did."""

    @functools.cached_property
    def _handlers(self) -> dict[str, Callable[[dict[str, Any], dict[str, bytes]], Any]]:
        """The Bot API methods this server implements, by their lower-case name."""
        return {
            "getme": self._get_me,
            "logout": lambda p, f: True,
            "close": lambda p, f: True,
            "getwebhookinfo": self._get_webhook_info,
            "deletewebhook": self._delete_webhook,
            "getupdates": self._get_updates,
            "sendmessage": self._send_message,
            "sendphoto": self._send_photo,
            "sendchataction": self._send_chat_action,
            "editmessagetext": self._edit_message_text,
            "editmessagecaption": self._edit_message_caption,
            "editmessagereplymarkup": self._edit_message_reply_markup,
            "deletemessage": self._delete_message,
            "answercallbackquery": self._answer_callback_query,
            "setmycommands": self._set_my_commands,
            "getmycommands": self._get_my_commands,
            "deletemycommands": self._delete_my_commands,
        }

    # ----------------------------------------------------------------------------------------- lifecycle

    @property
    def port(self) -> int:
        """Return the bound TCP port (after start)."""
        if not self._port:
            raise RuntimeError("BotApiServer is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """Return the value for PTB's `base_url` / TELEGRAM_API_BASE_URL."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        """Return the value for PTB's `base_file_url`."""
        return f"http://127.0.0.1:{self.port}/file/bot"

    def env(self) -> dict[str, str]:
        """Return environment variables pointing a `tradebot run` subprocess at this server."""
        return {"TELEGRAM_BOT_TOKEN": self.token, "TELEGRAM_API_BASE_URL": self.base_url}

    async def start(self) -> BotApiServer:
        """Start listening on 127.0.0.1 on the running event loop."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        # handler_cancellation: a poll whose client hung up (PTB stopping) must not linger or deliver.
        self._runner, self._port = await listen(app, self._port, handler_cancellation=True)
        self._loop = asyncio.get_running_loop()
        with self._lock:
            self._closing = False
        return self

    async def stop(self) -> None:
        """Release held long polls and stop listening (well under a second)."""
        with self._lock:
            self._closing = True
            self._notify()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> BotApiServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start_in_thread(self) -> BotApiServer:
        """Start the server on a private event loop in a daemon thread (for synchronous tests)."""
        started = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="BotApiServer", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        return self

    def stop_thread(self) -> None:
        """Stop a server started with `start_in_thread`."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        self._thread = None

    def __enter__(self) -> BotApiServer:
        return self.start_in_thread()

    def __exit__(self, *exc: object) -> None:
        self.stop_thread()

    # ----------------------------------------------------------------------------------------- driving

    def add_user(
        self, user_id: int, first_name: str = "Tester", *, username: str | None = None, language_code: str = "en"
    ) -> dict[str, Any]:
        """Register (or return) a user and their private chat; returns the User JSON."""
        with self._lock:
            return self._ensure_user(user_id, first_name, username, language_code)

    def block(self, user_id: int, blocked: bool = True) -> None:
        """Make sends to this user fail with 403 "bot was blocked by the user" (or undo it)."""
        with self._lock:
            (self._blocked.add if blocked else self._blocked.discard)(user_id)

    def user_message(
        self,
        user_id: int,
        text: str,
        chat_id: int | None = None,
        *,
        first_name: str = "Tester",
        username: str | None = None,
    ) -> int:
        """Enqueue a text message from a user (commands get bot_command entities); return its update_id."""
        with self._lock:
            user = self._ensure_user(user_id, first_name, username)
            chat_id = user_id if chat_id is None else chat_id
            chat = self._ensure_chat(chat_id)
            message_id = self._allocate_message_id(chat_id)
            self._user_messages.add((chat_id, message_id))
            message: dict[str, Any] = {
                "message_id": message_id,
                "from": user,
                "chat": chat,
                "date": int(time.time()),
                "text": text,
            }
            if entities := _command_entities(text):
                message["entities"] = entities
            return self._enqueue("message", message)

    def click(
        self,
        user_id: int,
        message: SentMessage | int,
        data: str | None = None,
        *,
        button: str | None = None,
        chat_id: int | None = None,
        allow_stale: bool = False,
    ) -> str:
        """Press an inline button (by callback `data` or `button` label) on a bot message; return the query id."""
        with self._lock:
            if isinstance(message, SentMessage):
                key = (message.chat_id, message.message_id)
            else:
                key = (user_id if chat_id is None else chat_id, message)
            current = self._messages.get(key)
            if current is None or current.deleted:
                raise ValueError(f"no bot message {key} to click on")
            if button is not None:
                data = current.button_data(button)
            if data is None:
                raise ValueError("click needs callback data or a button label")
            if not allow_stale and data not in {d for _, d in current.buttons}:
                raise ValueError(f"message {key} has no button with data {data!r}; buttons: {current.buttons}")
            user = self._ensure_user(user_id, "Tester", None)
            self._next_query += 1
            query_id = str(4_800_000_000_000_000_000 + self._next_query * 7919)
            self._queries[query_id] = _Query(key[0], key[1], time.monotonic())
            self._enqueue(
                "callback_query",
                {
                    "id": query_id,
                    "from": user,
                    "message": self._message_json(current),
                    "chat_instance": str(-(abs(key[0]) * 2654435761 % 10**19)),
                    "data": data,
                },
            )
            return query_id

    def enqueue_update(self, kind: str, payload: dict[str, Any]) -> int:
        """Enqueue a raw update of any type (e.g. "edited_message"); return its update_id."""
        with self._lock:
            return self._enqueue(kind, payload)

    # ----------------------------------------------------------------------------------------- faults

    def fail_next(
        self,
        method: str,
        times: int = 1,
        *,
        status: int = 429,
        retry_after: int | None = None,
        description: str | None = None,
        drop: bool = False,
        applied: bool = False,
    ) -> None:
        """Fail the next `times` calls of `method`: HTTP `status`, or a dropped connection if `drop`.

        `applied=True` performs the call first and then loses the response (the bot can't know it worked).
        """
        fault = self._make_fault(status, retry_after, description, drop, applied, times)
        with self._lock:
            self._faults.setdefault(method.lower(), deque()).append(fault)

    def fail_all(self, status: int = 502, *, description: str | None = None, drop: bool = False) -> None:
        """Fail every call (getUpdates included) until `recover()`."""
        with self._lock:
            self._outage = self._make_fault(status, None, description, drop, False, math.inf)

    def recover(self) -> None:
        """End `fail_all`, pending `fail_next` faults, floods and slowdowns."""
        with self._lock:
            self._outage = None
            self._faults.clear()
            self._flood = None
            self._delays.clear()

    @contextlib.contextmanager
    def outage(self, status: int = 502, *, drop: bool = False) -> Iterator[None]:
        """Make the API unavailable inside the block."""
        self.fail_all(status, drop=drop)
        try:
            yield
        finally:
            with self._lock:
                self._outage = None

    def flood(self, seconds: float, methods: tuple[str, ...] | None = None) -> None:
        """Answer send/edit calls with 429 and a counting-down retry_after until `seconds` have passed."""
        names = frozenset(m.lower() for m in methods) if methods else frozenset(_SEND_METHODS)
        with self._lock:
            self._flood = (time.monotonic() + seconds, names)

    def slow(self, method: str, seconds: float, times: int | None = None) -> None:
        """Delay the response to `method` (before acting, so a client timeout leaves no side effect)."""
        with self._lock:
            if seconds <= 0:
                self._delays.pop(method.lower(), None)
            else:
                self._delays[method.lower()] = [seconds, math.inf if times is None else times]

    @staticmethod
    def _make_fault(
        status: int, retry_after: int | None, description: str | None, drop: bool, applied: bool, times: float
    ) -> _Fault:
        if status == 429 and retry_after is None:
            retry_after = 3
        if description is None:
            description = _STATUS_TEXT.get(status, "Unknown Error")
            if status == 429:
                description = f"Too Many Requests: retry after {retry_after}"
        return _Fault(status, description, retry_after, drop, applied, times)

    # ----------------------------------------------------------------------------------------- HTTP

    async def _not_found(self, request: web.Request) -> web.Response:
        return self._error_response(404, "Not Found")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        try:
            params, files = await self._read_params(request)
        except _ApiError as exc:
            params, files = {}, {}
            parse_error: _ApiError | None = exc
        else:
            parse_error = None
        with self._lock:
            index = len(self._calls)
            self._calls.append(Call(method, params, time.monotonic(), files={k: len(v) for k, v in files.items()}))
            self._notify()
        status: int | None = None
        try:
            response = await self._dispatch(request, method, params, files, parse_error)
            if request.get(_DROPPED):
                status = 0
            elif request.transport is not None and not request.transport.is_closing():
                status = response.status  # else the client hung up first: nobody saw this answer
            return response
        finally:
            with self._lock:
                self._calls[index] = replace(self._calls[index], status=status, finished_at=time.monotonic())
                self._notify()

    async def _dispatch(
        self,
        request: web.Request,
        method: str,
        params: dict[str, Any],
        files: dict[str, bytes],
        parse_error: _ApiError | None,
    ) -> web.Response:
        if request.match_info["token"] != self.token:
            return self._error_response(401, "Unauthorized")
        name = method.lower()
        handler = self._handlers.get(name)
        if handler is None:
            return self._error_response(404, "Not Found")
        if (delay := self._take_delay(name)) > 0:
            await asyncio.sleep(delay)
        with self._lock:
            fault = self._take_fault(name)
        if fault is not None and not fault.applied:
            return self._fault_response(request, fault)
        if parse_error is not None:
            return self._error_response(parse_error.status, parse_error.description)
        try:
            if name == "getupdates":
                result = await self._get_updates(params, files)
            else:
                with self._lock:
                    result = handler(params, files)
                    self._notify()
        except _ApiError as exc:
            return self._error_response(exc.status, exc.description, exc.parameters)
        if fault is not None:
            return self._fault_response(request, fault)
        return web.Response(
            text=json.dumps({"ok": True, "result": result}, ensure_ascii=False), content_type="application/json"
        )

    @staticmethod
    def _error_response(status: int, description: str, parameters: dict[str, Any] | None = None) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.Response(status=status, text=json.dumps(body), content_type="application/json")

    def _fault_response(self, request: web.Request, fault: _Fault) -> web.Response:
        if fault.drop:
            request[_DROPPED] = True
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=502)
        parameters = {"retry_after": fault.retry_after} if fault.retry_after is not None else None
        return self._error_response(fault.status, fault.description, parameters)

    def _take_delay(self, name: str) -> float:
        with self._lock:
            entry = self._delays.get(name)
            if entry is None:
                return 0.0
            entry[1] -= 1
            if entry[1] <= 0:
                del self._delays[name]
            return entry[0]

    def _take_fault(self, name: str) -> _Fault | None:
        if self._outage is not None:
            return self._outage
        if self._flood is not None:
            until, names = self._flood
            left = until - time.monotonic()
            if left <= 0:
                self._flood = None
            elif name in names:
                return self._make_fault(429, max(1, math.ceil(left)), None, False, False, 1)
        queue = self._faults.get(name)
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.popleft()
        return fault

    @staticmethod
    async def _read_params(request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
        raw: dict[str, Any] = dict(request.query)
        files: dict[str, bytes] = {}
        if request.can_read_body:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError as exc:
                    raise _bad("can't parse JSON encoded request") from exc
                if isinstance(body, dict):
                    raw.update(body)
            elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
                form = await request.post()
                for key, value in form.items():
                    if isinstance(value, web.FileField):
                        files[key] = value.file.read()
                    else:
                        raw[key] = value
        return {k: _decode_param(k, v) for k, v in raw.items()}, files
