"""Run one claimed job: its pga_joblog row, its enabled steps in order, the on-error rules,
and the release that lets the schema schedule the next run."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyagent import conninfo as ci
from pyagent.agent.runreport import report_run_end
from pyagent.annotations import job_zone, read_job, read_step, run_options
from pyagent.control.options import JobControlOptions, read_job_control
from pyagent.control.retry import RetryOutcome, release_with_retries
from pyagent.duration import format_duration
from pyagent.logsetup import get_logger
from pyagent.runtag import run_tag
from pyagent.settings import Settings
from pyagent.steps.batch import BatchOptions, run_batch_step
from pyagent.steps.pools import StepPools
from pyagent.steps.result import StepOutcome
from pyagent.steps.sql import NO_CONNECTION, PreparedSession, run_sql_step
from pyagent.store.agent_store import AgentStore, ClaimLost
from pyagent.store.records import Claim, FallbackRelease, OnError, RunStatus, StepDef, StepKind

if TYPE_CHECKING:
    from pyagent.ops.metrics import Metrics

BATCH_DISABLED = "Batch steps are disabled on this agent (--no-batch)"
INVALID_KIND = "Invalid step type!"
ABORTED = "Step aborted: the agent stopped before the step finished"


@dataclass
class JobContext:
    """What a job run needs from the agent."""

    settings: Settings
    store: AgentStore
    pools: StepPools
    metrics: Metrics | None = None


def step_target(settings: Settings, step: StepDef) -> str:
    """The connection string a SQL step runs on."""
    return ci.step_conninfo(
        settings.step_base_conninfo, settings.application_name, step.connstr, step.dbname
    )


async def execute_step(
    ctx: JobContext,
    job_id: int,
    step: StepDef,
    tag: str = "",
    prepared: PreparedSession | None = None,
) -> StepOutcome:
    """Run one step and describe its outcome; never raises except on cancellation. `tag`
    names the step's database session while it runs (see pyagent.runtag);
    `prepared` is the SQL step's connection, opened ahead (see prepare_session)."""
    log = get_logger()
    limit = ctx.settings.max_output_bytes
    ids = {"job_id": job_id, "step_id": step.step_id}
    if ctx.settings.step_rights == "author":
        # Refused, or run logged in as its author; None: it runs as the agent, as below.
        from pyagent.agent.steprights import run_with_author_rights  # author mode only

        decided = await run_with_author_rights(ctx, job_id, step, tag)
        if decided is not None:
            return decided
    if step.kind == StepKind.SQL:
        log.debug(f"Executing SQL step {step.step_id}(part of job {job_id})", **ids)
        try:
            target = step_target(ctx.settings, step)
        except ci.ConninfoError as exc:
            log.warning(
                f'Failed to parse the connection string "{ci.mask_conninfo(step.connstr)}" '
                f"with error: {exc}",
                **ids,
            )
            return StepOutcome(False, -1, f"{NO_CONNECTION}\ninvalid connection string: {exc}")
        return await run_sql_step(
            ctx.pools.for_target(target), step.code, limit, tag, prepared=prepared
        )
    if step.kind == StepKind.BATCH:
        log.debug(f"Executing batch step{step.step_id}(part of job {job_id})", **ids)
        if not ctx.settings.allow_batch:
            return StepOutcome(False, -1, BATCH_DISABLED)
        options = BatchOptions(env_mode=ctx.settings.batch_env, max_output_bytes=limit)
        outcome = await run_batch_step(job_id, step.step_id, step.code, options, owner_tag=tag)
        log.debug(f"Script return code: {outcome.result}", **ids)
        return outcome
    log.warning(INVALID_KIND, **ids)
    return StepOutcome(False, -1, INVALID_KIND)


def prepare_session(ctx: JobContext, step: StepDef, tag: str) -> PreparedSession | None:
    """For a SQL step that runs with the agent's rights: start taking its connection and
    naming it now, so that this overlaps with writing the step's log row. None otherwise
    (the step opens what it needs itself)."""
    if step.kind != StepKind.SQL or ctx.settings.step_rights == "author":
        return None
    try:
        target = step_target(ctx.settings, step)
    except ci.ConninfoError:
        return None  # execute_step reports it
    return PreparedSession(ctx.pools.for_target(target), tag)


async def run_with_timeout(
    ctx: JobContext,
    job_id: int,
    step: StepDef,
    timeout: float | None,
    *,
    tag: str = "",
    prepared: PreparedSession | None = None,
) -> StepOutcome:
    """Run a step; past its timeout it is cancelled (SQL on the server, batch as a process
    group) and fails with a clear message."""
    if timeout is None:
        return await execute_step(ctx, job_id, step, tag, prepared)
    task = asyncio.ensure_future(execute_step(ctx, job_id, step, tag, prepared))
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
        f"Step {step.step_id} of job {job_id} timed out after {format_duration(timeout)}",
        job_id=job_id,
        step_id=step.step_id,
    )
    return StepOutcome(
        False, -1, f"ERROR:  step timed out after {format_duration(timeout)} and was cancelled"
    )


def step_status(step: StepDef, outcome: StepOutcome) -> RunStatus:
    """A step's final status from its outcome and its on-error rule."""
    if step.kind not in (StepKind.SQL, StepKind.BATCH):
        return RunStatus.INTERNAL_ERROR
    if outcome.succeeded or step.onerror == OnError.SUCCEED:
        return RunStatus.SUCCEEDED
    if step.onerror == OnError.IGNORE:
        return RunStatus.INTERNAL_ERROR
    return RunStatus.FAILED


class JobRun:
    """The state of one job run; `run()` drives it to a final status."""

    def __init__(self, ctx: JobContext, claim: Claim) -> None:
        self.ctx = ctx
        self.claim = claim
        # The identity (pga_jobagent pid) holding the claim: a reconnect moves it.
        self.owner = claim.agent_pid
        # The claim was taken over by another agent: this run must write nothing more.
        self.lost = False
        self.task: asyncio.Task[RunStatus] | None = None
        # A step is executing (not just being recorded): what fencing must stop.
        self.executing = False
        self.jlgid: int | None = None
        self.current_jslid: int | None = None
        self.status = RunStatus.INTERNAL_ERROR
        self.log = get_logger()
        self.job_timeout: float | None = None
        self.abort_message = ABORTED
        # Job control: the run's @RETRIES/@RETRY_DELAY/@ALERT options (read at
        # start) and the retry decided at its release (read by the alert).
        self.control: JobControlOptions | None = None
        self.retry: RetryOutcome | None = None
        # The job's own time zone (@TIMEZONE), read at start: its release reads the
        # schedules in it. None: the session's TimeZone, as pgAgent does.
        self.timezone: str | None = None

    def stop(self, message: str, *, lost: bool = False) -> None:
        """Stop the run now (its step cancelled): fenced, or `lost` when its claim was
        taken over (then it writes nothing more)."""
        self.abort_message = message
        self.lost = self.lost or lost
        if self.task is not None and not self.task.done():
            self.task.cancel()

    async def run(self) -> RunStatus:
        job_id = self.claim.job_id
        started = time.monotonic()
        self.log.debug(f"Starting job: {job_id}", job_id=job_id)
        try:
            await self._run_steps()
        except TimeoutError:
            # The job's own timeout: the running step was cancelled and is marked aborted.
            self.status = RunStatus.FAILED
            limit = format_duration(self.job_timeout or 0)
            self.abort_message = f"Step aborted: the job's timeout ({limit}) was reached"
            self.log.warning(f"Job {job_id} timed out after {limit}", job_id=job_id)
        except ClaimLost as exc:
            self.lost = True
            self.status = RunStatus.ABORTED
            self.abort_message = f"Stopped: {exc}"
        except asyncio.CancelledError:
            self.status = RunStatus.ABORTED
            await asyncio.shield(self._finish())
            self._count_finished(started)
            # One WARNING line per failed or aborted run.
            await asyncio.shield(report_run_end(self.ctx.store, job_id, self.jlgid, self.status))
            raise
        except Exception as exc:
            # One job must never take the agent down: record it as an internal error.
            self.status = RunStatus.INTERNAL_ERROR
            self.log.warning(f"Job {job_id} ended with an internal error: {exc!r}", job_id=job_id)
        await asyncio.shield(self._finish())
        self._count_finished(started)
        self.log.debug(
            f"Completed job: {job_id}",
            job_id=job_id,
            jlgid=self.jlgid,
            status=self.status.value,
            duration_ms=round((time.monotonic() - started) * 1000),
        )
        # One WARNING line per failed or aborted run.
        await report_run_end(self.ctx.store, job_id, self.jlgid, self.status)
        return self.status

    def _count_finished(self, started: float) -> None:
        if self.ctx.metrics is not None:
            self.ctx.metrics.job_finished(self.status.value, time.monotonic() - started)

    async def _run_steps(self) -> None:
        job_id = self.claim.job_id
        start = await self.ctx.store.start_run(job_id, self._owner)
        if start is None:
            return
        self.jlgid = start.jlgid
        comment = read_job(start.jobdesc)  # the job's options, read once for the run
        options = run_options(comment, self.ctx.settings.job_timeout)
        for problem in options.problems:
            self.log.warning(f"Job {job_id}: ignoring {problem}", job_id=job_id)
        self.job_timeout = options.timeout
        # Job control: retry and alert options from the job's comment.
        self.control = read_job_control(self.ctx.settings.control, job_id, comment)
        zone = job_zone(comment)
        if zone.problem is not None:
            self.log.warning(
                f"Job {job_id}: ignoring {zone.problem}; its next run is computed in this "
                "session's TimeZone, as pgAgent does",
                job_id=job_id,
            )
        self.timezone = zone.name
        self.status = RunStatus.SUCCEEDED
        async with asyncio.timeout(options.timeout):
            for step in start.steps:
                if not await self._run_one(step):
                    break

    async def _run_one(self, step: StepDef) -> bool:
        """Run one step with its log row; False when the job must stop here."""
        store, job_id, jlgid = self.ctx.store, self.claim.job_id, self.jlgid
        assert jlgid is not None
        ids = {"job_id": job_id, "step_id": step.step_id}
        tag = run_tag(jlgid, job_id, step.step_id)
        prepared = prepare_session(self.ctx, step, tag)
        try:
            self.current_jslid = await store.start_step(jlgid, step.step_id, self._owner)
            if self.current_jslid is None:
                # The step was deleted (or the database is gone for good): an internal error.
                self.log.warning(f"Value of rc is 0 for job {job_id}", **ids)
                self.status = RunStatus.INTERNAL_ERROR
                return False
            started = time.monotonic()
            options = run_options(read_step(step.desc), self.ctx.settings.step_timeout)
            for problem in options.problems:
                self.log.warning(f"Step {step.step_id}: ignoring {problem}", **ids)
            self.executing = True
            try:
                outcome = await run_with_timeout(
                    self.ctx, job_id, step, options.timeout, tag=tag, prepared=prepared
                )
            finally:
                self.executing = False
        finally:
            if prepared is not None:
                await asyncio.shield(prepared.close())
        status = step_status(step, outcome)
        recorded = await store.finish_step(
            self.current_jslid, status, outcome.result, outcome.output
        )
        elapsed = time.monotonic() - started
        self.log.debug(
            f"Step {step.step_id} of job {job_id} finished with status {status.value}",
            **ids,
            jlgid=jlgid,
            status=status.value,
            result=outcome.result,
            duration_ms=round(elapsed * 1000),
        )
        if self.ctx.metrics is not None:
            kind = {"s": "sql", "b": "batch"}.get(step.kind, "other")
            self.ctx.metrics.step_finished(kind, status.value, elapsed)
        self.current_jslid = None
        if step.kind not in (StepKind.SQL, StepKind.BATCH):
            self.status = RunStatus.INTERNAL_ERROR
            return False
        if not recorded or status == RunStatus.FAILED:
            self.status = RunStatus.FAILED
            return False
        return True

    async def _finish(self) -> None:
        """Final bookkeeping: close the open step log, the job log, and release the job."""
        store, job_id = self.ctx.store, self.claim.job_id
        if self.lost:
            # Another agent cleared this one and took the job: its rows are not ours.
            self.log.warning(
                f"Job {job_id}: {self.abort_message}; nothing recorded by this agent",
                job_id=job_id,
                jlgid=self.jlgid,
            )
            return
        try:
            if self.current_jslid is not None:
                await store.abort_step(self.current_jslid, self.abort_message)
            # A failed run of a job with retries is released by release_with_retries, which
            # may bring the next run forward; None: it did not apply, release the usual way.
            self.retry = await release_with_retries(
                store.job_control,
                self.claim,
                self.jlgid,
                self.status,
                self.control,
                owner=self._owner,
                metrics=self.ctx.metrics,
                timezone=self.timezone,
            )
            fallback = None
            if self.retry is None:
                fallback = await store.finish_run(
                    self.claim, self._owner, self.jlgid, self.status, timezone=self.timezone
                )
        except Exception as exc:
            self.log.warning(f"Could not record the end of job {job_id}: {exc!r}", job_id=job_id)
            return
        if fallback is not None:
            log_fallback_release(fallback)

    def _owner(self) -> int:
        return self.owner


def log_fallback_release(fallback: FallbackRelease) -> None:
    """Say that the schema could not compute a job's next run, and what pyagent chose."""
    get_logger().warning(
        f"The schema could not compute the next run of job {fallback.job_id} "
        f"({fallback.error}); schedules: {fallback.schedules}; "
        f"released with the next run computed by pyagent: {fallback.next_run}",
        job_id=fallback.job_id,
    )
