"""The agent and `pyagent jobs show` take the same value from the same annotation lines, for
every option of the table under each of its names, repeated, and with a bad last line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from pyagent.annotations import OPTIONS, Option, job_zone, read_job, read_step, run_options
from pyagent.control.options import job_control_options
from pyagent.jobs.cli import jobs_group
from pyagent.settings import ControlSettings
from tests.agentproc import AgentProcess, make_job, step_logs, wait_job_finished
from tests.jobscli import REPO, jobs

Sample = tuple[str, Any]  # a value as written, and the value it means (None: ignored)

# Per field: two good values and a bad one (MANAGED_BY takes any text).
SAMPLES: dict[str, tuple[Sample, Sample, Sample | None]] = {
    "timeout": (("10 s", 10.0), ("1 m 30 s", 90.0), ("soon", None)),
    "retries": (("1", 1), ("3", 3), ("lots", None)),
    "retry_delay": (("0", 0.0), ("2 m", 120.0), ("-1 s", None)),
    "alert": (("ALWAYS", "always"), ("never", "never"), ("loudly", None)),
    "timezone": (("UTC", "UTC"), ("Europe/Berlin", "Europe/Berlin"), ("Mars/Olympus", None)),
    "managed_by": (("pyagent", "pyagent"), ("Someone", "someone"), None),
}
# The agent's defaults, distinct from every sample: an ignored line leaves these.
DEFAULTS = ControlSettings(retries=7, retry_delay=11.0)
DEFAULT_TIMEOUT = 13.0


def _cases() -> Iterator[Any]:
    for option in OPTIONS:
        first, second, bad = SAMPLES[option.field]
        for a in option.names:
            yield pytest.param(option, [(a, first)], id=f"{a}")
            yield pytest.param(option, [(a.lower(), first)], id=f"{a.lower()}")
            for b in option.names:
                yield pytest.param(option, [(a, first), (b, second)], id=f"{a}-then-{b}")
                if bad is not None:
                    yield pytest.param(option, [(a, first), (b, bad)], id=f"{a}-then-bad-{b}")


def agent_value(option: Option[Any], desc: str) -> Any:
    """The value the agent runs with, read by the functions JobRun calls."""
    if option.place == "step":
        return run_options(read_step(desc), DEFAULT_TIMEOUT).timeout
    comment = read_job(desc)
    control = job_control_options(comment, DEFAULTS)
    return {
        "timeout": run_options(comment, DEFAULT_TIMEOUT).timeout,
        "retries": control.retries,
        "retry_delay": control.retry_delay,
        "alert": control.alert,
        "timezone": job_zone(comment).name,
        "managed_by": comment.values.managed_by,
    }[option.field]


def default_of(field: str) -> Any:
    return {
        "timeout": DEFAULT_TIMEOUT,
        "retries": DEFAULTS.retries,
        "retry_delay": DEFAULTS.retry_delay,
        "alert": "failure",
        "timezone": None,
    }[field]


def show(dsn: str, job: int, *, as_json: bool) -> str:
    result = CliRunner().invoke(
        jobs_group, ["show", str(job), "-d", dsn, *(["--json"] if as_json else [])]
    )
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize(("option", "lines"), list(_cases()))
def test_the_agent_and_jobs_show_read_the_same_value(db, option, lines):
    desc = "Written by hand.\n" + "\n".join(f"@{name}={text};" for name, (text, _) in lines)
    last_text, meant = lines[-1][1]
    with db.connect() as conn:
        if option.place == "job":
            job = make_job(conn, "annotated", desc=desc)
        else:
            job = make_job(conn, "annotated", [{"jstcode": "SELECT 1", "jstdesc": desc}])

    # What the agent runs with: the last line's value, or (a bad last line) the default.
    expected = meant if meant is not None else default_of(option.field)
    assert agent_value(option, desc) == expected

    data = json.loads(show(db.dsn, job, as_json=True))
    shown = data if option.place == "job" else data["steps"][0]
    # `jobs show` reports the same line, and only it...
    assert shown["annotations"] == {option.field: last_text}
    assert (shown["comment"] if option.place == "job" else shown["description"]) == (
        "Written by hand."
    )
    # ...which the one reader turns into the agent's value, or which both ignore.
    text = show(db.dsn, job, as_json=False)
    (line,) = [ln for ln in text.splitlines() if ln.strip().startswith(f"{option.field}:")]
    if meant is None:
        assert "(annotation; ignored: " in line
    else:
        assert line.endswith("(annotation)")
        assert option.parse(shown["annotations"][option.field]) == meant


def test_a_step_with_both_timeout_names_is_cancelled_after_the_last_ones_value(db):
    """The agent applies the value `jobs show` reports: `@STEP_TIMEOUT=60 s;` then
    `@JOB_STEP_TIMEOUT=1 s;` is a 1 s timeout (the agent used to apply the 60 s)."""
    desc = "@STEP_TIMEOUT=60 s;\n@JOB_STEP_TIMEOUT=1 s;"
    with db.connect() as conn:
        job = make_job(
            conn, "slow", [{"jstcode": "SELECT pg_sleep(60)", "jstdesc": desc}], run_now=True
        )
    shown = json.loads(jobs(db.dsn, "show", str(job), "--json").stdout)
    assert shown["steps"][0]["annotations"] == {"timeout": "1 s"}
    agent = AgentProcess(db.dsn, ["-t", "1"], cwd=str(REPO), env={"PYTHONPATH": str(REPO)})
    try:
        with db.connect() as conn:
            wait_job_finished(conn, job, timeout=30)
            ((_, status, _, output),) = step_logs(conn, job)
    finally:
        agent.stop()
        agent.log_path.unlink(missing_ok=True)
    assert status == "f" and "step timed out after 1 s and was cancelled" in output
