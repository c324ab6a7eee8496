"""What the bot says: HTML texts and button layouts, independent of the Telegram library.

Times are UTC inside; here they are shown in the instrument's exchange time with the UTC time beside it.
Every value that comes from data or users is HTML-escaped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from html import escape, unescape
from typing import Final
from zoneinfo import ZoneInfo

from bot.telegram.callbacks import Action, Callback
from engine.domain import Instrument, Side, SignalStatus, plural
from engine.performance import PerformanceSummary
from engine.ports import SignalEstimate, SignalRecord
from engine.sizing import quote_currency, split_children
from engine.systems import PairValidation
from engine.trading import ExecutionMode, Trade, TradeKind

Buttons = list[list[list[str]]]  # rows of [label, callback data]; lists so they survive JSON

COMMANDS: tuple[tuple[str, str], ...] = (
    ("start", "welcome, mode and command list"),
    ("help", "what each command does"),
    ("signal", "run an analysis now: /signal [SYMBOL]"),
    ("status", "mode, pause, runs, positions, today's P&L"),
    ("positions", "open paper and live positions, each with Close and Stop → breakeven buttons"),
    ("close", "close a position: /close ID, or /close all (asks first)"),
    ("breakeven", "move a position's stop to its entry: /breakeven ID"),
    ("report", "performance; /report ID win|loss|breakeven PNL records an outside trade"),
    ("stop", "emergency stop: pause signals and approvals, offer to close the open positions"),
    ("resume", "resume after /stop"),
    ("mode", "show or set the execution mode: /mode manual|quality|auto"),
    ("drift", "live results vs the baselines, for every strategy x instrument"),
    ("enable", "turn a disabled or demoted pair back on: /enable [STRATEGY SYMBOL]"),
    ("learn", "refit the learned model now; /learn rollback returns to the previous one"),
    ("health", "database, runs on schedule, broker circuit, Telegram: healthy or not"),
    ("login", "the daily Kite login (owner): /login sends the link, /login <redirect address> completes it"),
    ("chart", "a symbol's chart now with its open positions: /chart SYMBOL"),
    ("profit", "closed and open P&L, win rate, expectancy in R, best and worst, drawdown"),
    ("daily", "P&L per day: /daily [n]"),
    ("weekly", "P&L per ISO week: /weekly [n]"),
    ("monthly", "P&L per month: /monthly [n]"),
    ("performance", "per pair and per strategy, with validation status"),
    ("trades", "the last closed trades: /trades [n]"),
    ("balance", "equity per broker account, open exposure and leverage"),
    ("count", "open positions and today's entries against their limits"),
    ("audit", "who decided and changed what, newest first: /audit [n]"),
    ("logs", "recent warnings and errors, redacted: /logs [n]"),
    ("show_config", "the configuration in use, secrets masked"),
    ("version", "the running version"),
)

REPORT_USAGE = (
    "usage: /report  or  /report <signal_id> <win|loss|breakeven> <pnl>  (e.g. /report 3f2a9c1b7d win 125.50)"
)
MODE_USAGE = "usage: /mode  or  /mode manual|quality|auto"
CLOSE_USAGE = "usage: /close <position id>  or  /close all"
BREAKEVEN_USAGE = "usage: /breakeven <position id>  (moves its stop to its entry price)"
BUTTON_INVALID = "This button is no longer valid."
NOT_AUTHORISED = "You are not authorised to use this bot."
LOGIN_OWNER_ONLY = "Only the owner may log in to the broker."
NO_DAILY_LOGIN = "No broker of this bot needs a daily login."


def login_link_text(broker: str, link: str, status: str) -> str:
    """The login link and how to finish the login."""
    return (
        f"🔑 <b>{escape(broker)} login</b>\n{escape(status)}\n"
        f'1. Open <a href="{escape(link, quote=True)}">the {escape(broker)} login page</a> and log in.\n'
        "2. Copy the address it sends you to (it holds <code>request_token=</code>) and send\n"
        "<code>/login &lt;that address&gt;</code>. I delete that message as soon as I have read it."
    )


def login_done_text(broker: str, user_name: str, user_id: str, expires: str, funds: str | None, deleted: bool) -> str:
    """The confirmation of a completed login (never the token)."""
    lines = [
        f"✅ <b>{escape(broker)}</b>: logged in as {escape(user_name)} ({escape(user_id)}) until {escape(expires)}."
    ]
    lines.append(f"Funds available: {escape(funds)}" if funds is not None else "Funds: could not be read just now.")
    if not deleted:
        lines.append("⚠️ I could not delete your message with the login token: delete it yourself.")
    return "\n".join(lines)


_SIDE_ICON = {Side.LONG: "🟢 LONG", Side.SHORT: "🔴 SHORT"}
_STATUS_LINE = {
    SignalStatus.APPROVED: "✅ approved",
    SignalStatus.ORDER_SUBMITTED: "⏳ order submitted",
    SignalStatus.FILLED: "✅ filled",
    SignalStatus.FAILED: "⚠️ failed",
    SignalStatus.REJECTED: "❌ rejected",
    SignalStatus.EXPIRED: "⌛ expired",
    SignalStatus.DROPPED: "➖ dropped",
}


MAX_MESSAGE_CHARS: Final = 4096  # Telegram's limit on a message's text (measured here before entity parsing)
PAGE_CHARS: Final = 3000  # a digest page leaves room for the decision lines its edits add later
DIGEST_PAGE: Final = 10  # signals per digest message (20 buttons)


def split_html(text: str, limit: int = MAX_MESSAGE_CHARS) -> list[str]:
    """Cut chat HTML into messages of at most `limit` characters, at line ends so no tag is cut in two.

    Our HTML keeps every tag within one line; a single line longer than `limit` is sent as plain text in pieces.
    """
    parts: list[str] = []
    current = ""
    for line in text.split("\n"):
        if len(line) > limit:
            if current:
                parts.append(current)
                current = ""
            plain = plain_text(line)
            parts += [escape(plain[i : i + limit // 2]) for i in range(0, len(plain), limit // 2)]
            continue
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            parts.append(current)
            current = line
        else:
            current = candidate
    if current or not parts:
        parts.append(current)
    return parts


def plain_text(html_text: str) -> str:
    """Chat HTML as plain text (tags dropped, entities decoded): for a terminal, or when Telegram refuses the HTML."""
    return unescape(re.sub(r"<[^>]+>", "", html_text))


def _local(at: datetime, instrument: Instrument) -> str:
    local = at.astimezone(ZoneInfo(instrument.timezone))
    return f"{local:%a %d %b %H:%M} {local.tzname()} ({at:%H:%MZ})"


def _money(value: Decimal | None) -> str:
    return "n/a" if value is None else f"{value:,.2f}"


@dataclass(frozen=True)
class RenderedMessage:
    text: str
    buttons: Buttons


def signal_buttons(signal_ids: Sequence[str], labelled: bool = False) -> Buttons:
    """One Approve / Reject row per pending signal (labelled by symbol in digests)."""
    rows: Buttons = []
    for n, signal_id in enumerate(signal_ids, start=1):
        prefix = f"{n}. " if labelled else ""
        rows.append(
            [
                [f"{prefix}✅ Approve", Callback(Action.APPROVE, signal_id).encode()],
                [f"{prefix}❌ Reject", Callback(Action.REJECT, signal_id).encode()],
            ]
        )
    return rows


def _decision(record: SignalRecord, names: Mapping[int, str] | None = None) -> str:
    line = _STATUS_LINE.get(record.status)
    if line is None:
        return ""
    by = record.decided_by
    name = (names or {}).get(by) if by is not None else None
    who = "" if by is None else f" by {escape(name)}" if name else f" by <code>{by}</code>"
    when = f" at {record.decided_at:%Y-%m-%d %H:%MZ}" if record.decided_at is not None else ""
    why = f": {escape(record.reason)}" if record.reason else ""
    return f"{line}{who}{when}{why}"


def signal_detail(
    record: SignalRecord,
    instrument: Instrument,
    estimate: str | None = None,
    freeze: Decimal | None = None,
    names: Mapping[int, str] | None = None,
) -> str:
    """The full signal message for one setup."""
    s, q = record.scored.setup, record.scored.score
    size = instrument.quantity_text(record.quantity) if record.quantity is not None else "n/a"
    if record.quantity is not None and freeze is not None:
        children = split_children(record.quantity, freeze, instrument.lot_size)
        if len(children) > 1:
            size += f" in {len(children)} orders of at most {freeze}"
    validation = record.validation
    parts = [
        f"<b>{escape(s.symbol)}</b> {_SIDE_ICON[s.side]} · <i>{escape(s.strategy)}</i> · {s.timeframe}",
        f"entry <code>{s.entry}</code> · stop <code>{s.stop}</code> · target <code>{s.target}</code>",
        f"R:R {s.reward_risk} · size {size}",
        exposure_line(record, instrument),
    ]
    if validation is not None:
        parts.append(escape(validation.line()))
    parts.append(f"quality <b>{q.total:.0f}</b>/100 · {escape(score_text(validation))}")
    if estimate:
        parts.append(escape(estimate))
    parts += [f"  • {escape(c.name.replace('_', ' '))} {c.value:.2f}: {escape(c.reason)}" for c in q.top(3)]
    parts += [f"  – {escape(r)}" for r in s.reasons[:3]]
    parts.append(f"bar {_local(s.bar_time, instrument)}")
    if record.expires_at is not None:
        parts.append(f"expires {_local(record.expires_at, instrument)}")
    parts.append(f"id <code>{s.signal_id}</code>")
    decision = _decision(record, names)
    if decision:
        parts.append(decision)
    return "\n".join(parts)


def exposure_line(record: SignalRecord, instrument: Instrument) -> str:
    """Notional and leverage, and the money at risk at the stop with the expected costs inside it."""
    sized = record.sizing
    if sized is None:  # offered before sizing was kept with signals
        return f"risk {_money(risk_money(record, instrument))}{_currency(instrument)}"
    unit = f" {escape(sized.currency)}"
    line = (
        f"notional {_money(sized.notional)}{unit} ({sized.leverage:g}x equity) · risk "
        f"<b>{_money(sized.risk_with_costs)}</b>{unit} incl. {_money(sized.costs)} expected costs"
    )
    if sized.notes:
        line += f" · {escape('; '.join(sized.notes))}"
    return line


def score_text(validation: PairValidation | None) -> str:
    """What the quality number is worth for this pair: its measured edge, or that none was measured."""
    if validation is None or validation.score is None:
        return "score: no measured edge (not validated)"
    return validation.score.text()


def signal_line(
    n: int,
    record: SignalRecord,
    estimate: str | None = None,
    instrument: Instrument | None = None,
    names: Mapping[int, str] | None = None,
) -> str:
    """One compact digest line."""
    s, q = record.scored.setup, record.scored.score
    decision = _decision(record, names)
    tail = f" — {decision}" if decision else ""
    est = f" ({escape(estimate)})" if estimate else ""
    validation = record.validation
    status = f" · {escape(validation.short())}" if validation is not None else ""
    edge = "" if validation is not None and validation.score is not None and validation.score.has_edge else " no edge"
    return (
        f"{n}. <b>{escape(s.symbol)}</b> {_SIDE_ICON[s.side]} {escape(s.strategy)} {s.timeframe}{status} · "
        f"Q{q.total:.0f}{edge}{est} · entry <code>{s.entry}</code> stop <code>{s.stop}</code> "
        f"target <code>{s.target}</code> (R:R {s.reward_risk}, {_size_short(record, instrument)}) · "
        f"<code>{s.signal_id}</code>{tail}"
    )


def _size_short(record: SignalRecord, instrument: Instrument | None) -> str:
    """'280 shares, 1.0x' for a digest line."""
    if record.quantity is None:
        return "size n/a"
    size = instrument.quantity_text(record.quantity) if instrument is not None else f"{record.quantity}"
    return size if record.sizing is None else f"{size}, {record.sizing.leverage:g}x"


def estimate_text(estimate: SignalEstimate | None) -> str | None:
    """The learned win estimate as shown with a signal, or why there is none; None before any learning run."""
    if estimate is None:
        return None
    learned = "" if estimate.learned_score is None else f"learned score {estimate.learned_score:.0f} · "
    if estimate.p_win is None:
        note = estimate.note
        while note.startswith("n/a: "):  # the reason already says n/a: once in the line is enough
            note = note.removeprefix("n/a: ")
        return f"{learned}est. win n/a: {note}" if note else f"{learned}est. win n/a"
    text = f"{learned}est. win {estimate.p_win:.0%} (n={estimate.trades})"
    if estimate.expected_r is not None:
        text += f" · exp. {estimate.expected_r:+.2f}R"
    return text


def signal_message(
    records: Sequence[SignalRecord],
    instruments: dict[str, Instrument],
    freeze: Mapping[str, Decimal] | None = None,
    estimates: Mapping[str, SignalEstimate] | None = None,
    names: Mapping[int, str] | None = None,
) -> RenderedMessage:
    """A message showing one signal in full, or several as a digest with the best first."""
    pending = [r.signal_id for r in records if r.status is SignalStatus.PENDING]
    shown = estimates or {}
    if len(records) == 1:
        record = records[0]
        symbol = record.scored.setup.symbol
        estimate = estimate_text(shown.get(record.signal_id))
        text = signal_detail(record, instruments[symbol], estimate, (freeze or {}).get(symbol), names)
        return RenderedMessage(text, signal_buttons(pending))
    lines = [f"<b>{len(records)} signals</b> (best first; buttons are numbered like the list)"]
    if any(r.validation is not None and not r.validation.validated for r in records):
        lines.append("⚠️ signals not marked ✅ are not validated: never executed automatically, trade on your judgement")
    lines += [
        signal_line(n, r, estimate_text(shown.get(r.signal_id)), instruments.get(r.scored.setup.symbol), names)
        for n, r in enumerate(records, start=1)
    ]
    buttons: Buttons = []
    for n, record in enumerate(records, start=1):
        if record.status is SignalStatus.PENDING:
            buttons += [[[f"{n}. {label}", data] for label, data in row] for row in signal_buttons([record.signal_id])]
    return RenderedMessage("\n".join(lines), buttons)


def digest_pages(
    records: Sequence[SignalRecord],
    instruments: dict[str, Instrument],
    freeze: Mapping[str, Decimal] | None = None,
    estimates: Mapping[str, SignalEstimate] | None = None,
) -> list[list[SignalRecord]]:
    """The signals of one run cut into digest messages: at most DIGEST_PAGE each, each rendering within
    PAGE_CHARS (best first, as given)."""
    pages: list[list[SignalRecord]] = []
    page: list[SignalRecord] = []
    for record in records:
        candidate = [*page, record]
        fits = len(candidate) <= DIGEST_PAGE
        if fits and len(candidate) > 1:
            fits = len(signal_message(candidate, instruments, freeze, estimates).text) <= PAGE_CHARS
        if fits or not page:
            page = candidate
        else:
            pages.append(page)
            page = [record]
    if page:
        pages.append(page)
    return pages


def _currency(instrument: Instrument) -> str:
    """The currency of the instrument's money after a space (" INR"), or nothing when the symbol does not tell it."""
    try:
        return f" {quote_currency(instrument)}"
    except ValueError:
        return ""


def risk_money(record: SignalRecord, instrument: Instrument) -> Decimal | None:
    if record.quantity is None:
        return None
    s = record.scored.setup
    return abs(s.entry - s.stop) * record.quantity * instrument.contract_size


def fill_text(trade: Trade, instrument: Instrument | None = None) -> str:
    size = instrument.quantity_text(trade.quantity) if instrument is not None else f"{trade.quantity}"
    return (
        f"📥 <b>{escape(trade.symbol)}</b> {_SIDE_ICON[trade.side]} filled {size} @ "
        f"<code>{trade.entry_price}</code> (fees {_money(trade.entry_fees)}) · stop <code>{trade.stop}</code> · "
        f"target <code>{trade.target}</code> · <code>{trade.signal_id}</code>"
    )


def exit_text(trade: Trade) -> str:
    reason = trade.exit_reason.value if trade.exit_reason else "?"
    pnl, r = trade.pnl, trade.pnl_r
    icon = "🏁" if pnl is None else ("💰" if pnl > 0 else "🩸" if pnl < 0 else "➖")
    return (
        f"{icon} <b>{escape(trade.symbol)}</b> {_SIDE_ICON[trade.side]} closed ({reason}) @ "
        f"<code>{trade.exit_price}</code>: P&amp;L <b>{_money(pnl)}</b> ({r}R, fees {_money(trade.fees)}) · "
        f"<code>{trade.signal_id}</code>"
    )


def position_buttons(trades: Sequence[Trade]) -> list[list[list[str]]]:
    """A row per open position: close it, move its stop to its entry."""
    return [
        [
            [f"Close {t.symbol} {t.trade_id}", Callback(Action.CLOSE_TRADE, trade_id=t.trade_id).encode()],
            ["Stop → breakeven", Callback(Action.BREAKEVEN, trade_id=t.trade_id).encode()],
        ]
        for t in trades
    ]


def close_all_buttons(batch_id: int, count: int) -> list[list[list[str]]]:
    """A close-all confirmation's buttons: close the `count` positions it listed (batch `batch_id`), or keep them."""
    return [
        [
            [f"Close these {count}", Callback(Action.CLOSE_BATCH, batch_id=batch_id).encode()],
            ["Keep them open", Callback(Action.KEEP_OPEN).encode()],
        ]
    ]


def positions_text(
    trades: Sequence[Trade],
    marks: dict[str, Decimal],
    instruments: Mapping[str, Instrument] | None = None,
    stops: Mapping[str, Decimal] | None = None,
) -> str:
    """The open paper and live positions, each with its stop now (`stops` by trade id: moved by the trader), last
    price and open P&L (quote currency, fees paid)."""
    if not trades:
        return "No open positions."
    lines = [f"<b>{plural(len(trades), 'open position')}</b>"]
    for t in trades:
        mark = marks.get(t.symbol)
        upnl = None
        if mark is not None:
            upnl = (mark - t.entry_price) * t.side.sign * t.quantity * t.contract_size - t.entry_fees
        instrument = (instruments or {}).get(t.symbol)
        size = instrument.quantity_text(t.quantity) if instrument is not None else f"{t.quantity}"
        stop = (stops or {}).get(t.trade_id, t.stop)
        lines.append(
            f"<code>{escape(t.trade_id)}</code> {escape(t.symbol)} {_SIDE_ICON[t.side]} {t.kind.value} {size} @ "
            f"<code>{t.entry_price}</code> · stop <code>{stop}</code> · target <code>{t.target}</code> · last "
            f"<code>{mark or 'n/a'}</code> · open P&amp;L {_money(upnl)} · since {t.entry_time:%Y-%m-%d %H:%MZ}"
        )
    return "\n".join(lines)


def report_text(
    summary: PerformanceSummary,
    by_strategy: dict[str, PerformanceSummary],
    shadow: PerformanceSummary,
    currency: str = "",
) -> str:
    """Performance of closed paper, live and reported trades, by strategy, with shadow outcomes apart."""
    if summary.trades == 0:
        head = ["<b>Performance</b>: no closed trades yet."]
    else:
        head = ["<b>Performance</b> (closed paper, live and reported trades)", _summary_line(summary, currency)]
        head += [f"  <i>{escape(name)}</i>: {_summary_line(s, currency)}" for name, s in sorted(by_strategy.items())]
    if shadow.trades:
        head.append(f"Rejected/expired signals, had they been taken: {_summary_line(shadow, currency)}")
    return "\n".join(head)


def _summary_line(s: PerformanceSummary, currency: str = "") -> str:
    pf = "n/a" if s.profit_factor is None else f"{s.profit_factor:.2f}"
    win = "n/a" if s.win_rate is None else f"{s.win_rate:.0%}"
    exp = "n/a" if s.expectancy_r is None else f"{s.expectancy_r:+.2f}R"
    unit = f" {currency}" if currency else ""
    return f"{plural(s.trades, 'trade')} · win {win} · PF {pf} · expectancy {exp} · net {_money(s.net_pnl)}{unit}"


def status_text(
    *,
    mode: ExecutionMode,
    paused: bool,
    now: datetime,
    last_run: str,
    next_run: datetime | None,
    open_trades: Sequence[Trade],
    today_pnl: Decimal,
    equity: Decimal,
    risk_per_trade: Decimal,
    outbox: int,
    protections: Sequence[str] = (),
    broker: str = "",
    currency: str = "",
    notes: Sequence[str] = (),
    validation: str = "",
) -> str:
    unit = f" {currency}" if currency else ""
    held = [t for t in open_trades if t.kind in (TradeKind.PAPER, TradeKind.LIVE)]
    lines = [
        f"<b>Status</b> at {now:%Y-%m-%d %H:%MZ}",
        f"mode <b>{mode.value}</b> · {'⏸ <b>PAUSED</b> (/resume)' if paused else '▶️ running'}",
        f"last run: {escape(last_run)}",
        f"next run: {next_run:%Y-%m-%d %H:%MZ}" if next_run else "next run: none scheduled",
        f"open positions: {len(held)} · today's P&amp;L {_money(today_pnl)}{unit}",
        f"risk per trade {risk_per_trade:%} of equity {_money(equity)}{unit} "
        f"(max {_money(equity * risk_per_trade)}{unit})",
        f"messages waiting to be sent: {outbox}",
    ]
    if broker:
        lines.append(f"broker: {escape(broker)}")
    if validation:
        lines.append(escape(validation))
    lines += [f"⚠️ {escape(n)}" for n in notes]
    if protections:
        lines.append("<b>protections active</b>:")
        lines += [f"• {escape(p)}" for p in protections]
    else:
        lines.append("protections: none active")
    return "\n".join(lines)


def welcome_text(mode: ExecutionMode, paused: bool) -> str:
    lines = [
        "<b>tradebot</b>: trading signals with your approval.",
        f"mode <b>{mode.value}</b> · {'⏸ paused' if paused else '▶️ running'}",
        "",
    ]
    lines += [f"/{name} — {escape(text)}" for name, text in COMMANDS]
    return "\n".join(lines)
