"""`tradebot validate` and `tradebot backtest`: the gate and single backtests from the command line."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import as_completed
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

from bot.cli.codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from bot.cli.zones import STRATEGY as ZONE_STRATEGY
from bot.cli.zones import run_zone_backtest, validate_zones
from bot.config import ConfigError, Settings, config_path, strategy_params
from bot.config.file import adopt_pair_params, restore
from bot.ops.database import open_store
from bot.ops.executors import make_executor
from bot.services.configure import backtest_config, cache_dir, traded_systems
from bot.services.scan import unknown_names
from bot.services.systems import TradedSystem
from bot.services.validate import (
    GateOutcome,
    WorkerSpec,
    backtest_rates,
    evaluate_task,
    gate_jobs,
    load_bars,
    run_job,
    walk_forward_config,
)
from data.market.csv_provider import write_bar_csv
from data.market.providers import provider_from_source
from engine.backtest import BacktestResult, backtest
from engine.bars import from_nanos
from engine.calibration import CalibrationModel, fit_calibration
from engine.domain import Instrument, Interval
from engine.indicators import MarketContext
from engine.learning import Outcome
from engine.metrics import calibration
from engine.performance import WIN_R
from engine.ports import ProviderError
from engine.results import BacktestTrade
from engine.score_weights import compare_weights
from engine.strategy import REGISTRY, Strategy
from engine.systems import BaselineStats, Estimate, PairValidation, SystemSpec, ValidationStatus
from engine.walkforward import WalkForwardReport, walk_forward


def progress_bar(label: str, stream: Any = sys.stderr) -> Callable[[int, int], None]:
    """An overall progress bar with the elapsed time and an ETA (tqdm on a terminal; on stderr, so --json output
    stays clean). A log file gets a line at each quarter with the ETA, not a carriage-return storm."""
    interactive = bool(getattr(stream, "isatty", lambda: False)())
    shown: set[int] = set()
    started = time.monotonic()
    bar: Any = None

    def show(done: int, total: int) -> None:
        nonlocal bar
        if interactive:
            if bar is None:
                from tqdm import tqdm  # noqa: PLC0415 - only a terminal shows the bar

                bar = tqdm(total=total, desc=label, unit="task", file=stream, dynamic_ncols=True)
            bar.update(done - bar.n)
            if done >= total:
                bar.close()
            return
        quarter = 4 * done // max(total, 1)
        if quarter in shown:
            return
        shown.add(quarter)
        elapsed = time.monotonic() - started
        eta = "" if done == 0 or done >= total else f", about {elapsed * (total - done) / done:.0f} s left"
        stream.write(f"{label}: {done}/{total} tasks in {elapsed:.0f} s{eta}\n")
        stream.flush()

    return show


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


def _fmt(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else format(value, pattern)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns under a header and a rule."""
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def _interval(e: Estimate | None, pattern: str) -> str:
    return "n/a" if e is None else f"{format(e.value, pattern)} ({format(e.low, pattern)}..{format(e.high, pattern)})"


def gate_table(outcomes: Sequence[GateOutcome]) -> str:
    """Every validated system: its parameters' id, out-of-sample figures with 90 % intervals, the score's edge and
    the verdict with every failed criterion."""
    headers = (
        *("strategy", "symbol", "params", "oos trades", "win rate", "exp R", "PF", "Sharpe", "max DD"),
        *("WR oos/is", "score rho (p)", "result"),
    )
    rows = []
    for o in outcomes:
        r = o.report
        figures = BaselineStats.of(r.oos_r, WIN_R)
        score = r.score
        rows.append(
            (
                o.job.spec.strategy,
                o.job.spec.symbol,
                o.job.spec.params_id,
                str(r.oos.trades),
                _interval(figures.win_rate, ".0%"),
                _interval(figures.expectancy_r, "+.2f"),
                _fmt(r.oos.profit_factor, ".2f"),
                _fmt(r.sharpe, ".2f"),
                f"{r.max_drawdown:.0%}",
                _fmt(r.win_rate_ratio, ".0%"),
                "n/a" if score.rho is None else f"{score.rho:+.2f} ({score.p_value:.2f})",
                "PASS" if r.passed else "FAIL: " + "; ".join(r.failures),
            )
        )
    return table(headers, rows)


def validate_systems(
    settings: Settings,
    systems: Sequence[TradedSystem],
    *,
    data_source: str,
    end: datetime,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[GateOutcome], list[str]]:
    """Run the gate on each system (on the configured executor); the outcomes and the systems that could not run."""
    jobs = gate_jobs(settings, systems, data_source=data_source, end=end)
    found: dict[int, GateOutcome] = {}
    failures: list[str] = []
    with make_executor(settings.backtest.executor, settings.backtest.workers) as executor:
        futures = {executor.submit(run_job, job): k for k, job in enumerate(jobs)}
        for done, future in enumerate(as_completed(futures), start=1):
            k = futures[future]
            try:
                found[k] = future.result()
            except (ValueError, ProviderError) as exc:
                failures.append(f"{jobs[k].label}: {exc}")
            if progress is not None:
                progress(done, len(jobs))
    return [found[k] for k in sorted(found)], failures


def chosen_systems(
    settings: Settings, strategies: Sequence[str] | None, symbols: Sequence[str] | None
) -> list[TradedSystem]:
    """The traded systems, restricted to the given strategies and symbols."""
    return [
        t
        for t in traded_systems(settings)
        if (strategies is None or t.spec.strategy in strategies) and (symbols is None or t.spec.symbol in symbols)
    ]


def run_validate(
    settings: Settings,
    *,
    strategies: Sequence[str] | None,
    symbols: Sequence[str] | None,
    data_source: str | None,
    as_json: bool,
    save: bool,
    until: datetime | None = None,
) -> int:
    """Validate every traded system with the parameters it trades on data up to `until` (default now); print the
    table; store the baselines."""
    source = data_source or settings.data_source
    if strategies is not None and ZONE_STRATEGY in strategies:
        return validate_zones(settings, strategies, source, until or datetime.now(UTC), as_json, prepare_data)
    known = ({i.symbol for i in settings.instruments}, {s.name for s, _ in settings.traded_pairs()})
    why = unknown_names(*known, symbols, strategies)  # before any calendar or data is loaded: a typo is told at once
    if why is not None:
        print(f"tradebot validate: {why}", file=sys.stderr)
        return EXIT_USAGE
    systems = chosen_systems(settings, strategies, symbols)
    if not systems:
        print("tradebot validate: no enabled strategy applies to the chosen symbols", file=sys.stderr)
        return EXIT_USAGE
    show = None if as_json else progress_bar(f"validating {len(systems)} systems")
    end = until or datetime.now(UTC)
    outcomes, failures = validate_systems(settings, systems, data_source=source, end=end, progress=show)
    if save and outcomes:
        asyncio.run(_save(settings, outcomes))
    if as_json:
        print(json.dumps([outcome_json(o) for o in outcomes] + [{"error": f} for f in failures], indent=2))
    else:
        print(gate_table(outcomes))
        for failure in failures:
            print(f"could not validate {failure}")
        passed = sum(o.report.passed for o in outcomes)
        saved = " (baselines saved)" if save else ""
        print(f"\n{passed} of {len(outcomes)} traded systems passed{saved}")
        print("Unvalidated systems are offered with a warning in manual mode and never executed automatically.")
        print("\n" + score_weights_text(outcomes))
    return EXIT_OK if any(o.report.passed for o in outcomes) else EXIT_FAILED


def score_weights_text(outcomes: Sequence[GateOutcome]) -> str:
    """Per strategy, on its systems' out-of-sample trades pooled: the hand weights' held-out rank correlation with
    R beside weights learned on the earlier trades (the latest 30 % by exit are held out)."""
    pooled: dict[str, list[Outcome]] = {}
    for o in outcomes:
        pooled.setdefault(o.job.spec.strategy, []).extend(
            Outcome.from_backtest(t) for t in o.report.oos_trades if t.score is not None
        )
    lines = ["quality score, hand weights against learned weights (out-of-sample trades pooled per strategy):"]
    for strategy, found in sorted(pooled.items()):
        compared = compare_weights(found, strategy)
        lines.append(f"  {compared if isinstance(compared, str) else compared.verdict()}")
    return "\n".join(lines)


async def _save(settings: Settings, outcomes: Sequence[GateOutcome]) -> None:
    async with await open_store(settings) as store:
        for outcome in outcomes:
            await store.save_baseline(outcome.baseline)


def outcome_json(o: GateOutcome) -> dict[str, Any]:
    """One validated system for machines: what it is, its figures with their intervals, the verdict."""
    r, spec = o.report, o.job.spec
    figures = BaselineStats.of(r.oos_r, WIN_R)
    stats = PairValidation(ValidationStatus.VALIDATED, "", stats=figures, score=r.score).to_json()
    return {
        "strategy": spec.strategy,
        "symbol": spec.symbol,
        "interval": spec.interval.value,
        "passed": r.passed,
        "reasons": list(r.failures),
        "fingerprint": spec.fingerprint,
        "params_id": spec.params_id,
        "params": dict(spec.params),
        "tuned_until": None if spec.tuned_until is None else spec.tuned_until.isoformat(),
        "data_from": r.data_from.isoformat(),
        "data_to": r.data_to.isoformat(),
        "oos_from": r.oos_from.isoformat(),
        "win_rate": stats["win_rate"],
        "expectancy_r": stats["expectancy_r"],
        "score": r.score.to_json() | {"has_edge": r.score.has_edge, "text": r.score.text()},
        "metrics": r.metrics(),
        "periods": [
            {
                "from": p.start.isoformat(),
                "to": p.end.isoformat(),
                "trades": p.stats.trades,
                "win_rate": p.stats.win_rate,
                "expectancy_r": p.stats.expectancy_r,
            }
            for p in r.periods
        ],
    }


def run_optimise(
    settings: Settings,
    *,
    strategy: str,
    symbol: str,
    data_source: str | None,
    adopt: bool,
    as_json: bool,
    reload: Callable[[], Settings],
) -> int:
    """Search parameters by walk-forward; propose the set chosen on the first training window; adopt it on request.

    The report shows each fold's choice measured on its test window (the optimisation procedure out of sample,
    which is what "optimise, then trade" would have made) and what the gate would measure for the proposal and
    for the parameters traded now, both on the same out-of-sample span. Adopting writes the proposal into the
    config file with `tuned_until`, re-runs the gate for the new system and stores its baseline; the running bot
    trades the new parameters after a restart.
    """
    source = data_source or settings.data_source
    current = next((t for t in traded_systems(settings) if t.spec.pair == (strategy, symbol)), None)
    if current is None:
        known = ", ".join(f"{t.spec.strategy} {t.spec.symbol}" for t in traded_systems(settings))
        print(f"tradebot optimise: {strategy} does not trade {symbol}; traded: {known}", file=sys.stderr)
        return EXIT_USAGE
    end = datetime.now(UTC)
    wf = walk_forward_config(settings, current.strategy.warmup)
    with (
        tempfile.TemporaryDirectory() as tmp,
        make_executor(settings.backtest.executor, settings.backtest.workers) as executor,
    ):
        try:
            data_dir = prepare_data(settings, [current.instrument], source, Path(tmp))
            bars = load_bars(data_dir, current.instrument, current.calendar)
        except (ProviderError, ValueError) as exc:
            print(f"tradebot optimise: {exc}", file=sys.stderr)
            return EXIT_FAILED
        config = backtest_config(settings, backtest_rates(settings, source, [current.instrument], end))
        spec = WorkerSpec(data_dir, current.instrument, current.calendar, strategy, settings.engine_config(), config)
        sets = wf.parameter_sets(type(current.strategy.params).search_space(), current.strategy.params)
        show = None if as_json else progress_bar(f"optimising {strategy} {symbol} ({len(bars)} bars)")
        report = walk_forward(len(bars), wf, sets, partial(evaluate_task, spec), executor, progress=show)
    first = report.folds[0]
    if first.chosen is None:
        print(
            f"tradebot optimise: no parameter set made {wf.min_train_trades} trades on the first training window; "
            "nothing to propose",
            file=sys.stderr,
        )
        return EXIT_FAILED
    proposal = {k: v for k, v in first.chosen.items() if v != getattr(current.strategy.params, k)}
    tuned_until = bars.bar_time(first.test.start)
    proposed = REGISTRY[strategy](strategy_params(strategy, {**_plain_params(current.strategy), **proposal}))
    candidate = replace(current, strategy=proposed, spec=replace_params(current.spec, proposed, tuned_until))
    now_traded = replace(current, spec=replace_params(current.spec, current.strategy, tuned_until))
    previews, failures = validate_systems(settings, [candidate, now_traded], data_source=source, end=end)
    if failures:
        print(f"tradebot optimise: {'; '.join(failures)}", file=sys.stderr)
        return EXIT_FAILED
    adopted: str | None = None
    if adopt:
        adopted = _adopt(settings, strategy, symbol, proposal, tuned_until, reload, source, end)
        if adopted is None:
            return EXIT_FAILED
    if as_json:
        print(json.dumps(_optimise_json(report, proposal, tuned_until, previews, adopted), indent=2, default=str))
    else:
        print(_optimise_text(report, proposal, tuned_until, previews, adopted))
    return EXIT_OK


def _plain_params(strategy: Strategy[Any]) -> dict[str, Any]:
    return {name: getattr(strategy.params, name) for name in type(strategy.params).names()}


def replace_params(spec: SystemSpec, strategy: Strategy[Any], tuned_until: datetime) -> SystemSpec:
    """`spec` with the strategy's parameters and the end of the data they were tuned on."""
    return replace(spec, params=_plain_params(strategy), tuned_until=tuned_until)


def _adopt(
    settings: Settings,
    strategy: str,
    symbol: str,
    proposal: dict[str, Any],
    tuned_until: datetime,
    reload: Callable[[], Settings],
    source: str,
    end: datetime,
) -> str | None:
    """Write the proposal into the config file, check the file still loads, validate the new system, save it."""
    path = config_path()
    try:
        before = adopt_pair_params(path, strategy, symbol, proposal, tuned_until)
    except (OSError, ValueError) as exc:
        print(f"tradebot optimise: cannot write {path}: {exc}", file=sys.stderr)
        return None
    try:
        fresh = reload()
    except ConfigError as exc:
        restore(path, before)
        print(f"tradebot optimise: the adopted parameters do not load ({exc}); {path} is unchanged", file=sys.stderr)
        return None
    [system] = [t for t in traded_systems(fresh) if t.spec.pair == (strategy, symbol)]
    outcomes, failures = validate_systems(fresh, [system], data_source=source, end=end)
    if failures:
        print(f"tradebot optimise: adopted, but the gate could not run: {'; '.join(failures)}", file=sys.stderr)
        return str(path)
    asyncio.run(_save(fresh, outcomes))
    return str(path)


def _optimise_text(
    report: WalkForwardReport,
    proposal: dict[str, Any],
    tuned_until: datetime,
    previews: Sequence[GateOutcome],
    adopted: str | None,
) -> str:
    rows = [
        (
            str(f.fold),
            f"[{f.train.start}, {f.train.end})",
            f"[{f.test.start}, {f.test.end})",
            "skipped" if f.skipped else f"{f.eligible}/{len(f.train_scores)}",
            _fmt(None if f.in_sample is None else f.in_sample.expectancy_r, "+.2f"),
            str(0 if f.out_of_sample is None else f.out_of_sample.trades),
            _fmt(None if f.out_of_sample is None else f.out_of_sample.expectancy_r, "+.2f"),
        )
        for f in report.folds
    ]
    oos = report.oos
    changes = ", ".join(f"{k}={v}" for k, v in sorted(proposal.items())) or "none: the parameters traded now won"
    lines = [
        table(("fold", "train bars", "test bars", "eligible", "IS exp R", "OOS trades", "OOS exp R"), rows),
        "",
        f"optimising and trading each fold's choice, out of sample: {oos.trades} trades, profit factor "
        f"{_fmt(oos.profit_factor, '.2f')}, expectancy {_fmt(oos.expectancy_r, '+.2f')}R "
        "(what re-optimising would have made; not a figure of any one parameter set)",
        f"proposal, chosen on the first training window (data until {tuned_until:%Y-%m-%d %H:%MZ}): {changes}",
        "",
        "the gate on the same out-of-sample span (first row: the proposal; second: the parameters traded now):",
        gate_table(previews),
    ]
    if adopted is not None:
        lines += ["", f"adopted into {adopted} (tuned_until {tuned_until.isoformat()}) and validated; restart the bot"]
    else:
        lines += ["", "nothing changed: --adopt writes the proposal into the config file and validates it"]
    return "\n".join(lines)


def _optimise_json(
    report: WalkForwardReport,
    proposal: dict[str, Any],
    tuned_until: datetime,
    previews: Sequence[GateOutcome],
    adopted: str | None,
) -> dict[str, Any]:
    return {
        "folds": [
            {
                "fold": f.fold,
                "train": [f.train.start, f.train.end],
                "test": [f.test.start, f.test.end],
                "chosen": dict(f.chosen) if f.chosen is not None else None,
                "in_sample_expectancy_r": f.in_sample.expectancy_r if f.in_sample else None,
                "oos_trades": f.out_of_sample.trades if f.out_of_sample else 0,
                "oos_expectancy_r": f.out_of_sample.expectancy_r if f.out_of_sample else None,
            }
            for f in report.folds
        ],
        "procedure_oos": {
            "trades": report.oos.trades,
            "profit_factor": report.oos.profit_factor,
            "expectancy_r": report.oos.expectancy_r,
        },
        "proposal": proposal,
        "tuned_until": tuned_until.isoformat(),
        "proposal_gate": outcome_json(previews[0]),
        "current_gate": outcome_json(previews[1]),
        "adopted_into": adopted,
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
    if strategy == ZONE_STRATEGY:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                data_dir = prepare_data(settings, [instrument], data_source or settings.data_source, Path(tmp))
            except (ProviderError, ValueError) as exc:
                print(f"tradebot backtest: {exc}", file=sys.stderr)
                return EXIT_FAILED
            return run_zone_backtest(
                settings, instrument, start=start, end=end, data_dir=data_dir, params=params, as_json=as_json
            )
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
        from bot.telegram.plots import equity_png, reliability_png  # noqa: PLC0415 - matplotlib is slow to import

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
        "risk_budget": str(t.budget_risk),  # money sized to be lost at the stop, expected costs included
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
