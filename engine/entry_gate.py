"""The checks every new entry passes, at the offer and again at the click: one pure gate over the facts read.

The desk reads the facts (the pause flag, the pair's control, its system's validation, the market's hours, the
protections' blocks) and asks `first_refusal`; the offer words a refusal as a dropped signal's reason, the click as
its answer. Checks that need I/O in their own order (the news calendar, a fresh quote) and the offer's own rules
(cooldown, size, the per-run cap, the mode) stay with their callers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from engine.controls import PairControl, PairState
from engine.protections import Block
from engine.systems import PairValidation, ValidationStatus


class EntryCheck(StrEnum):
    """A check of the entry gate, in the order they are asked."""

    PAUSED = "paused"
    DISABLED = "disabled"
    FAILED_VALIDATION = "failed_validation"
    MARKET_HOURS = "market_hours"
    PROTECTION = "protection"


@dataclass(frozen=True)
class EntryFacts:
    """What the gate decides on, read by the caller at one moment."""

    paused: bool
    control: PairControl | None  # the pair's latest control, if any
    validation: PairValidation
    trade_failed_strategies: bool  # the override that offers a system whose gate failed
    market_hours: str | None  # why the market's hours forbid an entry now, or None
    blocks: Sequence[Block] = ()  # the protections that block this entry now


@dataclass(frozen=True)
class EntryRefusal:
    """The first check that refuses, and its reason in plain words."""

    check: EntryCheck
    reason: str


def first_refusal(facts: EntryFacts) -> EntryRefusal | None:
    """The first check that refuses an entry on these facts, or None when all pass."""
    if facts.paused:
        return EntryRefusal(EntryCheck.PAUSED, "the bot is paused")
    control = facts.control
    if control is not None and control.state is PairState.DISABLED:
        return EntryRefusal(EntryCheck.DISABLED, f"{control.source.value}: {control.reason}")
    validation = facts.validation
    if validation.status is ValidationStatus.FAILED and not facts.trade_failed_strategies:
        return EntryRefusal(
            EntryCheck.FAILED_VALIDATION, f"failed pre-deploy validation v{validation.version}: {validation.reason}"
        )
    if facts.market_hours is not None:
        return EntryRefusal(EntryCheck.MARKET_HOURS, facts.market_hours)
    if facts.blocks:
        return EntryRefusal(EntryCheck.PROTECTION, "; ".join(b.reason for b in facts.blocks))
    return None
