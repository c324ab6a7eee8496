"""The Bot API methods the embedded server implements (see `bot.sandbox.botapi`)."""

from __future__ import annotations

import json
import re
import time
from collections import deque
from dataclasses import replace
from typing import Any

from bot.sandbox.botapi_state import (
    _BOOL_PARAMS,
    _INT_PARAMS,
    _JSON_PARAMS,
    _OPT_IN_UPDATES,
    CONFLICT,
    NOT_MODIFIED,
    QUERY_INVALID,
    CallbackAnswer,
    SentMessage,
    _ApiError,
    _bad,
    _State,
)
from bot.sandbox.entities import _image_size, _scaled


class _Methods(_State):
    """getMe, getUpdates, sendMessage, sendPhoto, edits, deleteMessage, answerCallbackQuery, commands..."""

    def _get_me(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        return self.bot_user

    def _get_webhook_info(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        return {"url": "", "has_custom_certificate": False, "pending_update_count": len(self._updates)}

    def _delete_webhook(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _get_updates(self, params: dict[str, Any], files: dict[str, bytes]) -> list[dict[str, Any]]:
        offset, limit, timeout = params.get("offset"), params.get("limit"), params.get("timeout")
        limit = min(100, max(1, limit)) if isinstance(limit, int) and limit > 0 else 100
        timeout = max(0, timeout) if isinstance(timeout, int) else 0
        allowed = params.get("allowed_updates")
        with self._lock:
            self._poll_generation += 1
            generation = self._poll_generation
            if isinstance(allowed, list):
                self._allowed_updates = frozenset(allowed)
            if isinstance(offset, int) and offset < 0:
                while len(self._updates) > -offset:
                    self._updates.popleft()
            elif isinstance(offset, int):
                while self._updates and self._updates[0]["update_id"] < offset:
                    self._updates.popleft()
            self._notify()

        def ready() -> tuple[str, list[dict[str, Any]]] | None:
            if generation != self._poll_generation:
                return ("conflict", [])
            self._drop_unwanted()
            if self._updates or self._closing:
                return ("ok", list(self._updates)[:limit])
            return None

        with self._lock:
            outcome = ready()
            if outcome is None and timeout > 0:
                self._held_polls += 1
                self._notify()
        if outcome is None and timeout > 0:
            try:
                outcome = await self._wait(ready, timeout)
            finally:
                with self._lock:
                    self._held_polls -= 1
                    self._notify()
        if outcome is not None and outcome[0] == "conflict":
            raise _ApiError(409, CONFLICT)
        return outcome[1] if outcome is not None else []

    def _drop_unwanted(self) -> None:
        allowed = self._allowed_updates
        kept = deque(
            u
            for u in self._updates
            if (kind := next(k for k in u if k != "update_id")) in allowed
            or (not allowed and kind not in _OPT_IN_UPDATES)
        )
        if len(kept) != len(self._updates):
            self._updates = kept

    def _send_message(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        chat_id = self._target_chat(params)
        if params.get("text") in (None, ""):
            raise _bad("message text is empty")
        text, entities, parse_mode = self._formatted(params, "text", "entities", 4096, "message is too long")
        if not text:
            raise _bad("message text is empty")
        markup = self._markup(params, inline_only=False)
        self._check_can_send(chat_id)
        message = SentMessage(
            chat_id=chat_id,
            message_id=self._allocate_message_id(chat_id),
            date=int(time.time()),
            at=time.monotonic(),
            text=text,
            entities=tuple(entities),
            reply_markup=markup,
            source=str(params["text"]),
            parse_mode=parse_mode,
        )
        return self._record_sent(message)

    def _send_photo(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        chat_id = self._target_chat(params)
        photo = params.get("photo")
        if isinstance(photo, str) and photo.startswith("attach://"):
            upload = files.get(photo[len("attach://") :])
        else:
            upload = files.get("photo")
        if upload is None and not photo:
            raise _bad("there is no photo in the request")
        caption, entities, parse_mode = self._formatted(
            params, "caption", "caption_entities", 1024, "message caption is too long"
        )
        markup = self._markup(params, inline_only=False)
        if upload is not None:
            if not upload:
                raise _bad("file must be non-empty")
            dims = _image_size(upload)
            if dims is None:
                raise _bad("IMAGE_PROCESS_FAILED")
            width, height = dims
            if width <= 0 or height <= 0 or width + height > 10000 or max(width, height) > 20 * min(width, height):
                raise _bad("PHOTO_INVALID_DIMENSIONS")
            size = len(upload)
        elif isinstance(photo, str) and photo in self._files:
            width, height, size = 1280, 720, self._files[photo]
        elif isinstance(photo, str) and photo.startswith(("http://", "https://")):
            width, height, size = 1280, 720, 0
        else:
            raise _bad("wrong file identifier/HTTP URL specified")
        self._check_can_send(chat_id)
        message_id = self._allocate_message_id(chat_id)
        sizes = []
        for suffix, bound in (("s", 90), ("m", 320), ("x", 800), ("y", 1280)):
            w, h = _scaled(width, height, bound)
            file_id = f"AgACAgIAAxkDAAI{chat_id & 0xFFFF:04x}{message_id:06d}{suffix}"
            sizes.append(
                {
                    "file_id": file_id,
                    "file_unique_id": f"AQAD{message_id:06d}{suffix}",
                    "file_size": max(1, size * w * h // max(1, width * height)),
                    "width": w,
                    "height": h,
                }
            )
            self._files[file_id] = size
            if max(width, height) <= bound:
                break
        if upload is not None and self._keep_photos:
            self._images[(chat_id, message_id)] = upload  # the sandbox's chat page shows it
        message = SentMessage(
            chat_id=chat_id,
            message_id=message_id,
            date=int(time.time()),
            at=time.monotonic(),
            caption=caption if params.get("caption") not in (None, "") else None,
            entities=tuple(entities),
            reply_markup=markup,
            source=params.get("caption"),
            parse_mode=parse_mode,
            photo=tuple(sizes),
            photo_size=size,
        )
        return self._record_sent(message)

    def _record_sent(self, message: SentMessage) -> dict[str, Any]:
        self._messages[(message.chat_id, message.message_id)] = message
        self._sent.append(message)
        return self._message_json(message)

    def _send_chat_action(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        chat_id = self._target_chat(params)
        if not params.get("action"):
            raise _bad("action is empty")
        self._check_can_send(chat_id)
        return True

    def _edit_message_text(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        if params.get("text") in (None, ""):
            raise _bad("message text is empty")
        text, entities, parse_mode = self._formatted(params, "text", "entities", 4096, "MESSAGE_TOO_LONG")
        if not text:
            raise _bad("message text is empty")
        markup = self._markup(params, inline_only=True)
        current = self._editable(params)
        if current.photo:
            raise _bad("there is no text in the message to edit")
        if text == current.text and list(entities) == list(current.entities) and markup == current.reply_markup:
            raise _bad(NOT_MODIFIED.removeprefix("Bad Request: "))
        updated = replace(
            current,
            text=text,
            entities=tuple(entities),
            reply_markup=markup,
            source=str(params["text"]),
            parse_mode=parse_mode,
        )
        return self._store_edit(updated)

    def _edit_message_caption(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        caption, entities, parse_mode = self._formatted(
            params, "caption", "caption_entities", 1024, "message caption is too long"
        )
        markup = self._markup(params, inline_only=True)
        current = self._editable(params)
        if not current.photo:
            raise _bad("there is no caption in the message to edit")
        new_caption = caption or None
        if (
            new_caption == current.caption
            and list(entities) == list(current.entities)
            and markup == current.reply_markup
        ):
            raise _bad(NOT_MODIFIED.removeprefix("Bad Request: "))
        updated = replace(
            current,
            caption=new_caption,
            entities=tuple(entities),
            reply_markup=markup,
            source=params.get("caption"),
            parse_mode=parse_mode,
        )
        return self._store_edit(updated)

    def _edit_message_reply_markup(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        markup = self._markup(params, inline_only=True)
        current = self._editable(params)
        if markup == current.reply_markup:
            raise _bad(NOT_MODIFIED.removeprefix("Bad Request: "))
        return self._store_edit(replace(current, reply_markup=markup))

    def _delete_message(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        chat_id = self._target_chat(params)
        message_id = params.get("message_id")
        if not isinstance(message_id, int):
            raise _bad("message identifier is not specified")
        key = (chat_id, message_id)
        if key in self._user_messages:
            self._user_messages.discard(key)
            self.deleted_user_messages.append(key)
            return True
        current = self._messages.get(key)
        if current is None or current.deleted:
            raise _bad("message to delete not found")
        self._messages[key] = replace(current, deleted=True)
        return True

    def _answer_callback_query(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        query_id = str(params.get("callback_query_id") or "")
        query = self._queries.get(query_id)
        expired = (
            query is not None
            and self._callback_ttl is not None
            and time.monotonic() - query.created > self._callback_ttl
        )
        if query is None or query.answered or expired:
            raise _bad(QUERY_INVALID.removeprefix("Bad Request: "))
        text = params.get("text")
        if isinstance(text, str) and len(text) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        query.answered = True
        self._answers[query_id] = CallbackAnswer(
            query_id=query_id,
            text=text if text else None,
            show_alert=bool(params.get("show_alert")),
            url=params.get("url"),
            cache_time=params.get("cache_time"),
            at=time.monotonic(),
        )
        return True

    @staticmethod
    def _commands_key(params: dict[str, Any]) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        if not isinstance(scope, dict) or "type" not in scope:
            raise _bad("can't parse BotCommandScope JSON object")
        return json.dumps(scope, sort_keys=True), str(params.get("language_code") or "")

    def _set_my_commands(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _bad("can't parse commands JSON object")
        if len(commands) > 100:
            raise _bad("too many commands")
        cleaned = []
        for command in commands:
            if not isinstance(command, dict):
                raise _bad("can't parse BotCommand JSON object")
            name, description = str(command.get("command", "")), str(command.get("description", "")).strip()
            name = name.removeprefix("/").lower()
            if not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(description) <= 256:
                raise _bad("command description is empty" if not description else "BOT_COMMAND_DESCRIPTION_INVALID")
            cleaned.append({"command": name, "description": description})
        key = self._commands_key(params)
        if cleaned:
            self._commands[key] = cleaned
        else:
            self._commands.pop(key, None)
        return True

    def _get_my_commands(self, params: dict[str, Any], files: dict[str, bytes]) -> list[dict[str, str]]:
        return list(self._commands.get(self._commands_key(params), []))

    def _delete_my_commands(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        self._commands.pop(self._commands_key(params), None)
        return True


def _decode_param(name: str, value: Any) -> Any:
    """Turn a form-encoded value back into what the Bot API would understand it as."""
    if not isinstance(value, str):
        return value
    if name in _JSON_PARAMS:
        try:
            return json.loads(value)
        except ValueError:
            return value
    if name in _INT_PARAMS:
        try:
            return int(value)
        except ValueError:
            try:
                return int(float(value))
            except ValueError:
                return value
    if name in _BOOL_PARAMS:
        return value.lower() in ("true", "1")
    return value
