"""One real-data backtest per strategy family, with costs on, checked trade by trade against the bars.

Invariants: no entry on a signal bar (entry at the next bar's open, after the signal bar closed); every exit
at or after the entry bar, reported at its bar's close; fills never better than the mid level they came from
and never worse than the costs allow; sizes within the risk budget of the equity at the time and as large as
it allows; P&L and R equal to what prices, size and fees give; positions one at a time; intraday exchange
positions closed by the bell; metrics and equity curve consistent with the trades.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from engine.backtest import SKIP_WARMUP, BacktestConfig, BacktestResult, backtest
from engine.costs import BPS, CostModel
from engine.domain import AssetClass, Side
from engine.indicators import MarketContext
from engine.pipeline import EngineConfig
from engine.strategy import build_strategy
from engine.trade_book import SKIP_IN_POSITION
from engine.trading import ExitReason, TradeKind
from tests.support import shared_context

SLIPPAGE_BPS = Decimal("1")
COMMISSION_BPS = Decimal("0.5")
SLIPPAGE_ATR = 0.02
CONFIG = BacktestConfig(
    costs=CostModel(slippage_bps=SLIPPAGE_BPS, commission_bps=COMMISSION_BPS),
    slippage_atr=SLIPPAGE_ATR,
)
CAPS = {AssetClass.FX: Decimal(30), AssetClass.ETF: Decimal(1), AssetClass.EQUITY: Decimal(1)}  # x equity
FAMILIES = [
    ("trend_pullback", "EURUSD", 30),
    ("pattern_reversal", "SPY", 30),
    ("defining_order", "RELIANCE", 20),
]


@pytest.fixture(scope="module", params=FAMILIES, ids=[f"{n}-{s}" for n, s, _ in FAMILIES])
def run(request: pytest.FixtureRequest, market_dir: Path) -> tuple[MarketContext, BacktestResult, int]:
    del market_dir
    name, symbol, minimum = request.param
    ctx = shared_context(symbol)
    return ctx, backtest(ctx, build_strategy(name), EngineConfig(), CONFIG), minimum


def test_it_trades(run: tuple[MarketContext, BacktestResult, int]) -> None:
    _, result, minimum = run
    assert len(result.trades) >= minimum
    assert result.metrics.trades == len(result.trades)
    assert {bt.trade.kind for bt in result.trades} == {TradeKind.BACKTEST}
    assert all(bt.score is not None for bt in result.trades)


def test_entries_are_at_the_open_after_the_signal_bar(run: tuple[MarketContext, BacktestResult, int]) -> None:
    ctx, result, _ = run
    bars, tick = ctx.bars, ctx.instrument.tick_size
    for bt in (*result.trades, *result.open_trades):
        t, i, j = bt.trade, bt.signal_index, bt.entry_index
        assert j == i + 1, f"{t.trade_id}: entered on bar {j}, signal bar {i}"
        assert bt.setup.bar_time == bars.bar_time(i)
        assert t.entry_time == bars.bar_time(j) >= bt.setup.bar_time + bars.interval.delta
        mid = Decimal(repr(float(bars.open[j])))
        worst = _cost_allowance(ctx, mid, i)
        if t.side is Side.LONG:
            assert mid <= t.entry_price <= mid + worst, f"{t.trade_id}: bought at {t.entry_price}, open {mid}"
        else:
            assert mid - worst <= t.entry_price <= mid, f"{t.trade_id}: sold at {t.entry_price}, open {mid}"
        assert t.entry_price % tick == 0


def test_exits_follow_the_bars(run: tuple[MarketContext, BacktestResult, int]) -> None:
    ctx, result, _ = run
    bars, tick = ctx.bars, ctx.instrument.tick_size
    for bt in result.trades:
        t, k = bt.trade, bt.exit_index
        assert k is not None and k >= bt.entry_index
        assert t.exit_time == bars.bar_time(k) + bars.interval.delta
        assert t.exit_price is not None and t.exit_reason is not None
        sign = t.side.sign
        o, h, lo, c = (Decimal(repr(float(a[k]))) for a in (bars.open, bars.high, bars.low, bars.close))
        if t.exit_reason is ExitReason.STOP:
            level = o if sign * (o - t.stop) <= 0 else t.stop
            assert (lo if sign > 0 else h) * sign <= t.stop * sign, f"{t.trade_id}: stop not reached on bar {k}"
        elif t.exit_reason is ExitReason.TARGET:
            level = o if sign * (o - t.target) >= 0 else t.target
            assert (h if sign > 0 else lo) * sign >= t.target * sign, f"{t.trade_id}: target not reached on bar {k}"
        else:
            level = c
        # Nothing before the exit bar touched either level (from the entry bar on).
        window = slice(bt.entry_index, k)
        if sign > 0:
            assert np.all(bars.low[window] > float(t.stop)) and np.all(bars.high[window] < float(t.target))
        else:
            assert np.all(bars.high[window] < float(t.stop)) and np.all(bars.low[window] > float(t.target))
        worst = _cost_allowance(ctx, level, k - 1)
        if sign > 0:  # a long sells: never above the level (beyond rounding it to the tick), at most costs below
            assert level - worst <= t.exit_price <= level + tick, f"{t.trade_id}: sold at {t.exit_price}, {level}"
        else:  # a short buys back: never below the level, at most costs above
            assert level - tick <= t.exit_price <= level + worst, f"{t.trade_id}: bought at {t.exit_price}, {level}"
        assert t.exit_price % tick == 0


def test_pnl_r_and_size_follow_from_prices_fees_and_the_budget(run: tuple[MarketContext, BacktestResult, int]) -> None:
    ctx, result, _ = run
    instrument = ctx.instrument
    equity = CONFIG.equity
    realised: list[tuple[int, Decimal]] = []
    for bt in result.trades:
        t = bt.trade
        assert t.exit_price is not None
        units = t.quantity * t.contract_size
        for price, fees in ((t.entry_price, t.entry_fees), (t.exit_price, t.exit_fees)):
            expected = (price * units * COMMISSION_BPS / BPS).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
            assert fees == expected
        pnl = (t.exit_price - t.entry_price) * t.side.sign * units - t.entry_fees - t.exit_fees
        assert t.pnl == pnl
        risk = abs(t.entry_price - t.stop) * units
        assert t.pnl_r == (pnl / risk).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
        if t.exit_reason is ExitReason.STOP:
            assert pnl < 0
        if t.exit_reason is ExitReason.TARGET:
            assert pnl > 0
        # Size, as the desk sizes: the loss at the stop from the setup's entry plus the round trip's expected costs
        # (the whole spread, slippage and commission on entry and stop) within 1% of the equity realised before
        # entry, and one more lot would exceed it, unless the notional cap of the instrument's class stopped it.
        before = equity + sum((p for k, p in realised if k < bt.entry_index), Decimal(0))
        budget = before * CONFIG.risk_fraction
        entry = bt.setup.entry
        per_unit = abs(entry - t.stop) + instrument.spread + (SLIPPAGE_BPS + COMMISSION_BPS) * (entry + t.stop) / BPS
        planned = per_unit * units
        one_lot = per_unit * instrument.lot_size * t.contract_size
        cap = before * CAPS[instrument.asset_class]
        lot_notional = entry * instrument.lot_size * t.contract_size
        capped = (units / instrument.lot_size / t.contract_size + 1) * lot_notional > cap
        assert planned <= budget and entry * units <= cap, f"{t.trade_id}: risk {planned} vs budget {budget}"
        assert capped or budget < planned + one_lot, f"{t.trade_id}: {planned} + one lot would fit {budget}"
        assert bt.budget_risk == planned.quantize(Decimal("0.01"))
        assert t.quantity % instrument.lot_size == 0
        realised.append((bt.exit_index or 0, pnl))


def test_one_position_at_a_time_and_intraday_exchange_positions_close_by_the_bell(
    run: tuple[MarketContext, BacktestResult, int],
) -> None:
    ctx, result, _ = run
    trades = sorted(result.trades, key=lambda bt: bt.entry_index)
    for earlier, later in pairwise(trades):
        assert earlier.exit_index is not None and later.signal_index >= earlier.exit_index
    if ctx.instrument.calendar in ("XNSE", "XNYS"):
        day = ctx.session_day
        for bt in trades:
            assert bt.exit_index is not None and day[bt.exit_index] == day[bt.entry_index]


def test_metrics_and_equity_curve_agree_with_the_trades(run: tuple[MarketContext, BacktestResult, int]) -> None:
    _, result, _ = run
    m, curve = result.metrics, result.equity
    net = sum((bt.trade.pnl or Decimal(0) for bt in result.trades), Decimal(0))
    assert m.net_pnl == net
    assert curve.realized[-1] == pytest.approx(float(CONFIG.equity + net), abs=1e-6)
    if not result.open_trades:
        assert m.final_equity == pytest.approx(float(CONFIG.equity + net), abs=1e-6)
    assert m.win_rate is not None and 0 <= m.win_rate <= 1
    assert m.max_drawdown is not None and m.max_drawdown > 0  # every one of these runs has losing stretches
    lowest = float(np.min(curve.equity))
    assert m.max_drawdown >= (float(CONFIG.equity) - lowest) / float(CONFIG.equity) - 1e-12
    assert 0 < (m.exposure or 0) < 1
    assert m.wins + m.losses + m.breakevens == m.trades
    if m.sharpe is not None:
        assert np.isfinite(m.sharpe)
    skips = dict(result.skips)
    unvalidated = skips.get(SKIP_WARMUP, 0) + skips.get(SKIP_IN_POSITION, 0)
    assert result.signals == unvalidated + len(result.setups) + result.rejections


def _cost_allowance(ctx: MarketContext, mid: Decimal, atr_bar: int) -> Decimal:
    """The most a fill may be worse than its mid: half spread, slippage bps, ATR slippage, rounding ticks."""
    instrument = ctx.instrument
    atr = Decimal(repr(float(ctx.ind.atr(14)[atr_bar])))
    slip = (mid + instrument.spread) * SLIPPAGE_BPS / BPS
    return instrument.spread / 2 + slip + atr * Decimal(repr(SLIPPAGE_ATR)) + 3 * instrument.tick_size
