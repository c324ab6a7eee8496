"""Inline-button callback data: short, versioned, validated (Telegram allows 64 bytes)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

MAX_CALLBACK_BYTES = 64


class Action(StrEnum):
    APPROVE = "ap"
    REJECT = "rj"
    CLOSE_ALL = "ca"  # /stop's confirm button: also close every open paper position
    KEEP_OPEN = "ko"  # /stop's other button: leave positions open
    ENABLE = "en"  # turn a disabled or demoted strategy x instrument back on; carries the pair control's id


_SIGNAL_ACTIONS = frozenset({Action.APPROVE, Action.REJECT})
_PATTERN = re.compile(r"(ap|rj|ca|ko):([0-9a-f]{10}|-)")
_CONTROL_PATTERN = re.compile(r"en:([1-9][0-9]{0,17})")


@dataclass(frozen=True)
class Callback:
    action: Action
    signal_id: str | None = None
    control_id: int | None = None  # ENABLE only

    def encode(self) -> str:
        if self.action is Action.ENABLE:
            data = f"{self.action.value}:{self.control_id}"
        else:
            data = f"{self.action.value}:{self.signal_id or '-'}"
        if len(data.encode()) > MAX_CALLBACK_BYTES:
            raise ValueError(f"callback data must fit {MAX_CALLBACK_BYTES} bytes, was {data!r}")
        return data


def parse(data: str | None) -> Callback | None:
    """Decode callback data; None for anything malformed or forged."""
    if not data or len(data.encode()) > MAX_CALLBACK_BYTES:
        return None
    if enable := _CONTROL_PATTERN.fullmatch(data):
        return Callback(Action.ENABLE, control_id=int(enable.group(1)))
    match = _PATTERN.fullmatch(data)
    if match is None:
        return None
    action, signal_id = Action(match.group(1)), match.group(2)
    if (action in _SIGNAL_ACTIONS) != (signal_id != "-"):
        return None
    return Callback(action, signal_id if signal_id != "-" else None)
