"""The trader's decisions on offered signals, and orders left unconfirmed by a crash or a silent broker."""

from __future__ import annotations

from decimal import Decimal

from bot.ops.metrics import MetricName, Unit
from bot.services.desk_core import (
    COMMIT_ATTEMPTS,
    DECISION_STATE_KEYS,
    DeskCore,
    Outcome,
    OutcomeKind,
    log,
    order_request,
)
from bot.services.events import Notice
from engine.domain import Setup, SignalStatus
from engine.entry_gate import EntryCheck, EntryFacts, EntryRefusal, first_refusal
from engine.ports import (
    BrokerError,
    DecisionChanged,
    SignalRecord,
    fill_from_status,
)
from engine.trading import OrderRequest

APPROVED_IN_CHAT = "approved in the chat"  # replaces the offer's reason ("manual mode: asking")
REJECTED_IN_CHAT = "rejected in the chat"


class Approvals(DeskCore):
    """Approves, rejects and expires signals, and settles unconfirmed orders."""

    async def approve(self, signal_id: str, user_id: int) -> Outcome:
        """Approve a pending signal after re-checking it at click time, then execute it once.

        Every check holds at the commit that creates the order intent: the checks run on a decision stamp read
        first, and the commit refuses when anything it covers changed meanwhile (a pause, a fill, a disabled
        pair, a new baseline), so the checks run again on the new state. One press at a time owns the signal;
        a press while another is in flight changes nothing.
        """
        token = self._in_flight.claim(signal_id)
        if token is None:
            return Outcome(OutcomeKind.INVALID, "This signal is being approved already.")
        try:
            for _ in range(COMMIT_ATTEMPTS):
                stamp = await self.store.decision_stamp(DECISION_STATE_KEYS)
                checked = await self._click_checks(signal_id)
                if isinstance(checked, Outcome):
                    return checked
                record, request = checked
                now = self.clock.now()
                try:
                    committed = await self.store.approve_order(
                        signal_id,
                        SignalStatus.PENDING,
                        request,
                        now,
                        by=user_id,
                        reason=APPROVED_IN_CHAT,
                        stamp=(stamp, DECISION_STATE_KEYS),
                    )
                except DecisionChanged:
                    log.info("approval of %s: the book changed during its checks; checking again", signal_id)
                    continue
                if not committed:
                    return Outcome(OutcomeKind.INVALID, "This button is no longer valid.")
                latency = (now - record.offered_at).total_seconds() if record.offered_at else None
                if latency is not None:
                    self.metrics.record(MetricName.APPROVAL_LATENCY, latency, Unit.SECONDS)
                return await self._place(record, request, user_id, latency)
            return Outcome(OutcomeKind.REFUSED, "The account kept changing while this was checked; press again.")
        finally:
            self._in_flight.release(signal_id, token)

    async def decidable(self, signal_id: str) -> SignalRecord | Outcome:
        """The signal if it still waits for a decision, else what a press on it is answered (an expired one expires
        now): the first check of every decision, which a button handler may also ask before answering the press."""
        record = await self.store.signal(signal_id)
        if record is None or record.status is not SignalStatus.PENDING:
            return Outcome(OutcomeKind.INVALID, "This button is no longer valid.")
        if record.expires_at is not None and self.clock.now() >= record.expires_at:
            await self._expire(record, "expired before approval")
            return Outcome(OutcomeKind.INVALID, "This signal has expired.")
        return record

    async def _click_checks(self, signal_id: str) -> tuple[SignalRecord, OrderRequest] | Outcome:
        """The pending signal and its order if every click-time check passes now, else what to answer."""
        record = await self.decidable(signal_id)
        if isinstance(record, Outcome):
            return record
        now = self.clock.now()
        setup = record.scored.setup
        validation = (await self.systems.refresh(self.store)).validation(setup.strategy, setup.symbol, now)
        offered = record.validation.fingerprint if record.validation is not None else ""
        if offered and validation.fingerprint != offered:  # the config changed across a restart: not what trades
            changed = f"{setup.strategy} on {setup.symbol} trades other parameters or rules since this was offered"
            await self._expire(record, changed)
            return Outcome(OutcomeKind.INVALID, f"Refused: {changed}; the signal has expired.")
        book = await self.book(now)  # it may have changed since the offer (a loss, another position)
        facts = EntryFacts(
            await self.state.paused(),
            (await self.store.pair_controls()).get((setup.strategy, setup.symbol)),
            validation,
            self.policy.trade_failed_strategies,
            self.session_block(setup, now),
            [*self.blocks(book, setup, now), *await self.account_blocks(setup, now)],
        )
        if (refusal := first_refusal(facts)) is not None:
            return Outcome(OutcomeKind.REFUSED, _refused_because(refusal, setup))
        account_view, sizing = await self.sizing_book(setup, book, now)
        if (over := self.exposure_block(record, account_view, sizing)) is not None:
            return Outcome(OutcomeKind.REFUSED, f"Refused: {over}.")
        if (news := await self.news_block(setup, now)) is not None:
            return Outcome(OutcomeKind.REFUSED, f"Refused: {news}.")
        if (unmanaged := self.management_block(setup)) is not None:
            return Outcome(OutcomeKind.REFUSED, f"Refused: {unmanaged}.")
        instrument = self.instruments[setup.symbol]
        try:
            quote = await self.broker.quote(instrument)
        except BrokerError as exc:
            return Outcome(OutcomeKind.REFUSED, f"No fresh price for {setup.symbol}: {exc}")
        price = quote.entry_price(setup.side)
        sign = setup.side.sign
        if sign * (price - setup.stop) <= 0 or sign * (price - setup.target) >= 0:
            level = "stop" if sign * (price - setup.stop) <= 0 else "target"
            reason = f"price {price} already crossed the {level} {getattr(setup, level)}"
            await self._expire(record, reason)
            return Outcome(OutcomeKind.INVALID, f"Refused: {reason}.")
        drift = abs(price - setup.entry) / setup.risk
        if drift > Decimal(str(self.policy.max_price_drift_r)):
            limit = self.policy.max_price_drift_r
            moved = f"price moved from {setup.entry} to {price} ({drift:.2f}R > {limit:g}R)"
            return Outcome(OutcomeKind.REFUSED, f"Refused: {moved}.")
        if record.quantity is None or record.quantity <= 0:
            return Outcome(OutcomeKind.REFUSED, "No position size for this signal.")
        if record.expires_at is not None and self.clock.now() >= record.expires_at:  # the checks took that long
            await self._expire(record, "expired before approval")
            return Outcome(OutcomeKind.INVALID, "This signal has expired.")
        return record, order_request(record)

    async def reject(self, signal_id: str, user_id: int) -> Outcome:
        """Reject a pending signal and start tracking what it would have made."""
        now = self.clock.now()
        rejected = await self.store.transition(
            signal_id, SignalStatus.PENDING, SignalStatus.REJECTED, now, by=user_id, reason=REJECTED_IN_CHAT
        )
        if not rejected:
            return Outcome(OutcomeKind.INVALID, "This button is no longer valid.")
        record = await self.store.signal(signal_id)
        if record is not None:
            await self._shadow(record)
        await self.notifier.refresh(signal_id)
        return Outcome(OutcomeKind.DONE, "Rejected.")

    async def expire_due(self) -> int:
        """Expire every pending signal whose time is up; return how many."""
        due = await self.store.signals_with_status(SignalStatus.PENDING, expiring_by=self.clock.now())
        count = 0
        for record in due:
            count += await self._expire(record, "no decision before expiry")
        return count

    async def reconcile(self) -> int:
        """After a restart, settle signals a crash left half-way; return how many were touched.

        NEW (found, never offered) are dropped; APPROVED without an order fail (the trader approved a price
        that is gone); ORDER_SUBMITTED are settled with the broker by client order id (`settle_unconfirmed`).
        """
        now = self.clock.now()
        touched = 0
        for record in await self.store.signals_with_status(SignalStatus.NEW):
            reason = "not offered before the bot restarted"
            touched += await self.store.transition(
                record.signal_id, SignalStatus.NEW, SignalStatus.DROPPED, now, reason=reason
            )
        for record in await self.store.signals_with_status(SignalStatus.APPROVED):
            await self._fail(record.signal_id, SignalStatus.APPROVED, "the bot restarted before the order was sent")
            touched += 1
        touched += await self.settle_unconfirmed()
        return touched

    async def settle_unconfirmed(self) -> int:
        """Settle every order intent the broker has not acknowledged (none being sent right now); return how many."""
        touched = 0
        for record in await self.store.signals_with_status(SignalStatus.ORDER_SUBMITTED):
            token = self._in_flight.claim(record.signal_id)
            if token is None:  # being sent right now by its approval
                continue
            try:
                touched += 1
                if record.quantity is None:
                    await self._fail(record.signal_id, SignalStatus.ORDER_SUBMITTED, "no position size")
                    continue
                await self._settle_submitted(record)
            finally:
                self._in_flight.release(record.signal_id, token)
        return touched

    async def _settle_submitted(self, record: SignalRecord) -> None:
        """Settle an order intent a restart found unacknowledged: ask the broker by client order id first.

        Found filled: record that fill. Found rejected or cancelled: fail the signal with the broker's words.
        Found still pending: leave it for the next reconciliation. Not found: the order never reached the
        broker, so it is sent now, once. A broker that cannot answer leaves the intent for the next start.
        """
        signal_id = record.signal_id
        request = order_request(record)
        if self.split(request):  # each child already at the broker returns its fill; only missing ones are sent
            await self._place(record, request, record.decided_by, None)
            return
        try:
            status = await self.broker.order_status(signal_id)
        except BrokerError as exc:
            log.warning("reconcile %s: broker did not answer (%s); will retry on the next start", signal_id, exc)
            await self.notifier.announce(Notice(f"order {signal_id} is unconfirmed: the broker did not answer ({exc})"))
            return
        if status is None:
            await self._place(record, request, record.decided_by, None)
            return
        try:
            fill = fill_from_status(status, request)
        except BrokerError as exc:
            if exc.transient:  # still pending at the broker: settled on a later start
                log.info("reconcile %s: %s", signal_id, exc)
                return
            await self._fail(signal_id, SignalStatus.ORDER_SUBMITTED, str(exc))
            await self.notifier.announce(Notice(f"{request.symbol} order {signal_id} was not filled: {exc}"))
            return
        await self._open_trade(record, fill, record.decided_by, None)


def _refused_because(refusal: EntryRefusal, setup: Setup) -> str:
    """A press's answer for the gate's refusal."""
    pair = f"{setup.strategy} on {setup.symbol}"
    match refusal.check:
        case EntryCheck.PAUSED:
            return "The bot is paused; /resume first."
        case EntryCheck.DISABLED:  # turned off since the offer
            return f"Refused: {pair} is disabled ({refusal.reason}); /enable first."
        case EntryCheck.FAILED_VALIDATION:
            failed, _, why = refusal.reason.partition(": ")
            return f"Refused: {pair} {failed} since this was offered: {why}."
        case EntryCheck.PROTECTION:
            return f"Refused by protection: {refusal.reason}"
    return f"Refused: {refusal.reason}."
