"""Outcomes of trades made outside the bot, reported by the trader (`/report ID win|loss|breakeven PNL`)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Final, Protocol

from engine.domain import Instrument, SignalStatus
from engine.ports import Clock, SignalBook, TradeLedger
from engine.trading import ExitReason, Trade, TradeKind, trade_from_setup

BREAKEVEN_R: Final = Decimal("0.1")  # a "breakeven" P&L is within this many R of zero
EXECUTED: Final = frozenset({SignalStatus.APPROVED, SignalStatus.ORDER_SUBMITTED, SignalStatus.FILLED})


class ReportedOutcome(StrEnum):
    WIN = "win"
    LOSS = "loss"
    BREAKEVEN = "breakeven"


@dataclass(frozen=True)
class ReportArgs:
    """`/report <signal_id> <win|loss|breakeven> <pnl>`, parsed."""

    signal_id: str
    outcome: ReportedOutcome
    pnl: Decimal


def breakeven_refusal(pnl: Decimal, risk: Decimal) -> str | None:
    """Why `pnl` is not a breakeven for a trade risking `risk` (more than BREAKEVEN_R of it away from zero)."""
    limit = (risk * BREAKEVEN_R).quantize(Decimal("0.01"))
    if abs(pnl) <= limit:
        return None
    word = "win" if pnl > 0 else "loss"
    return f"a breakeven is within ±{limit} ({BREAKEVEN_R}R) of zero; {pnl} is a {word}"


@dataclass(frozen=True)
class Refused:
    """Why a report is not recorded; `show_usage` when the trader should see the command's usage with it."""

    reason: str
    show_usage: bool = True


class OutcomeStore(SignalBook, TradeLedger, Protocol):
    """What recording an outcome reads and writes: the signal, and the ledger it adds a closed trade to."""


class OutcomeReports:
    """Records the outcome of a signal the trader traded outside the bot, as a closed EXTERNAL trade."""

    def __init__(self, store: OutcomeStore, clock: Clock, instruments: dict[str, Instrument]) -> None:
        self.store = store
        self.clock = clock
        self.instruments = instruments

    async def record(self, report: ReportArgs, user: int | None) -> Trade | Refused:
        """Store the reported outcome and return its trade, or why it is refused (a second report of the same
        signal raises the store's DuplicateTradeError)."""
        record = await self.store.signal(report.signal_id)
        if record is None:
            return Refused(f"no signal has the id {report.signal_id}")
        if record.status in EXECUTED:
            return Refused(f"The bot executed {record.signal_id}; its outcome is recorded already.", show_usage=False)
        setup = record.scored.setup
        quantity = record.quantity or Decimal(1)
        contract = self.instruments[setup.symbol].contract_size
        if report.outcome is ReportedOutcome.BREAKEVEN:
            refusal = breakeven_refusal(report.pnl, setup.risk * quantity * contract)
            if refusal is not None:
                return Refused(refusal)
        exit_price = setup.entry + report.pnl * setup.side.sign / (quantity * contract)
        if exit_price <= 0:
            return Refused(f"a P&L of {report.pnl} would mean an exit price of {exit_price:.5f}, below zero")
        entered = setup.bar_time + setup.timeframe.delta
        opened = trade_from_setup(
            setup,
            TradeKind.EXTERNAL,
            quantity,
            contract,
            entered,
            setup.entry,
            trade_id=f"{record.signal_id}-external",
            approver_id=user,
        )
        trade = opened.closed(max(self.clock.now(), entered), exit_price, ExitReason.EXTERNAL)
        await self.store.record_external_trade(trade)
        return trade
