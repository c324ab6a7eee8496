"""The command and button handlers: authorise the sender, answer the press, call one service, render.

Every command and button checks the *sender's* user id against TELEGRAM_ALLOWED_USERS; anyone else gets a
one-line refusal, is logged, and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from decimal import Decimal
from functools import wraps
from html import escape
from pathlib import Path
from typing import Any

from telegram import CallbackQuery, Update
from telegram.constants import ChatType, ParseMode
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.ops.logs import log_context, recent_logs
from bot.services.desk import Outcome, OutcomeKind
from bot.services.drift_watch import enable_pair
from bot.services.learner import month_ago
from bot.services.outcomes import Refused
from bot.services.runtime import BotRuntime, top_rejection_reasons
from bot.telegram.arguments import parse_report
from bot.telegram.callbacks import Action, Callback, parse
from bot.telegram.events import drift_text, enable_buttons, learned_text
from bot.telegram.messages import (
    BREAKEVEN_USAGE,
    BUTTON_INVALID,
    CLOSE_USAGE,
    LOGIN_OWNER_ONLY,
    MODE_USAGE,
    NO_DAILY_LOGIN,
    NOT_AUTHORISED,
    REPORT_USAGE,
    close_all_buttons,
    login_done_text,
    login_link_text,
    position_buttons,
    positions_text,
    report_text,
    split_html,
    status_text,
    welcome_text,
)
from bot.telegram.plots import reliability_png
from bot.telegram.report_commands import ReportCommands
from bot.telegram.sender import markup
from data.outbox import OutboxKind
from data.sqlite.store import DuplicateTradeError, StoreError, storage_problem
from engine.calibration import CalibrationModel
from engine.controls import PairState
from engine.domain import SignalStatus, plural
from engine.ports import BrokerError
from engine.trading import ExecutionMode

log = logging.getLogger(__name__)

Handler = Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]


STRANGER_REPLY_SECONDS = 600.0  # a stranger gets one refusal message per this long, in a private chat only


class TelegramFrontEnd(ReportCommands):
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
            await self._remember(user.id, user.full_name)
            task = asyncio.current_task()
            if task is not None:
                self._handling.add(task)
            try:
                await handler(update, context)
            finally:
                if task is not None:
                    self._handling.discard(task)

        return guarded

    async def _remember(self, user_id: int, name: str) -> None:
        """Keep the user's name for messages and the audit trail; never a reason to refuse a command."""
        if self.rt.users is None:
            return
        try:
            await self.rt.users.seen(user_id, name)
        except StoreError as exc:
            log.warning("could not remember the name of user %s: %s", user_id, exc)

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
            "login": self.login,
            "chart": self.chart,
            **self.report_commands(),
        }
        recent_logs(self.rt.redactor)  # /logs shows the warnings and errors from here on
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

    @classmethod
    @contextlib.asynccontextmanager
    async def _answering(cls, query: CallbackQuery, text: str | None = None) -> AsyncIterator[None]:
        """Answer a press (with `text`) while the work it asked for runs: the answer's round trip to Telegram (tens
        of milliseconds from a server, more on a bad day) is not on the order's path. The answer is awaited before
        the handler ends, whatever the work did, unless the handler is stopped."""
        answer = asyncio.create_task(cls._answer(query, text))
        try:
            yield
            await answer
        except asyncio.CancelledError:  # the handler is being stopped (a shutdown): its toast goes with it
            answer.cancel()
            raise
        except Exception:
            await answer  # the work failed: the press is still answered (the error handler tells why)
            raise

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
        lines = [f"Run {report.run_id}: {plural(len(report.symbols), 'symbol')}, {report.evaluated} evaluated."]
        if not report.setups:
            lines.append("No setups.")
        else:
            found = f"{plural(len(report.setups), 'setup')}: {plural(len(offered), 'new signal')} sent"
            lines.append(f"{found}, {len(dropped)} dropped.")
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
        active = self.rt.desk.active_protections(view, now)
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
            notes=self.rt.status_notes(now) + await self.rt.spread_lines(),
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
            seen = await self.reporting.overview()
            currency = self.rt.desk.policy.account_currency
            text = report_text(seen.closed, seen.by_strategy, seen.shadow, currency)
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
        parsed = parse_report(args)
        if isinstance(parsed, str):
            await self._reply(update, f"{escape(parsed)}\n{escape(REPORT_USAGE)}")
            return
        user = update.effective_user.id if update.effective_user else None
        try:
            recorded = await self.rt.outcomes.record(parsed, user)
        except DuplicateTradeError:
            await self._reply(update, f"The outcome of <code>{parsed.signal_id}</code> was already reported.")
            return
        if isinstance(recorded, Refused):
            usage = f"\n{escape(REPORT_USAGE)}" if recorded.show_usage else ""
            await self._reply(update, escape(recorded.reason) + usage)
            return
        pnl = (recorded.pnl or Decimal(0)).quantize(Decimal("0.01"))
        await self._reply(update, f"Recorded {parsed.outcome.value} of {pnl} for <code>{recorded.signal_id}</code>.")

    async def stop(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        user = update.effective_user.id if update.effective_user else 0
        await self.rt.state.set_paused(True, user)
        log.warning("emergency stop by user %s", user)
        await self._offer_close_all(
            update, user, "⏸ <b>Stopped</b>: no new signals, approvals refused. /resume to continue.\n"
        )

    async def resume(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.rt.state.set_paused(False, update.effective_user.id if update.effective_user else None)
        await self._reply(update, "▶️ Resumed.")

    async def mode(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        args = [a.lower() for a in (context.args or [])]
        if not args:
            await self._reply(update, f"mode <b>{(await self.rt.state.mode()).value}</b>. {escape(MODE_USAGE)}")
            return
        if len(args) != 1 or args[0] not in set(ExecutionMode):
            await self._reply(update, escape(MODE_USAGE))
            return
        await self.rt.state.set_mode(
            ExecutionMode(args[0]), update.effective_user.id if update.effective_user else None
        )
        await self._reply(update, f"mode set to <b>{args[0]}</b>.")

    async def login(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        login = self.rt.login
        if login is None:
            await self._reply(update, escape(NO_DAILY_LOGIN))
            return
        user = update.effective_user.id if update.effective_user else 0
        if user != self.rt.settings.owner:
            await self._reply(update, escape(LOGIN_OWNER_ONLY))
            return
        name = login.broker.name
        args = context.args or []
        if not args:
            await self._reply(update, login_link_text(name, login.link, login.status()))
            return
        deleted = False
        if update.effective_message is not None:  # the token leaves the chat before anything else happens
            with contextlib.suppress(TelegramError):
                deleted = bool(await update.effective_message.delete())
        try:
            done = await login.complete(" ".join(args), user)
        except (ValueError, BrokerError) as exc:
            await self._reply(update, f"❌ {escape(name)} login failed: {escape(str(exc))}")
            return
        s = done.session
        funds = None if done.funds is None else f"{done.funds:,.2f}"
        expires = f"{s.expires_at:%Y-%m-%d %H:%M} UTC"
        await self._reply(update, login_done_text(name, s.user_name, s.user_id, expires, funds, deleted))

    async def chart(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        args = [a.upper() for a in (context.args or [])]
        if len(args) != 1 or args[0] not in self.rt.instruments:
            known = ", ".join(sorted(self.rt.instruments))
            await self._reply(update, f"usage: /chart SYMBOL — symbols: {escape(known)}")
            return
        charts, chat = self.rt.charts, update.effective_chat
        if charts is None or chat is None:
            await self._reply(update, "Charts are off (<code>[bot] charts = false</code>).")
            return
        picture = await self.rt.symbol_chart(args[0])
        if isinstance(picture, str):
            await self._reply(update, escape(picture))
            return
        png, caption = picture
        try:
            await update.get_bot().send_photo(chat.id, png, caption=caption)
        except TelegramError as exc:
            log.warning("sending the chart of %s failed: %s", args[0], exc)
            await self._reply(update, f"The chart could not be sent ({escape(str(exc))}).")

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
            async with self._answering(query):
                await self._edit(update, "Open positions kept.")
            return
        if callback.action in (Action.CLOSE_TRADE, Action.BREAKEVEN, Action.CLOSE_BATCH):
            await self._position_button(update, query, callback, user)
            return
        if callback.action is Action.ENABLE:
            assert callback.control_id is not None  # parse guarantees it
            async with self._answering(query, "Enabling…"):
                await self._enable(update, callback.control_id, user)
            return
        assert callback.signal_id is not None  # parse guarantees it for signal actions
        if callback.action in (Action.SPREAD_APPROVE, Action.SPREAD_REJECT):
            await self._spread_button(update, query, callback.action, callback.signal_id, user)
            return
        waiting = await self.rt.desk.decidable(callback.signal_id)
        if isinstance(waiting, Outcome):
            await self._answer(query, waiting.message)
            return
        approving = callback.action is Action.APPROVE
        desk = self.rt.desk
        async with self._answering(query, "Approving…" if approving else "Rejecting…"):
            with log_context(signal_id=callback.signal_id):
                outcome = await (desk.approve if approving else desk.reject)(callback.signal_id, user)
            if outcome.kind is not OutcomeKind.DONE:
                await self._reply(update, escape(outcome.message))

    async def _spread_button(self, update: Update, query: CallbackQuery, action: Action, sid: str, user: int) -> None:
        """Approve or reject an offered option spread; the message loses its buttons once decided."""
        zones = self.rt.zones
        if zones is None:
            await self._answer(query, BUTTON_INVALID)
            return
        approving = action is Action.SPREAD_APPROVE
        async with self._answering(query, "Approving: hedge first…" if approving else "Rejecting…"):
            with log_context(signal_id=sid):
                outcome = await (zones.approve if approving else zones.reject)(sid, user)
            await self._drop_buttons(update)
            if outcome.kind is not OutcomeKind.DONE or not approving:
                await self._reply(update, escape(outcome.message))

    async def _position_button(self, update: Update, query: CallbackQuery, callback: Callback, user: int) -> None:
        """Close a position, move its stop or close a confirmation's positions; a button for a state that is gone
        answers so and loses its buttons."""
        control = self.rt.control
        closing = callback.action is not Action.BREAKEVEN
        async with self._answering(query, "Closing…" if closing else "Moving the stop…"):
            if callback.action is Action.CLOSE_BATCH:
                assert callback.batch_id is not None  # parse guarantees it
                outcome = await control.close_batch(callback.batch_id, user)
            else:
                assert callback.trade_id is not None  # parse guarantees it
                with log_context(signal_id=callback.trade_id):  # a bot trade is named after its signal
                    close = control.close if closing else control.breakeven
                    outcome = await close(callback.trade_id, user)
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
