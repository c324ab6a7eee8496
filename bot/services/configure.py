"""Settings into engine and service configurations: pure, shared by the bootstrap, the CLI and the services that
build backtests (the learner, the gate jobs)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.services.scan import BarRules, WatchItem
from bot.services.systems import SystemBook, TradedSystem, system_spec
from engine.backtest import BacktestConfig
from engine.costs import CostModel
from engine.routing import Account, Market
from engine.sizing import RateHistory, Sizing
from engine.strategy import Strategy


def watchlist(settings: Settings) -> list[WatchItem]:
    """Each configured instrument with the enabled strategies that apply to it, each with its pair's parameters."""
    runs: dict[str, list[Strategy[Any]]] = {i.symbol: [] for i in settings.instruments}
    for strategy, instrument in settings.traded_pairs():
        runs[instrument.symbol].append(strategy)
    return [WatchItem(i, settings.calendar(i.calendar), tuple(runs[i.symbol])) for i in settings.instruments]


def traded_systems(settings: Settings, items: Sequence[WatchItem] | None = None) -> list[TradedSystem]:
    """Every system the bot trades (strategy, parameters, instrument, rules, code), in watchlist order."""
    engine, config = settings.engine_config(), backtest_config(settings)
    return [
        TradedSystem(
            strategy,
            item.instrument,
            item.calendar,
            system_spec(
                strategy,
                item.instrument,
                item.calendar,
                engine,
                config,
                settings.tuned_until(strategy.name, item.instrument.symbol),
            ),
        )
        for item in (items if items is not None else watchlist(settings))
        for strategy in item.strategies
    ]


def system_book(settings: Settings, items: Sequence[WatchItem] | None = None) -> SystemBook:
    """The traded systems with the gate's shelf life; `refresh` it from the store before asking."""
    return SystemBook((t.spec for t in traded_systems(settings, items)), max_age=baseline_max_age(settings))


def baseline_max_age(settings: Settings) -> timedelta:
    return timedelta(days=settings.backtest.baseline_max_age_days)


def cost_model(settings: Settings) -> CostModel:
    """The fill costs of paper fills, backtests and the live monitor, from `[bot.costs]`."""
    c = settings.bot.costs
    return CostModel(c.slippage_bps, c.commission_bps, c.commission_per_order)


def sizing(settings: Settings) -> Sizing:
    """How the desk and the backtester size orders: `[bot]` risk and account currency, the watchlist's limits."""
    b = settings.bot
    return Sizing(
        risk_fraction=b.risk_per_trade,
        account_currency=b.account_currency,
        quote_currencies={w.symbol: w.quote_currency for w in settings.watchlist if w.quote_currency},
        limits={w.symbol: w.size_limits() for w in settings.watchlist},
        exposure=b.exposure.limits({w.symbol: w.max_leverage for w in settings.watchlist if w.max_leverage}),
    )


def accounts(settings: Settings) -> dict[Market, Account]:
    """The routed broker accounts of `[bot.accounts]`: each market's money, sizing and protections."""
    base = sizing(settings)
    return {
        market: Account(
            name=market.value,
            equity=a.equity,
            sizing=dataclasses.replace(
                base, account_currency=a.currency, risk_fraction=a.risk_per_trade or base.risk_fraction
            ),
            protections=a.protections.engine_config(),
        )
        for market, a in settings.bot.accounts.items()
    }


def backtest_config(settings: Settings, rates: RateHistory | None = None) -> BacktestConfig:
    """Backtests size and cost trades as the bot does: its account, sizing, conversion prices and costs.

    `rates` are the conversion prices over the backtest's time (the linking pairs' bars); without them the
    configured `[bot.fx_rates]` apply.
    """
    b = settings.bot
    return BacktestConfig(
        equity=b.account_equity,
        sizing=sizing(settings),
        rates=rates if rates is not None else RateHistory(fixed=dict(b.fx_rates)),
        costs=cost_model(settings),
        slippage_atr=settings.backtest.slippage_atr,
        max_hold_bars=b.max_hold_bars,
        exit_plans={name: c.exits.plan() for name, c in settings.strategies.items() if c.exits.plan().active},
    )


def kept_bars(settings: Settings) -> int:
    """Bars an analysis run keeps of a symbol with no setup and no open position: the correlation guard's returns
    (the longest lookback of its protections, and the close before them); the rates read the latest close."""
    b = settings.bot
    return 1 + max(p.correlation_lookback for p in (b.protections, *(a.protections for a in b.accounts.values())))


def bar_rules(settings: Settings) -> BarRules:
    v = settings.validation
    return BarRules(settings.scan.history_bars, v.min_bars, v.stale_bars, v.max_bad_fraction)


def cache_dir(settings: Settings) -> Path:
    return settings.cache_path
