"""Where walk-forward tasks run, chosen by a spec string; every executor is closed when its block exits.

Specs:

* `auto` (default): `AdaptiveExecutor`. Tasks run one by one in this process while their cost is measured; once
  the measured mean task time times the tasks left says a pool would finish sooner, start-up included (a
  worker's start and imports, `POOL_START_S`), the rest go to a process pool of the CPUs that are free (the
  CPUs this process may use less the load average). So a small validation never pays a pool's start-up, and a
  machine already busy is not oversubscribed by a pool that would only make it slower.
* `process`: a `ProcessPoolExecutor` of `workers` (default: every CPU this process may use). Its
  workers start with the "forkserver" method (where the platform has it, else "spawn"), never "fork": the
  bot runs threads (asyncio, the Telegram job queue, logging handlers) and forking a threaded process can
  copy a lock held by another thread and deadlock the child. Workers import the task's function by module,
  so `evaluate` must be a module-level function or a `functools.partial` of one.
* `thread`: a `ThreadPoolExecutor` (useful when the work releases the GIL, or to debug concurrency).
* `serial`: `SerialExecutor`, which runs each task in the calling thread at submission (debugging, tests).
* `dask:local`: a local Dask cluster of `workers` (default 2) single-threaded worker processes, without the
  dashboard; `dask://host:port` (or `dask://tls://host:port`): an existing Dask scheduler, whose workers must
  have the same tradebot installed. Dask is optional: `pip install 'tradebot[dask]'`.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from multiprocessing.context import BaseContext
from typing import Any, Final, ParamSpec, TypeVar

from bot.ops.memory import freeze_heap

DASK_PREFIX: Final = "dask://"
POOL_START_S: Final = 1.5  # a pool worker's start and imports (measured ~0.9 s on 2 Graviton cores), with margin
DASK_LOCAL: Final = "dask:local"
DASK_LOCAL_WORKERS: Final = 2
DASK_MISSING: Final = "the dask executor needs dask.distributed, which is not installed: pip install 'tradebot[dask]'"

P = ParamSpec("P")
T = TypeVar("T")


class ExecutorKind(StrEnum):
    AUTO = "auto"
    PROCESS = "process"
    THREAD = "thread"
    SERIAL = "serial"
    DASK = "dask"


@dataclass(frozen=True, slots=True)
class ExecutorSpec:
    """A parsed executor spec: its kind and, for a remote Dask scheduler, the scheduler's address."""

    kind: ExecutorKind
    address: str | None = None  # None with DASK: start a local cluster

    def __post_init__(self) -> None:
        if self.address is not None and self.kind is not ExecutorKind.DASK:
            raise ValueError(f"only a dask executor has an address, {self.kind.value} was given {self.address!r}")


def parse_executor_spec(spec: str) -> ExecutorSpec:
    """Parse `process`, `thread`, `serial`, `dask:local` or `dask://host:port`, naming the valid forms."""
    text = spec.strip()
    if text == DASK_LOCAL:
        return ExecutorSpec(ExecutorKind.DASK)
    if text.startswith(DASK_PREFIX):
        address = text.removeprefix(DASK_PREFIX)
        host = address.split("://", 1)[-1]
        if not host or ":" not in host or not host.rsplit(":", 1)[1].isdigit():
            raise ValueError(f"executor {spec!r}: a dask scheduler address must look like dask://host:port")
        return ExecutorSpec(ExecutorKind.DASK, address if "://" in address else f"tcp://{address}")
    if text in (ExecutorKind.AUTO, ExecutorKind.PROCESS, ExecutorKind.THREAD, ExecutorKind.SERIAL):
        return ExecutorSpec(ExecutorKind(text))
    raise ValueError(f"unknown executor {spec!r}; use auto, process, thread, serial, dask:local or dask://host:port")


class SerialExecutor(Executor):
    """Runs every task in the calling thread as it is submitted; its futures are already done."""

    def __init__(self) -> None:
        self._shut_down = False

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run `fn(*args, **kwargs)` now and return its finished future (holding its result or exception)."""
        if self._shut_down:
            raise RuntimeError("cannot schedule new futures after shutdown")
        future: Future[T] = Future()
        future.set_running_or_notify_cancel()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse further tasks (there is never anything running to wait for)."""
        del wait, cancel_futures
        self._shut_down = True


@contextmanager
def make_executor(spec: str = "auto", workers: int | None = None) -> Iterator[Executor]:
    """Yield the executor `spec` names, with `workers` workers where that applies, and close it on exit."""
    parsed = parse_executor_spec(spec)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a whole number of at least 1, was {workers!r}")
    if parsed.kind is ExecutorKind.DASK:
        with _dask_executor(parsed.address, workers) as executor:
            yield executor
        return
    executor = _local_executor(parsed.kind, workers)
    try:
        yield executor
    except BaseException:
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


def start_worker(pid: int) -> None:
    """Set up a pool worker: it dies with process `pid` (`die_with`), its inherited heap frozen (`freeze_heap`)."""
    die_with(pid)
    freeze_heap()


def die_with(pid: int) -> None:
    """Make this worker process end when process `pid` (the one that started it) ends, even by kill -9.

    A pool worker forked from the fork server is not the starter's child and holds the server's keep-alive pipe,
    so neither a parent-death signal nor the server's exit would end it, and its task queue never reads EOF (it
    holds both ends): a thread waits on the starter itself (a pidfd; every second a liveness check where there is
    none) and exits the process when it is gone, so no worker computes on for a bot or a command that is dead."""
    threading.Thread(target=_exit_when_gone, args=(pid,), name="die-with-starter", daemon=True).start()


def _exit_when_gone(pid: int) -> None:
    try:
        watched = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(0)
    except (AttributeError, OSError):  # no pidfd here: poll
        while True:
            time.sleep(1.0)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(0)
    select.select([watched], [], [])  # readable once the process has ended
    os._exit(0)


def process_start_method() -> str:
    """The multiprocessing start method of the process pool: forkserver where available, else spawn."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


_PRELOAD: set[str] = {"__main__"}  # the standard library's default: the main script, for functions defined there


def preload_in_workers(*modules: str) -> None:
    """Start worker processes with `modules` already imported: the fork server imports them once and each worker
    is forked from it, so a new or replaced worker does not import pandas, TA-Lib or matplotlib again.

    Takes effect when the fork server starts (with this process's first worker), so call it at import time
    of the module whose workers need them; without a fork server (spawn) each worker imports as usual."""
    _PRELOAD.update(modules)
    if process_start_method() == "forkserver":
        multiprocessing.get_context("forkserver").set_forkserver_preload(sorted(_PRELOAD))


def worker_context() -> BaseContext:
    """The multiprocessing context worker processes start from (`process_start_method`)."""
    return multiprocessing.get_context(process_start_method())


def available_cpus() -> int:
    """CPUs this process may run on (its affinity where the platform reports it, else every CPU)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def free_cpus() -> int:
    """CPUs this process may use that the last minute's load average leaves idle (at least 1)."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return max(1, available_cpus() - math.floor(load))


def process_pool(workers: int | None) -> ProcessPoolExecutor:
    """A process pool of `workers` (default: every CPU this process may use), started without fork."""
    return ProcessPoolExecutor(
        max_workers=workers or available_cpus(),
        mp_context=worker_context(),
        initializer=start_worker,
        initargs=(os.getpid(),),
    )


class AdaptiveExecutor(Executor):
    """Runs tasks in this process, measuring them, until a process pool would finish the rest sooner.

    Tasks run in submission order on one driver thread (the caller waits on futures as with any executor).
    After each task: with `w` workers (`workers`, default the free CPUs) and `left` tasks at the measured mean
    time `m`, the pool is started when `left x m x (1 - 1/w) > start_s`; every task left is then handed to it.
    """

    def __init__(self, workers: int | None = None, *, start_s: float = POOL_START_S) -> None:
        self._workers = workers
        self._start_s = start_s
        self._queue: deque[tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._driver: threading.Thread | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._shut_down = False
        self._ran, self._spent = 0, 0.0

    @property
    def pool(self) -> ProcessPoolExecutor | None:
        """The process pool, once the measured cost started one."""
        return self._pool

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Queue `fn(*args, **kwargs)`; it runs here or in the pool, in submission order."""
        future: Future[T] = Future()
        with self._lock:
            if self._shut_down:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if self._pool is not None:
                _relay(self._pool.submit(fn, *args, **kwargs), future)
                return future
            self._queue.append((future, fn, args, kwargs))
            if self._driver is None:
                self._driver = threading.Thread(target=self._drive, name="adaptive-executor", daemon=True)
                self._driver.start()
            self._wake.notify()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse further tasks; cancel the queued ones if asked; wait for the running ones if asked."""
        with self._lock:
            self._shut_down = True
            if cancel_futures:
                while self._queue:
                    self._queue.popleft()[0].cancel()
            self._wake.notify()
            driver, pool = self._driver, self._pool
        if driver is not None and wait:
            driver.join()
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=cancel_futures)

    def _drive(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._shut_down:
                    self._wake.wait()
                if not self._queue:
                    return
                future, fn, args, kwargs = self._queue.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            started = time.perf_counter()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)
            self._ran, self._spent = self._ran + 1, self._spent + time.perf_counter() - started
            with self._lock:
                if self._queue and self._pool_pays():
                    self._pool = process_pool(self._workers or free_cpus())
                    while self._queue:
                        queued, fn, args, kwargs = self._queue.popleft()
                        _relay(self._pool.submit(fn, *args, **kwargs), queued)
                    return

    def _pool_pays(self) -> bool:
        workers = self._workers or free_cpus()
        if workers < 2:
            return False
        left = len(self._queue) * self._spent / self._ran
        return left * (1 - 1 / workers) > self._start_s


def _relay(source: Future[T], target: Future[T]) -> None:
    """Complete `target` as `source` completes (result, exception or cancellation)."""

    def copy(done: Future[T]) -> None:
        if done.cancelled():
            target.cancel()
            return
        if not target.set_running_or_notify_cancel():
            return  # the caller cancelled it
        error = done.exception()
        if error is not None:
            target.set_exception(error)
        else:
            target.set_result(done.result())

    source.add_done_callback(copy)


def _local_executor(kind: ExecutorKind, workers: int | None) -> Executor:
    if kind is ExecutorKind.AUTO:
        return AdaptiveExecutor(workers)
    if kind is ExecutorKind.PROCESS:
        return process_pool(workers)
    if kind is ExecutorKind.THREAD:
        return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="walkforward")
    return SerialExecutor()


@contextmanager
def _dask_executor(address: str | None, workers: int | None) -> Iterator[Executor]:
    try:
        from distributed import Client, LocalCluster  # noqa: PLC0415 - optional dependency, imported on use
    except ImportError:
        raise ImportError(DASK_MISSING) from None
    if address is None:
        cluster = LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=workers or DASK_LOCAL_WORKERS, threads_per_worker=1, processes=True, dashboard_address=None
        )
        with cluster, Client(cluster) as client, _client_executor(client) as executor:  # type: ignore[no-untyped-call]
            yield executor
    else:
        client = Client(address)  # type: ignore[no-untyped-call]
        with client, _client_executor(client) as executor:
            yield executor


@contextmanager
def _client_executor(client: Any) -> Iterator[Executor]:
    # pure=False: every task runs even if Dask has seen identical arguments (no result deduplication).
    executor: Executor = client.get_executor(pure=False)
    try:
        yield executor
    finally:
        executor.shutdown(wait=False)  # cancels whatever is still queued; the client and cluster close next
