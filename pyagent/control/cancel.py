"""Cancelling a running job: the request (`pyagent jobs cancel JOB`, or one SQL statement from
pgAdmin's query tool) and what it leaves in the database.

The protocol needs no schema change. The request is the UPDATE of the job's current
pga_joblog row from 'r' to 'd' (with its duration), together with its running
pga_jobsteplog row, whose jsloutput says who cancelled it and when. Both writes are final:
the running agent's own bookkeeping only updates rows that are still 'r'. Every pyagent
agent checks, about once a second and only while it runs jobs, whether one of its current
runs was marked 'd' by someone else; it then stops the run (SQL step cancelled on the server,
batch step's process group terminated), later steps do not run, and the job is released to
its schedule, without a retry. See README "Cancelling a running job".
"""

from __future__ import annotations

import getpass
import socket
import time
from dataclasses import dataclass
from typing import Literal

from pyagent.exitcodes import EXIT_FAILED, EXIT_NOT_RUNNING, EXIT_OK
from pyagent.safetext import safe_text
from pyagent.store.catalog import connect_catalog

CancelState = Literal["cancelled", "not-running", "unknown-job", "ambiguous"]



@dataclass(frozen=True)
class CancelResult:
    """The outcome of a cancel request."""

    state: CancelState
    message: str
    job_id: int | None = None
    run_id: int | None = None
    stopped: bool | None = None  # the agent let go of the run in time (None: not waited)

    @property
    def exit_status(self) -> int:
        if self.state == "cancelled":
            return EXIT_OK
        if self.state == "not-running":
            return EXIT_NOT_RUNNING
        return EXIT_FAILED


def who_cancels() -> str:
    """How a cancel from this process is signed: OS user and host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} (pyagent jobs cancel)"


def request_cancel(
    conninfo: str, job: str, *, who: str | None = None, wait: float = 10.0
) -> CancelResult:
    """Cancel JOB's current run (JOB: a job id, or an exact job name). With `wait` > 0,
    also wait that long for the running agent to let go of the run."""
    with connect_catalog(conninfo, application_name="pyagent jobs cancel") as catalog:
        requests = catalog.cancel_requests
        matches = requests.find_jobs(job)
        if not matches:
            return CancelResult("unknown-job", f"no job {job!r} (by id or by name)")
        if len(matches) > 1:
            ids = ", ".join(str(m[0]) for m in matches)
            return CancelResult(
                "ambiguous", f"{len(matches)} jobs are named {job!r} (ids {ids}); give the id"
            )
        job_id, raw_name = matches[0]
        name = safe_text(raw_name)
        run = requests.request_cancel(job_id, who or who_cancels())
        if run is None:
            return CancelResult(
                "not-running", f'job {job_id} "{name}" is not running: nothing changed', job_id
            )
        where = f"agent pid {run.agent_pid}" + (
            f" on {safe_text(run.station)}" if run.station else ""
        )
        stopped: bool | None = None
        if wait > 0:
            deadline = time.monotonic() + wait
            stopped = requests.run_released(job_id, run)
            while not stopped and time.monotonic() < deadline:
                time.sleep(0.1)
                stopped = requests.run_released(job_id, run)
        text = f'job {job_id} "{name}": run {run.jlgid} ({where}) cancelled at {run.at}'
        if stopped:
            text += "; the agent stopped it"
        elif stopped is False:
            text += (
                f"; the agent has not let go of it after {wait:g} s (a C pgAgent ignores "
                "cancel requests and finishes the run)"
            )
        return CancelResult("cancelled", text, job_id, run.jlgid, stopped)
