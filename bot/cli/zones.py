"""`tradebot backtest --strategy weekly_zones`: the NIFTY weekly-zone system's own backtest and report."""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from bot.cli.codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from bot.config import Settings
from bot.services.validate import load_bars
from engine.domain import Instrument, Interval
from engine.gate import GateCriteria
from engine.options import MODELLED
from engine.performance import WIN_R
from engine.ports import ProviderError
from engine.session_hours import session_hours
from engine.systems import BaselineStats
from engine.zone_backtest import ZoneBacktest, zone_backtest, zone_verdict

STRATEGY: Final = "weekly_zones"
PARAMS: Final = frozenset({"lots", "wednesday_exit", "cost_per_lot_leg"})


def zone_options(params: dict[str, str]) -> dict[str, Any]:
    """The backtest's options from `--params`: lots, wednesday_exit, cost_per_lot_leg (INR)."""
    unknown = set(params) - PARAMS
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(sorted(unknown))} for {STRATEGY}; allowed: {', '.join(sorted(PARAMS))}"
        )
    options: dict[str, Any] = {}
    if "lots" in params:
        lots = params["lots"]
        if not lots.isdigit() or int(lots) < 1:
            raise ValueError(f"lots must be a whole number of at least 1, was {lots!r}")
        options["lots"] = int(lots)
    if "wednesday_exit" in params:
        flag = params["wednesday_exit"].lower()
        if flag not in {"true", "false"}:
            raise ValueError(f"wednesday_exit must be true or false, was {params['wednesday_exit']!r}")
        options["wednesday_exit"] = flag == "true"
    if "cost_per_lot_leg" in params:
        try:
            cost = Decimal(params["cost_per_lot_leg"])
        except ArithmeticError:
            cost = Decimal(-1)
        if not cost.is_finite() or cost < 0:
            raise ValueError(
                f"cost_per_lot_leg must be a non-negative amount in INR, was {params['cost_per_lot_leg']!r}"
            )
        options["cost_per_lot_leg"] = cost
    return options


def run_zone_backtest(
    settings: Settings,
    instrument: Instrument,
    *,
    start: datetime | None,
    end: datetime | None,
    data_dir: Path | str,
    params: dict[str, str],
    as_json: bool,
) -> int:
    """Backtest the weekly zones on NSE-aligned hourly bars; print the trades and both results."""
    if instrument.interval is not Interval.H1 or instrument.calendar != "XNSE":
        print(
            f"tradebot backtest: {STRATEGY} trades NSE hourly bars (--interval 1h on an XNSE symbol)", file=sys.stderr
        )
        return EXIT_USAGE
    try:
        options = zone_options(params)
    except ValueError as exc:
        print(f"tradebot backtest: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        bars = load_bars(str(data_dir), instrument, settings.calendar(instrument.calendar))
        if end is not None:
            bars = bars.visible_at(end)
        hours = session_hours(bars)
    except (ProviderError, ValueError) as exc:
        print(f"tradebot backtest: {exc}", file=sys.stderr)
        return EXIT_FAILED
    start_ns = None if start is None else int(start.timestamp() * 1e9)
    result = zone_backtest(hours, start_ns=start_ns, **options)
    print(json.dumps(zone_json(result, instrument, options), indent=2) if as_json else zone_text(result, instrument))
    return EXIT_OK


def zone_json(result: ZoneBacktest, instrument: Instrument, options: dict[str, Any]) -> dict[str, Any]:
    stats = result.stats
    pnl = result.modelled_pnl
    return {
        "strategy": STRATEGY,
        "symbol": instrument.symbol,
        "interval": Interval.H1.value,
        "params": {k: str(v) for k, v in options.items()},
        "trades": [t.to_json() for t in result.trades],
        "metrics": {
            "trades": stats.trades,
            "open_trades": len(result.trades) - len(result.closed),
            "by_rule": result.by_rule(),
            "not_stopped": result.spec_wins,
            "points": round(result.points, 2),
            "win_rate": stats.win_rate,
            "profit_factor": stats.profit_factor,
            "expectancy_r": stats.expectancy_r,
            "total_r": stats.total_r,
        },
        MODELLED: {
            "note": "spread P&L from modelled option prices (Black-Scholes at realised volatility), not quotes",
            "spread_pnl_inr": None if pnl is None else str(pnl),
        },
    }


def zone_text(result: ZoneBacktest, instrument: Instrument) -> str:
    stats = result.stats
    lines = [f"{STRATEGY} on {instrument.symbol} 1h: {len(result.trades)} signals {result.by_rule()}"]
    for t in result.trades:
        exit_text = (
            "open"
            if t.exit_reason is None
            else f"{t.exit_reason} {t.exit_price:,.2f} ({t.points:+,.2f} pts, {t.r:+.2f}R)"
        )
        spread = f" · {t.spread.main.label} / {t.spread.hedge.label}" if t.spread else ""
        model = f" · modelled spread {t.modelled.pnl:+,} INR" if t.modelled else ""
        lines.append(
            f"  {t.entry_time:%Y-%m-%d %H:%M}Z {t.rule} {t.side} entry {t.signal.entry:,.2f} stop {t.signal.stop:,.2f}"
            f" → {exit_text}{spread}{model}"
        )
    wr = "n/a" if stats.win_rate is None else f"{stats.win_rate:.0%}"
    exp = "n/a" if stats.expectancy_r is None else f"{stats.expectancy_r:+.2f}R"
    pnl = result.modelled_pnl
    lines.append(
        f"underlying: {stats.trades} closed, not stopped {result.spec_wins}, {result.points:+,.2f} points, "
        f"win rate (R >= +0.05) {wr}, expectancy {exp}"
    )
    lines.append(f"spread P&L (modelled): {'n/a' if pnl is None else f'{pnl:+,} INR'}")
    return "\n".join(lines)


def validate_zones(
    settings: Settings,
    strategies: Sequence[str],
    source: str,
    end: datetime,
    as_json: bool,
    prepare: Callable[[Settings, Sequence[Instrument], str, Path], str],
) -> int:
    """`tradebot validate --strategies weekly_zones`: the zone system alone, on the source's NIFTY hourly bars."""
    if len(strategies) > 1:
        print(f"tradebot validate: validate {STRATEGY} on its own", file=sys.stderr)
        return EXIT_USAGE
    found = [i for i in settings.instruments if i.symbol == settings.weekly_zones.symbol]
    if not found:
        print(f"tradebot validate: {STRATEGY} needs {settings.weekly_zones.symbol} in the watchlist", file=sys.stderr)
        return EXIT_USAGE
    with tempfile.TemporaryDirectory() as tmp:
        try:
            data_dir = prepare(settings, [replace(found[0], interval=Interval.H1)], source, Path(tmp))
        except (ProviderError, ValueError) as exc:
            print(f"tradebot validate: {exc}", file=sys.stderr)
            return EXIT_FAILED
        return run_zone_validate(settings, data_dir, end, as_json)


def run_zone_validate(settings: Settings, data_dir: Path | str, end: datetime, as_json: bool) -> int:
    """The gate's criteria on the zone system's whole history (its rules are fixed: nothing is tuned here)."""
    symbol = settings.weekly_zones.symbol
    found = [i for i in settings.instruments if i.symbol == symbol]
    if not found:
        print(f"tradebot validate: {STRATEGY} needs {symbol} in the watchlist", file=sys.stderr)
        return EXIT_USAGE
    instrument = replace(found[0], interval=Interval.H1)
    try:
        bars = load_bars(str(data_dir), instrument, settings.calendar(instrument.calendar)).visible_at(end)
        hours = session_hours(bars)
    except (ProviderError, ValueError) as exc:
        print(f"tradebot validate: {STRATEGY}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if len(hours) == 0:
        print(f"tradebot validate: {STRATEGY}: no {symbol} hourly bars", file=sys.stderr)
        return EXIT_FAILED
    result = zone_backtest(hours, lots=settings.weekly_zones.lots, wednesday_exit=settings.weekly_zones.wednesday_exit)
    criteria = GateCriteria(**settings.backtest.gate.model_dump())
    start, stop = hours.bars.bar_time(0), hours.close_time(len(hours) - 1)
    verdict = zone_verdict(result, start, stop, criteria, float(settings.bot.risk_per_trade))
    figures = BaselineStats.of([t.r for t in result.closed if t.r is not None], WIN_R)
    if as_json:
        out = {
            "strategy": STRATEGY,
            "symbol": symbol,
            "passed": verdict.passed,
            "failures": list(verdict.failures),
            "trades": verdict.stats.trades,
            "expectancy_r": verdict.stats.expectancy_r,
            "profit_factor": verdict.stats.profit_factor,
            "sharpe": verdict.sharpe,
            "max_drawdown": verdict.max_drawdown,
            "win_rate": {"first_half": verdict.first_half_win_rate, "second_half": verdict.second_half_win_rate},
            "figures": figures.text(),
            "note": "rules fixed by the spec: no parameter was tuned on this data; index R, not the spread's money",
        }
        print(json.dumps(out, indent=2))
    else:
        state = "PASS" if verdict.passed else "FAIL: " + "; ".join(verdict.failures)
        sharpe = "n/a" if verdict.sharpe is None else f"{verdict.sharpe:.2f}"
        print(
            f"{STRATEGY} on {symbol} (index R; rules fixed by the spec, nothing tuned on this data): "
            f"{figures.text()} · Sharpe {sharpe} · max DD {verdict.max_drawdown:.1%} → {state}"
        )
        print("Not stored as a baseline: weekly-zone spreads are only ever offered for approval.")
    return EXIT_OK if verdict.passed else EXIT_FAILED
