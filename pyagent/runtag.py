"""The run tag: the application_name a SQL step's session carries while the step runs,
`pyagent run <jlgid> (job <id>, step <id>)`. Another agent finds a dead agent's statements
by it (store.agent_store) and the step names its session with it (steps.sql)."""

from __future__ import annotations

import re
from typing import Final

TAG: Final = re.compile(r"pyagent run (\d+) \(job \d+, step \d+\)")


def run_tag(jlgid: int, job_id: int, step_id: int) -> str:
    """The tag of a step's session."""
    return f"pyagent run {jlgid} (job {job_id}, step {step_id})"


def like_pattern(jlgid: int) -> str:
    """A LIKE pattern matching the tags of one run's steps."""
    return f"pyagent run {jlgid} (%"


def run_of(application_name: str) -> int:
    """The run (jlgid) an application_name tags, 0 when it is no run tag."""
    match = TAG.match(application_name)
    return int(match.group(1)) if match else 0
