"""Whether a strategy may trade an instrument: enabled, ask-only or disabled, and who decided it.

Drift detection disables a pair on a CRITICAL verdict, learning demotes a pair whose posterior expectancy is
negative with high confidence, and the trader turns it back on with /enable. Every change is a new
`PairControl` record (the history is kept); the newest record of a pair is its state. A pair without records
is enabled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

from engine.domain import ensure_utc

ALL_SYMBOLS: Final = "*"  # the strategy on every instrument (drift's "strategy overall" key)


class PairState(StrEnum):
    """What the desk does with a pair's new signals."""

    ENABLED = "enabled"  # as the execution mode says
    ASK_ONLY = "ask_only"  # always asked, never executed on its own (auto and quality modes)
    DISABLED = "disabled"  # dropped with the reason, until /enable


class ControlSource(StrEnum):
    """Who changed a pair's state."""

    DRIFT = "drift"
    LEARNING = "learning"
    OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class PairControl:
    """One change of a strategy x instrument's state; `control_id` is 0 until stored."""

    strategy: str
    symbol: str
    state: PairState
    source: ControlSource
    reason: str
    at: datetime
    by: int | None = None  # the Telegram user for operator changes
    control_id: int = 0

    def __post_init__(self) -> None:
        if not self.strategy or not self.symbol:
            raise ValueError("a pair control needs its strategy and symbol")
        if not self.reason.strip():
            raise ValueError(f"a pair control of {self.strategy} on {self.symbol} needs a reason")
        ensure_utc(self.at, "at")
        if self.source is ControlSource.OPERATOR and self.by is None:
            raise ValueError(f"an operator change of {self.strategy} on {self.symbol} must say who made it")

    @property
    def key(self) -> tuple[str, str]:
        return self.strategy, self.symbol


@dataclass(frozen=True, slots=True)
class DriftAlert:
    """A drift verdict that was told to the chat (its time drives the alert cooldown)."""

    strategy: str
    symbol: str  # ALL_SYMBOLS for the strategy overall
    severity: str
    alerted_at: datetime
    summary: str

    def __post_init__(self) -> None:
        if not self.strategy or not self.symbol or not self.severity:
            raise ValueError("a drift alert needs its strategy, symbol and severity")
        ensure_utc(self.alerted_at, "alerted_at")
