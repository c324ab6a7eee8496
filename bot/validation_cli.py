"""`tradebot validate` and `tradebot backtest`: the gate and single backtests from the command line."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from bot.composition import backtest_config, cache_dir
from bot.config import Settings, strategy_params
from bot.executors import make_executor
from bot.rates import needed_pairs, rate_history
from bot.validate import GateCriteria, GateResult, WorkerSpec, load_bars, validate_pair
from data.csv_provider import write_bar_csv
from data.providers import provider_from_source
from data.store import SqliteStore
from engine.backtest import BacktestResult, BacktestTrade, backtest
from engine.bars import from_nanos
from engine.domain import Instrument, Interval
from engine.indicators import MarketContext
from engine.learning import CalibrationModel, Outcome, fit_calibration
from engine.metrics import calibration
from engine.ports import ProviderError
from engine.sizing import RateHistory
from engine.strategy import REGISTRY
from engine.walkforward import Objective, Search, WalkForwardConfig, WindowScheme

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def progress_bar(label: str, stream: Any = sys.stderr) -> Callable[[int, int], None]:
    """A one-line text progress bar for long walk-forwards (stderr, so --json output stays clean)."""

    interactive = bool(getattr(stream, "isatty", lambda: False)())
    shown: set[int] = set()

    def show(done: int, total: int) -> None:
        width = 30
        filled = int(width * done / max(total, 1))
        if interactive:
            stream.write(f"\r{label:<32} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
            if done >= total:
                stream.write("\n")
        else:  # a log file gets a line at each quarter, not a carriage-return storm
            quarter = 4 * done // max(total, 1)
            if quarter in shown:
                return
            shown.add(quarter)
            stream.write(f"{label}: {done}/{total} tasks\n")
        stream.flush()

    return show


def walk_forward_config(settings: Settings, warmup: int) -> WalkForwardConfig:
    t = settings.backtest
    return WalkForwardConfig(
        folds=t.folds,
        scheme=WindowScheme(t.scheme),
        train_fraction=t.train_fraction,
        warmup_bars=warmup,
        search=Search(t.search),
        candidates=t.candidates,
        seed=t.seed,
        objective=Objective(t.objective),
        min_train_trades=t.min_train_trades,
        risk_fraction=float(settings.bot.risk_per_trade),
    )


def prepare_data(settings: Settings, instruments: Sequence[Instrument], data_source: str, workdir: Path) -> str:
    """A folder of SYMBOL_INTERVAL.csv files the workers read: the CSV source itself, or a Yahoo download."""
    if data_source.startswith("csv:"):
        return data_source.removeprefix("csv:")
    provider = provider_from_source(data_source, cache_dir(settings))
    now = datetime.now(UTC)
    for instrument in instruments:
        frame = provider.fetch(instrument, now, settings.backtest.history_bars)
        write_bar_csv(frame, workdir / f"{instrument.symbol}_{instrument.interval.value}.csv")
    return str(workdir)


def backtest_rates(
    settings: Settings, data_source: str, instruments: Sequence[Instrument], end: datetime
) -> RateHistory:
    """The conversion prices backtests of `instruments` need into the account currency, over their history."""
    quotes = {w.symbol: w.quote_currency for w in settings.watchlist}
    pairs = needed_pairs(instruments, settings.bot.account_currency, quotes).values()
    provider = provider_from_source(data_source, cache_dir(settings)) if pairs else None
    return rate_history(provider, pairs, settings.bot.fx_rates, end, settings.backtest.history_bars)


def _fmt(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else format(value, pattern)


def gate_table(results: Sequence[GateResult]) -> str:
    headers = (
        "strategy",
        "symbol",
        "oos trades",
        "PF",
        "exp R",
        "Sharpe",
        "max DD",
        "WR oos/is",
        "MC DD p95",
        "result",
    )
    rows = []
    for r in results:
        oos, mc = r.report.oos, r.monte_carlo
        rows.append(
            (
                r.strategy,
                r.symbol,
                str(oos.trades),
                _fmt(oos.profit_factor, ".2f"),
                _fmt(oos.expectancy_r, "+.2f"),
                _fmt(r.sharpe, ".2f"),
                f"{r.report.oos_max_drawdown:.0%}",
                _fmt(r.report.win_rate_ratio, ".0%"),
                _fmt(None if mc.max_drawdown is None else mc.max_drawdown.p95, ".0%"),
                "PASS" if r.passed else "FAIL: " + "; ".join(r.reasons),
            )
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def run_validate(
    settings: Settings,
    *,
    strategies: Sequence[str] | None,
    symbols: Sequence[str] | None,
    data_source: str | None,
    as_json: bool,
    save: bool,
) -> int:
    """Validate every enabled strategy x instrument it applies to; print the table; store baselines."""
    source = data_source or settings.data_source
    pairs = []
    for strategy, allowed in settings.build_strategies():
        if strategies is not None and strategy.name not in strategies:
            continue
        for instrument in settings.instruments:
            if symbols is not None and instrument.symbol not in symbols:
                continue
            if strategy.applies_to(instrument) and (allowed is None or instrument.symbol in allowed):
                pairs.append((strategy, instrument))
    if not pairs:
        print("tradebot validate: no enabled strategy applies to the chosen symbols", file=sys.stderr)
        return EXIT_USAGE
    engine, config, criteria = (
        settings.engine_config(),
        backtest_config(settings),
        GateCriteria(**settings.backtest.gate.model_dump()),
    )
    results: list[GateResult] = []
    failures: list[str] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        make_executor(settings.backtest.executor, settings.backtest.workers) as executor,
    ):
        try:
            data_dir = prepare_data(settings, sorted({i for _, i in pairs}, key=lambda i: i.symbol), source, Path(tmp))
        except ProviderError as exc:
            print(f"tradebot validate: {exc}", file=sys.stderr)
            return EXIT_FAILED
        for strategy, instrument in pairs:
            calendar = settings.calendar(instrument.calendar)
            spec = WorkerSpec(data_dir, instrument, calendar, strategy.name, engine, config)
            try:
                bars = load_bars(data_dir, instrument, calendar)
                wf = walk_forward_config(settings, strategy.warmup)
                base = strategy_params(strategy.name, settings.strategies[strategy.name].params)
                sets = wf.parameter_sets(REGISTRY[strategy.name].params_type.search_space(), base)
                label = f"{strategy.name} {instrument.symbol} ({len(bars)} bars)"
                show = None if as_json else progress_bar(label)
                results.append(
                    validate_pair(
                        spec,
                        wf,
                        sets,
                        criteria,
                        executor,
                        mc_runs=settings.backtest.monte_carlo_runs,
                        ruin_drawdown=settings.backtest.ruin_drawdown,
                        progress=show,
                    )
                )
            except (ValueError, ProviderError) as exc:
                failures.append(f"{strategy.name} {instrument.symbol}: {exc}")
    if save and results:
        asyncio.run(_save(settings, results, source))
    if as_json:
        print(json.dumps([_result_json(r) for r in results] + [{"error": f} for f in failures], indent=2))
    else:
        print(gate_table(results))
        for failure in failures:
            print(f"could not validate {failure}")
        passed = sum(r.passed for r in results)
        print(
            f"\n{passed} of {len(results)} strategy x instrument pairs passed" + (" (baselines saved)" if save else "")
        )
    return EXIT_OK if any(r.passed for r in results) else EXIT_FAILED


async def _save(settings: Settings, results: Sequence[GateResult], source: str) -> None:
    now = datetime.now(UTC)
    async with await SqliteStore.open(settings.db_path) as store:
        for result in results:
            await store.save_baseline(result.baseline(source, now))


def _result_json(r: GateResult) -> dict[str, Any]:
    return {
        "strategy": r.strategy,
        "symbol": r.symbol,
        "interval": r.interval,
        "passed": r.passed,
        "reasons": list(r.reasons),
        "metrics": r.metrics(),
        "params": r.params,
        "data_from": r.data_from.isoformat(),
        "data_to": r.data_to.isoformat(),
        "folds": [
            {
                "fold": f.fold,
                "train": [f.train.start, f.train.end],
                "test": [f.test.start, f.test.end],
                "chosen": dict(f.chosen) if f.chosen is not None else None,
                "in_sample_trades": f.in_sample.trades if f.in_sample else 0,
                "in_sample_expectancy_r": f.in_sample.expectancy_r if f.in_sample else None,
                "oos_trades": f.out_of_sample.trades if f.out_of_sample else 0,
                "oos_expectancy_r": f.out_of_sample.expectancy_r if f.out_of_sample else None,
            }
            for f in r.report.folds
        ],
    }


def parse_params(text: str | None) -> dict[str, str]:
    """`k=v,k2=v2` into a dict (values are typed later by the strategy's parameter dataclass)."""
    if not text:
        return {}
    pairs = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in pairs if "=" not in p]
    if bad:
        raise ValueError(f"--params expects k=v pairs separated by commas, got {', '.join(bad)}")
    return {k.strip(): v.strip() for k, v in (p.split("=", 1) for p in pairs)}


def run_backtest(
    settings: Settings,
    *,
    strategy: str,
    symbol: str,
    interval: str | None,
    start: datetime | None,
    end: datetime | None,
    data_source: str | None,
    params: dict[str, str],
    as_json: bool,
    plot: Path | None,
) -> int:
    """One backtest over history: metrics table (or JSON) and optionally an equity/drawdown PNG."""
    instruments = {i.symbol: i for i in settings.instruments}
    if symbol not in instruments:
        print(
            f"tradebot backtest: unknown symbol {symbol}; watchlist: {', '.join(sorted(instruments))}", file=sys.stderr
        )
        return EXIT_USAGE
    instrument = instruments[symbol]
    if interval is not None:
        instrument = replace(instrument, interval=Interval(interval))
    try:
        if strategy not in REGISTRY:
            raise ValueError(f"unknown strategy {strategy!r}; known: {', '.join(sorted(REGISTRY))}")
        built = REGISTRY[strategy](strategy_params(strategy, params))
    except ValueError as exc:
        print(f"tradebot backtest: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not built.applies_to(instrument):
        print(f"tradebot backtest: {strategy} does not apply to {symbol} {instrument.interval}", file=sys.stderr)
        return EXIT_USAGE
    calendar = settings.calendar(instrument.calendar)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            data_dir = prepare_data(settings, [instrument], data_source or settings.data_source, Path(tmp))
            bars = load_bars(data_dir, instrument, calendar)
        except (ProviderError, ValueError) as exc:
            print(f"tradebot backtest: {exc}", file=sys.stderr)
            return EXIT_FAILED
    if end is not None:
        bars = bars.visible_at(end)
    first = 0 if start is None else int((bars.time < int(start.timestamp() * 1e9)).sum())
    last = from_nanos(int(bars.close_time[-1])) if len(bars) else datetime.now(UTC)
    rates = backtest_rates(settings, data_source or settings.data_source, [instrument], last)
    result = backtest(
        MarketContext(instrument, bars, calendar),
        built,
        settings.engine_config(),
        backtest_config(settings, rates),
        start=first,
    )
    learned = fit_calibration([Outcome.from_backtest(t) for t in result.trades if t.score is not None])
    if plot is not None:
        from bot.plots import equity_png, reliability_png  # noqa: PLC0415 - matplotlib is slow to import

        equity_png(result, plot)
        if isinstance(learned, CalibrationModel):
            curve = plot.with_name(f"{plot.stem}-reliability.png")
            reliability_png(learned, curve, f"{result.strategy} on {result.symbol}: score calibration, held out")
    if as_json:
        out = _backtest_json(result, instrument)
        out["learned_calibration"] = learned.to_json() if isinstance(learned, CalibrationModel) else learned
        print(json.dumps(out, indent=2))
    else:
        verdict = learned.verdict() if isinstance(learned, CalibrationModel) else learned
        print(f"{backtest_text(result)}\nlearned calibration: {verdict}")
    return EXIT_OK


def backtest_text(result: BacktestResult) -> str:
    """The metrics a trader reads first, then breakdowns, calibration and what was not traded."""
    m = result.metrics
    lines = [
        f"{result.strategy} on {result.symbol} {result.interval.value}: "
        f"{result.first_bar:%Y-%m-%d} .. {result.last_bar:%Y-%m-%d}"
        if result.first_bar and result.last_bar
        else "",
        f"signals {result.signals} · valid setups {len(result.setups)} · rejected {result.rejections} · "
        f"trades {m.trades} (+{len(result.open_trades)} open at the end)",
        f"win rate {_fmt(None if m.win_rate is None else float(m.win_rate), '.1%')} · profit factor "
        f"{_fmt(None if m.profit_factor is None else float(m.profit_factor), '.2f')} · expectancy "
        f"{_fmt(None if m.expectancy_r is None else float(m.expectancy_r), '+.2f')}R",
        f"net P&L {m.net_pnl:,.2f} (fees {m.fees:,.2f}) · return {_fmt(m.total_return, '.1%')} · "
        f"CAGR {_fmt(m.cagr, '.1%')}",
        f"Sharpe {_fmt(m.sharpe, '.2f')} · Sortino {_fmt(m.sortino, '.2f')} · max drawdown "
        f"{_fmt(m.max_drawdown, '.1%')} · exposure {_fmt(m.exposure, '.1%')}",
    ]
    report = calibration(result.trades)
    lines.append(f"calibration: {report.verdict}")
    if report.scored_trades:
        lines.append(
            "win rate by quality decile: "
            + ", ".join(
                f"D{row.decile} {_fmt(row.win_rate, '.0%')} (n={row.trades})" for row in report.deciles if row.trades
            )
        )
    if result.rejection_reasons:
        lines.append("top rejections: " + "; ".join(f"{r} ×{n}" for r, n in result.top_rejections(3)))
    if result.skips:
        lines.append("not traded: " + "; ".join(f"{r} ×{n}" for r, n in result.skips[:3]))
    return "\n".join(line for line in lines if line)


def _trade_json(t: BacktestTrade) -> dict[str, Any]:
    """One backtest trade: its levels, size, money in the account currency (risk, notional, P&L) and R."""
    trade = t.trade
    risk_r = (t.initial_risk / t.budget_risk).quantize(Decimal("0.01")) if t.budget_risk else None
    return {
        "signal_id": trade.signal_id,
        "side": trade.side.value,
        "signal_bar": t.setup.bar_time.isoformat(),
        "entry_time": trade.entry_time.isoformat(),
        "entry_price": str(trade.entry_price),
        "stop": str(trade.stop),
        "target": str(trade.target),
        "quantity": str(trade.quantity),
        "currency": t.currency,
        "risk_budget": str(t.budget_risk),  # money sized to be lost from the setup's entry to the stop
        "initial_risk": str(t.initial_risk),  # money lost from the actual fill to the stop, before fees
        "initial_risk_r": None if risk_r is None else str(risk_r),  # the fill's risk in R of the budget
        "notional": str(t.notional),
        "exit_time": trade.exit_time.isoformat() if trade.exit_time else None,
        "exit_price": str(trade.exit_price) if trade.exit_price is not None else None,
        "exit_reason": trade.exit_reason.value if trade.exit_reason else None,
        "fees": str(trade.fees),  # in the instrument's quote currency, like pnl_quote
        "pnl_quote": str(trade.pnl),
        "pnl": str(t.account_pnl),
        "pnl_r": str(trade.pnl_r),
        "quality": t.quality,
    }


def _backtest_json(result: BacktestResult, result_instrument: Instrument | None = None) -> dict[str, Any]:
    m = result.metrics

    def num(value: Decimal | float | None) -> float | None:
        return None if value is None else float(value)

    return {
        "strategy": result.strategy,
        "symbol": result.symbol,
        "interval": result.interval.value,
        "params": dict(result.params),
        "signals": result.signals,
        "setups": len(result.setups),
        "rejections": result.rejections,
        "currency": result.config.sizing.currency(result_instrument) if result_instrument else None,
        "trades": [_trade_json(t) for t in result.trades],
        "metrics": {
            "trades": m.trades,
            "win_rate": num(m.win_rate),
            "profit_factor": num(m.profit_factor),
            "expectancy_r": num(m.expectancy_r),
            "net_pnl": str(m.net_pnl),
            "sharpe": m.sharpe,
            "sortino": m.sortino,
            "max_drawdown": m.max_drawdown,
            "cagr": m.cagr,
            "exposure": m.exposure,
        },
    }
