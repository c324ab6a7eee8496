"""Validating the traded systems in the background: in a worker process, with progress in the log and /status.

When the bot starts with systems that have no current baseline of their own (a first start, new parameters, a new
engine version, or a baseline past its shelf life) it runs the gate for them in a separate process, so the event
loop and the approval buttons stay responsive. The worker (`python -m bot.services.background_validation`) reads
its jobs from stdin (a pickle written by this process), runs them one at a time at a lower CPU priority, stores each
baseline in the database as soon as it is made (so an interrupted run keeps what it finished and the next start
validates only the rest), and writes one JSON line of progress per system to stdout. The data goes up to the
bot clock's now: a replay is never validated on its own future.

Until a system's baseline passes, its signals are offered with a warning in manual mode and never executed
automatically; the chat is told when the run ends, with how many systems passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pickle
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from bot.services.events import Announcer, Notice, ValidationFinished
from bot.services.systems import SystemBook
from bot.services.validate import GateJob, run_job
from data.sqlite.store import SqliteStore
from engine.ports import BotStore, Clock, ProviderError
from engine.systems import SystemSpec

log = logging.getLogger(__name__)

WORKER_NICENESS: Final = 10
STOP_GRACE_SECONDS: Final = 3.0
WORKER_BUSY_TIMEOUT_MS: Final = 30_000  # the worker is in no hurry: it waits out the bot's own writes


@dataclass(frozen=True)
class WorkerRequest:
    """What the worker process is given: where to store the baselines, and the jobs."""

    db_path: str
    jobs: tuple[GateJob, ...]


@dataclass
class Progress:
    """Where the background validation stands, for /status."""

    total: int = 0
    done: int = 0
    passed: int = 0
    current: str = ""
    errors: int = 0
    running: bool = False
    finished_at: datetime | None = None

    def text(self) -> str:
        if self.running:
            return f"validating in the background: {self.done} of {self.total} systems done ({self.passed} passed)"
        if self.finished_at is not None:
            failed = f", {self.errors} could not run" if self.errors else ""
            when = f"{self.finished_at:%Y-%m-%d %H:%MZ}"
            return f"background validation finished {when}: {self.passed} of {self.total} passed{failed}"
        return ""


class BackgroundValidation:
    """Runs the gate for the systems that need it in a worker process and tells the chat when it is done."""

    def __init__(
        self,
        systems: SystemBook,
        store: BotStore,
        notifier: Announcer,
        clock: Clock,
        jobs_for: Callable[[Sequence[SystemSpec], datetime], list[GateJob]],
        db_path: Path,
        worker: Sequence[str] = (sys.executable, "-m", __name__),
    ) -> None:
        self.systems = systems
        self.store = store
        self.notifier = notifier
        self.clock = clock
        self.jobs_for = jobs_for  # the gate's jobs for these systems on data up to `end`
        self.db_path = db_path
        self.worker = tuple(worker)  # the command that runs `_worker`
        self.progress = Progress()
        self._task: asyncio.Task[None] | None = None
        self._process: asyncio.subprocess.Process | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start_if_needed(self) -> bool:
        """Start validating the systems without a current baseline of their own; False when none needs it."""
        if self.running:
            return False
        now = self.clock.now()
        await self.systems.refresh(self.store)
        waiting = self.systems.needing_validation(now)
        if not waiting:
            return False
        try:
            jobs = await asyncio.to_thread(self.jobs_for, waiting, now)  # conversion prices may be downloaded
        except (ProviderError, ValueError) as exc:
            log.warning("background validation cannot start: %s", exc)
            return False
        self.progress = Progress(total=len(jobs), running=True)
        log.info("validating %d system(s) in the background (data up to %s)", len(jobs), now.isoformat())
        self._task = asyncio.create_task(self._run(jobs), name="background-validation")
        return True

    async def wait(self) -> None:
        """Wait for the run in progress (tests, shutdown)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def stop(self) -> None:
        """Stop the worker process (its finished baselines are stored already) and the task that reads it."""
        process = self._process
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), STOP_GRACE_SECONDS)
            except TimeoutError:
                process.kill()
                await process.wait()  # gone, and its database locks with it, before anything else writes
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self, jobs: Sequence[GateJob]) -> None:
        request = pickle.dumps(WorkerRequest(str(self.db_path), tuple(jobs)))
        process = await asyncio.create_subprocess_exec(
            *self.worker,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self._process = process
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        process.stdin.write(request)
        await process.stdin.drain()
        process.stdin.close()
        errors = asyncio.create_task(process.stderr.read())  # read alongside: a full stderr pipe would block it
        passed: list[str] = []
        async for raw in process.stdout:
            try:
                line = json.loads(raw)
            except ValueError:  # something in the worker printed: not progress
                log.info("background validation worker: %s", raw.decode(errors="replace").rstrip())
                continue
            self.progress.done += 1
            self.progress.current = line["system"]
            if line.get("error"):
                self.progress.errors += 1
                log.warning("background validation of %s could not run: %s", line["system"], line["error"])
            else:
                self.progress.passed += bool(line["passed"])
                if line["passed"]:
                    passed.append(line["system"])
                log.info(
                    "background validation %d/%d: %s %s",
                    self.progress.done,
                    self.progress.total,
                    line["system"],
                    "PASS" if line["passed"] else "FAIL: " + "; ".join(line["reasons"][:2]),
                )
        stderr = (await errors).decode(errors="replace")
        code = await process.wait()
        self.progress.running = False
        self.progress.finished_at = self.clock.now()
        await self.systems.refresh(self.store)
        if code != 0:
            tail = stderr.strip().splitlines()[-1:] or [f"exit code {code}"]
            log.error("background validation stopped (exit %s): %s", code, stderr[-2000:])
            await self.notifier.announce(
                Notice(f"background validation stopped after {self.progress.done} systems: {tail[0]}")
            )
            return
        await self.notifier.announce(ValidationFinished(tuple(passed), self.progress.total, self.progress.errors))


def _worker(stdin: Any, stdout: Any) -> int:
    """The worker process: run each job, store its baseline, print one JSON line per system."""
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    request: WorkerRequest = pickle.load(stdin)  # written by the bot itself, never by anyone else

    async def save(outcome_baseline: Any) -> None:
        async with await SqliteStore.open(Path(request.db_path), busy_timeout_ms=WORKER_BUSY_TIMEOUT_MS) as store:
            await store.save_baseline(outcome_baseline)

    for job in request.jobs:
        try:
            outcome = run_job(job, created_at=job.end)
        except (ProviderError, ValueError) as exc:
            line: dict[str, Any] = {"system": job.label, "error": str(exc)}
        else:
            asyncio.run(save(outcome.baseline))
            line = {"system": job.label, "passed": outcome.report.passed, "reasons": list(outcome.report.failures)}
        stdout.write(json.dumps(line) + "\n")
        stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(_worker(sys.stdin.buffer, sys.stdout))
