"""Where walk-forward tasks run, chosen by a spec string; every executor is closed when its block exits.

Specs:

* `process` (default): a `ProcessPoolExecutor` of `workers` (default: every CPU this process may use). Its
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

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, ParamSpec, TypeVar

DASK_PREFIX: Final = "dask://"
DASK_LOCAL: Final = "dask:local"
DASK_LOCAL_WORKERS: Final = 2
DASK_MISSING: Final = "the dask executor needs dask.distributed, which is not installed: pip install 'tradebot[dask]'"

P = ParamSpec("P")
T = TypeVar("T")


class ExecutorKind(StrEnum):
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
    if text in (ExecutorKind.PROCESS, ExecutorKind.THREAD, ExecutorKind.SERIAL):
        return ExecutorSpec(ExecutorKind(text))
    raise ValueError(f"unknown executor {spec!r}; use process, thread, serial, dask:local or dask://host:port")


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
def make_executor(spec: str = "process", workers: int | None = None) -> Iterator[Executor]:
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


def process_start_method() -> str:
    """The multiprocessing start method of the process pool: forkserver where available, else spawn."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def available_cpus() -> int:
    """CPUs this process may run on (its affinity where the platform reports it, else every CPU)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _local_executor(kind: ExecutorKind, workers: int | None) -> Executor:
    if kind is ExecutorKind.PROCESS:
        context = multiprocessing.get_context(process_start_method())
        return ProcessPoolExecutor(max_workers=workers or available_cpus(), mp_context=context)
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
