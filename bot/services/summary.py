"""The daily summary message: the local day's trades, P&L and win rate, open positions, drift, protections."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from html import escape
from zoneinfo import ZoneInfo

from bot.services.drift_watch import DriftRow
from engine.controls import ALL_SYMBOLS, PairControl, PairState
from engine.drift import Severity
from engine.ports import SignalRecord
from engine.trading import Trade

SUMMARY_KEY = "summary.last_date"  # the local date of the last summary sent (bot_state)
TOP_REASONS = 4


def summary_day(now: datetime, at: time, timezone: str, last_sent: date | None) -> date | None:
    """The local date whose summary is due at `now` (its time `at` has passed and it was not sent), or None."""
    local = now.astimezone(ZoneInfo(timezone))
    if local.time() < at or last_sent == local.date():
        return None
    return local.date()


def day_start(day: date, timezone: str) -> datetime:
    """Local midnight of `day`, in UTC."""
    return datetime.combine(day, time(0), ZoneInfo(timezone)).astimezone(UTC)


@dataclass(frozen=True)
class DailySummary:
    """What the day held, in the account currency; built by the runtime from the store."""

    day: date
    timezone: str
    closed: Sequence[Trade]  # paper, live and reported trades closed since local midnight
    pnl: Decimal
    currency: str
    open_trades: Sequence[Trade]
    dropped: Sequence[SignalRecord]  # signals dropped since local midnight, each with its reason
    protections: Sequence[str]  # protections blocking entries now
    drift: Sequence[DriftRow]
    controls: Mapping[tuple[str, str], PairControl]

    def text(self) -> str:
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
        lines.append(self._drift_line())
        off = [
            f"{strategy} on {symbol} ({c.state.value})"
            for (strategy, symbol), c in sorted(self.controls.items())
            if c.state is not PairState.ENABLED
        ]
        if off:
            lines.append("turned off: " + escape(", ".join(off)))
        lines.append(
            "protections now: " + (escape("; ".join(self.protections)) if self.protections else "none blocking")
        )
        if self.dropped:
            reasons = Counter(_head(r.reason or "no reason") for r in self.dropped)
            top = "; ".join(f"{escape(reason)} ×{n}" for reason, n in reasons.most_common(TOP_REASONS))
            lines.append(f"signals dropped today: {len(self.dropped)} ({top})")
        else:
            lines.append("signals dropped today: none")
        return "\n".join(lines)

    def _drift_line(self) -> str:
        pairs = [r for r in self.drift if r.symbol != ALL_SYMBOLS]
        if not pairs:
            return "drift: no baselines to compare with"
        worst = max(pairs, key=lambda r: r.report.severity)
        counts = Counter(r.report.severity for r in pairs if r.report.severity > Severity.NONE)
        if not counts:
            return f"drift: all {len(pairs)} pair(s) in line with their baselines"
        by = ", ".join(f"{n} {sev.name}" for sev, n in sorted(counts.items(), reverse=True))
        return f"drift: {by} (worst {escape(worst.label)})"


def realised(trades: Sequence[Trade], to_account: Callable[[Trade], Decimal]) -> Decimal:
    return sum((to_account(t) for t in trades), Decimal(0))


def _head(reason: str) -> str:
    """A reason without its particulars: the text before its first colon."""
    return reason.split(":", maxsplit=1)[0].strip()
