"""A job created by `pyagent jobs apply` runs under the C pgAgent (Debian 4.2.2) and under
pyagent alike, and `pyagent jobs run --wait` follows the run under both."""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path

import pytest

from tests.agentproc import AgentProcess
from tests.jobscli import REPO, jobs, write

pytestmark = pytest.mark.conformance

PGAGENT = Path("/usr/bin/pgagent")

JOB = """
name: applied by pyagent
comment: made by jobs apply
steps:
  - name: 10 create
    database: {db}
    code: CREATE TABLE IF NOT EXISTS applied_marker (agent text, at timestamptz DEFAULT now())
  - name: 20 insert
    database: {db}
    code: INSERT INTO applied_marker (agent) VALUES (current_setting('application_name'))
  - name: 30 batch
    kind: batch
    code: |
      echo applied job ran
  - name: 40 failure ignored
    database: {db}
    on_error: ignore
    code: SELECT 1/0
schedules:
  - name: far future
    cron: "0 0 1 1 *"
    start: 2090-01-01 00:00:00+00:00
"""


@pytest.mark.parametrize("c_agent", [True, False], ids=["pgagent", "pyagent"])
def test_a_job_made_by_apply_runs_under_both_agents(ext_db, tmp_path, c_agent):
    if c_agent and not os.access(PGAGENT, os.X_OK):
        pytest.skip(f"{PGAGENT} (Debian package pgagent) is not installed")
    path = write(tmp_path / "job.yaml", JOB.format(db=ext_db.name))
    applied = jobs(ext_db.dsn, "apply", str(path))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    workdir = tempfile.mkdtemp(prefix="jobs-conformance-")
    agent = AgentProcess(
        ext_db.dsn,
        ["-t", "1"],
        command=[str(PGAGENT)] if c_agent else None,
        cwd=workdir if c_agent else str(REPO),
        env=None if c_agent else {"PYTHONPATH": str(REPO)},
    )
    try:
        agent.wait_registered()
        run = jobs(ext_db.dsn, "run", "applied by pyagent", "--wait", "--timeout", "60")
        assert run.returncode == 0, run.stdout + run.stderr + agent.log_text()[-2000:]
        assert "step '30 batch': succeeded, result 0" in run.stdout
        assert "applied job ran" in run.stdout
        assert "step '40 failure ignored': ignored, result -1" in run.stdout
        assert "job 'applied by pyagent': succeeded" in run.stdout
        with ext_db.connect() as conn:
            assert conn.execute("SELECT count(*) FROM applied_marker").fetchone() == (1,)
            # The schedule is back in charge after the run.
            (nextrun,) = conn.execute(
                "SELECT jobnextrun FROM pgagent.pga_job WHERE jobname = 'applied by pyagent'"
            ).fetchone()
            assert nextrun.year == 2090
    finally:
        agent.stop(signal.SIGTERM)
        agent.log_path.unlink(missing_ok=True)
        os.rmdir(workdir)
