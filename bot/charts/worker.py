"""Render charts off the event loop: in one worker process, with a deadline, never blocking a click.

matplotlib holds the GIL while it draws, so a thread would still slow the bot's loop; a separate process does not,
and keeps matplotlib and mplfinance out of the bot's own memory. The process starts on the first chart, dies with the
bot (even a kill -9) and is replaced if it dies. A chart that fails or misses its
deadline is None: the caller sends text instead.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from bot.charts.spec import ChartSpec

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies
DEADLINE_SECONDS = 20.0  # a signal waits at most this long for its chart (the first one starts the process)


def _render(spec: ChartSpec) -> bytes:
    from bot.charts.render import render_png  # noqa: PLC0415 - matplotlib only in the worker

    return render_png(spec)


def _warm() -> bool:
    import bot.charts.render  # noqa: F401, PLC0415

    return True


def _die_with_the_bot() -> None:
    """Ask Linux to kill this worker when the bot's process dies (even by kill -9), so no drawing process outlives
    it holding its pipes."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the worker ends when its task pipe closes
        pass
    if os.getppid() == 1:  # the bot died before the request took effect
        os._exit(0)


class ChartWorker:
    """Draws charts in one worker process; `render` returns PNG bytes, or None when it failed or was too slow."""

    def __init__(self, deadline: float = DEADLINE_SECONDS) -> None:
        self.deadline = deadline
        self._pool: ProcessPoolExecutor | None = None
        self._lock = asyncio.Lock()  # one chart at a time: the pool has one worker

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no copy of the bot's memory
            self._pool = ProcessPoolExecutor(1, mp_context=spawn, initializer=_die_with_the_bot)
        return self._pool

    async def warm(self) -> None:
        """Start the worker and import the drawing libraries now, so the first signal's chart is not late."""
        try:
            await asyncio.wrap_future(self._executor().submit(_warm))
        except Exception as exc:  # a chart is a convenience: the bot runs without one
            log.warning("the chart worker did not start: %s", exc)

    async def render(self, spec: ChartSpec) -> bytes | None:
        async with self._lock:
            try:
                future = self._executor().submit(_render, spec)
                return await asyncio.wait_for(asyncio.wrap_future(future), self.deadline)
            except TimeoutError:
                log.warning("chart %r took over %.0f s; sent as text", spec.title, self.deadline)
                self._restart()
            except BrokenProcessPool:
                log.warning("the chart worker died drawing %r; sent as text, a new worker next time", spec.title)
                self._restart()
            except Exception as exc:
                log.warning("chart %r could not be drawn (%s: %s); sent as text", spec.title, type(exc).__name__, exc)
            return None

    def _restart(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            for process in list(getattr(pool, "_processes", {}).values()):
                process.kill()  # a stuck drawing is abandoned, not waited for
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the worker process."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
