"""Real agent processes for tests: start pyagent (or the C pgagent), wait on conditions
in the database, stop with real signals."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg


def wait_until(
    predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll predicate until it returns a truthy value; fail the test after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


class AgentProcess:
    """One agent subprocess writing its log to a file.

    Each agent gets a private directory holding its log and its TMPDIR (where batch steps
    make their temporary directories, so those of a killed agent are not left in the
    system's temp directory). `cleanup_all()` (run after every test by conftest) kills
    what is still running and removes the directories."""

    _instances: list[AgentProcess] = []

    def __init__(
        self,
        dsn: str,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        command: Sequence[str] | None = None,
        cwd: str | None = None,
        check_dsn: str | None = None,
    ) -> None:
        self.dsn = dsn
        # Where the test looks at pga_jobagent (the agent's own dsn may need a password).
        self.check_dsn = check_dsn or dsn
        self.workdir = Path(tempfile.mkdtemp(prefix="agent-"))
        os.chmod(self.workdir, 0o755)  # batch steps may run as another user
        self.log_path = self.workdir / "agent.log"
        step_tmp = self.workdir / "tmp"
        step_tmp.mkdir(mode=0o1777)
        os.chmod(step_tmp, 0o1777)  # like /tmp
        base = list(command) if command else [sys.executable, "-m", "pyagent"]
        self.argv = [*base, "-f", "-l", "2", *args, dsn]
        full_env = dict(os.environ)
        full_env["TMPDIR"] = str(step_tmp)
        full_env.update(env or {})
        AgentProcess._instances.append(self)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv, stdout=self._log, stderr=subprocess.STDOUT, env=full_env, cwd=cwd
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def agent_pids(self) -> list[int]:
        """Backend pids registered in pga_jobagent by agents (any)."""
        with psycopg.connect(self.check_dsn, autocommit=True) as conn:
            return [r[0] for r in conn.execute("SELECT jagpid FROM pgagent.pga_jobagent")]

    def wait_registered(self, count: int = 1, timeout: float = 20.0) -> None:
        """Wait until at least `count` agents are registered (and this one is alive)."""

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"agent exited with {self.proc.returncode}:\n{self.log_text()}"
                )
            return len(self.agent_pids()) >= count

        wait_until(ready, timeout, what="agent registration")

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return int(self.proc.returncode)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()

    @classmethod
    def cleanup_all(cls) -> None:
        """Kill the agents still running and remove every agent's directory."""
        while cls._instances:
            agent = cls._instances.pop()
            agent.kill()
            shutil.rmtree(agent.workdir, ignore_errors=True)


def make_job(
    conn: psycopg.Connection[Any],
    name: str = "job",
    steps: Sequence[dict[str, Any]] = (),
    *,
    enabled: bool = True,
    hostagent: str = "",
    run_now: bool = False,
    desc: str = "",
) -> int:
    """Insert a job with steps (dicts of pga_jobstep columns); optionally make it due now."""
    job_id = conn.execute(
        "INSERT INTO pgagent.pga_job (jobjclid, jobname, jobenabled, jobhostagent, jobdesc)"
        " VALUES (1, %s, %s, %s, %s) RETURNING jobid",
        (name, enabled, hostagent, desc),
    ).fetchone()[0]
    for i, step in enumerate(steps):
        cols = {"jstname": f"step{i:02d}", "jstkind": "s", **step}
        if cols["jstkind"] == "s" and not cols.get("jstconnstr") and not cols.get("jstdbname"):
            cols["jstdbname"] = conn.info.dbname
        names = ", ".join(["jstjobid", *cols])
        marks = ", ".join(["%s"] * (len(cols) + 1))
        conn.execute(
            f"INSERT INTO pgagent.pga_jobstep ({names}) VALUES ({marks})", [job_id, *cols.values()]
        )
    if run_now:
        conn.execute("UPDATE pgagent.pga_job SET jobnextrun = now() WHERE jobid = %s", (job_id,))
    return int(job_id)


def job_logs(conn: psycopg.Connection[Any], job_id: int) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT jlgid, jlgstatus, jlgduration FROM pgagent.pga_joblog WHERE jlgjobid = %s"
        " ORDER BY jlgid",
        (job_id,),
    ).fetchall()


def step_logs(conn: psycopg.Connection[Any], job_id: int) -> list[tuple[Any, ...]]:
    """(step name, status, result, output) of every step log of the job, in run order."""
    return conn.execute(
        "SELECT s.jstname, l.jslstatus, l.jslresult, l.jsloutput"
        "  FROM pgagent.pga_jobsteplog l"
        "  JOIN pgagent.pga_jobstep s ON s.jstid = l.jsljstid"
        "  JOIN pgagent.pga_joblog j ON j.jlgid = l.jsljlgid"
        " WHERE j.jlgjobid = %s ORDER BY l.jslid",
        (job_id,),
    ).fetchall()


def wait_job_finished(
    conn: psycopg.Connection[Any], job_id: int, runs: int = 1, timeout: float = 20.0
) -> list[tuple[Any, ...]]:
    """Wait until the job has `runs` finished log rows and is released; return the logs."""

    def done() -> list[tuple[Any, ...]] | None:
        logs = job_logs(conn, job_id)
        finished = [r for r in logs if r[1] != "r"]
        agent = conn.execute(
            "SELECT jobagentid FROM pgagent.pga_job WHERE jobid = %s", (job_id,)
        ).fetchone()
        if len(finished) >= runs and (agent is None or agent[0] is None):
            return logs
        return None

    return wait_until(done, timeout, what=f"job {job_id} to finish {runs} run(s)")  # type: ignore[no-any-return]
