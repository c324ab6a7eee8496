"""What the services tell the trader: typed events, which the chat adapter renders (`bot.telegram.events`).

Services never format chat messages: they say what happened, in these types, to an `Announcer`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from engine.controls import PairControl
from engine.domain import Instrument
from engine.drift import DriftReport
from engine.ports import SignalRecord
from engine.spread_book import SpreadRecord
from engine.trading import Trade

if TYPE_CHECKING:
    from bot.services.learner import LearnedModel
    from bot.services.summary import DailySummary


class Tone(StrEnum):
    """How a notice reads: its leading mark."""

    WARNING = "⚠️"
    WAITING = "⏳"
    DONE = "✅"


@dataclass(frozen=True)
class Notice:
    """Something the trader should know, in plain words (no markup)."""

    text: str
    tone: Tone = Tone.WARNING


@dataclass(frozen=True)
class PositionOpened:
    """An order filled and opened a position; `note` says what differs from the order (a partial fill)."""

    trade: Trade
    instrument: Instrument | None
    note: str = ""
    why: tuple[str, ...] = ()  # an execution nobody approved: the rule, its quality and reasons


@dataclass(frozen=True)
class PositionClosed:
    """A position closed: at its stop, target or time, at the broker, or by the trader (`by`)."""

    trade: Trade
    by: int | None = None


@dataclass(frozen=True)
class StopMoved:
    """The trader moved a position's stop."""

    trade: Trade
    old: Decimal
    new: Decimal
    by: int


@dataclass(frozen=True)
class DriftFound:
    """Live results drifted from a system's baseline; `disabled` is the control that turned it off, if any."""

    strategy: str
    symbol: str
    label: str
    report: DriftReport
    disabled: PairControl | None


@dataclass(frozen=True)
class ValidationFinished:
    """A background validation run ended."""

    passed: tuple[str, ...]
    total: int
    errors: int


@dataclass(frozen=True)
class SummaryReady:
    """The day's summary is due."""

    summary: DailySummary


@dataclass(frozen=True)
class ModelLearned:
    """A learning run stored a new model."""

    model: LearnedModel


class SpreadStage(StrEnum):
    OFFERED = "offered"  # with Approve / Reject
    OPENED = "opened"
    ROLLED_BACK = "rolled_back"
    CLOSED = "closed"


@dataclass(frozen=True)
class SpreadEvent:
    """A hedged option spread reached a stage the trader should see."""

    stage: SpreadStage
    spread: SpreadRecord


Event = (
    Notice
    | PositionOpened
    | PositionClosed
    | StopMoved
    | DriftFound
    | ValidationFinished
    | SummaryReady
    | ModelLearned
    | SpreadEvent
)


class Announcer(Protocol):
    """Where services send what the trader should know (the Telegram outbox in the running bot)."""

    async def announce(self, event: Event) -> None: ...

    async def signals(self, records: Sequence[SignalRecord], charts: Mapping[str, bytes] | None = None) -> None:
        """Offer these signals, each with its chart (PNG bytes by signal id) where there is one."""
        ...

    async def refresh(self, signal_id: str) -> None: ...

    async def refresh_decided(self, signal_ids: Sequence[str]) -> None: ...

    def wake(self) -> None:
        """Deliver what is queued now rather than at the next poll."""
        ...
