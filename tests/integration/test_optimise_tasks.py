"""`tradebot optimise`'s tasks share one context per window in a worker: the results are those of a fresh one."""

from __future__ import annotations

import pytest

from bot.config import load_settings
from bot.services.configure import backtest_config, watchlist
from bot.services.validate import WorkerSpec, evaluate_task, load_bars, window_context
from engine.walkforward import EvalTask, Phase
from tests.support import require_market_dir

pytestmark = pytest.mark.shared_data


def test_parameter_sets_of_a_window_share_its_context_and_get_what_a_fresh_context_gives() -> None:
    market = require_market_dir()
    settings = load_settings({}, data_source=f"csv:{market}")
    item = next(w for w in watchlist(settings) if w.instrument.symbol == "EURUSD")
    strategy = next(s for s in item.strategies if s.name == "trend_pullback")
    config = backtest_config(settings)
    spec = WorkerSpec(str(market), item.instrument, item.calendar, strategy.name, settings.engine_config(), config)
    end = len(load_bars(str(market), item.instrument, item.calendar)) - 500
    sets = [{"atr_stop_mult": m, "reward_risk": r} for m in (1.5, 2.0) for r in (1.5, 2.5)]
    tasks = [EvalTask(params, end - 6_000, end, 0, Phase.TRAIN) for params in sets]

    window_context.cache_clear()
    shared = [evaluate_task(spec, task) for task in tasks]
    assert window_context.cache_info().misses == 1 and window_context.cache_info().hits == len(tasks) - 1
    fresh = []
    for task in reversed(tasks):  # another order, a fresh context each: the same figures
        window_context.cache_clear()
        fresh.append(evaluate_task(spec, task))
    assert shared == fresh[::-1]
    assert len({r.r_multiples for r in shared}) > 1 and all(r.trades for r in shared)  # the sets did differ
