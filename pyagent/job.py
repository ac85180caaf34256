"""Run one claimed job: its pga_joblog row, its enabled steps in order, the on-error rules,
and the release that lets the schema schedule the next run."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg.errors import QueryCanceled

from pyagent import conninfo as ci
from pyagent.annotations import format_seconds, job_options, step_options
from pyagent.db import TRANSIENT_ERRORS, ControlDB
from pyagent.logging import get_logger
from pyagent.pools import StepPools
from pyagent.resources import query
from pyagent.settings import Settings
from pyagent.steps.batch import BatchOptions, run_batch_step
from pyagent.steps.result import StepOutcome
from pyagent.steps.sql import NO_CONNECTION, run_sql_step

if TYPE_CHECKING:
    from pyagent.ops.metrics import Metrics

JobStatus = Literal["r", "s", "f", "i", "d"]
StepStatus = Literal["r", "s", "f", "i", "d"]

BATCH_DISABLED = "Batch steps are disabled on this agent (--no-batch)"
INVALID_KIND = "Invalid step type!"
ABORTED = "Step aborted: the agent stopped before the step finished"


@dataclass(frozen=True)
class Claim:
    """A job this agent claimed, with the jobnextrun it had when claimed."""

    job_id: int
    claimed_nextrun: datetime | None
    agent_pid: int


@dataclass(frozen=True)
class Step:
    step_id: int
    name: str
    kind: str
    code: str
    connstr: str
    dbname: str
    onerror: str
    desc: str

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Step:
        return cls(
            step_id=int(row[0]),
            name=str(row[1]),
            kind=str(row[2] or ""),
            code=str(row[3] or ""),
            connstr=str(row[4] or ""),
            dbname=str(row[5] or ""),
            onerror=str(row[6] or "f"),
            desc=str(row[7] or ""),
        )


@dataclass
class JobContext:
    """What a job run needs from the agent."""

    settings: Settings
    db: ControlDB
    pools: StepPools
    # Set when bookkeeping should stop waiting for the database (hard shutdown).
    give_up: asyncio.Event
    # The agent's current identity (backend pid of its service session).
    current_pid: Callable[[], int]
    metrics: Metrics | None = None


def step_target(settings: Settings, step: Step) -> str:
    """The connection string a SQL step runs on."""
    return _target(settings.conninfo, settings.application_name, step.connstr, step.dbname)


@functools.lru_cache(maxsize=1024)
def _target(conninfo: str, application_name: str, connstr: str, dbname: str) -> str:
    if connstr:
        ci.parse(connstr)  # raises ConninfoError with libpq's message (not cached)
        return connstr
    target = ci.with_dbname(conninfo, dbname)
    if "application_name" not in ci.parse(target):
        # Recognisable in pg_stat_activity; a jstconnstr is used exactly as written instead.
        target = ci.make(target, application_name=f"{application_name} step")
    return target


async def execute_step(ctx: JobContext, job_id: int, step: Step) -> StepOutcome:
    """Run one step and describe its outcome; never raises except on cancellation."""
    log = get_logger()
    limit = ctx.settings.max_output_bytes
    if step.kind == "s":
        log.debug(
            f"Executing SQL step {step.step_id}(part of job {job_id})",
            job_id=job_id,
            step_id=step.step_id,
        )
        try:
            target = step_target(ctx.settings, step)
        except ci.ConninfoError as exc:
            log.warning(
                f'Failed to parse the connection string "{ci.mask_conninfo(step.connstr)}" '
                f"with error: {exc}",
                job_id=job_id,
                step_id=step.step_id,
            )
            return StepOutcome(False, -1, f"{NO_CONNECTION}\ninvalid connection string: {exc}")
        return await run_sql_step(ctx.pools.for_target(target), step.code, limit)
    if step.kind == "b":
        log.debug(
            f"Executing batch step{step.step_id}(part of job {job_id})",
            job_id=job_id,
            step_id=step.step_id,
        )
        if not ctx.settings.allow_batch:
            return StepOutcome(False, -1, BATCH_DISABLED)
        options = BatchOptions(env_mode=ctx.settings.batch_env, max_output_bytes=limit)
        outcome = await run_batch_step(job_id, step.step_id, step.code, options)
        log.debug(f"Script return code: {outcome.result}", job_id=job_id, step_id=step.step_id)
        return outcome
    log.warning(INVALID_KIND, job_id=job_id, step_id=step.step_id)
    return StepOutcome(False, -1, INVALID_KIND)


async def run_with_timeout(
    ctx: JobContext, job_id: int, step: Step, timeout: float | None
) -> StepOutcome:
    """Run a step; past its timeout it is cancelled (SQL on the server, batch as a process
    group) and fails with a clear message."""
    if timeout is None:
        return await execute_step(ctx, job_id, step)
    task = asyncio.ensure_future(execute_step(ctx, job_id, step))
    try:
        done, _pending = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise
    if done:
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    get_logger().warning(
        f"Step {step.step_id} of job {job_id} timed out after {format_seconds(timeout)}",
        job_id=job_id,
        step_id=step.step_id,
    )
    return StepOutcome(
        False, -1, f"ERROR:  step timed out after {format_seconds(timeout)} and was cancelled"
    )


class JobRun:
    """The state of one job run; `run()` drives it to a final status."""

    def __init__(self, ctx: JobContext, claim: Claim) -> None:
        self.ctx = ctx
        self.claim = claim
        self.jlgid: int | None = None
        self.current_jslid: int | None = None
        self.status: JobStatus = "i"
        self.log = get_logger()
        self.job_timeout: float | None = None
        self.abort_message = ABORTED

    async def run(self) -> JobStatus:
        job_id = self.claim.job_id
        started = time.monotonic()
        self.log.debug(f"Starting job: {job_id}", job_id=job_id)
        try:
            await self._run_steps()
        except TimeoutError:
            # The job's own timeout: the running step was cancelled and is marked aborted.
            self.status = "f"
            self.abort_message = (
                f"Step aborted: the job's timeout ({format_seconds(self.job_timeout or 0)}) "
                "was reached"
            )
            self.log.warning(
                f"Job {job_id} timed out after {format_seconds(self.job_timeout or 0)}",
                job_id=job_id,
            )
        except asyncio.CancelledError:
            self.status = "d"
            await asyncio.shield(self._finish())
            if self.ctx.metrics is not None:
                self.ctx.metrics.job_finished("d", time.monotonic() - started)
            raise
        except Exception as exc:
            # One job must never take the agent down: record it as an internal error.
            self.status = "i"
            self.log.warning(f"Job {job_id} ended with an internal error: {exc!r}", job_id=job_id)
        await asyncio.shield(self._finish())
        elapsed = time.monotonic() - started
        duration_ms = round(elapsed * 1000)
        if self.ctx.metrics is not None:
            self.ctx.metrics.job_finished(self.status, elapsed)
        self.log.debug(
            f"Completed job: {job_id}",
            job_id=job_id,
            jlgid=self.jlgid,
            status=self.status,
            duration_ms=duration_ms,
        )
        return self.status

    async def _run_steps(self) -> None:
        db, job_id, give_up = self.ctx.db, self.claim.job_id, self.ctx.give_up
        rows = await db.fetch_retrying("start_job", {"job_id": job_id}, give_up)
        if not rows:
            return
        self.jlgid = int(rows[0][0])
        options = job_options(str(rows[0][1] or ""), self.ctx.settings.job_timeout)
        for problem in options.problems:
            self.log.warning(f"Job {job_id}: ignoring {problem}", job_id=job_id)
        self.job_timeout = options.timeout
        steps = [Step.from_row(r[2:]) for r in rows if r[2] is not None]
        self.status = "s"
        async with asyncio.timeout(options.timeout):
            for step in steps:
                if not await self._run_one(step):
                    break

    async def _run_one(self, step: Step) -> bool:
        """Run one step with its log row; False when the job must stop here."""
        db, job_id, give_up = self.ctx.db, self.claim.job_id, self.ctx.give_up
        rows = await db.fetch_retrying(
            "insert_steplog", {"jlgid": self.jlgid, "step_id": step.step_id}, give_up
        )
        if not rows:
            # The step was deleted (or the database is gone for good): an internal error.
            self.log.warning(
                f"Value of rc is 0 for job {job_id}", job_id=job_id, step_id=step.step_id
            )
            self.status = "i"
            return False
        self.current_jslid = int(rows[0][0])
        started = time.monotonic()
        options = step_options(step.desc, self.ctx.settings.step_timeout)
        for problem in options.problems:
            self.log.warning(
                f"Step {step.step_id}: ignoring {problem}", job_id=job_id, step_id=step.step_id
            )
        outcome = await run_with_timeout(self.ctx, job_id, step, options.timeout)
        step_status: StepStatus
        if outcome.succeeded:
            step_status = "s"
        elif step.onerror in ("s", "i"):
            step_status = "s" if step.onerror == "s" else "i"
        else:
            step_status = "f"
        if step.kind not in ("s", "b"):
            step_status = "i"
        updated = await db.execute_retrying(
            "finish_steplog",
            {
                "jslid": self.current_jslid,
                "result": outcome.result,
                "status": step_status,
                "output": outcome.output,
            },
            give_up,
        )
        self.log.debug(
            f"Step {step.step_id} of job {job_id} finished with status {step_status}",
            job_id=job_id,
            step_id=step.step_id,
            jlgid=self.jlgid,
            status=step_status,
            result=outcome.result,
            duration_ms=round((time.monotonic() - started) * 1000),
        )
        if self.ctx.metrics is not None:
            kind = {"s": "sql", "b": "batch"}.get(step.kind, "other")
            self.ctx.metrics.step_finished(kind, step_status, time.monotonic() - started)
        self.current_jslid = None
        if step.kind not in ("s", "b"):
            self.status = "i"
            return False
        if updated != 1 or step_status == "f":
            self.status = "f"
            return False
        return True

    async def _finish(self) -> None:
        """Final bookkeeping: close the open step log, the job log, and release the job."""
        db, give_up = self.ctx.db, self.ctx.give_up
        try:
            if self.current_jslid is not None:
                await db.execute_retrying(
                    "abort_steplog",
                    {"jslid": self.current_jslid, "result": -1, "output": self.abort_message},
                    give_up,
                )
            await finish_job(self.ctx, self.claim, self.jlgid, self.status)
        except Exception as exc:
            self.log.warning(
                f"Could not record the end of job {self.claim.job_id}: {exc!r}",
                job_id=self.claim.job_id,
            )


async def finish_job(ctx: JobContext, claim: Claim, jlgid: int | None, status: str) -> None:
    """Close the run's log and release the job so its next run is scheduled; never leave
    it claimed."""

    def params() -> dict[str, Any]:
        # Evaluated at every attempt: after a reconnect the claim belongs to the new pid.
        return {
            "job_id": claim.job_id,
            "pids": sorted({ctx.current_pid(), claim.agent_pid}),
            "claimed_nextrun": claim.claimed_nextrun,
        }

    try:
        if jlgid is None:
            # The run never started (no log row): when it was interrupted (shutdown, or the
            # database gone), the job stays due so the run is not lost; otherwise the
            # schema schedules the next run.
            name = "release_unstarted_job" if status == "d" else "release_job"
            await ctx.db.execute_retrying(name, params, ctx.give_up, retry_timeouts=False)
        else:
            await ctx.db.execute_retrying(
                "finish_job",
                lambda: {**params(), "jlgid": jlgid, "status": status},
                ctx.give_up,
                retry_timeouts=False,
            )
        return
    except psycopg.Error as exc:
        if isinstance(exc, TRANSIENT_ERRORS) and not isinstance(exc, QueryCanceled):
            raise
        failure = exc
    # The schema's next-run function raised (pgAgent's own function does for some
    # schedules): close the log on its own, compute the next run here instead, and say
    # which schedule is at fault.
    if jlgid is not None:
        await ctx.db.execute_retrying(
            "finish_joblog", {"jlgid": jlgid, "status": status}, ctx.give_up
        )
    next_run, described = await compute_next_run(ctx.db, claim.job_id)
    get_logger().warning(
        f"The schema could not compute the next run of job {claim.job_id} "
        f"({str(failure).strip()}); schedules: {described}; "
        f"releasing it with the next run computed by pyagent: {next_run}",
        job_id=claim.job_id,
    )
    await ctx.db.execute_retrying(
        "release_job_at",
        lambda: {**params(), "next_run": next_run_or_never(next_run)},
        ctx.give_up,
    )


def next_run_or_never(next_run: datetime | None) -> datetime | str:
    # NULL would make the trigger call the failing function again; 'infinity' means never.
    return next_run if next_run is not None else "infinity"


async def compute_next_run(db: ControlDB, job_id: int) -> tuple[datetime | None, str]:
    """The job's next run computed by pyagent.schedule, in the session's time zone."""
    from pyagent import schedule

    async with db.pool.connection() as conn:
        tz_row = await (await conn.execute("SELECT now(), current_setting('TimeZone')")).fetchone()
        assert tz_row is not None
        now, tzname = tz_row
        cur = await conn.execute(query("job_schedules"), {"job_id": job_id})
        rows = await cur.fetchall()
        ids = [r[0] for r in rows]
        cur = await conn.execute(
            query("schedule_exceptions"),
            {"schedule_ids": ids},
        )
        exc_rows = await cur.fetchall()
    try:
        tz = ZoneInfo(tzname)
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    by_schedule: dict[int, list[tuple[Any, ...]]] = {}
    for jexscid, jexdate, jextime in exc_rows:
        by_schedule.setdefault(int(jexscid), []).append((jexdate, jextime))
    specs = [schedule.ScheduleSpec.from_row(r, by_schedule.get(int(r[0]), [])) for r in rows]
    described = "; ".join(schedule.describe(s) for s in specs) or "none"
    return schedule.next_run_for_schedules(specs, now, tz), described
