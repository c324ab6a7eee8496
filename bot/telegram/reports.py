"""The reporting commands' messages: monospace tables narrow enough for a phone (no wrapping at 40 columns)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from html import escape

from bot.services.reporting import CountReport
from bot.services.reports import BalanceRow, PerformanceRow, Period, PeriodRow, ProfitReport
from engine.audit import AuditEvent
from engine.domain import plural
from engine.trading import Trade

PHONE_COLUMNS = 40

DEFAULT_TRADES = 10  # closed trades `/trades` and `tradebot report --trades` list unless told
PERIOD_TITLES = {Period.DAY: "Daily", Period.WEEK: "Weekly", Period.MONTH: "Monthly"}


def money(value: Decimal | None, signed: bool = True) -> str:
    if value is None:
        return "n/a"
    return f"{value:+,.2f}" if signed else f"{value:,.2f}"


def percent(value: Decimal | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def r_value(value: Decimal | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}R"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A <pre> table: the first `left` columns left-aligned, the others right-aligned, widths by content."""
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [c.ljust(w) if k < left else c.rjust(w) for k, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return " ".join(parts).rstrip()

    rule = "-" * min(sum(widths) + len(widths) - 1, PHONE_COLUMNS)
    head = [line(headers), rule] if any(headers) else []  # a key-value list needs no header
    lines = [*head, *(line(r) for r in rows)]
    return "<pre>" + escape("\n".join(lines)) + "</pre>"


def profit_text(report: ProfitReport) -> str:
    s, cur = report.closed, escape(report.currency)
    if s.trades == 0 and report.open_positions == 0:
        return "<b>Profit</b>: no trades yet."
    since = "" if report.first_trade is None else f" since {report.first_trade:%Y-%m-%d}"
    lines = [f"<b>Profit</b> ({cur}{since})"]
    rows = [
        ["closed P&L", money(s.net_pnl)],
        ["closed trades", str(s.trades)],
        ["win rate", percent(s.win_rate)],
        ["expectancy", r_value(s.expectancy_r)],
        ["total", r_value(s.total_r)],
        ["profit factor", "n/a" if s.profit_factor is None else f"{s.profit_factor:.2f}"],
        ["max drawdown", "n/a" if report.max_drawdown is None else f"{report.max_drawdown:.1%}"],
        ["open positions", str(report.open_positions)],
        ["open P&L", "n/a" if report.open_pnl is None else money(report.open_pnl)],
    ]
    lines.append(table(["", ""], rows))
    if s.best is not None and s.worst is not None:
        lines.append(f"best {_trade_brief(s.best)} · worst {_trade_brief(s.worst)}")
    if report.unpriced:
        lines.append(f"open P&L unknown: no price for {plural(len(report.unpriced), 'position')} now")
    if s.trades and s.trades < 30:
        lines.append(f"⚠️ {plural(s.trades, 'closed trade')}: too few to judge the edge (30 or more).")
    return "\n".join(lines)


def _trade_brief(trade: Trade) -> str:
    r = trade.pnl_r
    return f"{escape(trade.symbol)} {r_value(r)}"


def periods_text(rows: Sequence[PeriodRow], title: str, currency: str) -> str:
    body = [[r.label, str(r.trades), str(r.wins), money(r.pnl)] for r in rows]
    total = sum((r.pnl for r in rows), Decimal(0))
    head = f"<b>{escape(title)}</b> P&amp;L in {escape(currency)} (by exit, UTC), newest first"
    return "\n".join([head, table(["period", "trades", "wins", "P&L"], body), f"total {money(total)}"])


def performance_text(pairs: Sequence[PerformanceRow], strategies: Sequence[PerformanceRow], currency: str) -> str:
    """Per strategy (best net first): its symbols with their validation status, then the strategy overall."""
    if not pairs:
        return "<b>Performance</b>: no closed trades yet."
    lines = [f"<b>Performance</b> per strategy and symbol ({escape(currency)}, net of costs)"]
    for strategy in strategies:
        mine = [p for p in pairs if p.name.split(" ", 1)[0] == strategy.name]
        rows = [_performance_cells(p.name.split(" ", 1)[1], p) for p in mine]
        rows.append(_performance_cells("all", strategy))
        lines.append(f"<b>{escape(strategy.name)}</b>")
        lines.append(table(["symbol", "n", "win", "exp", "net"], rows))
        lines.append(
            "validation: " + "; ".join(f"{escape(p.name.split(' ', 1)[1])} {escape(p.validation)}" for p in mine)
        )
    return "\n".join(lines)


def _performance_cells(label: str, row: PerformanceRow) -> list[str]:
    return [label, str(row.trades), percent(row.win_rate), r_value(row.expectancy_r), money(row.net)]


def trades_text(rows: Sequence[tuple[Trade, Decimal]], currency: str) -> str:
    if not rows:
        return "<b>Trades</b>: no closed trades yet."
    body = []
    for trade, pnl in rows:
        assert trade.exit_time is not None and trade.exit_reason is not None
        body.append(
            [
                f"{trade.exit_time:%m-%d}",
                f"{trade.symbol} {'L' if trade.side.sign > 0 else 'S'}",
                trade.exit_reason.value,
                r_value(trade.pnl_r),
                money(pnl),
            ]
        )
    head = f"<b>Last {plural(len(rows), 'closed trade')}</b> ({escape(currency)}, exit date UTC)"
    return head + "\n" + table(["exit", "trade", "why", "R", "P&L"], body, left=3)


def balance_text(rows: Sequence[BalanceRow]) -> str:
    lines = ["<b>Balance</b> per broker account: equity = start + the bot's closed P&amp;L (outside trades apart)"]
    for row in rows:
        exposure = "unknown (no conversion rate)" if row.exposure is None else f"{money(row.exposure, False)}"
        leverage = "n/a" if row.leverage is None else f"{row.leverage:.2f}x"
        lines.append(f"<b>{escape(row.account)}</b> ({escape(row.currency)})")
        lines.append(
            table(
                ["", ""],
                [
                    ["start", money(row.start, False)],
                    ["equity", money(row.equity, False)],
                    ["open positions", str(row.open_positions)],
                    ["open notional", exposure],
                    ["leverage", leverage],
                ],
            )
        )
    return "\n".join(lines)


def count_text(report: CountReport) -> str:
    per_day = "no limit" if report.max_per_day is None else str(report.max_per_day)
    rows = [
        ["open", f"{report.open_positions} / {report.max_open}"],
        ["entries today", f"{report.trades_today} / {per_day}"],
    ]
    rows += [[f"  {symbol}", str(n)] for symbol, n in sorted(report.by_symbol.items())]
    return "<b>Count</b> (open positions and today's entries against their limits)\n" + table(["", ""], rows)


def audit_text(events: Sequence[AuditEvent], names: dict[str, str]) -> str:
    if not events:
        return "<b>Audit trail</b>: empty."
    lines = [f"<b>Audit trail</b>, newest {plural(len(events), 'event')} (UTC)"]
    for e in events:
        who = names.get(e.actor, e.actor)
        lines.append(
            f"<code>{e.at:%m-%d %H:%M:%S}</code> {escape(e.kind.value)} · {escape(who)} · "
            f"<code>{escape(e.subject)}</code> {escape(e.detail)}"
        )
    return "\n".join(lines)


def logs_text(lines: Sequence[str], count: int) -> str:
    if not lines:
        return "No warnings or errors logged since the bot started."
    head = f"<b>Last {plural(len(lines), 'warning or error', 'warnings and errors')}</b> (of at most {count}, redacted)"
    return head + "\n" + "\n".join(f"<code>{escape(line)}</code>" for line in lines)


def version_text(version: str, started: datetime | None, extra: Sequence[str]) -> str:
    since = "" if started is None else f", running since {started:%Y-%m-%d %H:%M} UTC"
    return f"<b>tradebot {escape(version)}</b>{since}\n" + "\n".join(escape(x) for x in extra)
