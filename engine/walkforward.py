"""Walk-forward optimisation: tune on a training window, measure on the unseen window that follows.

Windows are half-open bar-index ranges `[start, end)` over a history of `n_bars` bars:

* The first `warmup_bars` bars belong to no window (indicator history only). Of the remaining bars, the
  first `train_fraction` (rounded down) form the first training window; the rest are cut into `folds`
  consecutive, equally long test windows (the last one also takes the remainder).
* ANCHORED: fold k trains on every usable bar before its test window, `[warmup_bars, test_k.start)`.
  ROLLING: fold k trains on a window as long as the first one, ending where its test window starts.
* A training window always ends exactly where its test window starts: test windows never overlap and
  together cover every bar after the first training window, so the stitched out-of-sample record is one
  unbroken period.

For each fold every parameter set is evaluated on the TRAIN window only; the best eligible set (at least
`min_train_trades` training trades and a defined objective) is chosen, ties going to the earlier set (the
defaults come first from `parameter_sets`); then only that set is evaluated on the TEST window. All training
tasks of all folds run (in parallel) before any test task is created, and the choice sees nothing but the
training results, so test bars cannot influence it. A fold with no eligible set is skipped: nothing is chosen
and nothing is traded in its test window.

The `evaluate` contract: `evaluate(task)` backtests `task.params` and returns the trades entered in
`[task.start, task.end)`, reading no bar at or after `task.end` (bars before `start` are allowed as
indicator history; a trade still open at `end` must be closed on the data before `end` or left out). It must
be deterministic and, for a process or Dask executor, picklable: pass a `functools.partial` of a module-level
function (a lambda or a nested function cannot be pickled). Every task pickles the partial with it, so bind
something small (a path, a symbol) and load the bars inside the worker, cached, rather than binding the bars.

Metrics use the conventions of `engine.performance`: a win is at least +0.05R, a loss at most -0.05R; win
rate = wins / trades; profit factor = sum of positive R / |sum of negative R|, None when nothing was lost;
expectancy = mean R. Sharpe is per trade: mean R / sample standard deviation of R over the trades, not
annualised (trades are irregular in time), None with fewer than two trades or no dispersion. The stitched
out-of-sample equity compounds like `engine.montecarlo`: from 1.0, times `1 + r x risk_fraction` per trade.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, as_completed
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from engine.montecarlo import equity_curve, max_drawdown
from engine.performance import TradeStats
from engine.strategy import StrategyParams

DEFAULT_GRID_POINTS: Final = 5  # values per parameter declared without a step
_ENUMERATE_LIMIT: Final = 10_000  # grids up to this size are walked in a shuffled order, larger ones sampled
_ATTEMPTS_PER_CANDIDATE: Final = 100
_RANDOM_DECIMALS: Final = 6

Space = Mapping[str, tuple[float, float, float | None]]
Progress = Callable[[int, int], None]


class WindowScheme(StrEnum):
    ANCHORED = "anchored"  # train on all usable history before the test window
    ROLLING = "rolling"  # train on a fixed-length window just before the test window


class Search(StrEnum):
    GRID = "grid"
    RANDOM = "random"


class Objective(StrEnum):
    EXPECTANCY_R = "expectancy_r"
    PROFIT_FACTOR = "profit_factor"
    SHARPE = "sharpe"


class Phase(StrEnum):
    TRAIN = "train"
    TEST = "test"


@dataclass(frozen=True, slots=True)
class BarRange:
    """The half-open bar-index range [start, end)."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            raise ValueError(f"a bar range must satisfy 0 <= start < end, was [{self.start}, {self.end})")

    def __len__(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class FoldWindow:
    """One fold's training window and the test window right after it."""

    fold: int
    train: BarRange
    test: BarRange

    def __post_init__(self) -> None:
        if self.fold < 0:
            raise ValueError(f"fold numbers start at 0, was {self.fold}")
        if self.train.end != self.test.start:
            raise ValueError(
                f"fold {self.fold}: the training window must end where the test window starts, "
                f"were [{self.train.start}, {self.train.end}) and [{self.test.start}, {self.test.end})"
            )


@dataclass(frozen=True, slots=True)
class WalkForwardConfig:
    """How history is cut into folds, how parameter sets are searched and how the winner is chosen."""

    folds: int = 6
    scheme: WindowScheme = WindowScheme.ANCHORED
    train_fraction: float = 0.5
    warmup_bars: int = 0
    search: Search = Search.GRID
    candidates: int = 20
    seed: int = 0
    objective: Objective = Objective.EXPECTANCY_R
    min_train_trades: int = 30
    risk_fraction: float = 0.01

    def __post_init__(self) -> None:
        object.__setattr__(self, "scheme", WindowScheme(self.scheme))
        object.__setattr__(self, "search", Search(self.search))
        object.__setattr__(self, "objective", Objective(self.objective))
        for name, minimum in (("folds", 1), ("candidates", 1), ("warmup_bars", 0), ("min_train_trades", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be a whole number of at least {minimum}, was {value!r}")
        if not 0.0 < self.train_fraction < 1.0:
            raise ValueError(f"train_fraction must be within (0, 1), was {self.train_fraction}")
        if not 0.0 < self.risk_fraction <= 1.0:
            raise ValueError(f"risk_fraction must be within (0, 1], was {self.risk_fraction}")

    def windows(self, n_bars: int) -> tuple[FoldWindow, ...]:
        """Cut `n_bars` bars into this config's folds (see the module docstring)."""
        usable = n_bars - self.warmup_bars
        train_len = math.floor(usable * self.train_fraction)
        test_len = (usable - train_len) // self.folds
        if train_len < 1 or test_len < 1:
            raise ValueError(
                f"{n_bars} bars with {self.warmup_bars} warm-up bars and train_fraction {self.train_fraction} "
                f"leave {max(train_len, 0)} training bars and {max(test_len, 0)} bars per test window for "
                f"{self.folds} folds; each needs at least 1"
            )
        first_test = self.warmup_bars + train_len
        windows = []
        for k in range(self.folds):
            start = first_test + k * test_len
            end = n_bars if k == self.folds - 1 else start + test_len
            train_start = self.warmup_bars if self.scheme is WindowScheme.ANCHORED else start - train_len
            windows.append(FoldWindow(k, BarRange(train_start, start), BarRange(start, end)))
        return tuple(windows)

    def parameter_sets(self, space: Space, base_params: StrategyParams | Mapping[str, Any]) -> list[dict[str, Any]]:
        """The parameter sets this config searches (see `parameter_sets`)."""
        return parameter_sets(space, base_params, self.search, self.candidates, self.seed)


@dataclass(frozen=True, slots=True)
class EvalTask:
    """One backtest to run: a parameter set over the bars [start, end) of one fold's phase."""

    params: Mapping[str, Any]
    start: int
    end: int
    fold: int
    phase: Phase

    def __post_init__(self) -> None:
        BarRange(self.start, self.end)
        object.__setattr__(self, "phase", Phase(self.phase))

    def describe(self) -> str:
        return f"fold {self.fold} {self.phase.value} [{self.start}, {self.end}) with {dict(self.params)}"


@dataclass(frozen=True, slots=True)
class EvalResult:
    """What one backtest measured: the trade count, the objective inputs and the trades' R multiples in order."""

    trades: int
    expectancy_r: float | None
    profit_factor: float | None
    sharpe: float | None
    win_rate: float | None
    r_multiples: tuple[float, ...]
    pnl: tuple[float, ...] = ()  # optional net P&L per trade, in the instrument's quote currency

    def __post_init__(self) -> None:
        object.__setattr__(self, "r_multiples", tuple(float(r) for r in self.r_multiples))
        object.__setattr__(self, "pnl", tuple(float(p) for p in self.pnl))
        if self.trades != len(self.r_multiples):
            raise ValueError(f"trades ({self.trades}) must equal the number of R multiples ({len(self.r_multiples)})")
        if self.pnl and len(self.pnl) != self.trades:
            raise ValueError(f"pnl must be empty or hold one value per trade, had {len(self.pnl)} for {self.trades}")
        for name in ("expectancy_r", "profit_factor", "sharpe", "win_rate"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number or None, was {value}")
        if self.trades == 0 and (self.expectancy_r is not None or self.win_rate is not None):
            raise ValueError("expectancy_r and win_rate must be None without trades")
        if self.win_rate is not None and not 0.0 <= self.win_rate <= 1.0:
            raise ValueError(f"win_rate must be within 0..1, was {self.win_rate}")
        if not all(math.isfinite(r) for r in (*self.r_multiples, *self.pnl)):
            raise ValueError("r_multiples and pnl must be finite numbers")

    @classmethod
    def from_r_multiples(cls, r_multiples: Sequence[float], pnl: Sequence[float] = ()) -> EvalResult:
        """Measure a sequence of trade R multiples with this module's metric conventions."""
        stats = TradeStats.of(r_multiples)
        return cls(
            trades=stats.trades,
            expectancy_r=stats.expectancy_r,
            profit_factor=stats.profit_factor,
            sharpe=stats.sharpe,
            win_rate=stats.win_rate,
            r_multiples=tuple(r_multiples),
            pnl=tuple(pnl),
        )


@dataclass(frozen=True, slots=True)
class FoldReport:
    """One fold: its windows, every set's training score, the chosen set and its in/out-of-sample results."""

    fold: int
    train: BarRange
    test: BarRange
    train_scores: tuple[float | None, ...]  # objective per parameter set; None = ineligible
    chosen_index: int | None
    chosen: Mapping[str, Any] | None
    in_sample: EvalResult | None
    out_of_sample: EvalResult | None

    def __post_init__(self) -> None:
        parts = (self.chosen_index, self.chosen, self.in_sample, self.out_of_sample)
        if any(p is None for p in parts) and any(p is not None for p in parts):
            raise ValueError(f"fold {self.fold}: a skipped fold has no chosen set and no results, a traded one all")
        if self.chosen_index is not None and self.train_scores[self.chosen_index] is None:
            raise ValueError(f"fold {self.fold}: the chosen parameter set must be eligible")

    @property
    def skipped(self) -> bool:
        """Whether no parameter set was eligible, so nothing traded in this test window."""
        return self.chosen_index is None

    @property
    def eligible(self) -> int:
        return sum(score is not None for score in self.train_scores)


@dataclass(frozen=True, slots=True)
class WalkForwardReport:
    """Every fold, the stitched out-of-sample trades and equity, and in-sample versus out-of-sample."""

    config: WalkForwardConfig
    n_bars: int
    parameter_sets: int
    folds: tuple[FoldReport, ...]
    oos_r: tuple[float, ...]  # every out-of-sample trade, fold after fold
    oos_equity: tuple[float, ...]  # 1.0, then the compounded equity after each out-of-sample trade
    oos: TradeStats
    in_sample: TradeStats  # the chosen sets' training trades pooled over the traded folds
    oos_pnl: tuple[float, ...] | None = field(default=None)  # per-trade P&L when every fold reported it

    def __post_init__(self) -> None:
        if len(self.oos_equity) != len(self.oos_r) + 1:
            raise ValueError("oos_equity must hold the start plus one value per out-of-sample trade")
        if self.oos.trades != len(self.oos_r):
            raise ValueError("oos statistics must cover every out-of-sample trade")

    @property
    def is_empty(self) -> bool:
        """Whether no out-of-sample trade exists (every fold skipped or silent)."""
        return self.oos.trades == 0

    @property
    def oos_final_return(self) -> float:
        return self.oos_equity[-1] - 1.0

    @property
    def oos_max_drawdown(self) -> float:
        return max_drawdown(self.oos_equity)

    @property
    def win_rate_ratio(self) -> float | None:
        """Out-of-sample win rate / in-sample win rate (1.0 = held up; None when undefined)."""
        return _ratio(self.oos.win_rate, self.in_sample.win_rate)

    @property
    def expectancy_ratio(self) -> float | None:
        """Out-of-sample / in-sample expectancy, the walk-forward efficiency (None unless IS expectancy > 0)."""
        return _ratio(self.oos.expectancy_r, self.in_sample.expectancy_r)


def parameter_sets(
    space: Space,
    base_params: StrategyParams | Mapping[str, Any],
    search: Search,
    candidates: int,
    seed: int,
) -> list[dict[str, Any]]:
    """Up to `candidates` distinct parameter sets, the defaults first, drawn from the declared ranges.

    Each set is the full base parameters with the searched values replaced. GRID walks `low, low + step, ...
    <= high` per parameter (`DEFAULT_GRID_POINTS` evenly spaced values without a step); a grid larger than
    `candidates` is sub-sampled uniformly with `seed` and kept in grid order. RANDOM draws each parameter
    within its range (on its steps when it has one). Integer parameters (an int default) stay ints. With a
    `StrategyParams` base, sets its constructor rejects (e.g. trend_fast >= trend_slow) are left out, so
    fewer than `candidates` sets may come back.
    """
    search = Search(search)
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
        raise ValueError(f"candidates must be a whole number of at least 1, was {candidates!r}")
    base = _base_mapping(base_params)
    missing = sorted(set(space) - set(base))
    if missing:
        raise ValueError(f"base_params must give a value for every searched parameter; missing: {', '.join(missing)}")
    names = list(space)
    axes = [_Axis.of(name, space[name], base[name]) for name in names]
    params_type = type(base_params) if isinstance(base_params, StrategyParams) else None
    defaults = tuple(base[name] for name in names)
    seen = {defaults}
    chosen: list[tuple[Any, ...]] = []
    rng = random.Random(seed)
    draws = _grid_draws(axes, rng) if search is Search.GRID else _random_draws(axes, rng)
    for _, values in itertools.islice(draws, candidates * _ATTEMPTS_PER_CANDIDATE):
        if len(chosen) == candidates - 1:
            break
        if values in seen:
            continue
        seen.add(values)
        if params_type is None or _constructs(params_type, {**base, **dict(zip(names, values, strict=True))}):
            chosen.append(values)
    if search is Search.GRID:
        chosen.sort(key=lambda values: _grid_index(axes, values))
    return [{**base, **dict(zip(names, values, strict=True))} for values in (defaults, *chosen)]


def walk_forward(
    n_bars: int,
    config: WalkForwardConfig,
    parameter_sets: Sequence[Mapping[str, Any]],
    evaluate: Callable[[EvalTask], EvalResult],
    executor: Executor | None = None,
    *,
    progress: Progress | None = None,
) -> WalkForwardReport:
    """Choose parameters on each fold's training window, measure them on its test window, stitch the tests.

    Runs the tasks on `executor` (in this process, in order, when None) and calls `progress(done, total)`
    after each task completes, total being every training task plus one test task per fold.
    """
    if not parameter_sets:
        raise ValueError("walk_forward needs at least one parameter set")
    sets = tuple(dict(s) for s in parameter_sets)
    windows = config.windows(n_bars)
    tracker = _Tracker(progress, len(windows) * (len(sets) + 1))

    train_results = _run([t for w in windows for t in train_tasks(w.fold, w.train, sets)], evaluate, executor, tracker)
    per_fold = [train_results[i * len(sets) : (i + 1) * len(sets)] for i in range(len(windows))]
    scores = [tuple(_score(r, config) for r in results) for results in per_fold]
    choices = [_choose(fold_scores) for fold_scores in scores]

    test_tasks = {
        w.fold: EvalTask(sets[index], w.test.start, w.test.end, w.fold, Phase.TEST)
        for w, index in zip(windows, choices, strict=True)
        if index is not None
    }
    tracker.advance(len(windows) - len(test_tasks))  # skipped folds have no test task
    test_results = dict(zip(test_tasks, _run(list(test_tasks.values()), evaluate, executor, tracker), strict=True))

    folds = tuple(
        FoldReport(
            fold=w.fold,
            train=w.train,
            test=w.test,
            train_scores=fold_scores,
            chosen_index=index,
            chosen=None if index is None else sets[index],
            in_sample=None if index is None else results[index],
            out_of_sample=test_results.get(w.fold),
        )
        for w, fold_scores, index, results in zip(windows, scores, choices, per_fold, strict=True)
    )
    return _report(config, n_bars, len(sets), folds)


def train_tasks(fold: int, train: BarRange, sets: Sequence[Mapping[str, Any]]) -> list[EvalTask]:
    """One TRAIN task per parameter set, built from the training window alone."""
    return [EvalTask(dict(params), train.start, train.end, fold, Phase.TRAIN) for params in sets]


def _report(config: WalkForwardConfig, n_bars: int, n_sets: int, folds: tuple[FoldReport, ...]) -> WalkForwardReport:
    traded = [f for f in folds if not f.skipped]
    oos_results = [f.out_of_sample for f in traded if f.out_of_sample is not None]
    is_results = [f.in_sample for f in traded if f.in_sample is not None]
    oos_r = tuple(r for result in oos_results for r in result.r_multiples)
    pnl_known = all(len(result.pnl) == result.trades for result in oos_results)
    return WalkForwardReport(
        config=config,
        n_bars=n_bars,
        parameter_sets=n_sets,
        folds=folds,
        oos_r=oos_r,
        oos_equity=tuple(float(e) for e in equity_curve(oos_r, config.risk_fraction)),
        oos=TradeStats.of(oos_r),
        in_sample=TradeStats.of([r for result in is_results for r in result.r_multiples]),
        oos_pnl=tuple(p for result in oos_results for p in result.pnl) if pnl_known else None,
    )


def _score(result: EvalResult, config: WalkForwardConfig) -> float | None:
    """The objective of a training result, or None when it is ineligible."""
    if result.trades < max(config.min_train_trades, 1):
        return None
    if config.objective is Objective.EXPECTANCY_R:
        return result.expectancy_r
    if config.objective is Objective.SHARPE:
        return result.sharpe
    if result.profit_factor is None:  # nothing lost: unbounded if something was gained, else undefined
        return math.inf if (result.expectancy_r or 0.0) > 0 else None
    return result.profit_factor


def _choose(scores: Sequence[float | None]) -> int | None:
    """Index of the highest score, the earliest among equals; None when no set is eligible."""
    best: int | None = None
    best_score = -math.inf
    for i, score in enumerate(scores):
        if score is not None and (best is None or score > best_score):
            best, best_score = i, score
    return best


def _run(
    tasks: list[EvalTask], evaluate: Callable[[EvalTask], EvalResult], executor: Executor | None, tracker: _Tracker
) -> list[EvalResult]:
    """Evaluate every task, in task order (the completion order only drives progress)."""
    if executor is None:
        results = []
        for task in tasks:
            results.append(_checked(task, _call(evaluate, task)))
            tracker.advance(1)
        return results
    futures: dict[Future[EvalResult], int] = {executor.submit(evaluate, task): i for i, task in enumerate(tasks)}
    slots: list[EvalResult | None] = [None] * len(tasks)
    try:
        for future in as_completed(futures):
            i = futures[future]
            slots[i] = _checked(tasks[i], _outcome(future, tasks[i]))
            tracker.advance(1)
    finally:
        for future in futures:
            future.cancel()
    return [result for result in slots if result is not None]


def _call(evaluate: Callable[[EvalTask], EvalResult], task: EvalTask) -> EvalResult:
    try:
        return evaluate(task)
    except Exception as exc:
        exc.add_note(f"while evaluating {task.describe()}")
        raise


def _outcome(future: Future[EvalResult], task: EvalTask) -> EvalResult:
    try:
        return future.result()
    except Exception as exc:
        exc.add_note(f"while evaluating {task.describe()}")
        raise


def _checked(task: EvalTask, result: object) -> EvalResult:
    if not isinstance(result, EvalResult):
        raise TypeError(f"evaluate must return an EvalResult, returned {type(result).__name__} for {task.describe()}")
    return result


class _Tracker:
    """Counts completed tasks and reports them to the optional progress callback."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self._progress = progress
        self._total = total
        self._done = 0

    def advance(self, n: int) -> None:
        if n:
            self._done += n
            if self._progress is not None:
                self._progress(self._done, self._total)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


# --- parameter sets -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Axis:
    """One searched parameter: its name, range, step and grid values."""

    name: str
    low: float
    high: float
    step: float | None
    integer: bool
    values: tuple[Any, ...]

    @classmethod
    def of(cls, name: str, bounds: tuple[float, float, float | None], default: Any) -> _Axis:
        low, high, step = bounds
        if not low <= high:
            raise ValueError(f"parameter {name}: the range must satisfy low <= high, was {low}..{high}")
        if step is not None and not step > 0:
            raise ValueError(f"parameter {name}: the step must be positive, was {step}")
        integer = isinstance(default, int) and not isinstance(default, bool)
        if integer and any(v is not None and not float(v).is_integer() for v in (low, high, step)):
            raise ValueError(f"parameter {name} is an integer but its range {low}..{high} step {step} is not whole")
        if step is None:
            points = [low + (high - low) * i / (DEFAULT_GRID_POINTS - 1) for i in range(DEFAULT_GRID_POINTS)]
        else:
            d_low, d_step = Decimal(str(low)), Decimal(str(step))
            count = int((Decimal(str(high)) - d_low) / d_step)
            points = [float(d_low + i * d_step) for i in range(count + 1)]
        values = tuple(dict.fromkeys(round(p) if integer else p for p in points))
        return cls(name, low, high, step, integer, values)

    def draw(self, rng: random.Random) -> Any:
        """A random value of this parameter: one of its steps, or anywhere in its range without a step."""
        if self.step is not None:
            return self.values[rng.randrange(len(self.values))]
        if self.integer:
            return rng.randint(round(self.low), round(self.high))
        return min(max(round(rng.uniform(self.low, self.high), _RANDOM_DECIMALS), self.low), self.high)


def _grid_size(axes: Sequence[_Axis]) -> int:
    return math.prod(len(a.values) for a in axes)


def _grid_values(axes: Sequence[_Axis], index: int) -> tuple[Any, ...]:
    """The grid point at `index`, the last parameter varying fastest (the order of itertools.product)."""
    values = []
    for axis in reversed(axes):
        index, i = divmod(index, len(axis.values))
        values.append(axis.values[i])
    return tuple(reversed(values))


def _grid_index(axes: Sequence[_Axis], values: tuple[Any, ...]) -> int:
    index = 0
    for axis, value in zip(axes, values, strict=True):
        index = index * len(axis.values) + axis.values.index(value)
    return index


def _grid_draws(axes: Sequence[_Axis], rng: random.Random) -> Iterator[tuple[int, tuple[Any, ...]]]:
    """Grid points in a uniformly random order: a shuffle of a small grid, repeated draws from a large one."""
    total = _grid_size(axes)
    if total <= _ENUMERATE_LIMIT:
        for index in rng.sample(range(total), total):
            yield index, _grid_values(axes, index)
        return
    while True:
        index = rng.randrange(total)
        yield index, _grid_values(axes, index)


def _random_draws(axes: Sequence[_Axis], rng: random.Random) -> Iterator[tuple[int, tuple[Any, ...]]]:
    for attempt in itertools.count():
        yield attempt, tuple(axis.draw(rng) for axis in axes)


def _base_mapping(base_params: StrategyParams | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(base_params, StrategyParams):
        return {f.name: getattr(base_params, f.name) for f in dataclasses.fields(base_params)}
    return dict(base_params)


def _constructs(params_type: type[StrategyParams], params: Mapping[str, Any]) -> bool:
    try:
        params_type(**params)
    except (TypeError, ValueError):
        return False
    return True
