"""The analysis runs with their signals and rejections."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from data.sqlite.codecs import (
    _check_run_id,
    _encode_rejection,
    _encode_setups,
    _encode_ts,
    _json,
    _sequence,
    _string_list,
)
from data.sqlite.connection import StoreBase
from data.sqlite.errors import StoreError
from data.sqlite.queries import (
    _close_run,
    _Db,
    _fetchall,
    _insert_rejections,
    _insert_signals,
    _require_run,
    _require_running,
    decoded,
)
from data.sqlite.records import _decode_rejection, _decode_run, _decode_signal
from engine.domain import (
    Rejection,
    RejectionKind,
    RunStatus,
    ScoredSetup,
    SignalStatus,
)
from engine.ports import RunSummary


class RunLog(StoreBase):
    """The analysis runs with their signals and rejections."""

    async def start_run(self, started_at: datetime, as_of: datetime, data_source: str, symbols: Sequence[str]) -> int:
        """Record the start of a run and return its id."""
        started = _encode_ts(started_at, "started_at")
        as_of_text = _encode_ts(as_of, "as_of")
        if not isinstance(data_source, str) or not data_source.strip():
            raise ValueError(f"data_source must be a non-empty string, was {data_source!r}")
        symbols_json = _json(_string_list(symbols, "symbols"))

        async def write(db: _Db) -> int:
            run_id = await db.insert(
                "INSERT INTO analysis_runs (started_at, as_of, data_source, symbols, status) VALUES (?, ?, ?, ?, ?)",
                (started, as_of_text, data_source, symbols_json, RunStatus.RUNNING.value),
            )
            if run_id is None:
                raise StoreError("SQLite did not report the id of the new analysis run")
            return run_id

        return await self._transact("start a run", write)

    async def finish_run(
        self,
        run_id: int,
        finished_at: datetime,
        setups: Sequence[ScoredSetup],
        rejections: Sequence[Rejection],
        errors: Sequence[str],
    ) -> None:
        """Store the run's setups (status NEW, idempotent by signal id) and rejections, and close the run.

        Everything happens in one transaction: on any error nothing is written and the run stays running.
        """
        _check_run_id(run_id)
        finished = _encode_ts(finished_at, "finished_at")
        signal_rows = _encode_setups(setups)
        rejection_rows = [_encode_rejection(r, i) for i, r in enumerate(_sequence(rejections, "rejections"))]
        errors_json = _json(_string_list(errors, "errors", allow_empty_items=False))
        rejected_setups = sum(1 for r in rejection_rows if r.kind is RejectionKind.SETUP)
        rejected_symbols = len(rejection_rows) - rejected_setups

        async def write(db: _Db) -> None:
            await _require_running(db, run_id, finished_at, "finished")
            await _insert_signals(db, run_id, signal_rows, finished)
            await _insert_rejections(db, run_id, rejection_rows)
            await _close_run(
                db,
                run_id,
                finished,
                RunStatus.FINISHED,
                errors_json,
                (len(signal_rows), rejected_setups, rejected_symbols),
            )

        await self._transact(f"finish run {run_id}", write)

    async def mark_run_failed(self, run_id: int, finished_at: datetime, error: str) -> None:
        """Close a running run as failed with the error that stopped it."""
        _check_run_id(run_id)
        finished = _encode_ts(finished_at, "finished_at")
        if not isinstance(error, str) or not error.strip():
            raise ValueError(f"error must be a non-empty string describing the failure, was {error!r}")

        async def write(db: _Db) -> None:
            await _require_running(db, run_id, finished_at, "marked failed")
            await _close_run(db, run_id, finished, RunStatus.FAILED, _json([error]), (0, 0, 0))

        await self._transact(f"mark run {run_id} failed", write)

    async def run(self, run_id: int) -> RunSummary | None:
        """Return the run with this id, or None if there is none."""
        _check_run_id(run_id)
        async with self._read(f"read run {run_id}") as db:
            rows = await _fetchall(db, "SELECT * FROM analysis_runs WHERE id = ?", (run_id,))
        return _decode_run(rows[0]) if rows else None

    async def recent_runs(self, limit: int = 20) -> list[RunSummary]:
        """Return up to `limit` runs, newest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, was {limit!r}")
        async with self._read("read recent runs") as db:
            rows = await _fetchall(db, "SELECT * FROM analysis_runs ORDER BY id DESC LIMIT ?", (limit,))
        return [_decode_run(row) for row in rows]

    async def setups_for_run(self, run_id: int) -> list[tuple[ScoredSetup, SignalStatus]]:
        """Return the setups the run reported, in its order, each with the signal's current status.

        A setup first stored by an earlier run comes back as that run stored it.
        """
        _check_run_id(run_id)
        async with self._read(f"read the setups of run {run_id}") as db:
            await _require_run(db, run_id)
            rows = await _fetchall(
                db,
                "SELECT s.* FROM run_signals AS rs JOIN signals AS s ON s.signal_id = rs.signal_id"
                " WHERE rs.run_id = ? ORDER BY rs.position",
                (run_id,),
            )
        return await decoded(rows, _decode_signal)

    async def rejections_for_run(self, run_id: int) -> list[Rejection]:
        """Return the run's rejections in the order they were reported."""
        _check_run_id(run_id)
        async with self._read(f"read the rejections of run {run_id}") as db:
            await _require_run(db, run_id)
            rows = await _fetchall(db, "SELECT * FROM rejections WHERE run_id = ? ORDER BY id", (run_id,))
        return await decoded(rows, _decode_rejection)
