"""`jobs run`: pgAdmin's "Run now", and optionally following the run it started."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyagent.duration import format_duration
from pyagent.exitcodes import EXIT_FAILED, EXIT_NO_AGENT, EXIT_OK, EXIT_TIMEOUT
from pyagent.jobs.errors import JobsError
from pyagent.jobs.lookup import find_job
from pyagent.jobs.render import duration, quoted, seconds
from pyagent.jobs.runs import step_run_data, step_run_text
from pyagent.jobs.zones import Zone
from pyagent.safetext import safe_text
from pyagent.store.catalog import AgentRecord, Catalog, JobRecord, RunRecord
from pyagent.store.records import RunStatus

POLL_SECONDS = 0.2
# pgAgent writes a spurious 'i' row when two of its threads race for one claim; such a row
# is only taken as the run's outcome when no real run shows up within this long.
SPURIOUS_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class RunOutcome:
    exit_code: int
    data: dict[str, Any]


def agent_problem(job: JobRecord, agents: list[AgentRecord]) -> str | None:
    """Why no live agent can pick this job up, or None when one can."""
    live = [a for a in agents if a.alive]
    if job.hostagent:
        if any(a.station == job.hostagent for a in live):
            return None
        stations = ", ".join(sorted({safe_text(a.station) for a in live})) or "none"
        return (
            f"job {quoted(job.name)} may only run on host agent {quoted(job.hostagent)}, "
            "and no live agent "
            f"has that station (live agents' stations: {stations})"
        )
    if live:
        return None
    if not agents:
        return "no agent is registered (pgagent.pga_jobagent is empty): start pyagent or pgagent"
    gone = ", ".join(f"{safe_text(a.station)} (pid {a.pid})" for a in agents)
    return f"no live agent: the registered agents are no longer connected ({gone})"


def run_job(
    catalog: Catalog,
    zone: Zone,
    ident: str,
    *,
    wait: bool,
    timeout: float | None,
    emit: Callable[[str], None],
    warn: Callable[[str], None],
) -> RunOutcome:
    job = find_job(catalog, ident)
    label = f"job {quoted(job.name)} ({job.jobid})"
    if not job.enabled:
        raise JobsError(
            f"{label} is disabled, and 'Run now' does nothing for a disabled job (the schema's "
            f"trigger clears the next run); enable it first: pyagent jobs enable {job.jobid}"
        )
    problem = agent_problem(job, catalog.agents())
    if problem and wait:
        raise JobsError(f"{problem}; the job was not started", EXIT_NO_AGENT)
    before = catalog.last_run_id(job.jobid)
    request = catalog.run_now(job.jobid)
    if request is None:
        raise JobsError(f"{label} no longer exists")
    if request.next_run is None:
        raise JobsError(f"{label} was disabled meanwhile; it will not run")
    data: dict[str, Any] = {
        "job_id": job.jobid,
        "job": job.name,
        "requested_at": zone.iso(request.requested_at),
    }
    if not wait:
        if problem:
            warn(f"warning: {problem}; the job will run when such an agent starts")
        emit(f"{label} will run now (an agent picks it up within its poll interval)")
        return RunOutcome(EXIT_OK, data | {"status": "requested"})
    if job.agent_pid is not None:
        emit(f"{label} is running now; this request's run starts after that one")
    emit(f"{label}: run requested at {zone.fmt(request.requested_at)}; waiting for an agent")
    return _follow(catalog, zone, job, before, request.requested_at, timeout, emit, data)


def _follow(  # noqa: PLR0917
    catalog: Catalog,
    zone: Zone,
    job: JobRecord,
    before: int,
    requested_at: Any,
    timeout: float | None,
    emit: Callable[[str], None],
    data: dict[str, Any],
) -> RunOutcome:
    start = time.monotonic()
    deadline = start + timeout if timeout is not None else None
    run: RunRecord | None = None
    first_spurious: float | None = None
    printed: set[int] = set()
    announced = False
    while True:
        now = time.monotonic()
        runs = catalog.runs_since(job.jobid, before, requested_at)
        real = [r for r in runs if r.status is not RunStatus.INTERNAL_ERROR or r.duration]
        if real:
            run = real[0]
        elif runs:
            first_spurious = first_spurious or now
            if now - first_spurious >= SPURIOUS_GRACE_SECONDS:
                run = runs[0]
        if run is not None:
            if not announced:
                agent = catalog.jobs([job.jobid])
                where = agent[0].agent_station if agent and agent[0].agent_station else None
                emit(
                    f"run {run.jlgid} started at {zone.fmt(run.start)}"
                    + (f" on {safe_text(where)}" if where else "")
                )
                announced = True
            steps = catalog.step_runs(run.jlgid)
            for step in steps:
                if step.status is not RunStatus.RUNNING and step.jslid not in printed:
                    printed.add(step.jslid)
                    emit(step_run_text(step))
            if run.status is not RunStatus.RUNNING:
                data |= {
                    "run": run.jlgid,
                    "status": run.status.label,
                    "start": zone.iso(run.start),
                    "duration_s": seconds(run.duration),
                    "steps": [step_run_data(s, zone) for s in steps],
                }
                took = duration(run.duration)
                emit(f"job {quoted(job.name)}: {run.status.label} in {took} (run {run.jlgid})")
                code = EXIT_OK if run.status is RunStatus.SUCCEEDED else EXIT_FAILED
                return RunOutcome(code, data)
        if timeout is not None and deadline is not None and now >= deadline:
            where = f"run {run.jlgid} is still running" if run else "no agent has started it yet"
            emit(f"timed out after {format_duration(timeout)}: {where}")
            data |= {"status": "timeout", "run": run.jlgid if run else None}
            return RunOutcome(EXIT_TIMEOUT, data)
        time.sleep(POLL_SECONDS)
