"""Chat messages of the services' events: the only place their words get HTML and buttons."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import timedelta
from decimal import Decimal
from html import escape

from bot.services.drift_watch import DriftRow
from bot.services.events import (
    DriftFound,
    Event,
    ModelLearned,
    Notice,
    PositionClosed,
    PositionOpened,
    SpreadEvent,
    SpreadStage,
    StopMoved,
    SummaryReady,
    ValidationFinished,
)
from bot.services.learner import LearnedModel
from bot.services.summary import TOP_REASONS, DailySummary
from bot.services.users import who
from bot.telegram.callbacks import Action, Callback
from bot.telegram.messages import exit_text, fill_text, position_buttons
from engine.controls import ALL_SYMBOLS, PairControl, PairState
from engine.domain import Side, plural
from engine.drift import Severity
from engine.spread_book import SpreadRecord

Buttons = list[list[list[str]]]


def render(event: Event, names: dict[int, str] | None = None) -> tuple[str, Buttons | None]:
    """The chat message of an event (people named where `names` knows them), and its buttons."""
    names = names or {}
    match event:
        case Notice(text, tone):
            return f"{tone.value} {escape(text)}", None
        case PositionOpened(trade, instrument, note, why):
            reasons = "".join(f"\n  – {escape(line)}" for line in why)
            return fill_text(trade, instrument) + escape(note) + reasons, position_buttons([trade])
        case PositionClosed(trade, by):
            return exit_text(trade) + ("" if by is None else f" · closed by {escape(who(by, names))}"), None
        case StopMoved(trade, old, new, by):
            at_entry = " (entry; fees not covered)" if new == trade.entry_price else ""
            return (
                f"🛡 {escape(trade.symbol)} stop moved <code>{old}</code> → <code>{new}</code>{at_entry} · "
                f"<code>{escape(trade.trade_id)}</code> · by {escape(who(by, names))}"
            ), None
        case DriftFound():
            return drift_alert_text(event)
        case ValidationFinished(passed, total, errors):
            return validation_text(passed, total, errors), None
        case SummaryReady(summary):
            return summary_text(summary), None
        case ModelLearned(model):
            return learned_text(model), None
        case SpreadEvent(stage, spread):
            return spread_text(stage, spread)
    raise TypeError(f"no chat message for {type(event).__name__}")


IST = timedelta(hours=5, minutes=30)


def spread_text(stage: SpreadStage, s: SpreadRecord) -> tuple[str, Buttons | None]:
    """An option spread's offer (with its buttons), opening, rollback or outcome."""
    side = "🟢 LONG" if s.side is Side.LONG else "🔴 SHORT"
    title = escape(str(s.zones.get("rule_title", "")))
    head = f"<b>{escape(s.symbol)} weekly zones {escape(s.rule)}</b> ({title}) {side}"
    ident = f"<code>{escape(s.spread_id)}</code>"
    modelled = " (modelled)" if s.modelled else ""
    if stage is SpreadStage.OFFERED:
        z = s.zones
        lines = [
            f"🧭 {head}",
            f"index <code>{s.entry}</code> at the {(s.signal_time + IST):%H:%M} IST close · close-only stop "
            f"<code>{s.stop}</code> · expiry {s.expiry:%a %d %b}",
            f"buy <code>{escape(s.plan.hedge_symbol)}</code> (hedge, first) · "
            f"sell <code>{escape(s.plan.main_symbol)}</code> · {s.plan.quantity // s.plan.lot} lot(s) × {s.plan.lot}",
            f"zones: resistance {z.get('resistance')} · support {z.get('support')} · PWC {z.get('pwc')} · "
            f"bias {escape(str(z.get('bias')))}",
            "validation: not gated: the spec fixes its rules; <code>tradebot validate --strategies weekly_zones</code> "
            f"applies the gate's criteria to its history · venue {escape(s.venue)}",
        ]
        if s.expires_at is not None:
            lines.append(f"expires {(s.expires_at + IST):%H:%M} IST ({s.expires_at:%H:%M}Z) · {ident}")
        approve = Callback(Action.SPREAD_APPROVE, s.spread_id).encode()
        reject = Callback(Action.SPREAD_REJECT, s.spread_id).encode()
        return "\n".join(lines), [[["✅ Approve", approve], ["❌ Reject", reject]]]
    legs = " · ".join(
        f"{'bought' if f.buy else 'sold'} {f.quantity} <code>{escape(f.tradingsymbol)}</code> @ {f.price}"
        for f in s.fills
    )
    if stage is SpreadStage.OPENED:
        return f"✅ spread {ident} open{modelled}: {legs}", None
    if stage is SpreadStage.ROLLED_BACK:
        return f"⚠️ spread {ident} not opened: {escape(s.reason or '')}; the hedge was sold back: {legs}", None
    pnl = f"{s.pnl:+,.2f} INR before charges{modelled}"
    return (
        f"🏁 spread {ident} closed: {escape(str(s.exit_reason))} at index <code>{s.exit_level}</code> "
        f"({s.points:+,} points, {s.r:+}R on the index) · {legs} · P&amp;L {pnl}",
        None,
    )


def drift_alert_text(event: DriftFound) -> tuple[str, Buttons | None]:
    """A drift alert, with the Enable button of the control that turned the pair off."""
    report = event.report
    icon = "🚨" if report.severity is Severity.CRITICAL else "⚠️"
    lines = [
        f"{icon} <b>Drift {report.severity.name}</b>: {escape(event.label)}",
        escape(report.summary()),
        *(f"• {escape(reason)}" for reason in report.reasons[:4]),
        f"action: {escape(report.action)}",
    ]
    buttons = None
    if event.disabled is not None:
        lines.append("<b>Disabled for new entries</b> until you enable it again (/enable).")
        callback = Callback(Action.ENABLE, control_id=event.disabled.control_id).encode()
        buttons = [[[f"Enable {event.strategy} on {event.symbol}", callback]]]
    return "\n".join(lines), buttons


def validation_text(passed: tuple[str, ...], total: int, errors: int) -> str:
    """The end of a background validation run."""
    names = f": {', '.join(passed)}" if passed else ""
    lines = [f"✅ Validation finished: {len(passed)} of {total} systems passed the pre-deploy gate{escape(names)}."]
    if errors:
        lines.append(f"{errors} could not be validated (see the log).")
    if len(passed) < total:
        lines.append("The others are offered with a warning in manual mode and never executed automatically.")
    return "\n".join(lines)


def summary_text(self: DailySummary) -> str:
    """The chat message (HTML)."""
    wins = sum(1 for t in self.closed if (t.pnl or Decimal(0)) > 0)
    lines = [f"🗓 <b>Daily summary {self.day:%a %d %b %Y}</b> ({escape(self.timezone)})"]
    if self.closed:
        rate = f"{wins / len(self.closed):.0%}"
        lines.append(
            f"trades closed: {len(self.closed)} · won {wins} ({rate}) · P&amp;L {self.pnl:+,.2f} {self.currency}"
        )
    else:
        lines.append("trades closed: none")
    opened = ", ".join(f"{t.symbol} {t.side.value}" for t in self.open_trades)
    lines.append(f"open positions: {len(self.open_trades)}" + (f" ({escape(opened)})" if opened else ""))
    lines.append(_drift_line(self))
    off = [
        f"{strategy} on {symbol} ({c.state.value})"
        for (strategy, symbol), c in sorted(self.controls.items())
        if c.state is not PairState.ENABLED
    ]
    if off:
        lines.append("turned off: " + escape(", ".join(off)))
    lines.append("protections now: " + (escape("; ".join(self.protections)) if self.protections else "none blocking"))
    if self.dropped:
        reasons = Counter(_head(r.reason or "no reason") for r in self.dropped)
        top = "; ".join(f"{escape(reason)} ×{n}" for reason, n in reasons.most_common(TOP_REASONS))
        lines.append(f"signals dropped today: {len(self.dropped)} ({top})")
    else:
        lines.append("signals dropped today: none")
    return "\n".join(lines)


def _drift_line(self: DailySummary) -> str:
    pairs = [r for r in self.drift if r.symbol != ALL_SYMBOLS]
    if not pairs:
        return "drift: no baselines to compare with"
    worst = max(pairs, key=lambda r: r.report.severity)
    counts = Counter(r.report.severity for r in pairs if r.report.severity > Severity.NONE)
    if not counts:
        return f"drift: all {plural(len(pairs), 'pair')} in line with their baselines"
    by = ", ".join(f"{n} {sev.name}" for sev, n in sorted(counts.items(), reverse=True))
    return f"drift: {by} (worst {escape(worst.label)})"


def learned_text(model: LearnedModel) -> str:
    """What a learning run produced, for the chat and the CLI (HTML-escaped)."""
    s = model.summary
    outcomes = ", ".join(f"{n:,} {source}" for source, n in s.get("outcomes", {}).items()) or "no outcomes"
    lines = [
        f"🧠 <b>learned model v{model.version}</b> ({escape(str(s.get('trigger', '')))}): {outcomes}; "
        f"{plural(int(s.get('baselines', 0)), 'baseline')}",
        f"calibration: {escape(model.calibration_note)}",
    ]
    lines += [f"score weights: {escape(w.verdict())}" for w in model.score_weights.values()]
    lines += [f"score weights: {escape(note)}" for note in model.score_notes.values()]
    pairs = sorted(
        (p for (_, sym), p in model.posteriors.items() if sym is not None and "@" not in sym),
        key=lambda p: -p.expected_r,
    )
    lines += [f"• {escape(p.describe())}" for p in pairs[:8]]
    lines += [f"⬇️ {escape(s_)} {escape(sym)} → {v.value}: {escape(why)}" for s_, sym, v, why in model.demotions]
    return "\n".join(lines)


def _head(reason: str) -> str:
    """A reason without its particulars: the text before its first colon."""
    return reason.split(":", maxsplit=1)[0].strip()


def drift_text(rows: Sequence[DriftRow], controls: Mapping[tuple[str, str], PairControl]) -> str:
    """The /drift table: every pair's verdict with its numbers, shadow outcomes apart, and disabled pairs."""
    if not rows:
        return "<b>Drift</b>: no baselines yet. Run <code>tradebot validate</code> to make them."
    lines = ["<b>Drift</b> (live vs baseline; shadow = rejected/expired signals, had they been taken)"]
    for row in rows:
        state = "" if row.control is None or row.control.state is PairState.ENABLED else f" · {row.control.state.value}"
        lines.append(f"<b>{row.report.severity.name}</b> {escape(row.label)}{state}: {escape(row.report.summary())}")
        if row.shadow is not None:
            lines.append(f"    shadow: {row.shadow.severity.name} {escape(row.shadow.summary())}")
    off = [c for c in controls.values() if c.state is not PairState.ENABLED]
    if off:
        lines.append(
            "Turned off: " + "; ".join(f"{escape(c.strategy)} {escape(c.symbol)} ({c.state.value})" for c in off)
        )
    return "\n".join(lines)


def enable_buttons(controls: Mapping[tuple[str, str], PairControl]) -> list[list[list[str]]]:
    """One Enable button per disabled or demoted pair."""
    return [
        [[f"Enable {c.strategy} on {c.symbol}", Callback(Action.ENABLE, control_id=c.control_id).encode()]]
        for c in controls.values()
        if c.state is not PairState.ENABLED
    ]
