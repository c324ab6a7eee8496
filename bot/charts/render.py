"""Draw a `ChartSpec` as a PNG with mplfinance: candles, indicator lines, labelled levels, the signal bar marked.

Sized for a phone (Telegram shows photos about 1280 px wide): large fonts, prices labelled at the right edge, the
legend above the plot (never over the candles), the exchange's local time on the axis. Imported only by the chart
worker process.
"""

from __future__ import annotations

import io

import matplotlib as mpl

mpl.use("Agg")

import matplotlib.pyplot as plt
import mplfinance as mpf
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter

from bot.charts.spec import ChartSpec, LevelKind

LEVEL_COLOURS = {
    LevelKind.ENTRY: "#1f6feb",
    LevelKind.STOP: "#d1242f",
    LevelKind.TARGET: "#1a7f37",
    LevelKind.POSITION: "#8250df",
    LevelKind.ZONE: "#bf8700",
}
LINE_COLOURS = ("#fb8500", "#6f42c1", "#0a9396", "#ae2012", "#3a86ff")
STYLE = mpf.make_mpf_style(
    base_mpf_style="yahoo",
    gridstyle=":",
    y_on_right=True,
    rc={"font.size": 13, "axes.labelsize": 13, "font.weight": "normal"},
)
FIGSIZE = (11.0, 8.0)
DPI = 120
# zlib's fastest level: ~15 ms less a chart than PIL's default (6), for a file ~18 % larger (~150 kB; Telegram takes
# photos up to 10 MB)
PNG_COMPRESS_LEVEL = 1
MARGIN = 0.06  # of the price range, above and below everything drawn


def render_png(spec: ChartSpec) -> bytes:
    """Return the PNG bytes of the chart."""
    local = pd.DatetimeIndex(spec.time.astype("datetime64[ns]"), tz="UTC").tz_convert(spec.timezone)
    frame = pd.DataFrame(
        {"Open": spec.open, "High": spec.high, "Low": spec.low, "Close": spec.close},
        index=local.tz_localize(None),
    )
    low, high = _limits(spec)
    extra = []
    for k, (label, values) in enumerate(spec.overlays):
        shown = bool(((values >= low) & (values <= high)).any())
        extra.append(
            mpf.make_addplot(
                values,
                color=LINE_COLOURS[k % len(LINE_COLOURS)],
                width=1.6,
                label=label if shown else f"{label} (off the chart)",
            )
        )
    if spec.marked is not None:
        span = float(np.nanmax(spec.high) - np.nanmin(spec.low))
        at = spec.marked
        marker = np.full(len(frame), np.nan)
        marker[at] = spec.low[at] - 0.025 * span if spec.marked_long else spec.high[at] + 0.025 * span
        extra.append(
            mpf.make_addplot(
                marker, type="scatter", marker="^" if spec.marked_long else "v", markersize=180, color="#111111"
            )
        )
    options: dict[str, object] = {}  # mplfinance refuses None for these: given only when there is something
    if extra:
        options["addplot"] = extra
    if spec.levels:
        colours = [LEVEL_COLOURS[lv.kind] for lv in spec.levels]
        options["hlines"] = {
            "hlines": [lv.price for lv in spec.levels],
            "colors": colours,
            "linestyle": "--",
            "linewidths": 1.4,
        }
    fig, axes = mpf.plot(
        frame,
        type="candle",
        style=STYLE,
        figsize=FIGSIZE,
        datetime_format="%d %b\n%H:%M",
        xrotation=0,
        returnfig=True,
        warn_too_much_data=10_000,
        ylim=(low, high),
        scale_padding={"left": 0.3, "right": 1.25, "top": 0.9, "bottom": 1.0},
        **options,
    )
    ax = axes[0]
    ax.set_ylabel("")
    ax.set_xlabel(f"{spec.timezone} time", fontsize=12)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:{spec.price_format}}"))
    fig.suptitle(spec.title, fontsize=17, fontweight="bold", x=0.02, ha="left", y=0.985)
    for lv in spec.levels:
        ax.annotate(
            f"{lv.label} {lv.price:{spec.price_format}}",
            xy=(0.0, lv.price),
            xycoords=("axes fraction", "data"),
            xytext=(4, 3),
            textcoords="offset points",
            ha="left",
            va="bottom",
            fontsize=12,
            color=LEVEL_COLOURS[lv.kind],
            fontweight="bold",
            bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none", "pad": 1},
        )
    if spec.overlays:
        ax.legend(
            loc="lower left",
            bbox_to_anchor=(0.0, 1.0),
            ncol=min(len(spec.overlays), 3),
            fontsize=11,
            frameon=False,
            borderaxespad=0.2,
        )
    if spec.footer:
        fig.text(0.01, 0.008, spec.footer, fontsize=11, color="#444444", ha="left", va="bottom")
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI, pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL})
    plt.close(fig)
    return out.getvalue()


def _limits(spec: ChartSpec) -> tuple[float, float]:
    """Price limits showing every candle and level with a margin."""
    prices = [float(np.nanmin(spec.low)), float(np.nanmax(spec.high)), *(lv.price for lv in spec.levels)]
    low, high = min(prices), max(prices)
    pad = (high - low) * MARGIN or high * 0.001
    return low - pad, high + pad
