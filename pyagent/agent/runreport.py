"""One WARNING line per failed or aborted job run, so failures show in the agent's log at
-l 1 (pgAgent logs nothing there): job, run id, the failing step, its result and the
first telling line of its output.

Called once at the end of a run (JobRun.run). The failing step is read back from the run's
step logs (what pgAdmin shows), which also covers a step aborted while it ran. The read is
bounded and best-effort: with the database gone the line is logged without it.

The line carries job text as it is: the text log renderer escapes it (pyagent.safetext) and
the JSON log keeps it exact, so it must not be escaped here as well.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from pyagent.logsetup import get_logger
from pyagent.store.agent_store import AgentStore
from pyagent.store.records import FailedStep, RunStatus

REPORT_TIMEOUT: Final = 2.0
MAX_DETAIL: Final = 300

_OUTCOME: Final = {
    RunStatus.FAILED: "failed",
    RunStatus.INTERNAL_ERROR: "ended with an internal error",
    RunStatus.ABORTED: "was aborted",
}


def telling_line(output: str) -> str:
    """The most useful line of a step's output: the first `ERROR:` line, else the first
    line of a batch step's stderr (after pgAgent's `Script Error:` marker), else the last
    non-empty line; shortened to MAX_DETAIL characters."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    chosen = next((ln for ln in lines if ln.startswith(("ERROR:", "FATAL:"))), "")
    if not chosen and "Script Error:" in lines:
        after = lines[lines.index("Script Error:") + 1 :]
        chosen = after[0] if after else ""
    if not chosen and lines:
        chosen = lines[-1]
    chosen = " ".join(chosen.split())
    return chosen if len(chosen) <= MAX_DETAIL else chosen[: MAX_DETAIL - 3] + "..."


def run_end_line(job_id: int, jlgid: int | None, status: RunStatus, step: FailedStep | None) -> str:
    """The warning's text."""
    name = f' ("{step.job_name}")' if step is not None and step.job_name is not None else ""
    run = f"run {jlgid}" if jlgid is not None else "a run that never started"
    line = f"Job {job_id}{name} {_OUTCOME[status]} ({run}, status {status.value})"
    if step is not None and step.step_id is not None:
        line += (
            f': step {step.step_id} "{step.step_name}" ended {step.status}'
            f" with result {step.result}"
        )
        detail = telling_line(step.output)
        if detail:
            line += f": {detail}"
    return line


async def report_run_end(
    store: AgentStore, job_id: int, jlgid: int | None, status: RunStatus
) -> None:
    """Log one WARNING line when the run did not succeed (status f, i or d)."""
    if status not in _OUTCOME:
        return
    step: FailedStep | None = None
    with contextlib.suppress(Exception):
        step = await asyncio.wait_for(store.failed_step(job_id, jlgid), REPORT_TIMEOUT)
    fields: dict[str, object] = {"job_id": job_id, "jlgid": jlgid, "status": status.value}
    if step is not None and step.step_id is not None:
        fields.update(step_id=step.step_id, step_status=step.status, result=step.result)
    get_logger().warning(run_end_line(job_id, jlgid, status, step), **fields)
