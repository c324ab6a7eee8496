"""The strategy contract, its parameters and the registry by name.

A strategy is vectorised over history: `signals` returns one value per bar, so evaluating the last bar
live and every bar in a backtest is the same code. `explain` turns one fired bar into human reasons and is
only called for bars that fired (loop over setups, never over bars).
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from engine.bars import FloatArray, IntArray
from engine.domain import Instrument, Side
from engine.exits import StopTrigger
from engine.indicators import MarketContext

LONG = np.int8(1)
SHORT = np.int8(-1)


def param(default: Any, *, low: float | None = None, high: float | None = None, step: float | None = None) -> Any:
    """Declare a strategy parameter with its default and the search range walk-forward may explore."""
    return dataclasses.field(default=default, metadata={"low": low, "high": high, "step": step})


@dataclass(frozen=True)
class StrategyParams:
    """Base of every strategy's frozen parameter dataclass."""

    @classmethod
    def names(cls) -> frozenset[str]:
        return frozenset(f.name for f in dataclasses.fields(cls))

    @classmethod
    def search_space(cls) -> dict[str, tuple[float, float, float | None]]:
        """Declared (low, high, step) ranges of the tunable parameters."""
        space = {}
        for f in dataclasses.fields(cls):
            low, high = f.metadata.get("low"), f.metadata.get("high")
            if low is not None and high is not None:
                space[f.name] = (low, high, f.metadata.get("step"))
        return space


@dataclass(frozen=True, eq=False)
class SignalArrays:
    """Per-bar output of a strategy: direction (+1 long, -1 short, 0 none) and float price levels.

    The floats are the kernel's; the setup's levels are Decimal on the instrument's tick
    (`engine.pipeline.validate`). With `reward_risk` the target is not taken from `target` but computed
    exactly there: the quantised entry plus `reward_risk` times the quantised risk (e.g. exactly 2R).
    """

    direction: npt.NDArray[np.int8]
    entry: FloatArray
    stop: FloatArray
    target: FloatArray
    reward_risk: float | None = None

    def __post_init__(self) -> None:
        n = len(self.direction)
        for name in ("entry", "stop", "target"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} values, expected {n}")
        rr = self.reward_risk
        if rr is not None and not (math.isfinite(rr) and rr > 0):
            raise ValueError(f"reward_risk must be a positive finite multiple of the risk, was {rr!r}")

    @classmethod
    def none(cls, n: int, reward_risk: float | None = None) -> SignalArrays:
        """No signal on any of `n` bars."""
        nan = np.full(n, np.nan)
        return cls(np.zeros(n, dtype=np.int8), nan, nan.copy(), nan.copy(), reward_risk)

    def fired(self) -> IntArray:
        """Indices of the bars where the strategy fired."""
        return np.flatnonzero(self.direction != 0).astype(np.int64)

    def side_at(self, i: int) -> Side:
        return Side.LONG if self.direction[i] > 0 else Side.SHORT


P = TypeVar("P", bound=StrategyParams)


class Strategy(ABC, Generic[P]):
    """Turns the bars and indicators of one instrument into per-bar trade candidates."""

    name: ClassVar[str]
    params_type: ClassVar[type[StrategyParams]]

    def __init__(self, params: P | None = None) -> None:
        self.params: P = params if params is not None else self.params_type()  # type: ignore[assignment]

    def applies_to(self, instrument: Instrument) -> bool:
        """Whether this strategy is meant for the instrument (asset class, interval)."""
        del instrument
        return True

    @property
    def stop_trigger(self) -> StopTrigger:
        """What fires this strategy's stops: a touch (default), or a close beyond it when its parameters declare
        `stop_trigger = StopTrigger.CLOSE` (backtester, replay and live monitor alike)."""
        trigger = getattr(self.params, "stop_trigger", StopTrigger.TOUCH)
        return StopTrigger(trigger)

    @property
    def warmup(self) -> int:
        """Bars of history needed before the first signal can be trusted."""
        return 250

    def history(self, instrument: Instrument) -> int:
        """Bars of `instrument` a live scan loads so that it decides at its last bar as a backtest over all of
        history does: every indicator the strategy reads there has converged (`engine.indicators.CONVERGENCE`).

        At least `warmup`. A strategy with a recursive indicator (EMA, RSI, ATR) must say how long it needs.
        """
        del instrument
        return self.warmup

    @abstractmethod
    def signals(self, ctx: MarketContext) -> SignalArrays:
        """Vectorised candidates for every bar of `ctx`, using only bars up to each bar."""

    @abstractmethod
    def explain(self, ctx: MarketContext, i: int, side: Side) -> tuple[str, ...]:
        """Short human-readable reasons why bar `i` fired on `side`."""

    def overlays(self, ctx: MarketContext) -> dict[str, FloatArray]:
        """The indicator lines this strategy decides on, one value per bar, named for a chart's legend."""
        del ctx
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"


REGISTRY: dict[str, type[Strategy[Any]]] = {}

S = TypeVar("S", bound=type[Strategy[Any]])


def register(cls: S) -> S:
    """Class decorator adding a strategy to the registry under its `name`."""
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"strategy name {cls.name!r} is registered twice")
    REGISTRY[cls.name] = cls
    return cls


def strategy_names() -> tuple[str, ...]:
    _load_builtin()
    return tuple(sorted(REGISTRY))


def build_strategy(name: str, params: Mapping[str, Any] | None = None) -> Strategy[Any]:
    """Instantiate a registered strategy, rejecting unknown parameter names by name."""
    _load_builtin()
    try:
        cls = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(sorted(REGISTRY))}") from None
    given = dict(params or {})
    unknown = set(given) - cls.params_type.names()
    if unknown:
        allowed = ", ".join(sorted(cls.params_type.names()))
        raise ValueError(f"unknown parameter(s) {', '.join(sorted(unknown))} for {name}; allowed: {allowed}")
    return cls(cls.params_type(**given))


def _load_builtin() -> None:
    """Import the built-in strategies so their classes register themselves (cached after the first call)."""
    import engine.strategies  # noqa: F401, PLC0415
