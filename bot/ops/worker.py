"""One worker process for the bot's CPU work (a scan's indicators and strategies, charts), off the event loop.

A thread computing in the bot's process holds the GIL that the event loop (a click) needs; a process does not.
The worker is forked from a fork server that imported the worker's libraries once (`PRELOAD`; never a fork of the
bot itself: no copy of its memory, its threads or its locks; spawn where there is no fork server), starts on the
first call or `warm`, dies with the bot even on kill -9 (`bot.ops.executors.die_with`) and is replaced when it dies or
misses a deadline. Functions run in it must be module-level and their arguments picklable. It logs nothing of
its own: what goes wrong comes back to the bot as an exception or a value, and the bot's logging (with its
redaction) says it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Final, ParamSpec, TypeVar

from bot.ops.executors import die_with, preload_in_workers, worker_context
from bot.ops.memory import freeze_heap

# What the bot's work runs on, imported once and forked (TA-Lib by name: the engine imports it on first use).
PRELOAD: Final = ("bot.services.scan", "talib", "bot.charts.render")
WARM_DEADLINE_SECONDS: Final = 120.0  # a cold start imports pandas, TA-Lib and matplotlib: seconds on a small box

preload_in_workers(*PRELOAD)  # before any worker of this process starts the fork server

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


class WorkerFailed(Exception):
    """The worker process died or missed the deadline; it is replaced for the next call."""


def _die_with_the_bot(bot: int) -> None:
    """End this worker when the bot's process ends (even by kill -9), so no worker outlives it holding its pipes;
    silence this process's own logging; freeze the libraries it was forked with (`freeze_heap`)."""
    logging.disable(logging.CRITICAL)
    die_with(bot)
    freeze_heap()


def _import(modules: tuple[str, ...]) -> bool:
    for name in modules:
        __import__(name)
    return True


def _new_pool() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(1, mp_context=worker_context(), initializer=_die_with_the_bot, initargs=(os.getpid(),))


async def _answer(
    pool: ProcessPoolExecutor, deadline: float, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
) -> T:
    """`fn(*args, **kwargs)` in `pool`'s process within `deadline` seconds, or WorkerFailed."""

    async def answer() -> T:
        if getattr(pool, "_processes", None):
            future = pool.submit(fn, *args, **kwargs)
        else:  # this task starts the process (the first one, the fork server too): it waits for the fork
            future = await asyncio.to_thread(pool.submit, fn, *args, **kwargs)
        return await asyncio.wrap_future(future)

    try:
        return await asyncio.wait_for(answer(), deadline)
    except TimeoutError:
        raise WorkerFailed(f"no answer within {deadline:.0f} s") from None
    except BrokenProcessPool:
        raise WorkerFailed("the worker process died") from None


def _kill(pool: ProcessPoolExecutor) -> None:
    for process in list(getattr(pool, "_processes", {}).values()):
        process.kill()
    pool.shutdown(wait=False, cancel_futures=True)  # never wait on the event loop


class WorkerProcess:
    """The bot's worker process: `call` runs a function there within a deadline."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._ready = False
        self._warming: asyncio.Task[bool] | None = None
        self._modules: tuple[str, ...] = ()  # what it was warmed with: a recycled worker is warmed with it again

    @property
    def ready(self) -> bool:
        """Whether the worker has started and imported what it was warmed with (calls then start at once)."""
        return self._ready and self._pool is not None

    async def prepare(self, *modules: str) -> bool:
        """Wait until the worker is ready, starting it (with `modules`) unless it is already starting; False if it
        could not start. Cancelling the wait leaves the start going on."""
        if self.ready:
            return True
        if self._warming is None or self._warming.done():
            self._warming = asyncio.get_running_loop().create_task(self.warm(*modules), name="worker-warm-up")
        return await asyncio.shield(self._warming)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = _new_pool()
        return self._pool

    async def warm(self, *modules: str) -> bool:
        """Start the worker and import `modules` there now, so the first real call is not late; False if it failed."""
        self._modules = tuple(dict.fromkeys((*self._modules, *modules)))
        try:
            self._ready = await self.call(WARM_DEADLINE_SECONDS, _import, modules)
        except Exception as exc:  # the bot computes in its own process meanwhile
            log.warning("the worker process did not start (%s: %s); its work runs in the bot", type(exc).__name__, exc)
            self._ready = False
        return self._ready

    async def call(self, deadline: float, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args, **kwargs)` in the worker; its own exception as raised there; WorkerFailed when the worker died
        or took longer than `deadline` seconds (it is then replaced)."""
        pool = self._executor()
        try:
            return await _answer(pool, deadline, fn, *args, **kwargs)
        except WorkerFailed:
            self._abandon(pool)
            raise

    def _abandon(self, pool: ProcessPoolExecutor) -> None:
        """Kill `pool`'s process and forget it, if it is still the current one (calls that failed together with it
        must not abandon the worker that replaced it)."""
        if pool is not self._pool:
            return
        self._pool, self._ready = None, False
        _kill(pool)

    async def recycle(self) -> None:
        """Replace the worker by a fresh one warmed as it was (forked from the fork server, which holds only the
        preloaded libraries), so what a big job left in it is given back: calls go to the old one until the new one
        is ready, and the old one exits once it has finished what it was given."""
        old = self._pool
        if old is None:
            return
        new = _new_pool()
        try:
            await _answer(new, WARM_DEADLINE_SECONDS, _import, self._modules)
        except asyncio.CancelledError:  # the bot is stopping: the new one goes with the call
            _kill(new)
            raise
        except Exception as exc:
            log.warning("the worker was not replaced (%s: %s); the one it has goes on", type(exc).__name__, exc)
            _kill(new)
            return
        if self._pool is not old:  # it failed and was replaced meanwhile: keep that one
            new.shutdown(wait=False)
            return
        self._pool = new
        old.shutdown(wait=False)

    def pid(self) -> int | None:
        """The worker's process id while it runs (for tests and diagnostics)."""
        processes: dict[int, Any] = dict(getattr(self._pool, "_processes", None) or {})
        return next(iter(processes), None)

    def close(self) -> None:
        """Stop the worker process."""
        if self._warming is not None:
            self._warming.cancel()
        pool, self._pool, self._ready = self._pool, None, False
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
