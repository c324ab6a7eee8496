"""A backtest through the columns and whole ticks gives what the scalar path gives, to the digit, on real data."""

from __future__ import annotations

from collections import Counter
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest

import engine.backtest as backtest_module
from engine.backtest import BacktestConfig, BacktestResult, backtest, equity_curve
from engine.columns import Entry
from engine.costs import CostModel, exit_fill_price
from engine.domain import Side
from engine.exposure import ExposureClass, ExposureLimits
from engine.indicators import MarketContext
from engine.metrics import compute_metrics
from engine.performance import summarize
from engine.pipeline import EngineConfig, ValidationRules
from engine.sizing import RateHistory, Sizing, TickSizer
from engine.strategy import REGISTRY, strategy_names
from engine.trade_book import TradeBook
from tests.support import shared_context

COSTS = CostModel(slippage_bps=Decimal(1), commission_bps=Decimal("2.5"), commission_per_order=Decimal("0.5"))
CONFIGS = {
    "plain": (BacktestConfig(), EngineConfig()),
    "costed": (BacktestConfig(costs=COSTS, slippage_atr=0.05, equity=Decimal(2500)), EngineConfig()),
    "strict rules, unscored, held 40 bars": (
        BacktestConfig(score_setups=False, max_hold_bars=40, costs=CostModel(slippage_bps=Decimal("0.5"))),
        EngineConfig(min_score=0.0, rules=ValidationRules(min_stop_ticks=3, min_stop_spreads=2.5, max_age_bars=2)),
    ),
    "overlapping, capped": (
        BacktestConfig(
            one_position_per_symbol=False,
            sizing=Sizing(exposure=ExposureLimits(dict.fromkeys(ExposureClass, Decimal("0.7")), {}, Decimal("1.5"))),
        ),
        EngineConfig(),
    ),
    "a USD account, tiny": (
        BacktestConfig(
            equity=Decimal(40),
            sizing=Sizing(account_currency="USD"),
            rates=RateHistory(fixed={"USDINR": Decimal("83.1")}),
            costs=CostModel(commission_per_order=Decimal("0.3")),
        ),
        EngineConfig(),
    ),
}


def scalar_closing_fill(book: TradeBook, level: float, side: Side) -> Decimal:
    instrument = book.instrument
    return exit_fill_price(instrument.price(level, ROUND_HALF_EVEN), side, book.config.costs, instrument)


def everything(result: BacktestResult) -> tuple[Any, ...]:
    trades = [
        (t.trade, t.setup, t.score, t.signal_index, t.entry_index, t.exit_index, t.entry_hour, t.entry_weekday)
        for t in (*result.trades, *result.open_trades)
    ]
    money = [
        (t.currency, t.budget_risk, t.initial_risk, t.notional, t.account_pnl, t.entry_rate)
        for t in (*result.trades, *result.open_trades)
    ]
    curve = (result.equity.equity.tolist(), result.equity.realized.tolist(), result.equity.in_position.tolist())
    counts = (result.scores, result.rejection_reasons, result.skips, result.metrics)
    return repr(trades), repr(money), repr(result.setups), counts, curve


HELD = (
    "entry_index",
    "exit_index",
    "trade_id",
    "r",
    "money",
    "fees",
    "entry_rate",
    "entry_hour",
    "entry_weekday",
    "symbol",
    "quality",
    "sign",
    "units",
    "entry_price",
    "entry_fees",
)


REPORTED = (
    "trades",
    "wins",
    "losses",
    "breakevens",
    "win_rate",
    "profit_factor",
    "expectancy_r",
    "average_win_r",
    "average_loss_r",
    "net_pnl",
)


def assert_measured_as_built(result: BacktestResult, ctx: MarketContext, config: BacktestConfig) -> None:
    """The records the metrics and the curve read say what the built trades say, and measure the same."""
    for trades in (result.trades, result.open_trades):
        for record, built in zip(trades.records, trades, strict=True):
            assert repr([getattr(record, f) for f in HELD]) == repr([getattr(built, f) for f in HELD])
            assert repr(record.pnl) == repr(built.trade.pnl)  # what validation's walk-forward reads
    assert repr(compute_metrics(tuple(result.trades), result.equity)) == repr(result.metrics)
    money = {t.trade_id: t.money for t in result.trades}
    shown = summarize((t.trade for t in result.trades), lambda trade: money[trade.trade_id] or Decimal(0))
    assert [getattr(shown, f) for f in REPORTED] == [getattr(result.metrics, f) for f in REPORTED]  # as /report
    held = sorted([*result.trades, *result.open_trades], key=lambda t: t.entry_index)
    curve = equity_curve(ctx, held, config.equity, start=0, stop=len(result.equity))
    for name in ("equity", "realized", "in_position"):
        assert getattr(curve, name).tolist() == getattr(result.equity, name).tolist(), name


@pytest.mark.parametrize(
    ("symbol", "interval"), [("EURUSD", "1h"), ("XAUUSD", "1h"), ("RELIANCE", "5m"), ("BTCUSDT", "1h")]
)
def test_every_strategy_and_configuration_backtests_as_the_scalar_path_does(
    symbol: str, interval: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = shared_context(symbol, interval)
    runs = 0
    decided = Counter[str]()  # what the fast paths decided, so the comparison is not of the scalar path with itself
    offer, sized = TradeBook.offer, TickSizer.size

    def counted_offer(self: TradeBook, *args: Any) -> None:
        if len(args) > 3 and args[3] is not None and args[3][0] == Entry.FILL:
            decided["entries"] += 1
        offer(self, *args)

    def counted_size(self: TickSizer, *args: Any) -> tuple[Decimal, Decimal, Decimal]:
        decided["sizes"] += 1
        return sized(self, *args)

    monkeypatch.setattr(TradeBook, "offer", counted_offer)
    monkeypatch.setattr(TickSizer, "size", counted_size)
    for name in strategy_names():
        strategy = REGISTRY[name]()
        if not strategy.applies_to(ctx.instrument):
            continue
        for label, (config, engine) in CONFIGS.items():
            fast = backtest(ctx, strategy, engine, config)
            with monkeypatch.context() as scalar:
                scalar.setattr(backtest_module, "candidate_columns", lambda *_, **__: None)
                scalar.setattr(TickSizer, "of", classmethod(lambda *_: None))
                scalar.setattr(TradeBook, "_closing_fill", scalar_closing_fill)
                slow = backtest(ctx, strategy, engine, config)
            assert everything(fast) == everything(slow), (name, label)
            assert_measured_as_built(fast, ctx, config)
            runs += 1 if fast.trades else 0
    assert runs >= 8  # strategies that traded here, in each configuration
    assert decided["entries"] >= 100 and decided["sizes"] >= 100, decided
