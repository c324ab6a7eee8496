"""The systems the bot trades (`engine.systems`): built from the settings, fingerprinted, and judged against the
baselines in the store (`SystemBook`, which the desk, the scan, drift and learning ask).

The code version in a fingerprint hashes the source of the engine modules that turn a strategy's candidates into
trades (`TRADE_PATH`) and of the strategy's own module: any change there, even a comment, makes the baselines
stale until the gate has run again on the new code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Final

from engine.backtest import BacktestConfig
from engine.calendars import SessionCalendar
from engine.domain import Instrument
from engine.performance import WIN_R
from engine.pipeline import EngineConfig
from engine.ports import BotStore
from engine.strategy import Strategy
from engine.systems import Baseline, PairValidation, SystemSpec, ValidationStatus, judge

TRADE_PATH: Final = (
    "engine.backtest",
    "engine.bars",
    "engine.calendars",
    "engine.columns",
    "engine.costs",
    "engine.domain",
    "engine.exits",
    "engine.exposure",
    "engine.indicators",
    "engine.pipeline",
    "engine.quality",
    "engine.sizing",
    "engine.strategy",
    "engine.trade_book",
    "engine.trading",
)
# What `engine.backtest` also imports that measures trades rather than decides them (and the strategies' package,
# whose modules a fingerprint hashes one at a time, each with its own system).
MEASURING: Final = frozenset({"engine.metrics", "engine.performance", "engine.results", "engine.strategies"})
CODE_CHARS: Final = 12


@cache
def code_version(strategy_module: str) -> str:
    """A hash of the source of the trade-path engine modules and of the strategy's module."""
    digest = hashlib.sha256()
    for name in (*TRADE_PATH, strategy_module):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ValueError(f"cannot find the source of {name} to fingerprint the code")
        digest.update(name.encode())
        digest.update(Path(spec.origin).read_bytes())
    return digest.hexdigest()[:CODE_CHARS]


def system_rules(
    instrument: Instrument, calendar: SessionCalendar, engine: EngineConfig, config: BacktestConfig
) -> dict[str, Any]:
    """Everything besides the parameters that decides which trades a system takes and how they end."""
    rules = engine.rules
    return {
        "instrument": {
            "asset_class": instrument.asset_class,
            "interval": instrument.interval,
            "tick_size": instrument.tick_size,
            "lot_size": instrument.lot_size,
            "contract_size": instrument.contract_size,
            "spread": instrument.spread,
            "has_volume": instrument.has_volume,
            "calendar": instrument.calendar,
            "timezone": instrument.timezone,
        },
        "calendar": {"entry_cutoff": calendar.entry_cutoff, "flat_at": calendar.flat_at},
        "validation": {
            "min_stop_ticks": rules.min_stop_ticks,
            "min_stop_spreads": rules.min_stop_spreads,
            "max_age_bars": rules.max_age_bars,
        },
        "score": {"min_score": engine.min_score, "weights": dict(engine.scorer.weights.weights)},
        "costs": {
            "slippage_bps": config.costs.slippage_bps,
            "commission_bps": config.costs.commission_bps,
            "commission_per_order": config.costs.commission_per_order,
            "slippage_atr": config.slippage_atr,
        },
        "exits": {
            "max_hold_bars": config.max_hold_bars,
            "session_end_exit": config.session_end_exit,
            "one_position_per_symbol": config.one_position_per_symbol,
        },
    }


def system_spec(
    strategy: Strategy[Any],
    instrument: Instrument,
    calendar: SessionCalendar,
    engine: EngineConfig,
    config: BacktestConfig,
    tuned_until: datetime | None = None,
) -> SystemSpec:
    """The system of `strategy` (with its parameters) on `instrument` under these rules and today's code."""
    params = {name: getattr(strategy.params, name) for name in type(strategy.params).names()}
    return SystemSpec(
        strategy=strategy.name,
        symbol=instrument.symbol,
        interval=instrument.interval,
        params=params,
        rules=system_rules(instrument, calendar, engine, config) | management(strategy.name, config),
        code=code_version(type(strategy).__module__),
        tuned_until=tuned_until,
    )


def management(strategy: str, config: BacktestConfig) -> dict[str, Any]:
    """The strategy's trade management as part of its system (absent when it has none, as before it existed)."""
    plan = config.exit_plans.get(strategy)
    if plan is None or not plan.active:
        return {}
    return {"management": dataclasses.asdict(plan)}


@dataclass(frozen=True)
class TradedSystem:
    """A strategy instance the bot runs on one instrument, with the system it is."""

    strategy: Strategy[Any]
    instrument: Instrument
    calendar: SessionCalendar
    spec: SystemSpec


class SystemBook:
    """Which baseline, if any, validates each traded system; refreshed from the store before each use."""

    def __init__(self, specs: Iterable[SystemSpec], *, max_age: timedelta | None = None) -> None:
        self.specs: dict[tuple[str, str], SystemSpec] = {s.pair: s for s in specs}
        self.max_age = max_age
        self.baselines: list[Baseline] = []

    async def refresh(self, store: BotStore) -> SystemBook:
        """Read the newest baseline of every system from the store."""
        self.baselines = await store.baselines()
        return self

    def validation(self, strategy: str, symbol: str, now: datetime) -> PairValidation:
        """The status of the system traded as `strategy` on `symbol` (UNVALIDATED for one the bot does not trade)."""
        spec = self.specs.get((strategy, symbol))
        if spec is None:
            return PairValidation(ValidationStatus.UNVALIDATED, f"{strategy} on {symbol} is not a traded system")
        return judge(spec, self.baselines, now, win_r=WIN_R, max_age=self.max_age)

    def needing_validation(self, now: datetime) -> list[SystemSpec]:
        """The systems without a current baseline of their own: never validated, or stale."""
        waiting = (ValidationStatus.UNVALIDATED, ValidationStatus.STALE)
        return [s for s in self.specs.values() if self.validation(s.strategy, s.symbol, now).status in waiting]

    def matching(self) -> dict[tuple[str, str], Baseline]:
        """The newest baseline of exactly each traded system (passed or not), by pair."""
        out: dict[tuple[str, str], Baseline] = {}
        for b in self.baselines:
            spec = self.specs.get(b.pair)
            if spec is None or b.fingerprint != spec.fingerprint:
                continue
            if b.pair not in out or b.version > out[b.pair].version:
                out[b.pair] = b
        return out

    def counts(self, now: datetime) -> Mapping[ValidationStatus, int]:
        """How many traded systems are in each status."""
        return Counter(self.validation(s.strategy, s.symbol, now).status for s in self.specs.values())
