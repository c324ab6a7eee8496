"""Offering the run's setups: decide each by mode, controls, protections, news and size; send or execute."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from bot.ops.logs import log_context
from bot.services.book import close_returns
from bot.services.desk_core import COMMIT_ATTEMPTS, DECISION_STATE_KEYS, DeskCore, OfferDecision, log, order_request
from engine.bars import Bars
from engine.controls import PairState
from engine.domain import ScoredSetup, Setup, SignalStatus, human_duration
from engine.entry_gate import EntryCheck, EntryFacts, EntryRefusal, first_refusal
from engine.ports import (
    DecisionChanged,
    SignalRecord,
)
from engine.protections import BookView
from engine.sizing import SizedOrder
from engine.systems import PairValidation, ValidationStatus
from engine.trading import ExecutionMode


class Offers(DeskCore):
    """Offers a run's setups."""

    async def offer(self, setups: Sequence[ScoredSetup], bars: Mapping[str, Bars] | None = None) -> list[OfferDecision]:
        """Decide for each setup new to the store: ask the trader, execute (by mode), or drop with a reason.

        `bars` (the run's bars by symbol) feed the correlation guard; without them it is skipped.
        """
        now = self.clock.now()
        mode = await self.state.mode()
        if bars is not None:
            self._returns = close_returns(bars, self.policy.protections.correlation_lookback)
            self.rates.update_from_bars(bars)
        await self.rates.refresh(now)
        await self.systems.refresh(self.store)
        self._controls = await self.store.pair_controls()
        ranked = sorted(setups, key=self._rank)
        decisions: list[OfferDecision] = []
        to_ask: list[SignalRecord] = []
        executed = 0
        view = await self.book(now)
        for scored in ranked:
            record = await self.store.signal(scored.setup.signal_id)
            if record is None or record.status is not SignalStatus.NEW:
                continue  # seen by an earlier run: the same setup is never signalled twice
            token = self._in_flight.claim(record.signal_id)  # from the commit on: `_place` sends it, not the settlement
            if token is None:
                continue
            try:
                decided = await self._offer_one(record, mode, now, len(to_ask) + executed, view)
                if decided is None:
                    continue
                decisions.append(decided[0])
                fresh = decided[1]
                if decided[0].status is SignalStatus.PENDING:
                    to_ask.append(fresh)
                elif decided[0].status is SignalStatus.APPROVED:  # placed now: the next setup's checks see it
                    executed += 1
                    with log_context(signal_id=fresh.signal_id):
                        await self._place(fresh, order_request(fresh), None, None)
                    view = await self.book(now)
            finally:
                self._in_flight.release(record.signal_id, token)
        await self._send_offers(to_ask, bars or {})
        return decisions

    async def _offer_one(
        self, record: SignalRecord, mode: ExecutionMode, now: datetime, offered: int, view: BookView
    ) -> tuple[OfferDecision, SignalRecord] | None:
        """Decide on one new signal and commit the decision; None when another task took it first.

        An execution commits only if nothing its checks read changed meanwhile (the decision stamp), else the
        checks run again on the new book.
        """
        setup = record.scored.setup
        expires_at = setup.bar_time + setup.timeframe.delta * (1 + self.policy.ttl_bars)
        validation = self.systems.validation(setup.strategy, setup.symbol, now)
        await self.store.set_signal_validation(record.signal_id, validation)
        for _ in range(COMMIT_ATTEMPTS):
            stamp = await self.store.decision_stamp(DECISION_STATE_KEYS)
            paused = await self.state.paused()
            if expires_at <= now:  # e.g. a session's last bar seen after the close: too late to act on
                status, reason, sized = SignalStatus.DROPPED, "expired before it could be offered", None
            else:
                status, reason, sized = await self._decide(record, validation, mode, paused, now, offered, view)
            quantity = None if sized is None else sized.quantity
            if sized is not None:
                account = self.account_of(setup.symbol)
                sizing = account.sizing if account is not None else self.policy.sizing
                summary = sized.summary(sizing.currency(self.instruments[setup.symbol]))
                await self.store.set_signal_sizing(record.signal_id, summary)
            try:
                if status is SignalStatus.APPROVED and quantity is not None:
                    request = order_request(record, quantity)
                    guard = (stamp, DECISION_STATE_KEYS)
                    args = (record.signal_id, SignalStatus.NEW, request, now)
                    moved = await self.store.approve_order(*args, reason=reason, expires_at=expires_at, stamp=guard)
                else:
                    moved = await self.store.transition(
                        record.signal_id,
                        SignalStatus.NEW,
                        status,
                        now,
                        reason=reason,
                        quantity=quantity,
                        expires_at=expires_at,
                    )
            except DecisionChanged:
                view = await self.book(now)
                self._controls = await self.store.pair_controls()
                continue
            break
        else:
            log.warning("signal %s: the book kept changing while it was decided; left for the next run", setup.symbol)
            return None
        if not moved:
            return None
        log.info("signal %s %s %s: %s (%s)", record.signal_id, setup.symbol, setup.strategy, status.value, reason)
        fresh = await self.store.signal(record.signal_id)
        if fresh is None:
            return None
        offered_now = status in (SignalStatus.PENDING, SignalStatus.APPROVED)
        if offered_now and self.advisor is not None and (estimate := self.advisor.estimate(fresh.scored)):
            await self.store.save_estimate(replace(estimate, signal_id=fresh.signal_id))
        return OfferDecision(record.signal_id, setup.symbol, status, reason), fresh

    def _rank(self, scored: ScoredSetup) -> tuple[float | str, ...]:
        """Learning's order when it has run (posterior expectancy, then quality), else quality; ties by name."""
        tail = (scored.setup.symbol, scored.setup.strategy)
        if self.advisor is not None:
            return (*self.advisor.rank_key(scored), *tail)
        return (-scored.score.total, *tail)

    async def _decide(
        self,
        record: SignalRecord,
        validation: PairValidation,
        mode: ExecutionMode,
        paused: bool,
        now: datetime,
        offered: int,
        view: BookView,
    ) -> tuple[SignalStatus, str, SizedOrder | None]:
        setup = record.scored.setup
        control = self._controls.get((setup.strategy, setup.symbol))
        why = "" if control is None else f"{control.source.value} {control.at:%Y-%m-%d}: {control.reason}"
        facts = EntryFacts(
            paused,
            control,
            validation,
            self.policy.trade_failed_strategies,
            self.session_block(setup, now),
            [*self.blocks(view, setup, now), *await self.account_blocks(setup, now)],
        )
        refusal = first_refusal(facts)
        if refusal is not None:
            return SignalStatus.DROPPED, _dropped_because(refusal, setup, why), None
        if validation.status is ValidationStatus.FAILED:
            failed = f"failed pre-deploy validation v{validation.version}: {validation.reason}"
            log.warning("OVERRIDE: offering %s on %s although it %s", setup.strategy, setup.symbol, failed)
        status, reason, sized = await self._decide_by_mode(record, mode, now, offered, view)
        if status is SignalStatus.APPROVED and not validation.validated:  # only the validated system acts alone
            return SignalStatus.PENDING, f"{validation.status.value}, so asking instead of executing", sized
        if control is not None and control.state is PairState.ASK_ONLY and status is SignalStatus.APPROVED:
            return SignalStatus.PENDING, f"ask-only ({why}): asking", sized  # the trader decides, not the mode
        return status, reason, sized

    async def _decide_by_mode(
        self, record: SignalRecord, mode: ExecutionMode, now: datetime, offered: int, view: BookView
    ) -> tuple[SignalStatus, str, SizedOrder | None]:
        """The offer's own rules after the entry gate: news, cooldown, size, the per-run cap, then the mode."""
        setup = record.scored.setup
        score = record.scored.score.total if self.advisor is None else self.advisor.score(record.scored)
        p = self.policy
        if (news := await self.news_block(setup, now)) is not None:
            return SignalStatus.DROPPED, news, None
        if (unmanaged := self.management_block(setup)) is not None:
            return SignalStatus.DROPPED, unmanaged, None
        last = await self.store.last_offered_at(setup.symbol)
        if last is not None and now - last < p.cooldown:
            return (
                SignalStatus.DROPPED,
                f"cooldown: {setup.symbol} was signalled {human_duration(now - last)} ago",
                None,
            )
        account_view, sizing = await self.sizing_book(setup, view, now)
        sized = self.size(setup, account_view.equity, account_view.open_trades, sizing)
        if isinstance(sized, str):
            return SignalStatus.DROPPED, sized, None
        if sized.quantity <= 0:
            return SignalStatus.DROPPED, "; ".join(sized.notes), None
        if offered >= p.max_signals_per_run:
            return SignalStatus.DROPPED, f"more than {p.max_signals_per_run} signals in one run", None
        if mode is ExecutionMode.AUTO:
            return SignalStatus.APPROVED, "auto mode", sized
        if mode is ExecutionMode.QUALITY:
            if score >= p.auto_threshold:
                return SignalStatus.APPROVED, f"quality {score:.0f} >= auto threshold {p.auto_threshold:g}", sized
            if score < p.ask_threshold:
                return SignalStatus.DROPPED, f"quality {score:.0f} below ask threshold {p.ask_threshold:g}", None
            return SignalStatus.PENDING, f"quality {score:.0f}: asking", sized
        return SignalStatus.PENDING, "manual mode: asking", sized

    async def _send_offers(self, records: Sequence[SignalRecord], bars: Mapping[str, Bars]) -> None:
        """Send the signals to ask about, each with its chart when one could be drawn in time."""
        if len(records) <= self.policy.digest_threshold:
            for record in records:  # each as soon as its own chart is drawn: the first is not kept for the last
                await self.notifier.signals([record], await self._charts([record], bars))
        elif records:
            await self.notifier.signals(records, await self._charts(records, bars))

    async def _charts(self, records: Sequence[SignalRecord], bars: Mapping[str, Bars]) -> dict[str, bytes]:
        return {} if self.charts is None else await self.charts.for_signals(records, bars)


def _dropped_because(refusal: EntryRefusal, setup: Setup, control_why: str) -> str:
    """A dropped signal's reason for the gate's refusal (the control's reason with its date)."""
    match refusal.check:
        case EntryCheck.PAUSED:
            return "bot paused (/resume)"
        case EntryCheck.DISABLED:
            return f"{setup.strategy} on {setup.symbol} disabled by {control_why} (/enable)"
        case EntryCheck.PROTECTION:
            return f"protection: {refusal.reason}"
    return refusal.reason
