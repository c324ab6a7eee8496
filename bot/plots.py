"""Pictures a trader would rather look at than read: equity curve and drawdown of a backtest."""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np

from engine.backtest import BacktestResult


def equity_png(result: BacktestResult, path: Path) -> Path:
    """Write a PNG with the equity curve (trades marked) above the drawdown from the running peak."""
    curve = result.equity
    times = (curve.time.astype("datetime64[ns]")).astype("datetime64[ms]").astype(object)
    equity = np.asarray(curve.equity, dtype=float)
    peak = np.maximum.accumulate(equity)
    drawdown = np.where(peak > 0, equity / peak - 1.0, 0.0)
    m = result.metrics
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True, height_ratios=(3, 1))
    top.plot(times, equity, color="#1f6feb", linewidth=1.2, label="equity (marked to market)")
    top.axhline(float(m.initial_equity), color="#888888", linewidth=0.8, linestyle="--", label="start")
    pf = "n/a" if m.profit_factor is None else f"{float(m.profit_factor):.2f}"
    exp = "n/a" if m.expectancy_r is None else f"{float(m.expectancy_r):+.2f}R"
    dd = "n/a" if m.max_drawdown is None else f"{m.max_drawdown:.1%}"
    top.set_title(
        f"{result.strategy} · {result.symbol} {result.interval.value} · {m.trades} trades · PF {pf} · "
        f"expectancy {exp} · max DD {dd}"
    )
    top.set_ylabel("equity")
    top.legend(loc="upper left")
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
