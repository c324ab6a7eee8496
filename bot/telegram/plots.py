"""Pictures a trader would rather look at than read: equity curve and drawdown of a backtest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from engine.backtest import BacktestResult
from engine.calibration import CalibrationModel
from engine.domain import plural


def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only backend, imported when a picture is drawn (not when the bot starts)."""
    import matplotlib as mpl  # noqa: PLC0415

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def equity_png(result: BacktestResult, path: Path) -> Path:
    """Write a PNG with the equity curve (trades marked) above the drawdown from the running peak."""
    import matplotlib.dates as mdates  # noqa: PLC0415

    plt = _pyplot()
    curve = result.equity
    times = (curve.time.astype("datetime64[ns]")).astype("datetime64[ms]").astype(object)
    equity = np.asarray(curve.equity, dtype=float)
    peak = np.maximum.accumulate(equity)
    drawdown = np.where(peak > 0, equity / peak - 1.0, 0.0)
    m = result.metrics
    currency = next((t.currency for t in result.trades if t.currency), "")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True, height_ratios=(3, 1))
    top.plot(times, equity, color="#1f6feb", linewidth=1.2, label="equity (marked to market)")
    top.axhline(float(m.initial_equity), color="#888888", linewidth=0.8, linestyle="--", label="start")
    exits = [(t.trade.exit_time, t.trade.pnl or 0) for t in result.trades if t.trade.exit_time is not None]
    if exits:  # each closed trade on the curve at its exit: green a win, red a loss
        nanos = np.array([int(at.timestamp()) * 1_000_000_000 for at, _ in exits], dtype=np.int64)
        index = np.clip(np.searchsorted(curve.time, nanos, side="left"), 0, len(equity) - 1)
        at = nanos.astype("datetime64[ns]").astype("datetime64[ms]").astype(object)
        level = equity[index]
        won = np.array([pnl > 0 for _, pnl in exits])
        top.scatter(at[won], level[won], s=14, color="#1a7f37", zorder=3, label="winning trade (exit)")
        top.scatter(at[~won], level[~won], s=14, color="#d1242f", zorder=3, label="losing trade (exit)")
    pf = "n/a" if m.profit_factor is None else f"{float(m.profit_factor):.2f}"
    exp = "n/a" if m.expectancy_r is None else f"{float(m.expectancy_r):+.2f}R"
    dd = "n/a" if m.max_drawdown is None else f"{m.max_drawdown:.1%}"
    fig.suptitle(
        f"{result.strategy} · {result.symbol} {result.interval.value} · {plural(m.trades, 'trade')} · PF {pf} · "
        f"expectancy {exp} · max DD {dd}"
    )
    top.set_ylabel(f"equity ({currency})" if currency else "equity")
    top.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=4, frameon=False, fontsize=9)  # above, off the curve
    top.grid(alpha=0.3)
    bottom.fill_between(times, drawdown * 100, 0, color="#d1242f", alpha=0.35, step="post")
    bottom.set_ylabel("drawdown %")
    bottom.grid(alpha=0.3)
    locator = mdates.AutoDateLocator()  # type: ignore[no-untyped-call]
    bottom.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def reliability_png(model: CalibrationModel, path: Path, title: str) -> Path:
    """Write a PNG of predicted vs observed win rate per bin on the held-out trades, with the counts below."""
    plt = _pyplot()
    bins = model.bins
    predicted = np.array([b.mean_predicted for b in bins], dtype=float)
    observed = np.array([b.observed for b in bins], dtype=float)
    counts = np.array([b.n for b in bins], dtype=float)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 7.5), sharex=True, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], color="#888888", linewidth=0.8, linestyle="--", label="perfect calibration")
    top.axhline(
        model.base_rate, color="#d1242f", linewidth=0.9, linestyle=":", label=f"base rate {model.base_rate:.1%}"
    )
    top.plot(predicted, observed, color="#1f6feb", linewidth=1.0, alpha=0.6)
    top.scatter(
        predicted,
        observed,
        s=20 + 180 * counts / max(counts.max(), 1.0),
        color="#1f6feb",
        zorder=3,
        label="held-out bins (size = trades)",
    )
    for x, y, n in zip(predicted, observed, counts, strict=True):
        top.annotate(f"{int(n)}", (x, y), textcoords="offset points", xytext=(6, -10), fontsize=8, color="#444444")
    beats = "beats" if model.beats_base_rate else "does NOT beat"
    top.set_title(
        f"{title}\n{model.method} · Brier {model.brier:.4f} vs base rate {model.brier_base:.4f} ({beats}) · "
        f"{model.test_n:,} held-out trades",
        fontsize=10,
    )
    top.set_ylabel("observed win rate")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.legend(loc="upper left", fontsize=8)
    top.grid(alpha=0.3)
    bottom.bar(
        [b.lower for b in bins],
        counts,
        width=[b.upper - b.lower for b in bins],
        align="edge",
        color="#1f6feb",
        alpha=0.35,
        edgecolor="#1f6feb",
    )
    bottom.set_xlabel("predicted win probability")
    bottom.set_ylabel("trades")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
