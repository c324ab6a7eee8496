"""The same walk-forward gives the same report in-process, serially, on threads, processes and Dask."""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path

import pytest

from bot.ops.executors import (
    AdaptiveExecutor,
    ExecutorKind,
    ExecutorSpec,
    SerialExecutor,
    make_executor,
    parse_executor_spec,
    process_start_method,
)
from engine.walkforward import Search, WalkForwardConfig, WalkForwardReport, parameter_sets, walk_forward
from tests.support import worker_outlives_kill_9
from tests.walkforward_support import DEFAULTS, N_BARS, SPACE, synthetic

ROOT = Path(__file__).resolve().parents[2]
CONFIG = WalkForwardConfig(folds=4, min_train_trades=10)
SETS = parameter_sets(SPACE, DEFAULTS, Search.GRID, 20, 0)


@pytest.fixture(scope="module")
def in_process() -> WalkForwardReport:
    return walk_forward(N_BARS, CONFIG, SETS, synthetic())


def run_on(executor: Executor) -> tuple[WalkForwardReport, list[tuple[int, int]]]:
    calls: list[tuple[int, int]] = []
    report = walk_forward(N_BARS, CONFIG, SETS, synthetic(), executor, progress=lambda d, t: calls.append((d, t)))
    return report, calls


@pytest.mark.parametrize(
    ("spec", "workers"), [("auto", None), ("serial", None), ("thread", 3), ("process", 2), ("dask:local", 2)]
)
def test_every_executor_gives_the_in_process_report(
    spec: str, workers: int | None, in_process: WalkForwardReport
) -> None:
    started = time.perf_counter()
    with make_executor(spec, workers) as executor:
        report, calls = run_on(executor)
        worker_pid = executor.submit(os.getpid).result()
    elapsed = time.perf_counter() - started
    assert report == in_process
    assert len({str(f.chosen) for f in report.folds}) > 1 and report.oos.trades > 0  # a report worth comparing
    assert calls[-1] == (4 * 16, 4 * 16) and len(calls) == 4 * 16
    assert elapsed < 20, f"{spec}: {elapsed:.1f} s"
    assert (worker_pid != os.getpid()) == (spec in ("process", "dask:local"))


def test_a_remote_dask_scheduler_by_address(in_process: WalkForwardReport) -> None:
    from distributed import LocalCluster  # noqa: PLC0415 - optional dependency

    with LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=1, threads_per_worker=2, processes=False, protocol="tcp", dashboard_address=None
    ) as cluster:
        address = cluster.scheduler_address.removeprefix("tcp://")
        with make_executor(f"dask://{address}") as executor:
            report, _ = run_on(executor)
    assert report == in_process


def test_the_serial_executor_is_a_real_executor() -> None:
    with make_executor("serial") as executor:
        assert isinstance(executor, SerialExecutor) and isinstance(executor, Executor)
        done = executor.submit(pow, 2, 10)
        assert done.done() and done.result() == 1024
        failed = executor.submit(int, "not a number")
        assert isinstance(failed.exception(), ValueError)
        assert list(executor.map(abs, [-1, 2, -3])) == [1, 2, 3]
    with pytest.raises(RuntimeError, match="cannot schedule new futures after shutdown"):
        executor.submit(pow, 2, 3)


def test_auto_keeps_small_work_in_this_process() -> None:
    # The walk-forward's tasks take milliseconds: a pool's start-up would cost more than all of them.
    with make_executor("auto", 2) as executor:
        assert isinstance(executor, AdaptiveExecutor)
        pids = {executor.submit(os.getpid).result() for _ in range(20)}
        assert pids == {os.getpid()} and executor.pool is None


def _pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def test_auto_hands_the_rest_to_a_pool_when_the_measured_cost_says_so(in_process: WalkForwardReport) -> None:
    # 0.2 s tasks, 9 left after the first: 1.8 s x (1 - 1/2) = 0.9 s > a 0.5 s start-up -> the pool takes them.
    with AdaptiveExecutor(2, start_s=0.5) as executor:
        futures = [executor.submit(_pid_after, 0.2) for _ in range(10)]
        pids = [f.result() for f in futures]
        assert pids[0] == os.getpid() and os.getpid() not in pids[1:] and executor.pool is not None
        assert executor.submit(os.getpid).result() != os.getpid()  # later tasks go straight to the pool
    with AdaptiveExecutor(2, start_s=0.0) as executor:  # the same report as in-process when the pool is used
        report, _ = run_on(executor)
        assert executor.pool is not None
    assert report == in_process


def test_auto_on_one_free_cpu_never_starts_a_pool() -> None:
    with AdaptiveExecutor(1, start_s=0.0) as executor:
        assert [executor.submit(_pid_after, 0.01).result() for _ in range(5)] == [os.getpid()] * 5
        assert executor.pool is None


def test_auto_reports_failures_and_cancels_what_is_queued_on_shutdown() -> None:
    executor = AdaptiveExecutor(2, start_s=1e9)
    failed = executor.submit(int, "not a number")
    assert isinstance(failed.exception(timeout=5), ValueError)
    slow = executor.submit(time.sleep, 0.3)
    while not slow.running():
        time.sleep(0.001)
    queued = [executor.submit(abs, -k) for k in range(5)]
    executor.shutdown(wait=True, cancel_futures=True)
    assert slow.done() and not slow.cancelled()
    assert all(f.cancelled() for f in queued)
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(abs, -1)


def test_pool_workers_start_with_the_heap_they_inherited_frozen() -> None:
    with make_executor("process", 1) as executor:
        assert executor.submit(gc.get_freeze_count).result() > 10_000  # the interpreter and what it imported


def test_process_pools_never_fork() -> None:
    assert process_start_method() in ("forkserver", "spawn")
    if sys.platform == "linux":
        assert process_start_method() == "forkserver"
    with make_executor("process", 1) as executor:
        assert executor._mp_context.get_start_method() == process_start_method()  # type: ignore[attr-defined]
        assert executor.submit(sum, [1, 2, 3]).result() == 6


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("auto", ExecutorSpec(ExecutorKind.AUTO)),
        ("process", ExecutorSpec(ExecutorKind.PROCESS)),
        (" thread ", ExecutorSpec(ExecutorKind.THREAD)),
        ("serial", ExecutorSpec(ExecutorKind.SERIAL)),
        ("dask:local", ExecutorSpec(ExecutorKind.DASK)),
        ("dask://10.0.0.5:8786", ExecutorSpec(ExecutorKind.DASK, "tcp://10.0.0.5:8786")),
        ("dask://tls://scheduler.example:8786", ExecutorSpec(ExecutorKind.DASK, "tls://scheduler.example:8786")),
    ],
)
def test_executor_specs_parse(spec: str, parsed: ExecutorSpec) -> None:
    assert parse_executor_spec(spec) == parsed


@pytest.mark.parametrize("spec", ["processes", "dask", "dask://", "dask://host", "dask://host:port", ""])
def test_bad_specs_name_the_valid_forms(spec: str) -> None:
    with pytest.raises(ValueError, match="dask://host:port"):
        parse_executor_spec(spec)


def test_workers_must_be_positive() -> None:
    with (
        pytest.raises(ValueError, match="workers must be a whole number of at least 1, was 0"),
        make_executor("thread", 0),
    ):
        pass


def test_a_missing_dask_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # makes `import distributed` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'tradebot\[dask\]'"), make_executor("dask:local"):
        pass


def _raising() -> Iterator[int]:
    raise KeyboardInterrupt


def test_executors_are_closed_when_the_block_fails() -> None:
    with pytest.raises(KeyboardInterrupt), make_executor("thread", 2) as executor:
        next(_raising())
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(abs, -1)


POOL_CHILD = """
import os, time
from bot.ops.executors import process_pool
if __name__ == "__main__":
    pool = process_pool(1)
    print(pool.submit(os.getpid).result(), flush=True)
    time.sleep(600)
"""


def test_a_pool_worker_ends_with_the_process_that_started_it_even_on_kill_9(tmp_path: Path) -> None:
    script = tmp_path / "starter.py"
    script.write_text(POOL_CHILD)
    # Its worker is forked from the fork server: not the starter's child.
    assert not worker_outlives_kill_9([sys.executable, str(script)], cwd=ROOT)
