"""Render charts off the event loop: in the bot's worker process, with a deadline, never blocking a click.

matplotlib holds the GIL while it draws, so a thread would still slow the bot's loop; the worker process
(`bot.ops.worker`) does not, and keeps matplotlib and mplfinance out of the bot's own memory. A chart that fails or
misses its deadline is None: the caller sends text instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from bot.charts.spec import ChartSpec
from bot.ops.worker import WorkerFailed, WorkerProcess

log = logging.getLogger(__name__)

DEADLINE_SECONDS = 20.0  # a signal waits at most this long for its chart (the first one starts the process)


def _render(spec: ChartSpec) -> bytes:
    from bot.charts.render import render_png  # noqa: PLC0415 - matplotlib only in the worker

    return render_png(spec)


def _build_and_render(build: Callable[..., ChartSpec | None], *args: Any) -> bytes | None:
    spec = build(*args)
    return None if spec is None else _render(spec)


class ChartWorker:
    """Draws charts in the worker process; `render` returns PNG bytes, or None when it failed or was too slow."""

    def __init__(self, process: WorkerProcess | None = None, deadline: float = DEADLINE_SECONDS) -> None:
        self.deadline = deadline
        self.process = process or WorkerProcess()
        self._owned = process is None
        self._lock = asyncio.Lock()  # one chart at a time

    async def warm(self) -> None:
        """Start the worker and import the drawing libraries now, so the first signal's chart is not late."""
        if not await self.process.warm("bot.charts.render"):
            log.warning("the chart worker did not start")

    async def render(self, spec: ChartSpec) -> bytes | None:
        return await self._call(repr(spec.title), _render, spec)

    async def draw(self, what: str, build: Callable[..., ChartSpec | None], *args: Any) -> bytes | None:
        """Build the chart `what` with `build(*args)` and draw it, both in the worker: the indicator lines a chart
        shows are computed there, so TA-Lib stays out of the bot too. None when `build` gives None or fails."""
        return await self._call(what, _build_and_render, build, *args)

    async def _call(self, what: str, fn: Callable[..., bytes | None], *args: Any) -> bytes | None:
        async with self._lock:
            try:
                return await self.process.call(self.deadline, fn, *args)
            except WorkerFailed as exc:
                log.warning("chart %s not drawn (%s); sent as text", what, exc)
            except Exception as exc:
                log.warning("chart %s could not be drawn (%s: %s); sent as text", what, type(exc).__name__, exc)
            return None

    def close(self) -> None:
        """Stop the worker process, when this chart worker started its own."""
        if self._owned:
            self.process.close()
