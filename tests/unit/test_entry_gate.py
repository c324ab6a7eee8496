"""The entry gate: the checks an entry passes at the offer and at the click, in one order, on facts read once."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from engine.controls import ControlSource, PairControl, PairState
from engine.entry_gate import EntryCheck, EntryFacts, first_refusal
from engine.protections import Block, ProtectionKind
from engine.systems import PairValidation, ValidationStatus

AT = datetime(2025, 6, 12, 9, 40, tzinfo=UTC)
VALIDATED = PairValidation(ValidationStatus.VALIDATED, "passed", version=3)
FAILED = PairValidation(ValidationStatus.FAILED, "profit factor 0.8 < 1.2", version=4)
DISABLED = PairControl("trend_pullback", "EURUSD", PairState.DISABLED, ControlSource.DRIFT, "win rate fell", AT)
LIMIT = Block(ProtectionKind.MAX_OPEN_POSITIONS, "5 positions open (max 5)")
ALL_PASS = EntryFacts(False, None, VALIDATED, False, None, ())


def test_an_entry_on_clean_facts_passes() -> None:
    assert first_refusal(ALL_PASS) is None
    ask_only = replace(DISABLED, state=PairState.ASK_ONLY)  # the trader decides: not the gate's refusal
    assert first_refusal(replace(ALL_PASS, control=ask_only)) is None


def test_the_first_failing_check_refuses_in_the_gate_order() -> None:
    everything = EntryFacts(True, DISABLED, FAILED, False, "XNSE is closed", (LIMIT,))
    steps = [
        (EntryCheck.PAUSED, "the bot is paused", {}),
        (EntryCheck.DISABLED, "drift: win rate fell", {"paused": False}),
        (EntryCheck.FAILED_VALIDATION, "failed pre-deploy validation v4: profit factor 0.8 < 1.2", {"control": None}),
        (EntryCheck.MARKET_HOURS, "XNSE is closed", {"validation": VALIDATED}),
        (EntryCheck.PROTECTION, "5 positions open (max 5)", {"market_hours": None}),
    ]
    facts = everything
    for check, reason, change in steps:
        facts = replace(facts, **change)
        refusal = first_refusal(facts)
        assert refusal is not None and (refusal.check, refusal.reason) == (check, reason)
    assert first_refusal(replace(facts, blocks=())) is None


def test_the_override_lets_a_failed_system_through_the_gate() -> None:
    assert first_refusal(replace(ALL_PASS, validation=FAILED, trade_failed_strategies=True)) is None
