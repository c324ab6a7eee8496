"""Inline-button callback data: short, versioned, validated (Telegram allows 64 bytes)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

MAX_CALLBACK_BYTES = 64


class Action(StrEnum):
    APPROVE = "ap"
    REJECT = "rj"
    KEEP_OPEN = "ko"  # /stop's other button: leave positions open
    ENABLE = "en"  # turn a disabled or demoted strategy x instrument back on; carries the pair control's id
    CLOSE_TRADE = "cl"  # close one open position; carries its trade id
    BREAKEVEN = "be"  # move one open position's stop to its entry; carries its trade id
    CLOSE_BATCH = "cb"  # close the positions a "close all" confirmation listed; carries its id
    SPREAD_APPROVE = "sa"  # approve an offered option spread; carries its spread id
    SPREAD_REJECT = "sr"


_SIGNAL_ACTIONS = frozenset({Action.APPROVE, Action.REJECT, Action.SPREAD_APPROVE, Action.SPREAD_REJECT})
_TRADE_ACTIONS = frozenset({Action.CLOSE_TRADE, Action.BREAKEVEN})
_PATTERN = re.compile(r"(ap|rj|ko|sa|sr):([0-9a-f]{10}|-)")
_NUMBERED_PATTERN = re.compile(r"(en|cb):([1-9][0-9]{0,17})")
_TRADE_PATTERN = re.compile(r"(cl|be):([A-Za-z0-9][A-Za-z0-9._-]{0,59})")


@dataclass(frozen=True)
class Callback:
    action: Action
    signal_id: str | None = None
    control_id: int | None = None  # ENABLE only
    trade_id: str | None = None  # CLOSE_TRADE and BREAKEVEN
    batch_id: int | None = None  # CLOSE_BATCH

    def encode(self) -> str:
        if self.action is Action.ENABLE:
            data = f"{self.action.value}:{self.control_id}"
        elif self.action is Action.CLOSE_BATCH:
            data = f"{self.action.value}:{self.batch_id}"
        elif self.action in _TRADE_ACTIONS:
            data = f"{self.action.value}:{self.trade_id}"
        else:
            data = f"{self.action.value}:{self.signal_id or '-'}"
        if len(data.encode()) > MAX_CALLBACK_BYTES or parse(data) != self:
            raise ValueError(f"callback data must be valid and fit {MAX_CALLBACK_BYTES} bytes, was {data!r}")
        return data


def parse(data: str | None) -> Callback | None:
    """Decode callback data; None for anything malformed or forged."""
    if not data or len(data.encode()) > MAX_CALLBACK_BYTES:
        return None
    if numbered := _NUMBERED_PATTERN.fullmatch(data):
        number = int(numbered.group(2))
        if numbered.group(1) == Action.ENABLE.value:
            return Callback(Action.ENABLE, control_id=number)
        return Callback(Action.CLOSE_BATCH, batch_id=number)
    if trade := _TRADE_PATTERN.fullmatch(data):
        return Callback(Action(trade.group(1)), trade_id=trade.group(2))
    match = _PATTERN.fullmatch(data)
    if match is None:
        return None
    action, signal_id = Action(match.group(1)), match.group(2)
    if (action in _SIGNAL_ACTIONS) != (signal_id != "-"):
        return None
    return Callback(action, signal_id if signal_id != "-" else None)
