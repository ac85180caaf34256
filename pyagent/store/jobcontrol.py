"""Job control's side of the store (retries, cancel, alerts, run-history metrics), as
methods named after what job control does, returning frozen records.

`JobControlStore` is the agent's: it lives with the agent's store (`AgentStore.job_control`)
and works on its bookkeeping pool. `CancelRequests` is `pyagent jobs cancel`'s, on the
management command's connection (`Catalog.cancel_requests`). Every statement is a named
block of jobcontrol.sql; database errors are raised unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from pyagent.store.connections import BookkeepingPool, Row
from pyagent.store.records import Claim, RunStatus
from pyagent.store.sqlfile import load_blocks

# What a retry rule answers at a failed run's release: (the run's status as stored, the
# job's failure streak) -> the delay before the retry, or None for no retry.
RetryDelay = Callable[[RunStatus | None, int], float | None]


def statement(name: str) -> str:
    """One named statement of jobcontrol.sql."""
    return load_blocks("pyagent.store", "jobcontrol.sql")[name]


# ---- records -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FailedRunRelease:
    """What the release of a failed run found and did."""

    final_status: RunStatus | None  # as stored: ABORTED when a cancel won the race
    failure_streak: int  # consecutive failed runs, this one included
    kept_changed_nextrun: bool  # a Run now / schedule edit made during the run was kept
    delay: float | None  # the retry delay asked for (None: no retry)
    retried: bool  # jobnextrun was brought forward to now + delay
    next_run: datetime | None


@dataclass(frozen=True)
class CancelMark:
    """One of the agent's current runs, marked aborted by a cancel request."""

    job_id: int
    jlgid: int
    message: str | None  # the cancelled step's output ("Cancelled by ..."), if one has it


@dataclass(frozen=True)
class RunReport:
    """One finished run, as an alert describes it."""

    job_name: str
    status: RunStatus
    start: datetime
    duration: float | None
    step_name: str | None
    step_status: RunStatus | None
    step_result: int | None
    step_output: str | None
    previous_status: RunStatus | None


@dataclass(frozen=True)
class JobHistory:
    """A job's last success and failure (epoch seconds) and its failure streak."""

    job_id: int
    job_name: str
    last_success: float | None
    last_failure: float | None
    failure_streak: int


@dataclass(frozen=True)
class CancelledRun:
    """A run a cancel request marked aborted."""

    jlgid: int
    agent_pid: int
    claimed_at: datetime
    station: str | None
    steps_marked: int
    at: str


# ---- the agent's side --------------------------------------------------------------------


class _NotClaimed(Exception):
    """Rolls the release transaction back: the job is not ours any more."""


class JobControlStore:
    """Job control's reads and writes inside the agent, on its bookkeeping pool."""

    def __init__(self, pool: BookkeepingPool) -> None:
        self._pool = pool

    async def cancelled_runs(self, job_ids: Sequence[int], pid: int) -> list[CancelMark]:
        """Which of these jobs, claimed by agent `pid`, have their current run marked
        aborted by someone else. One try (the watcher asks again a second later)."""
        rows = await self._pool.rows(
            statement("cancelled_runs"), {"job_ids": list(job_ids), "pids": [pid]}
        )
        return [CancelMark(int(r[0]), int(r[1]), r[2]) for r in rows]

    async def close_cancelled_steps(self, jlgid: int, output: str) -> int:
        """End any step row of a cancelled run that is still 'r' (one started in the
        instant before the cancel was seen); how many."""
        params = {"jlgid": jlgid, "output": output}
        return await self._pool.count(statement("close_cancelled_steps"), params)

    async def run_report(self, jlgid: int, output_chars: int) -> RunReport | None:
        """The report of run `jlgid` (its step output cut to `output_chars`); None when
        the row is gone."""
        rows = await self._pool.rows(
            statement("run_report"), {"jlgid": jlgid, "output_chars": output_chars}
        )
        if not rows:
            return None
        name, status, start, duration, step, step_status, result, output, previous = rows[0]
        return RunReport(
            job_name=str(name),
            status=RunStatus(str(status)),
            start=start,
            duration=None if duration is None else float(duration),
            step_name=step,
            step_status=RunStatus.stored(step_status),
            step_result=None if result is None else int(result),
            step_output=output,
            previous_status=RunStatus.stored(previous),
        )

    async def job_run_history(self) -> list[JobHistory]:
        """Every job's run-history summary, for the per-job gauges."""
        rows = await self._pool.rows(statement("job_run_history"))
        return [JobHistory(int(r[0]), str(r[1]), r[2], r[3], int(r[4])) for r in rows]

    async def release_failed_run(
        self,
        claim: Claim,
        jlgid: int,
        status: RunStatus,
        *,
        owner: Callable[[], int],
        retry_delay: RetryDelay,
        timezone: str | None = None,
    ) -> FailedRunRelease | None:
        """Close the run's log, release the job and, if `retry_delay` gives a delay and
        nobody changed jobnextrun during the run, bring the next run forward to now + delay
        (unless the schedule's next run comes first), in one transaction; with the job's
        own `timezone`, its schedules are read in that zone. `owner()` is the identity
        holding the claim, asked at every attempt (a reconnect moves it). Outages are
        waited out. None when the claim is no longer held (nothing changed) or a hard
        shutdown gave up; psycopg's error when a statement timed out or the schema's
        next-run function failed (the ordinary release has the fallback)."""

        async def attempt() -> FailedRunRelease | None:
            try:
                return await self._release_failed_run(
                    claim, jlgid, status, pid=owner(), retry_delay=retry_delay, timezone=timezone
                )
            except _NotClaimed:
                return None

        return await self._pool.retrying(attempt, retry_timeouts=False)

    async def _release_failed_run(
        self,
        claim: Claim,
        jlgid: int,
        status: RunStatus,
        *,
        pid: int,
        retry_delay: RetryDelay,
        timezone: str | None,
    ) -> FailedRunRelease:
        job_id = claim.job_id
        params = {"job_id": job_id, "pids": [pid], "claimed_nextrun": claim.claimed_nextrun}
        async with self._pool.connection() as conn, conn.transaction():
            row = await _one(conn, statement("lock_claimed_job"), params)
            if row is None:
                raise _NotClaimed
            kept = row[0] != claim.claimed_nextrun
            if timezone is not None:
                await conn.execute(statement("set_local_timezone"), {"zone": timezone})
            await conn.execute(
                statement("finish_joblog"), {"jlgid": jlgid, "status": status.value}
            )
            await conn.execute(statement("release_job"), {**params, "next_run": None})
            streak_row = await _one(
                conn, statement("failure_streak"), {"job_id": job_id, "jlgid": jlgid}
            )
            assert streak_row is not None
            final_status, streak = RunStatus.stored(streak_row[0]), int(streak_row[1])
            delay = None if kept else retry_delay(final_status, streak)
            retried = False
            next_run: datetime | None = None
            if delay is not None:
                params = {"job_id": job_id, "delay": delay}
                moved = await _one(conn, statement("bring_next_run_forward"), params)
                if moved is not None:
                    retried, next_run = True, moved[0]
            if not retried:
                current = await _one(conn, statement("next_run_of"), {"job_id": job_id})
                next_run = None if current is None else current[0]
        return FailedRunRelease(final_status, streak, kept, delay, retried, next_run)


async def _one(
    conn: psycopg.AsyncConnection[Row], sql: str, params: dict[str, Any]
) -> Row | None:
    row = await (await conn.execute(sql, params)).fetchone()
    return None if row is None else tuple(row)


# ---- `pyagent jobs cancel` ---------------------------------------------------------------


class CancelRequests:
    """The cancel request and its outcome, on a management command's connection."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def find_jobs(self, job: str) -> list[tuple[int, str]]:
        """(id, name) of the jobs JOB names: its id when numeric (else, or if none, its
        exact name)."""
        rows: list[tuple[Any, ...]] = []
        if job.strip().isdigit():
            rows = self._conn.execute(statement("find_job_by_id"), {"job_id": int(job)}).fetchall()
        if not rows:
            rows = self._conn.execute(statement("find_job_by_name"), {"name": job}).fetchall()
        return [(int(r[0]), str(r[1])) for r in rows]

    def request_cancel(self, job_id: int, who: str) -> CancelledRun | None:
        """Mark the job's current run aborted, signed by `who`; None when it is not
        running (nothing changed)."""
        params = {"job_id": job_id, "who": who}
        row = self._conn.execute(statement("request_cancel"), params).fetchone()
        if row is None:
            return None
        return CancelledRun(int(row[0]), int(row[1]), row[2], row[3], int(row[4]), str(row[5]))

    def run_released(self, job_id: int, run: CancelledRun) -> bool:
        """True once the agent has let go of the cancelled run (released the job or
        started another run)."""
        params = {"job_id": job_id, "agent_pid": run.agent_pid, "lastrun": run.claimed_at}
        row = self._conn.execute(statement("run_released"), params).fetchone()
        return row is None or bool(row[0])
