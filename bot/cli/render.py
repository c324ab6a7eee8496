"""Render scan results for a terminal (plain table) and for machines (JSON)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.services.scan import ScanReport
from bot.services.systems import SystemBook
from engine.domain import Rejection, RejectionKind, ScoredSetup

_COLUMNS = ("symbol", "strategy", "side", "entry", "stop", "target", "R:R", "quality", "validation", "top reasons")


def _ts(value: datetime | None) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line.rstrip(), "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return out


def _setup_row(scored: ScoredSetup, systems: SystemBook, report: ScanReport) -> list[str]:
    s, q = scored.setup, scored.score
    top = "; ".join(c.reason for c in q.top(2))
    reasons = "; ".join(s.reasons[:2])
    validation = systems.validation(s.strategy, s.symbol, report.as_of)
    edge = "" if validation.score is not None and validation.score.has_edge else " (no edge)"
    return [
        s.symbol,
        s.strategy,
        s.side.value,
        str(s.entry),
        str(s.stop),
        str(s.target),
        str(s.reward_risk),
        f"{q.total:.1f}{edge}",
        validation.short().split(" ", 1)[1],
        f"{reasons} | {top}" if reasons else top,
    ]


def scan_text(report: ScanReport, systems: SystemBook, verbose: bool = False) -> str:
    """A readable summary: the setups table with each system's validation, and with `verbose` every rejection and
    data note."""
    head = (
        f"run {report.run_id if report.run_id is not None else '-'} as of {_ts(report.as_of)} "
        f"on {report.data_source}: {len(report.symbols)} symbols, {report.evaluated} evaluated, "
        f"{len(report.setups)} setups"
    )
    lines = [head, ""]
    if report.setups:
        lines += _table([_setup_row(s, systems, report) for s in report.setups], _COLUMNS)
    else:
        lines.append("no setups")
    symbol_rejections = [r for r in report.rejections if r.kind is RejectionKind.SYMBOL]
    setup_rejections = [r for r in report.rejections if r.kind is RejectionKind.SETUP]
    if report.errors:
        lines += ["", "errors:"] + [f"  {e}" for e in report.errors]
    if verbose:
        lines += ["", f"rejected symbols ({len(symbol_rejections)}):"]
        lines += [f"  {r.symbol}{' ' + r.strategy if r.strategy else ''}: {r.reason}" for r in symbol_rejections]
        lines += ["", f"rejected setups ({len(setup_rejections)}):"]
        lines += [f"  {r.symbol} {r.strategy} {_ts(r.bar_time)}: {r.reason}" for r in setup_rejections]
        notes = [(o.symbol, n) for o in report.outcomes for n in o.notes]
        if notes:
            lines += ["", "data notes:"] + [f"  {sym}: {note}" for sym, note in notes]
    elif symbol_rejections or setup_rejections:
        lines += [
            "",
            f"{len(symbol_rejections)} symbol and {len(setup_rejections)} setup rejections (--verbose shows why)",
        ]
    return "\n".join(lines)


def _setup_json(scored: ScoredSetup, systems: SystemBook, report: ScanReport) -> dict[str, Any]:
    s, q = scored.setup, scored.score
    spec = systems.specs.get((s.strategy, s.symbol))
    system: dict[str, Any] | None = None
    if spec is not None:
        tuned = None if spec.tuned_until is None else _ts(spec.tuned_until)
        system = {"fingerprint": spec.fingerprint, "params_id": spec.params_id, "params": dict(spec.params)}
        system |= {"tuned_until": tuned, "code": spec.code}
    return {
        "signal_id": s.signal_id,
        "symbol": s.symbol,
        "strategy": s.strategy,
        "side": s.side.value,
        "timeframe": s.timeframe.value,
        "bar_time": _ts(s.bar_time),
        "entry": str(s.entry),
        "stop": str(s.stop),
        "targets": [str(t) for t in s.targets],
        "reward_risk": str(s.reward_risk),
        "quality": q.total,
        "components": [
            {"name": c.name, "value": c.value, "weight": c.weight, "reason": c.reason} for c in q.components
        ],
        "reasons": list(s.reasons),
        "system": system,
        "validation": systems.validation(s.strategy, s.symbol, report.as_of).to_json(),
    }


def _rejection_json(r: Rejection) -> dict[str, Any]:
    return {
        "symbol": r.symbol,
        "strategy": r.strategy,
        "bar_time": _ts(r.bar_time),
        "reason": r.reason,
        "detail": dict(r.detail),
    }


def scan_json(report: ScanReport, systems: SystemBook) -> str:
    """The whole run as JSON, each setup with its system (parameters, fingerprint) and the baseline it trades under;
    prices as decimal strings, times as ISO-8601 UTC."""
    payload = {
        "run_id": report.run_id,
        "as_of": _ts(report.as_of),
        "data_source": report.data_source,
        "symbols": list(report.symbols),
        "strategies": list(report.strategies),
        "evaluated": report.evaluated,
        "setups": [_setup_json(s, systems, report) for s in report.setups],
        "rejected_setups": [_rejection_json(r) for r in report.rejections if r.kind is RejectionKind.SETUP],
        "rejected_symbols": [_rejection_json(r) for r in report.rejections if r.kind is RejectionKind.SYMBOL],
        "errors": list(report.errors),
        "notes": {o.symbol: list(o.notes) for o in report.outcomes if o.notes},
    }
    return json.dumps(payload, indent=2)
