"""The Telegram front end: thin handlers (authorise, answer, call one service, render) and the bot's lifecycle.

Every command and button checks the *sender's* user id against TELEGRAM_ALLOWED_USERS; anyone else gets a
one-line refusal, is logged, and changes nothing. One event loop holds the PTB Application (long polling),
its JobQueue, the outbox sender and the SQLite connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import tempfile
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import wraps
from html import escape
from pathlib import Path
from typing import Any

from telegram import BotCommand, CallbackQuery, Update
from telegram.constants import ChatType, ParseMode
from telegram.error import BadRequest, InvalidToken, NetworkError, RetryAfter, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.bootstrap import open_runtime
from bot.config import Settings
from bot.ops.clock import BotClock, WallClock
from bot.ops.cloudwatch import build_metrics, close_metrics
from bot.ops.logs import log_context
from bot.ops.metrics import Metrics
from bot.ops.systemd import SystemdNotifier
from bot.services.book import TRADED_KINDS
from bot.services.desk import OutcomeKind
from bot.services.drift_watch import enable_pair
from bot.services.learner import month_ago
from bot.services.runtime import BotRuntime, top_rejection_reasons
from bot.telegram.arguments import ReportedOutcome, breakeven_refusal, parse_report
from bot.telegram.callbacks import Action, Callback, parse
from bot.telegram.events import drift_text, enable_buttons, learned_text
from bot.telegram.messages import (
    BREAKEVEN_USAGE,
    BUTTON_INVALID,
    CLOSE_USAGE,
    COMMANDS,
    MODE_USAGE,
    NOT_AUTHORISED,
    REPORT_USAGE,
    close_all_buttons,
    position_buttons,
    positions_text,
    report_text,
    split_html,
    status_text,
    welcome_text,
)
from bot.telegram.plots import reliability_png
from bot.telegram.sender import OutboxSender, markup
from data.backup import DatabaseInUse, DatabaseLock
from data.redaction import Redactor
from data.sqlite.store import DuplicateTradeError, StoreError, storage_problem
from engine.controls import PairState
from engine.domain import SignalStatus
from engine.learning import CalibrationModel
from engine.performance import summarize
from engine.ports import BrokerError, OutboxKind
from engine.protections import alerts as protection_alerts
from engine.protections import status as protection_status
from engine.trading import ExecutionMode, ExitReason, Trade, TradeKind

log = logging.getLogger(__name__)

Handler = Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]
SHUTDOWN_BUDGET_SECONDS = 8.5  # all of a graceful stop (systemd allows 30 s; we promise 10)
HANDLER_GRACE_SECONDS = 4.0  # for commands and clicks in progress to finish
IN_FLIGHT_LEFT = "a command or click was still running (a broker call?); an order it sent is settled at the next start"
STRANGER_REPLY_SECONDS = 600.0  # a stranger gets one refusal message per this long, in a private chat only
CONNECT_RETRY_MAX_SECONDS = 60.0
EXIT_CONFIG = 2  # as the CLI's: a configuration error, which systemd does not restart
TICK_BOT_SECONDS = 60.0
MAX_TICK_SECONDS = 2.0  # expiry is checked at least this often in real time
_EXECUTED = frozenset({SignalStatus.APPROVED, SignalStatus.ORDER_SUBMITTED, SignalStatus.FILLED})


class TelegramFrontEnd:
    """Command and button handlers over one BotRuntime."""

    def __init__(self, runtime: BotRuntime, allowed_users: frozenset[int]) -> None:
        self.rt = runtime
        self.allowed = allowed_users
        self._strangers: dict[int | None, float] = {}  # when each stranger was last answered (monotonic)
        self._handling: set[asyncio.Task[Any]] = set()  # the tasks running a handler now

    def authorised(self, handler: Handler) -> Handler:
        """Run `handler` only for allowed senders; refuse everyone else in one line."""

        @wraps(handler)
        async def guarded(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            user = update.effective_user
            if user is None or user.id not in self.allowed:
                await self._refuse(update, handler.__name__, user.id if user else None)
                return
            task = asyncio.current_task()
            if task is not None:
                self._handling.add(task)
            try:
                await handler(update, context)
            finally:
                if task is not None:
                    self._handling.discard(task)

        return guarded

    async def cancel_in_flight(self, grace: float) -> int:
        """Cancel the handlers still running (at shutdown, after their grace); return how many there were."""
        left = [t for t in self._handling if not t.done()]
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=grace)
        return len(left)

    async def _refuse(self, update: Update, what: str, user: int | None) -> None:
        """Refuse a stranger without letting them spend the bot's sending budget.

        A button press is answered (a callback answer is no chat message). A command gets one line at most once
        per `STRANGER_REPLY_SECONDS`, and only in a private chat: in a group every reply would count against the
        group's 20 messages a minute, which the trader's signals need. The log notes each stranger once a period.
        """
        now = time.monotonic()
        first = now - self._strangers.get(user, -math.inf) >= STRANGER_REPLY_SECONDS
        if first:
            self._strangers[user] = now
            log.warning("refused %s from user %s (further refusals for a while are silent)", what, user)
        if update.callback_query is not None:
            await self._answer(update.callback_query, NOT_AUTHORISED, alert=True)
            return
        chat = update.effective_chat
        if first and chat is not None and chat.type == ChatType.PRIVATE:
            await self._reply(update, NOT_AUTHORISED)

    def install(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        commands: dict[str, Handler] = {
            "start": self.start,
            "help": self.start,
            "signal": self.signal,
            "status": self.status,
            "positions": self.positions,
            "close": self.close,
            "breakeven": self.breakeven,
            "report": self.report,
            "stop": self.stop,
            "resume": self.resume,
            "mode": self.mode,
            "drift": self.drift,
            "enable": self.enable,
            "learn": self.learn,
            "health": self.health,
        }
        for name, handler in commands.items():
            app.add_handler(CommandHandler(name, self.authorised(handler)))
        app.add_handler(CallbackQueryHandler(self.authorised(self.button)))
        app.add_handler(MessageHandler(filters.COMMAND, self.authorised(self.unknown)))
        app.add_error_handler(self.error)

    async def _reply(self, update: Update, html: str, buttons: Any = None) -> None:
        """Reply at once; if Telegram is unavailable, queue the reply in the outbox rather than lose it."""
        chat = update.effective_chat
        if chat is None:
            return
        parts = split_html(self.rt.redactor.redact(html))
        for n, part in enumerate(parts, start=1):
            keys = buttons if n == len(parts) else None  # a reply longer than a message: buttons on the last part
            try:
                await update.get_bot().send_message(chat.id, part, parse_mode=ParseMode.HTML, reply_markup=markup(keys))
            except (NetworkError, RetryAfter) as exc:
                if isinstance(exc, BadRequest):
                    raise
                log.warning("reply to chat %s failed (%s); queued for retry", chat.id, exc)
                await self.rt.store.enqueue(
                    OutboxKind.TEXT, chat.id, {"text": part, "buttons": keys or []}, self.rt.clock.now()
                )
                self.rt.notifier.wake()

    async def _reply_photo(self, update: Update, calibration: CalibrationModel, title: str) -> None:
        """Send the reliability curve of a calibration as a photo; a failure is logged, the text already went."""
        chat = update.effective_chat
        if chat is None:
            return
        with tempfile.TemporaryDirectory() as folder:
            path = await asyncio.to_thread(reliability_png, calibration, Path(folder) / "reliability.png", title)
            try:
                await update.get_bot().send_photo(chat.id, path.read_bytes(), caption=title)
            except TelegramError as exc:
                log.warning("sending the reliability curve to chat %s failed: %s", chat.id, exc)

    @staticmethod
    async def _answer(query: CallbackQuery, text: str | None = None, alert: bool = False) -> None:
        """Answer a button press; a failure to answer never stops the work the press asked for."""
        try:
            await query.answer(text, show_alert=alert)
        except TelegramError as exc:
            log.warning("answering callback %s failed: %s", query.id, exc)

    async def start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._reply(update, welcome_text(await self.rt.state.mode(), await self.rt.state.paused()))

    async def unknown(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._reply(update, "Unknown command. /help lists what I understand.")

    async def signal(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        args = [a.upper() for a in (context.args or [])]
        if len(args) > 1 or (args and args[0] not in self.rt.instruments):
            known = ", ".join(sorted(self.rt.instruments))
            await self._reply(update, f"usage: /signal [SYMBOL] — symbols: {escape(known)}")
            return
        await self._reply(update, "Running an analysis…")
        report, decisions = await self.rt.analyse(args or None)
        offered = [d for d in decisions if d.status is not SignalStatus.DROPPED]
        dropped = [d for d in decisions if d.status is SignalStatus.DROPPED]
        lines = [f"Run {report.run_id}: {len(report.symbols)} symbol(s), {report.evaluated} evaluated."]
        if not report.setups:
            lines.append("No setups.")
        else:
            lines.append(f"{len(report.setups)} setup(s): {len(offered)} new signal(s) sent, {len(dropped)} dropped.")
            lines += [f"  dropped {escape(d.symbol)}: {escape(d.reason)}" for d in dropped[:5]]
            already = len(report.setups) - len(decisions)
            if already:
                lines.append(f"{already} already signalled earlier.")
        reasons = top_rejection_reasons(report)
        if reasons:
            total = len(report.rejections)
            lines.append(f"{total} rejected; top reasons: " + "; ".join(f"{escape(r)} ×{n}" for r, n in reasons))
        await self._reply(update, "\n".join(lines))

    async def status(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        now = self.rt.clock.now()
        runs = await self.rt.store.recent_runs(1)
        last = "none yet"
        if runs:
            r = runs[0]
            last = f"#{r.run_id} at {r.started_at:%Y-%m-%d %H:%MZ}: {r.setups} setups, {len(r.errors)} errors"
        view = await self.rt.desk.book(now)
        config = self.rt.desk.policy.protections
        active = [b.reason for b in (*protection_status(config, view, now), *protection_alerts(config, view))]
        text = status_text(
            mode=await self.rt.state.mode(),
            paused=await self.rt.state.paused(),
            now=now,
            last_run=last,
            next_run=self.rt.scheduler.next_run(),
            open_trades=view.open_trades,
            today_pnl=await self.rt.today_pnl(now),
            equity=view.equity,
            risk_per_trade=self.rt.settings.bot.risk_per_trade,
            outbox=await self.rt.store.outbox_size(),
            protections=active,
            broker=self.rt.broker_status(),
            currency=self.rt.desk.policy.account_currency,
            notes=self.rt.status_notes(now),
            validation=await self.rt.validation_status(now),
        )
        await self._reply(update, text)

    async def positions(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        trades = await self.rt.control.open_positions()
        marks: dict[str, Decimal] = {}
        for trade in trades:
            broker = self.rt.control.brokers.get(trade.kind)
            if trade.symbol in marks or broker is None:
                continue
            try:
                marks[trade.symbol] = (await broker.quote(self.rt.instruments[trade.symbol])).mid
            except BrokerError as exc:
                log.warning("no mark for %s: %s", trade.symbol, exc)
        text = positions_text(trades, marks, self.rt.instruments, await self.rt.control.current_stops(trades))
        await self._reply(update, text, position_buttons(trades) or None)

    async def close(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        args = context.args or []
        user = update.effective_user.id if update.effective_user else 0
        if len(args) != 1:
            trades = await self.rt.control.open_positions()
            listed = positions_text(trades, {}, self.rt.instruments) if trades else "No open positions."
            await self._reply(update, f"{escape(CLOSE_USAGE)}\n{listed}", position_buttons(trades) or None)
            return
        if args[0].lower() == "all":
            await self._offer_close_all(update, user, "")
            return
        outcome = await self.rt.control.close(args[0], user)
        await self._reply(update, escape(outcome.message))

    async def breakeven(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        args = context.args or []
        if len(args) != 1:
            await self._reply(update, escape(BREAKEVEN_USAGE))
            return
        user = update.effective_user.id if update.effective_user else 0
        outcome = await self.rt.control.breakeven(args[0], user)
        await self._reply(update, escape(outcome.message))

    async def _offer_close_all(self, update: Update, user: int, head: str) -> None:
        """Ask to close the open positions listed now; the button acts on exactly these, once."""
        offer = await self.rt.control.offer_close_all(user)
        if offer is None:
            await self._reply(update, head + ("" if head else "No open positions."))
            return
        listed = positions_text(offer.trades, {}, self.rt.instruments)
        await self._reply(
            update,
            f"{head}{listed}\nClose these {len(offer.trades)} at market now?",
            close_all_buttons(offer.batch_id, len(offer.trades)),
        )

    async def report(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        args = context.args or []
        if not args:
            closed = await self.rt.store.trades(TRADED_KINDS)
            shadow = await self.rt.store.trades([TradeKind.SHADOW])
            money = self.rt.desk.account_pnl
            by_strategy = {
                name: summarize([t for t in closed if t.strategy == name], money)
                for name in {t.strategy for t in closed}
            }
            currency = self.rt.desk.policy.account_currency
            text = report_text(summarize(closed, money), by_strategy, summarize(shadow, money), currency)
            edge = await self.rt.learner.trader_edge(month_ago(self.rt.clock.now()))
            text += f"\nLast 30 days: {escape(edge.sentence())}."
            model = await self.rt.learner.refresh()
            if model is None:
                text += "\nScore calibration: no learned model yet (/learn or <code>tradebot learn</code>)."
            else:
                text += f"\nScore calibration (model v{model.version}): {escape(model.calibration_note)}"
                text += "".join(f"\nScore weights: {escape(w.verdict())}" for w in model.score_weights.values())
                text += "".join(f"\nScore weights: {escape(n)}" for n in model.score_notes.values())
            await self._reply(update, text)
            if model is not None and model.calibration is not None:
                await self._reply_photo(update, model.calibration, f"reliability, learned model v{model.version}")
            return
        executed = await self.rt.store.signal(args[0].lower())
        if executed is not None and executed.status in _EXECUTED:
            await self._reply(
                update, f"The bot executed <code>{executed.signal_id}</code>; its outcome is recorded already."
            )
            return
        trade = await self._external_trade(args, update)
        if isinstance(trade, str):
            await self._reply(update, f"{escape(trade)}\n{escape(REPORT_USAGE)}")
            return
        try:
            await self.rt.store.record_external_trade(trade)
        except DuplicateTradeError:
            await self._reply(update, f"The outcome of <code>{trade.signal_id}</code> was already reported.")
            return
        pnl = (trade.pnl or Decimal(0)).quantize(Decimal("0.01"))
        await self._reply(update, f"Recorded {escape(args[1].lower())} of {pnl} for <code>{trade.signal_id}</code>.")

    async def _external_trade(self, args: list[str], update: Update) -> Trade | str:
        """A closed EXTERNAL trade from `/report <signal_id> <win|loss|breakeven> <pnl>`, or what is wrong."""
        parsed = parse_report(args)
        if isinstance(parsed, str):
            return parsed
        record = await self.rt.store.signal(parsed.signal_id)
        if record is None:
            return f"no signal has the id {parsed.signal_id}"
        setup = record.scored.setup
        quantity = record.quantity or Decimal(1)
        contract = self.rt.instruments[setup.symbol].contract_size
        if parsed.outcome is ReportedOutcome.BREAKEVEN:
            refusal = breakeven_refusal(parsed.pnl, setup.risk * quantity * contract)
            if refusal is not None:
                return refusal
        exit_price = setup.entry + parsed.pnl * setup.side.sign / (quantity * contract)
        if exit_price <= 0:
            return f"a P&L of {parsed.pnl} would mean an exit price of {exit_price:.5f}, below zero"
        now = self.rt.clock.now()
        user = update.effective_user.id if update.effective_user else None
        return Trade(
            trade_id=f"{record.signal_id}-external",
            signal_id=record.signal_id,
            kind=TradeKind.EXTERNAL,
            strategy=setup.strategy,
            symbol=setup.symbol,
            side=setup.side,
            quantity=quantity,
            contract_size=contract,
            entry_time=setup.bar_time + setup.timeframe.delta,
            entry_price=setup.entry,
            stop=setup.stop,
            target=setup.target,
            exit_time=max(now, setup.bar_time + setup.timeframe.delta),
            exit_price=exit_price,
            exit_reason=ExitReason.EXTERNAL,
            approver_id=user,
        )

    async def stop(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.rt.state.set_paused(True)
        user = update.effective_user.id if update.effective_user else 0
        log.warning("emergency stop by user %s", user)
        await self._offer_close_all(
            update, user, "⏸ <b>Stopped</b>: no new signals, approvals refused. /resume to continue.\n"
        )

    async def resume(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.rt.state.set_paused(False)
        await self._reply(update, "▶️ Resumed.")

    async def mode(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        args = [a.lower() for a in (context.args or [])]
        if not args:
            await self._reply(update, f"mode <b>{(await self.rt.state.mode()).value}</b>. {escape(MODE_USAGE)}")
            return
        if len(args) != 1 or args[0] not in set(ExecutionMode):
            await self._reply(update, escape(MODE_USAGE))
            return
        await self.rt.state.set_mode(ExecutionMode(args[0]))
        await self._reply(update, f"mode set to <b>{args[0]}</b>.")

    async def health(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._reply(update, (await self.rt.health()).html())

    async def drift(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        rows = await self.rt.drift.table()
        controls = await self.rt.store.pair_controls()
        await self._reply(update, drift_text(rows, controls), enable_buttons(controls) or None)

    async def enable(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        args = context.args or []
        controls = await self.rt.store.pair_controls()
        off = {key: c for key, c in controls.items() if c.state is not PairState.ENABLED}
        if not args:
            if not off:
                await self._reply(update, "Every strategy x instrument is enabled.")
                return
            await self._reply(update, "Turned off (tap to enable):", enable_buttons(off))
            return
        key = (args[0].lower(), args[1].upper()) if len(args) == 2 else None
        if key is None or key not in off:
            names = ", ".join(f"{s} {sym}" for s, sym in sorted(off)) or "none"
            await self._reply(update, f"usage: /enable [STRATEGY SYMBOL] — turned off: {escape(names)}")
            return
        await self._enable(update, off[key].control_id, update.effective_user.id if update.effective_user else 0)

    async def _enable(self, update: Update, control_id: int, user: int) -> None:
        control = await self.rt.store.pair_control(control_id)
        if control is None or control.state is PairState.ENABLED:
            await self._reply(update, BUTTON_INVALID)
            return
        enabled = await enable_pair(self.rt.store, control, user, self.rt.clock.now())
        if enabled is None:
            await self._reply(update, "That pair changed since this button was sent; /enable shows it now.")
            return
        log.warning("user %s enabled %s on %s (was %s)", user, control.strategy, control.symbol, control.state.value)
        await self._reply(
            update,
            f"▶️ <b>{escape(control.strategy)}</b> on <b>{escape(control.symbol)}</b> enabled again; drift compares "
            "only trades from now on.",
        )

    async def learn(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        args = [a.lower() for a in (context.args or [])]
        if args not in ([], ["rollback"]):
            await self._reply(update, "usage: /learn  or  /learn rollback")
            return
        if args == ["rollback"]:
            model = await self.rt.learner.rollback()
            text = "No earlier learned model to return to." if model is None else learned_text(model)
            await self._reply(update, text if model is None else f"↩️ rolled back.\n{text}")
            return
        await self._reply(update, "Learning from the recorded outcomes and recent backtests…")
        result = await self.rt.learn("command")
        if isinstance(result, str):
            await self._reply(update, escape(result))

    async def button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        user = query.from_user.id
        callback = parse(query.data)
        if callback is None:
            await self._answer(query, BUTTON_INVALID)
            return
        if callback.action is Action.KEEP_OPEN:
            await self._answer(query)
            await self._edit(update, "Open positions kept.")
            return
        if callback.action in (Action.CLOSE_TRADE, Action.BREAKEVEN, Action.CLOSE_BATCH):
            await self._position_button(update, query, callback, user)
            return
        if callback.action is Action.ENABLE:
            assert callback.control_id is not None  # parse guarantees it
            await self._answer(query, "Enabling…")
            await self._enable(update, callback.control_id, user)
            return
        assert callback.signal_id is not None  # parse guarantees it for signal actions
        record = await self.rt.store.signal(callback.signal_id)
        if record is None or record.status is not SignalStatus.PENDING:
            await self._answer(query, BUTTON_INVALID)
            return
        if record.expires_at is not None and self.rt.clock.now() >= record.expires_at:
            await self._answer(query, "This signal has expired.")
            await self.rt.desk.expire_due()
            return
        approving = callback.action is Action.APPROVE
        await self._answer(query, "Approving…" if approving else "Rejecting…")
        desk = self.rt.desk
        with log_context(signal_id=callback.signal_id):
            outcome = await (desk.approve if approving else desk.reject)(callback.signal_id, user)
        if outcome.kind is not OutcomeKind.DONE:
            await self._reply(update, escape(outcome.message))

    async def _position_button(self, update: Update, query: CallbackQuery, callback: Callback, user: int) -> None:
        """Close a position, move its stop or close a confirmation's positions; a button for a state that is gone
        answers so and loses its buttons."""
        control = self.rt.control
        if callback.action is Action.CLOSE_BATCH:
            assert callback.batch_id is not None  # parse guarantees it
            await self._answer(query, "Closing…")
            outcome = await control.close_batch(callback.batch_id, user)
        else:
            assert callback.trade_id is not None  # parse guarantees it
            closing = callback.action is Action.CLOSE_TRADE
            await self._answer(query, "Closing…" if closing else "Moving the stop…")
            with log_context(signal_id=callback.trade_id):  # a bot trade is named after its signal
                outcome = await (control.close if closing else control.breakeven)(callback.trade_id, user)
        if outcome.kind is OutcomeKind.INVALID or callback.action is Action.CLOSE_BATCH:
            await self._drop_buttons(update)
        await self._reply(update, escape(outcome.message))

    async def _edit(self, update: Update, text: str) -> None:
        message = update.effective_message
        if message is not None:
            with contextlib.suppress(TelegramError):
                await message.edit_text(text, parse_mode=ParseMode.HTML)

    async def _drop_buttons(self, update: Update) -> None:
        message = update.effective_message
        if message is not None:
            with contextlib.suppress(TelegramError):
                await message.edit_reply_markup(None)

    async def error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Log any handler failure and tell the operator in one line (no traceback, no secrets)."""
        exc = context.error
        if isinstance(exc, NetworkError) and not isinstance(exc, BadRequest):
            log.warning("Telegram unreachable while handling update %s: %s", getattr(update, "update_id", "?"), exc)
            return
        log.error("handler failed for update %s", getattr(update, "update_id", "?"), exc_info=exc)
        if not isinstance(update, Update) or update.effective_chat is None:
            return  # not a chat's request: the log has it
        user = update.effective_user
        if user is None or user.id not in self.allowed:
            return  # nothing about the bot's insides for strangers
        if isinstance(exc, StoreError):  # told directly: this reply needs no database
            why = escape(storage_problem(exc))
            await self._reply(update, f"⚠️ The bot cannot use its database ({why}): nothing was changed. /health")
            return
        detail = escape(self.rt.redactor.redact(str(exc)))[:300]  # redact before cutting: half a token still leaks
        await self._reply(update, f"⚠️ that failed: {escape(type(exc).__name__)}: {detail} (the log has the details)")


def _heartbeat(runtime: BotRuntime) -> Callable[[object], Coroutine[Any, Any, None]]:
    """The heartbeat job: a failure is logged and the next beat comes anyway (the health check sees the gap)."""

    async def beat(context: object) -> None:
        try:
            await runtime.heartbeat(context)
        except StoreError as exc:
            log.warning("heartbeat not recorded: %s", exc)
        except Exception:
            log.exception("heartbeat failed")

    return beat


def build_application(settings: Settings) -> Application[Any, Any, Any, Any, Any, Any]:
    token = settings.telegram_bot_token.get_secret_value() if settings.telegram_bot_token else ""
    builder = ApplicationBuilder().token(token).rate_limiter(AIORateLimiter(max_retries=0)).concurrent_updates(True)
    if settings.telegram_api_base_url:
        builder = builder.base_url(settings.telegram_api_base_url)
    return builder.build()


async def serve(
    settings: Settings,
    stop: asyncio.Event | None = None,
    clock: BotClock | None = None,
    redactor: Redactor | None = None,
) -> int:
    """Run the bot until SIGTERM/SIGINT (or `stop` is set); shut down gracefully; return the exit code.

    Exit 1 without starting when another process holds the database (another bot, or a restore).
    """
    os.environ.setdefault("PTB_TIMEDELTA", "1")  # RetryAfter.retry_after as a timedelta, without warnings
    settings.db_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        lock = DatabaseLock(settings.db_path).acquire()
    except DatabaseInUse as exc:
        log.error("not starting: %s", exc)
        return 1
    systemd = SystemdNotifier.from_environ(os.environ)
    try:
        metrics = await build_metrics(settings.metrics, WallClock().now)
        try:
            return await _serve(settings, stop or asyncio.Event(), clock, redactor, metrics, systemd)
        finally:
            await close_metrics(metrics)
    finally:
        systemd.close()
        lock.release()


class TokenRejected(Exception):
    """Telegram refused the bot token: a configuration error, not an outage (never retried)."""


async def connect(
    app: Application[Any, Any, Any, Any, Any, Any],
    runtime: BotRuntime,
    announce: Callable[[str], None],
    status: Callable[[str], None],
    stop: asyncio.Event,
) -> bool:
    """Reach Telegram (getMe), retrying with backoff while it is unreachable; False when stopped first.

    Meanwhile the bot tells systemd it runs (READY with a status saying what it waits for, so the unit's start
    timeout and restart limits never turn an outage at boot into a dead service), keeps watching open positions
    and unconfirmed orders, and takes no new entries: nobody could see or stop them. Messages wait in the outbox.
    A rejected token raises TokenRejected.
    """
    delay, since = 1.0, None
    while True:
        try:
            await app.initialize()
        except InvalidToken:
            raise TokenRejected(
                "Telegram rejected TELEGRAM_BOT_TOKEN (Unauthorized): check it with @BotFather (/token)"
            ) from None
        except (NetworkError, TelegramError, OSError) as exc:
            if since is None:
                since = datetime.now(UTC)
                announce("waiting for Telegram")
            detail = f"{type(exc).__name__}: {exc}"
            log.warning(
                "Telegram unreachable (%s); retrying in %.0f s; open positions are still watched", detail, delay
            )
            status(f"Telegram unreachable since {since:%H:%M:%SZ} ({detail}); retrying; no new entries")
            await runtime.tend()
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
                return False
            except TimeoutError:
                delay = min(delay * 2, CONNECT_RETRY_MAX_SECONDS)
            continue
        if since is not None:
            log.warning("Telegram reachable again after %.0f s", (datetime.now(UTC) - since).total_seconds())
        return True


async def _serve(
    settings: Settings,
    stop: asyncio.Event,
    clock: BotClock | None,
    redactor: Redactor | None,
    metrics: Metrics,
    systemd: SystemdNotifier,
) -> int:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        return await _serve_runtime(settings, stop, clock, redactor, metrics, systemd)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _serve_runtime(
    settings: Settings,
    stop: asyncio.Event,
    clock: BotClock | None,
    redactor: Redactor | None,
    metrics: Metrics,
    systemd: SystemdNotifier,
) -> int:
    async with open_runtime(settings, clock, metrics, redactor) as runtime:
        app = build_application(settings)
        front = TelegramFrontEnd(runtime, frozenset(settings.telegram_allowed_users))
        front.install(app)
        sender = OutboxSender(
            app.bot,
            runtime.store,
            min_interval=settings.bot.send_interval_seconds,
            redactor=runtime.redactor,
            after_signals=runtime.notifier.refresh_decided,
            wakeup=runtime.outbox_queued,
        )
        watchdog: list[asyncio.Task[None]] = []

        def announce(status: str) -> None:
            """READY with a status; the watchdog pings from then on."""
            systemd.ready(status)
            if not watchdog and (task := systemd.start_watchdog()) is not None:
                watchdog.append(task)

        try:
            return await _run_app(app, front, runtime, sender, settings, stop, systemd, announce)
        finally:
            for task in watchdog:
                task.cancel()


async def _run_app(
    app: Application[Any, Any, Any, Any, Any, Any],
    front: TelegramFrontEnd,
    runtime: BotRuntime,
    sender: OutboxSender,
    settings: Settings,
    stop: asyncio.Event,
    systemd: SystemdNotifier,
    announce: Callable[[str], None],
) -> int:
    """Connect, start polling and the jobs, run until `stop`, then shut down gracefully; return the exit code."""
    try:
        if not await connect(app, runtime, announce, systemd.status, stop):
            return 0
    except TokenRejected as exc:
        log.error("not starting: %s", exc)
        return EXIT_CONFIG
    async with app:
        try:
            await app.bot.set_my_commands([BotCommand(name, text) for name, text in COMMANDS])
        except Exception as exc:
            log.warning("could not set the command menu: %s", exc)
        await app.start()
        assert app.updater is not None and app.job_queue is not None
        await app.updater.start_polling(poll_interval=0.0, timeout=10, allowed_updates=Update.ALL_TYPES)
        sender.start()
        if interrupted := await runtime.settle_interrupted_runs():
            log.warning("marked %d run(s) interrupted by the last stop as failed", interrupted)
        settled = await runtime.desk.reconcile()
        if settled:
            log.warning("settled %d signal(s) left half-way by the last run", settled)
        await runtime.revalidate_if_due(runtime.clock.now(), starting=True)
        runtime.scheduler.start(app.job_queue)
        tick = min(max(runtime.clock.real_seconds(timedelta(seconds=TICK_BOT_SECONDS)), 0.5), MAX_TICK_SECONDS)
        app.job_queue.run_repeating(runtime.tick, interval=tick, first=0.1, name="tick")
        app.job_queue.run_repeating(
            _heartbeat(runtime), interval=settings.metrics.heartbeat_seconds, first=0.2, name="heartbeat"
        )
        if settings.bot.trade_failed_strategies:
            log.warning("OVERRIDE ACTIVE: strategies that failed pre-deploy validation will be traded")
        log.info(
            "tradebot running (bot time %s, %gx); chats %s", runtime.clock.now(), runtime.clock.speed, runtime.chats
        )
        announce(f"tradebot running: {runtime.desk.broker.name}, mode {(await runtime.state.mode()).value}")
        await stop.wait()
        systemd.stopping("stopping: finishing in-flight work")
        log.info("stopping: no new updates; finishing in-flight work")
        started = time.monotonic()
        deadline = started + SHUTDOWN_BUDGET_SECONDS

        async def step(work: Coroutine[Any, Any, Any], share: float, late: str) -> None:
            """One shutdown step, given at most `share` seconds of what is left of the budget."""
            try:
                await asyncio.wait_for(work, timeout=max(min(share, deadline - time.monotonic()), 0.1))
            except TimeoutError:
                log.warning("shutdown: %s", late)

        await step(app.updater.stop(), 2.0, "polling did not stop in time")
        await step(app.stop(), HANDLER_GRACE_SECONDS, IN_FLIGHT_LEFT)
        if cancelled := await front.cancel_in_flight(1.0):  # while the store is still open
            log.warning("shutdown: cancelled %d command(s) or click(s) still running", cancelled)
        await step(runtime.wait_idle(), 2.0, "an analysis run was still going; it is recorded as interrupted")
        await step(runtime.stop_learning(), 1.0, "the learning run did not stop in time")
        await step(runtime.validation.stop(), 1.0, "the validation worker did not stop in time")
        await step(sender.stop(), 1.0, "a message was still being sent; it stays in the outbox")
    log.info("stopped in %.1f s", time.monotonic() - started)
    return 0
