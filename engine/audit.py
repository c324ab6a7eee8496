"""The audit trail's records: every decision and setting change, who made it and when, append-only.

Written by the store in the same transaction as the change it records (a signal's move, a fill, a stop move, a
setting), so the trail cannot miss a change or claim one that did not commit. Details are redacted text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

from engine.domain import SignalStatus, ensure_utc

BOT_ACTOR: Final = "bot"  # a decision the bot made by its rules (a drop, an auto execution, an exit)


class AuditKind(StrEnum):
    SIGNAL_OFFERED = "signal_offered"
    SIGNAL_DROPPED = "signal_dropped"
    SIGNAL_APPROVED = "signal_approved"
    SIGNAL_REJECTED = "signal_rejected"
    SIGNAL_EXPIRED = "signal_expired"
    ORDER_SENT = "order_sent"
    ORDER_FILLED = "order_filled"
    ORDER_FAILED = "order_failed"
    STOP_MOVED = "stop_moved"
    PARTIAL_EXIT = "partial_exit"
    POSITION_CLOSED = "position_closed"
    OUTCOME_REPORTED = "outcome_reported"  # a trade done outside the bot, reported with /report
    SETTING_CHANGED = "setting_changed"  # mode, pause/resume and other bot state
    PAIR_CONTROL = "pair_control"  # enable, disable, ask-only
    LOGIN = "login"
    CONFIG_LOADED = "config_loaded"
    MODEL_LEARNED = "model_learned"
    MODEL_ROLLED_BACK = "model_rolled_back"


SIGNAL_MOVES: Final = {
    SignalStatus.PENDING: AuditKind.SIGNAL_OFFERED,
    SignalStatus.DROPPED: AuditKind.SIGNAL_DROPPED,
    SignalStatus.APPROVED: AuditKind.SIGNAL_APPROVED,
    SignalStatus.REJECTED: AuditKind.SIGNAL_REJECTED,
    SignalStatus.EXPIRED: AuditKind.SIGNAL_EXPIRED,
    SignalStatus.FAILED: AuditKind.ORDER_FAILED,
}


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One line of the trail: when, what, who (a Telegram user id, or `BOT_ACTOR`), about what, and how."""

    at: datetime
    kind: AuditKind
    actor: str
    subject: str
    detail: str = ""
    event_id: int | None = None

    def __post_init__(self) -> None:
        ensure_utc(self.at, "audit time")
        if not self.actor:
            raise ValueError("an audit event needs an actor (a user id or 'bot')")


DASHBOARD_ACTOR: Final = "dashboard"
CLI_ACTOR: Final = "cli"


def actor_of(user: int | str | None) -> str:
    """The actor of a change: the Telegram user id who made it, a named place (the dashboard, the CLI), else the
    bot."""
    if isinstance(user, str):
        return user or BOT_ACTOR
    return BOT_ACTOR if user is None or user == 0 else str(user)
