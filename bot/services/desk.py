"""The signal desk: offer new signals, take decisions on them, execute approved ones exactly once.

Every decision goes through one compare-and-set on the signal's stored status, so a double click, two
approvers at once or a replayed Telegram update yield exactly one order. Before anything is approved the
desk re-checks at click time: not expired, bot not paused, the pair not disabled or failed since the offer, and
a fresh price still near the signal's entry (within `max_price_drift_r` of the risk, and not already past the stop
or the target).

What the gate validated decides what the desk may do on its own (`bot.services.systems.SystemBook`): only a
system whose own current baseline passed is ever executed without asking (auto and quality modes). An unvalidated
or stale system is offered with its warning for the trader to decide, in every mode; a failed one is dropped, unless
`trade_failed_strategies` is set, which offers it the same way. Every signal keeps the status it was offered with.

One desk in three modules: `desk_core` (policy, outcomes, sizing, the checks offers and clicks share, placing and
recording orders), `offers` (deciding and sending a run's setups), `approvals` (the trader's decisions and the
settlement of unconfirmed orders)."""

from __future__ import annotations

from bot.services.approvals import Approvals
from bot.services.desk_core import (
    COMMIT_ATTEMPTS,
    DECISION_STATE_KEYS,
    Advisor,
    DeskCore,
    DeskPolicy,
    InFlight,
    OfferDecision,
    Outcome,
    OutcomeKind,
    order_request,
)
from bot.services.offers import Offers


class SignalDesk(Offers, Approvals):
    """Offers signals, takes the trader's decisions on them and executes them, exactly once."""


__all__ = [
    "COMMIT_ATTEMPTS",
    "DECISION_STATE_KEYS",
    "Advisor",
    "DeskCore",
    "DeskPolicy",
    "InFlight",
    "OfferDecision",
    "Outcome",
    "OutcomeKind",
    "SignalDesk",
    "order_request",
]
