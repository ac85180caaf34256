"""Data access for job control (retries, cancel, alerts, run-history metrics).

Every statement lives in `control.sql`; these functions only bind parameters and shape the
rows. They take a psycopg connection (autocommit) and raise psycopg's errors unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from pyagent.store.sqlfile import load_blocks

Conn = psycopg.AsyncConnection[Any]


def statement(name: str) -> str:
    """One named statement of control.sql."""
    return load_blocks("pyagent.store", "control.sql")[name]


# ---- retries -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FailedRunRelease:
    """What the release of a failed run found and did."""

    final_status: str | None  # as stored: 'd' when a cancel won the race
    failure_streak: int  # consecutive failed runs, this one included
    kept_changed_nextrun: bool  # a Run now / schedule edit made during the run was kept
    delay: float | None  # the retry delay asked for (None: no retry)
    retried: bool  # jobnextrun was brought forward to now + delay
    next_run: datetime | None


async def _release_failed_run(
    conn: Conn,
    *,
    job_id: int,
    jlgid: int,
    status: str,
    pids: Sequence[int],
    claimed_nextrun: datetime | None,
    retry_delay: Callable[[str | None, int], float | None],
    timezone: str | None,
) -> FailedRunRelease:
    params = {"job_id": job_id, "pids": list(pids), "claimed_nextrun": claimed_nextrun}
    async with conn.transaction():
        row = await (await conn.execute(statement("lock_claimed_job"), params)).fetchone()
        if row is None:
            raise _NotClaimed
        kept = row[0] != claimed_nextrun
        if timezone is not None:
            await conn.execute(statement("set_local_timezone"), {"zone": timezone})
        await conn.execute(statement("finish_joblog"), {"jlgid": jlgid, "status": status})
        await conn.execute(statement("release_job"), {**params, "next_run": None})
        cur = await conn.execute(statement("failure_streak"), {"job_id": job_id, "jlgid": jlgid})
        streak_row = await cur.fetchone()
        assert streak_row is not None
        final_status = None if streak_row[0] is None else str(streak_row[0])
        streak = int(streak_row[1])
        delay = None if kept else retry_delay(final_status, streak)
        retried = False
        next_run: datetime | None = None
        if delay is not None:
            cur = await conn.execute(
                statement("bring_next_run_forward"), {"job_id": job_id, "delay": delay}
            )
            moved = await cur.fetchone()
            if moved is not None:
                retried, next_run = True, moved[0]
        if not retried:
            cur = await conn.execute(statement("next_run_of"), {"job_id": job_id})
            current = await cur.fetchone()
            next_run = None if current is None else current[0]
    return FailedRunRelease(final_status, streak, kept, delay, retried, next_run)


class _NotClaimed(Exception):
    """Rolls the release transaction back: the job is not ours any more."""


async def release_failed_run(
    conn: Conn,
    *,
    job_id: int,
    jlgid: int,
    status: str,
    pids: Sequence[int],
    claimed_nextrun: datetime | None,
    retry_delay: Callable[[str | None, int], float | None],
    timezone: str | None = None,
) -> FailedRunRelease | None:
    """Close the run's log, release the job and, if `retry_delay(final status, streak)`
    gives a delay and nobody changed jobnextrun during the run, bring the next run forward
    to now + delay (unless the schedule's next run comes first), in one transaction. With
    the job's own `timezone`, its schedules are read in that zone.
    None when the job is no longer claimed by `pids` (then nothing was changed)."""
    try:
        return await _release_failed_run(
            conn,
            job_id=job_id,
            jlgid=jlgid,
            status=status,
            pids=pids,
            claimed_nextrun=claimed_nextrun,
            retry_delay=retry_delay,
            timezone=timezone,
        )
    except _NotClaimed:
        return None


# ---- cancel ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CancelledRun:
    """A run marked aborted by a cancel request."""

    jlgid: int
    agent_pid: int
    claimed_at: datetime
    station: str | None
    steps_marked: int
    at: str


def find_jobs(conn: psycopg.Connection[Any], job: str) -> list[tuple[int, str]]:
    """Jobs matching JOB: its id when numeric (else, or if none, its exact name)."""
    rows: list[tuple[Any, ...]] = []
    if job.strip().isdigit():
        rows = conn.execute(statement("find_job_by_id"), {"job_id": int(job)}).fetchall()
    if not rows:
        rows = conn.execute(statement("find_job_by_name"), {"name": job}).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]


def request_cancel(conn: psycopg.Connection[Any], job_id: int, who: str) -> CancelledRun | None:
    """Mark the job's current run aborted; None when it is not running (nothing changed)."""
    row = conn.execute(statement("request_cancel"), {"job_id": job_id, "who": who}).fetchone()
    if row is None:
        return None
    return CancelledRun(int(row[0]), int(row[1]), row[2], row[3], int(row[4]), str(row[5]))


def run_released(conn: psycopg.Connection[Any], job_id: int, run: CancelledRun) -> bool:
    """True once the agent has let go of the cancelled run."""
    row = conn.execute(
        statement("run_released"),
        {"job_id": job_id, "agent_pid": run.agent_pid, "lastrun": run.claimed_at},
    ).fetchone()
    return row is None or bool(row[0])


async def cancelled_runs(
    conn: Conn, job_ids: Sequence[int], pids: Sequence[int]
) -> list[tuple[int, int, str | None]]:
    """(job id, jlgid, cancel message or None) of the given running jobs marked 'd'."""
    cur = await conn.execute(
        statement("cancelled_runs"), {"job_ids": list(job_ids), "pids": list(pids)}
    )
    return [(int(r[0]), int(r[1]), r[2]) for r in await cur.fetchall()]


async def close_cancelled_steps(conn: Conn, jlgid: int, output: str) -> int:
    """End any step row of a cancelled run that is still 'r'."""
    cur = await conn.execute(statement("close_cancelled_steps"), {"jlgid": jlgid, "output": output})
    return int(cur.rowcount)


# ---- alerts and metrics ------------------------------------------------------------------


@dataclass(frozen=True)
class RunReport:
    """One finished run, as an alert describes it."""

    job_name: str
    status: str
    start: datetime
    duration: float | None
    step_name: str | None
    step_status: str | None
    step_result: int | None
    step_output: str | None
    previous_status: str | None


async def run_report(conn: Conn, jlgid: int, output_chars: int) -> RunReport | None:
    """The report of run `jlgid`; None when the row is gone."""
    cur = await conn.execute(
        statement("run_report"), {"jlgid": jlgid, "output_chars": output_chars}
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return RunReport(
        job_name=str(row[0]),
        status=str(row[1]),
        start=row[2],
        duration=None if row[3] is None else float(row[3]),
        step_name=row[4],
        step_status=row[5],
        step_result=None if row[6] is None else int(row[6]),
        step_output=row[7],
        previous_status=row[8],
    )


@dataclass(frozen=True)
class JobHistory:
    """A job's last success and failure (epoch seconds) and its failure streak."""

    job_id: int
    job_name: str
    last_success: float | None
    last_failure: float | None
    failure_streak: int


async def job_run_history(conn: Conn) -> list[JobHistory]:
    """Every job's run-history summary."""
    cur = await conn.execute(statement("job_run_history"))
    return [JobHistory(int(r[0]), str(r[1]), r[2], r[3], int(r[4])) for r in await cur.fetchall()]
