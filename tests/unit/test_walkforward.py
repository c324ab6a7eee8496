"""Walk-forward: window cutting, parameter sets, the choice on training data only, and the stitched report."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest

from engine.performance import TradeStats
from engine.strategies.trend_pullback import TrendPullbackParams
from engine.walkforward import (
    DEFAULT_GRID_POINTS,
    BarRange,
    EvalResult,
    EvalTask,
    FoldWindow,
    Objective,
    Phase,
    Search,
    Space,
    WalkForwardConfig,
    WindowScheme,
    parameter_sets,
    walk_forward,
)
from tests.walkforward_support import (
    DEFAULTS,
    N_BARS,
    SERIES,
    SPACE,
    Table,
    recording_evaluate,
    synthetic,
    table_evaluate,
)

SETS = parameter_sets(SPACE, DEFAULTS, Search.GRID, 20, 0)
CONFIG = WalkForwardConfig(folds=4, min_train_trades=10)

# --- windows ---------------------------------------------------------------------------------------------


def test_anchored_windows_hand_computed() -> None:
    # 1000 bars - 100 warm-up = 900 usable; first training 450 bars; 450 / 3 folds = 150 bars per test.
    config = WalkForwardConfig(folds=3, warmup_bars=100, train_fraction=0.5)
    assert config.windows(1000) == (
        FoldWindow(0, BarRange(100, 550), BarRange(550, 700)),
        FoldWindow(1, BarRange(100, 700), BarRange(700, 850)),
        FoldWindow(2, BarRange(100, 850), BarRange(850, 1000)),
    )


def test_rolling_windows_keep_the_first_training_length() -> None:
    config = WalkForwardConfig(folds=3, warmup_bars=100, train_fraction=0.5, scheme=WindowScheme.ROLLING)
    assert [(w.train, w.test) for w in config.windows(1000)] == [
        (BarRange(100, 550), BarRange(550, 700)),
        (BarRange(250, 700), BarRange(700, 850)),
        (BarRange(400, 850), BarRange(850, 1000)),
    ]


@pytest.mark.parametrize("scheme", list(WindowScheme))
@pytest.mark.parametrize(
    ("n_bars", "folds", "warmup", "fraction"), [(1003, 3, 100, 0.5), (97, 6, 0, 0.3), (50, 1, 7, 0.9)]
)
def test_test_windows_tile_everything_after_the_first_training_window(
    scheme: WindowScheme, n_bars: int, folds: int, warmup: int, fraction: float
) -> None:
    windows = WalkForwardConfig(folds=folds, warmup_bars=warmup, train_fraction=fraction, scheme=scheme).windows(n_bars)
    first_train = math.floor((n_bars - warmup) * fraction)
    assert len(windows) == folds
    assert windows[0].train == BarRange(warmup, warmup + first_train)
    assert windows[-1].test.end == n_bars  # the last test window takes the remainder
    for before, after in itertools.pairwise(windows):
        assert before.test.end == after.test.start
        assert len(before.test) == len(windows[0].test)
    for w in windows:
        assert w.train.end == w.test.start and w.train.start >= warmup
        assert len(w.train) == (w.test.start - warmup if scheme is WindowScheme.ANCHORED else first_train)


def test_too_few_bars_is_rejected_naming_the_counts() -> None:
    with pytest.raises(ValueError, match="leave 5 training bars and 0 bars per test window for 6 folds"):
        WalkForwardConfig(folds=6, train_fraction=0.5).windows(10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"folds": 0}, "folds must be a whole number of at least 1"),
        ({"candidates": 0}, "candidates must be a whole number of at least 1"),
        ({"min_train_trades": -1}, "min_train_trades must be a whole number of at least 0"),
        ({"train_fraction": 1.0}, r"train_fraction must be within \(0, 1\)"),
        ({"risk_fraction": 0.0}, r"risk_fraction must be within \(0, 1\]"),
        ({"scheme": "sliding"}, "'sliding' is not a valid WindowScheme"),
    ],
)
def test_config_rejects_impossible_values(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WalkForwardConfig(**kwargs)  # type: ignore[arg-type]


def test_config_accepts_enum_values_as_text() -> None:
    config = WalkForwardConfig(scheme="rolling", search="random", objective="sharpe")  # type: ignore[arg-type]
    assert (config.scheme, config.search, config.objective) == (WindowScheme.ROLLING, Search.RANDOM, Objective.SHARPE)


# --- parameter sets --------------------------------------------------------------------------------------


def test_small_grid_is_complete_with_the_defaults_first_then_grid_order() -> None:
    space = {"a": (1, 3, 1), "b": (0.1, 0.3, 0.1)}
    sets = parameter_sets(space, {"a": 2, "b": 0.2, "other": "kept"}, Search.GRID, 20, 0)
    assert [(s["a"], s["b"]) for s in sets] == [
        (2, 0.2),
        (1, 0.1), (1, 0.2), (1, 0.3),
        (2, 0.1), (2, 0.3),
        (3, 0.1), (3, 0.2), (3, 0.3),
    ]  # fmt: skip
    assert all(type(s["a"]) is int and s["other"] == "kept" for s in sets)


def test_float_steps_are_exact_decimals_and_step_less_ranges_get_evenly_spaced_points() -> None:
    space = {"pct": (0.1, 1.0, 0.1), "mult": (1.0, 2.0, None), "period": (10, 12, None)}
    sets = parameter_sets(space, {"pct": 0.4, "mult": 1.5, "period": 11}, Search.GRID, 1000, 0)
    assert sorted({s["pct"] for s in sets}) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert sorted({s["mult"] for s in sets}) == [1.0, 1.25, 1.5, 1.75, 2.0]  # DEFAULT_GRID_POINTS of them
    assert sorted({s["period"] for s in sets}) == [10, 11, 12]  # 10, 10.5, 11, 11.5, 12 rounded and deduplicated
    assert DEFAULT_GRID_POINTS == 5
    assert len(sets) == 10 * 5 * 3  # the defaults are on the grid: no extra set


def test_large_grid_is_subsampled_deterministically_with_valid_sets_only() -> None:
    base = TrendPullbackParams()
    space = TrendPullbackParams.search_space()  # 9 x 9 x 9 x 9 x 21 x 9 x 9 x 7 points, far more than 20
    sets = parameter_sets(space, base, Search.GRID, 20, seed=1)
    assert len(sets) == 20
    assert sets[0] == {f: getattr(base, f) for f in TrendPullbackParams.names()}
    assert len({tuple(s[name] for name in space) for s in sets}) == 20
    for s in sets:
        for name, (low, high, step) in space.items():
            assert low <= s[name] <= high
            assert step is not None and math.isclose((s[name] - low) / step, round((s[name] - low) / step))
        assert s["trend_fast"] < s["trend_slow"]  # the params' own rule, enforced by constructing them
        assert type(s["trend_fast"]) is int and type(s["touch_atr"]) is float
    assert parameter_sets(space, base, Search.GRID, 20, seed=1) == sets
    assert parameter_sets(space, base, Search.GRID, 20, seed=2) != sets


def test_combinations_the_params_reject_are_left_out() -> None:
    # fast 90/100/110 x slow 100/110: only (90, 100), (90, 110), (100, 110) have fast < slow.
    space = {"trend_fast": (90, 110, 10), "trend_slow": (100, 110, 10)}
    sets = parameter_sets(space, TrendPullbackParams(), Search.GRID, 20, 0)
    assert [(s["trend_fast"], s["trend_slow"]) for s in sets] == [(50, 200), (90, 100), (90, 110), (100, 110)]


def test_random_search_stays_on_steps_inside_ranges_and_keeps_ints() -> None:
    space = {"stepped": (1.0, 3.0, 0.5), "free": (0.2, 0.8, None), "count": (2, 9, None), "period": (10, 30, 5)}
    base = {"stepped": 2.0, "free": 0.5, "count": 4, "period": 20}
    sets = parameter_sets(space, base, Search.RANDOM, 40, seed=3)
    assert sets[0] == base and len(sets) == 40
    assert len({tuple(s.values()) for s in sets}) == 40
    for s in sets[1:]:
        assert s["stepped"] in (1.0, 1.5, 2.0, 2.5, 3.0)
        assert 0.2 <= s["free"] <= 0.8 and type(s["free"]) is float
        assert 2 <= s["count"] <= 9 and type(s["count"]) is int
        assert s["period"] in (10, 15, 20, 25, 30) and type(s["period"]) is int
    assert parameter_sets(space, base, Search.RANDOM, 40, seed=3) == sets
    assert parameter_sets(space, base, Search.RANDOM, 40, seed=4) != sets


def test_random_search_stops_when_a_small_space_is_exhausted() -> None:
    sets = parameter_sets({"a": (1, 3, 1)}, {"a": 2}, Search.RANDOM, 20, 0)
    assert sets[0] == {"a": 2} and sorted(s["a"] for s in sets) == [1, 2, 3]


def test_off_grid_defaults_come_first_and_count_as_a_candidate() -> None:
    sets = parameter_sets({"a": (1, 9, 1)}, {"a": 100}, Search.GRID, 4, 0)
    assert sets[0] == {"a": 100} and len(sets) == 4
    assert [s["a"] for s in sets[1:]] == sorted(s["a"] for s in sets[1:])  # the sample keeps grid order


def test_one_candidate_or_nothing_to_search_gives_the_defaults_only() -> None:
    assert parameter_sets(SPACE, DEFAULTS, Search.GRID, 1, 0) == [DEFAULTS]
    assert parameter_sets({}, DEFAULTS, Search.RANDOM, 20, 0) == [DEFAULTS]


@pytest.mark.parametrize(
    ("space", "base", "message"),
    [
        ({"n": (1, 5, 0.5)}, {"n": 2}, "parameter n is an integer but its range 1..5 step 0.5 is not whole"),
        ({"x": (2.0, 1.0, None)}, {"x": 1.5}, "the range must satisfy low <= high"),
        ({"x": (1.0, 2.0, 0.0)}, {"x": 1.5}, "the step must be positive"),
        ({"x": (1.0, 2.0, None), "y": (1, 2, 1)}, {"x": 1.5}, "missing: y"),
    ],
)
def test_bad_spaces_are_rejected_by_name(space: Space, base: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parameter_sets(space, base, Search.GRID, 5, 0)


# --- no test data in the choice --------------------------------------------------------------------------


def test_training_tasks_end_where_their_test_window_starts_and_all_run_before_any_test() -> None:
    seen: list[EvalTask] = []
    report = walk_forward(N_BARS, CONFIG, SETS, partial(recording_evaluate, seen=seen))
    windows = CONFIG.windows(N_BARS)
    train = [t for t in seen if t.phase is Phase.TRAIN]
    test = [t for t in seen if t.phase is Phase.TEST]
    assert seen == train + test  # every training task ran before the first test task existed
    assert len(train) == len(windows) * len(SETS)
    for w in windows:
        fold_train = [t for t in train if t.fold == w.fold]
        assert [dict(t.params) for t in fold_train] == SETS  # each set once per fold
        assert all((t.start, t.end) == (w.train.start, w.train.end) for t in fold_train)
        assert all(t.end <= w.test.start for t in fold_train)
    assert [(t.fold, t.start, t.end, dict(t.params)) for t in test] == [
        (f.fold, f.test.start, f.test.end, f.chosen) for f in report.folds
    ]


def test_test_window_results_cannot_change_the_choice() -> None:
    honest = walk_forward(N_BARS, CONFIG, SETS, synthetic())
    for bias in (-5.0, 5.0):  # test-phase results that favour (or punish) other parameter sets heavily
        steered = walk_forward(N_BARS, CONFIG, SETS, synthetic(test_bias=bias))
        assert [f.chosen for f in steered.folds] == [f.chosen for f in honest.folds]
        assert [f.train_scores for f in steered.folds] == [f.train_scores for f in honest.folds]
        assert steered.oos_r != honest.oos_r  # the bias did reach the test results


@pytest.mark.parametrize("scheme", list(WindowScheme))
def test_changing_the_bars_from_a_test_window_on_changes_no_choice_up_to_that_fold(scheme: WindowScheme) -> None:
    config = WalkForwardConfig(folds=4, min_train_trades=10, scheme=scheme)
    honest = walk_forward(N_BARS, config, SETS, synthetic())
    assert len({str(f.chosen) for f in honest.folds}) > 1  # the folds do choose differently
    for window in config.windows(N_BARS):
        k, cut = window.fold, window.test.start
        altered = SERIES[:cut] + tuple(1.0 - 2.0 * v for v in SERIES[cut:])
        other = walk_forward(N_BARS, config, SETS, synthetic(series=altered))
        for before, after in zip(honest.folds[: k + 1], other.folds[: k + 1], strict=True):
            assert (after.chosen, after.train_scores, after.in_sample) == (
                before.chosen,
                before.train_scores,
                before.in_sample,
            )
        assert other.folds[k].out_of_sample != honest.folds[k].out_of_sample  # the change was visible to the test
        if k + 1 < len(honest.folds):
            assert other.folds[k + 1].train_scores != honest.folds[k + 1].train_scores  # and to later training


# --- the choice ------------------------------------------------------------------------------------------

TABLE_BARS = 40  # folds of 2 at train_fraction 0.5: fold 0 trains [0, 20) tests [20, 30); fold 1 tests [30, 40)
A = (6.0, -1.0, -1.0, -1.0)  # expectancy 0.75 (best), PF 2, Sharpe 0.75 / 3.5 = 0.214
B = (4.0, -0.1, -0.1, -0.1, -0.1, -0.1)  # expectancy 0.583, PF 4 / 0.5 = 8 (best), Sharpe 0.348
C = (0.4, 0.4, 0.4, -0.3)  # expectancy 0.225, PF 4, Sharpe 0.225 / 0.35 = 0.643 (best)


def table(train: Mapping[int, Sequence[float]], test: Mapping[int, Sequence[float]] | None = None) -> Table:
    """The same training results in both folds; test results default to one +1R trade."""
    entries: dict[tuple[int, Phase, int], Sequence[float]] = {}
    for fold in (0, 1):
        for i, rs in train.items():
            entries[fold, Phase.TRAIN, i] = rs
            entries[fold, Phase.TEST, i] = (test or {}).get(i, (1.0,))
    return entries


def run_table(
    train: Mapping[int, Sequence[float]], test: Mapping[int, Sequence[float]] | None = None, **config: object
) -> tuple[list[int | None], list[tuple[float | None, ...]]]:
    cfg = WalkForwardConfig(folds=2, train_fraction=0.5, **{"min_train_trades": 1, **config})  # type: ignore[arg-type]
    sets = [{"id": i} for i in sorted(train)]
    report = walk_forward(TABLE_BARS, cfg, sets, partial(table_evaluate, table=table(train, test)))
    return [f.chosen_index for f in report.folds], [f.train_scores for f in report.folds]


@pytest.mark.parametrize(
    ("objective", "chosen", "scores"),
    [
        (Objective.EXPECTANCY_R, 0, (0.75, 3.5 / 6, 0.225)),
        (Objective.PROFIT_FACTOR, 1, (2.0, 8.0, 4.0)),
        (Objective.SHARPE, 2, (0.75 / 3.5, 0.348, 0.225 / 0.35)),
    ],
)
def test_the_best_training_objective_is_chosen(objective: Objective, chosen: int, scores: tuple[float, ...]) -> None:
    choices, fold_scores = run_table({0: A, 1: B, 2: C}, objective=objective)
    assert choices == [chosen, chosen]
    assert fold_scores[0] == pytest.approx(scores, abs=1e-3)


def test_a_profit_factor_with_nothing_lost_ranks_first_and_one_with_nothing_gained_is_ineligible() -> None:
    choices, scores = run_table({0: B, 1: (0.2, 0.3), 2: (0.0, 0.0)}, objective=Objective.PROFIT_FACTOR)
    assert choices == [1, 1]
    assert scores[0] == (8.0, math.inf, None)


def test_ties_go_to_the_earlier_parameter_set() -> None:
    assert run_table({0: (1.0, -1.0), 1: (2.0, -1.0), 2: (2.0, -1.0)})[0] == [1, 1]
    assert run_table({0: (1.0, -1.0), 1: (1.0, -1.0), 2: (1.0, -1.0)})[0] == [0, 0]  # the defaults come first


def test_sets_with_too_few_training_trades_are_ineligible() -> None:
    choices, scores = run_table({0: A, 1: B, 2: C}, min_train_trades=5)
    assert choices == [1, 1]  # A has the best expectancy but only 4 trades
    assert scores[0][0] is None and scores[0][2] is None
    assert scores[0][1] == pytest.approx(3.5 / 6)


def test_a_fold_without_an_eligible_set_is_skipped_and_trades_nothing() -> None:
    train = {0: A, 1: C}
    entries = dict(table(train))
    entries[1, Phase.TRAIN, 0] = A * 3  # 12 trades in fold 1 only
    seen_progress: list[tuple[int, int]] = []
    report = walk_forward(
        TABLE_BARS,
        WalkForwardConfig(folds=2, train_fraction=0.5, min_train_trades=10),
        [{"id": 0}, {"id": 1}],
        partial(table_evaluate, table=entries),
        progress=lambda done, total: seen_progress.append((done, total)),
    )
    skipped, traded = report.folds
    assert skipped.skipped and skipped.chosen is None and skipped.out_of_sample is None and skipped.eligible == 0
    assert not traded.skipped and traded.chosen == {"id": 0} and traded.eligible == 1
    assert report.oos_r == (1.0,) and report.in_sample.trades == 12
    assert seen_progress[-1] == (6, 6)  # 2 folds x (2 training tasks + 1 test task), the skipped test included


def test_no_eligible_fold_at_all_gives_an_empty_report() -> None:
    report = walk_forward(TABLE_BARS, WalkForwardConfig(folds=2, train_fraction=0.5, min_train_trades=100), [{"id": 0}],
                          partial(table_evaluate, table=table({0: A})))  # fmt: skip
    assert report.is_empty and report.oos_equity == (1.0,) and report.oos.win_rate is None
    assert report.win_rate_ratio is None and report.expectancy_ratio is None and report.oos_final_return == 0.0


# --- the report ------------------------------------------------------------------------------------------


def test_stitching_concatenates_the_folds_and_compounds_equity() -> None:
    entries = dict(table({0: (2.0, -1.0, 0.0, 1.0)}))
    entries[0, Phase.TEST, 0] = (1.0, -1.0)
    entries[1, Phase.TEST, 0] = (2.0,)
    report = walk_forward(TABLE_BARS, WalkForwardConfig(folds=2, train_fraction=0.5, min_train_trades=1), [{"id": 0}],
                          partial(table_evaluate, table=entries))  # fmt: skip
    assert report.oos_r == (1.0, -1.0, 2.0)
    # 1 x 1.01 = 1.01; x 0.99 = 0.9999; x 1.02 = 1.019898
    assert report.oos_equity == pytest.approx((1.0, 1.01, 0.9999, 1.019898), rel=1e-12)
    assert report.oos_final_return == pytest.approx(0.019898, rel=1e-9)
    assert report.oos_max_drawdown == pytest.approx(1 - 0.9999 / 1.01, rel=1e-9)
    assert report.oos == TradeStats.of([1.0, -1.0, 2.0])
    assert (report.oos.trades, report.oos.wins, report.oos.losses) == (3, 2, 1)
    assert report.oos.profit_factor == 3.0 and report.oos.expectancy_r == pytest.approx(2 / 3)
    # In sample: the chosen set's 4 training trades in each of the 2 folds, pooled: 4 wins of 8.
    assert report.in_sample.trades == 8 and report.in_sample.win_rate == 0.5
    assert report.win_rate_ratio == pytest.approx((2 / 3) / 0.5)
    assert report.expectancy_ratio == pytest.approx((2 / 3) / 0.5)
    assert report.oos_pnl is None  # table results carry no P&L


def test_synthetic_report_is_consistent_with_its_folds() -> None:
    report = walk_forward(N_BARS, CONFIG, SETS, synthetic())
    oos = [f.out_of_sample for f in report.folds if f.out_of_sample is not None]
    assert report.oos_r == tuple(r for result in oos for r in result.r_multiples)
    assert report.oos_pnl == tuple(100.0 * r for r in report.oos_r)
    assert report.oos.trades == sum(result.trades for result in oos) == len(report.oos_equity) - 1
    assert report.parameter_sets == len(SETS) == 15 and report.n_bars == N_BARS
    for fold in report.folds:
        assert fold.chosen_index is not None and fold.chosen == SETS[fold.chosen_index]
        assert fold.in_sample is not None and fold.in_sample.trades >= CONFIG.min_train_trades
        best = max(score for score in fold.train_scores if score is not None)
        assert fold.train_scores[fold.chosen_index] == best == fold.in_sample.expectancy_r


def test_grid_and_random_searches_both_run_and_are_deterministic() -> None:
    for search in Search:
        sets = WalkForwardConfig(search=search, candidates=8, seed=5).parameter_sets(SPACE, DEFAULTS)
        first = walk_forward(N_BARS, CONFIG, sets, synthetic())
        assert walk_forward(N_BARS, CONFIG, sets, synthetic()) == first
        assert all(f.chosen in sets for f in first.folds)
    grid = WalkForwardConfig(search=Search.GRID, candidates=8, seed=5).parameter_sets(SPACE, DEFAULTS)
    random_sets = WalkForwardConfig(search=Search.RANDOM, candidates=8, seed=5).parameter_sets(SPACE, DEFAULTS)
    assert grid != random_sets


def test_a_thread_pool_gives_the_report_of_the_in_process_run_and_progress_counts_every_task() -> None:
    calls: list[tuple[int, int]] = []
    with ThreadPoolExecutor(max_workers=4) as pool:
        pooled = walk_forward(N_BARS, CONFIG, SETS, synthetic(), pool, progress=lambda d, t: calls.append((d, t)))
    assert pooled == walk_forward(N_BARS, CONFIG, SETS, synthetic())
    total = 4 * (15 + 1)
    assert [done for done, _ in calls] == list(range(1, total + 1))
    assert {t for _, t in calls} == {total}


def _broken(task: EvalTask) -> EvalResult:
    if task.phase is Phase.TRAIN and task.params["id"] == 1:
        raise ZeroDivisionError("boom")
    return EvalResult.from_r_multiples([1.0])


@pytest.mark.parametrize("pooled", [False, True])
def test_an_evaluate_error_names_the_task(pooled: bool) -> None:
    config = WalkForwardConfig(folds=2, train_fraction=0.5, min_train_trades=1)
    with pytest.raises(ZeroDivisionError) as raised, ThreadPoolExecutor(2) as pool:
        walk_forward(TABLE_BARS, config, [{"id": 0}, {"id": 1}], _broken, pool if pooled else None)
    assert any("fold 0 train [0, 20) with {'id': 1}" in note for note in raised.value.__notes__)


def test_evaluate_must_return_an_eval_result_and_sets_must_exist() -> None:
    config = WalkForwardConfig(folds=2, train_fraction=0.5)
    with pytest.raises(TypeError, match="evaluate must return an EvalResult, returned list"):
        walk_forward(TABLE_BARS, config, [{"id": 0}], lambda task: [])  # type: ignore[arg-type, return-value]
    with pytest.raises(ValueError, match="at least one parameter set"):
        walk_forward(TABLE_BARS, config, [], _broken)


# --- results and statistics ------------------------------------------------------------------------------


def test_trade_stats_hand_computed() -> None:
    # wins >= +0.05R, losses <= -0.05R; 0.02 and -0.04 are breakevens.
    stats = TradeStats.of([2.0, -1.0, 0.02, -0.04, 1.0, -0.05])
    assert (stats.trades, stats.wins, stats.losses) == (6, 2, 2)
    assert stats.win_rate == pytest.approx(2 / 6)
    assert stats.profit_factor == pytest.approx(3.02 / 1.09)
    assert stats.expectancy_r == pytest.approx(1.93 / 6) and stats.total_r == pytest.approx(1.93)
    assert TradeStats.of([1.0, 1.0]).sharpe is None  # no dispersion
    assert TradeStats.of([1.0]).sharpe is None
    assert TradeStats.of([2.0, 0.0]).sharpe == pytest.approx(1.0 / math.sqrt(2.0))
    assert TradeStats.of([0.5]).profit_factor is None  # nothing lost
    empty = TradeStats.of([])
    assert (empty.trades, empty.win_rate, empty.expectancy_r, empty.profit_factor) == (0, None, None, None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"trades": 2, "r_multiples": (1.0,)}, r"trades \(2\) must equal the number of R multiples \(1\)"),
        ({"trades": 1, "r_multiples": (1.0,), "pnl": (1.0, 2.0)}, "pnl must be empty or hold one value per trade"),
        ({"trades": 1, "r_multiples": (1.0,), "sharpe": math.nan}, "sharpe must be a finite number or None"),
        ({"trades": 0, "r_multiples": (), "expectancy_r": 0.0}, "must be None without trades"),
        ({"trades": 1, "r_multiples": (1.0,), "win_rate": 1.5}, "win_rate must be within 0..1"),
        ({"trades": 1, "r_multiples": (math.inf,)}, "must be finite numbers"),
    ],
)
def test_eval_result_invariants(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"expectancy_r": None, "profit_factor": None, "sharpe": None, "win_rate": None}
    with pytest.raises(ValueError, match=message):
        EvalResult(**{**fields, **kwargs})  # type: ignore[arg-type]


def test_windows_and_tasks_reject_impossible_ranges() -> None:
    with pytest.raises(ValueError, match=r"0 <= start < end, was \[5, 5\)"):
        BarRange(5, 5)
    with pytest.raises(ValueError, match="must end where the test window starts"):
        FoldWindow(0, BarRange(0, 10), BarRange(11, 20))
    with pytest.raises(ValueError, match=r"0 <= start < end, was \[3, 2\)"):
        EvalTask({}, 3, 2, 0, Phase.TRAIN)
