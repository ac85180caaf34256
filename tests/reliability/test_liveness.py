"""Liveness by lease (pyagent.liveness): faults that used to make one agent abort another
agent's running jobs, and faults where an agent really is gone. Real agents, a real
PostgreSQL, pg_terminate_backend, SIGKILL, and a TCP relay that stops forwarding one
connection (or all of an agent's) without closing it. docs/reliability.md lists each test.

Every test watches the step sessions on the server (pyagent names a step's session after
its run while the step runs) and asserts that no job ever had two sessions executing at
the same moment.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.agentproc import (
    AgentProcess,
    job_logs,
    make_job,
    step_logs,
    wait_job_finished,
    wait_until,
)
from tests.reliability.test_faults import run_now, running_rows

_TAG = re.compile(r"^pyagent run (\d+) \(job (\d+),")

STAMPS = """
CREATE TABLE stamps (job int, what text, run int, at timestamptz DEFAULT clock_timestamp());
"""


class SessionWatch:
    """Samples pg_stat_activity every 20 ms in a thread: per job, the most step sessions
    seen executing at once, and every run seen executing."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.most: dict[int, int] = defaultdict(int)
        self.runs: dict[int, set[int]] = defaultdict(set)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> SessionWatch:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._stop.is_set():
                rows = conn.execute(
                    "SELECT application_name FROM pg_stat_activity"
                    " WHERE state = 'active' AND application_name LIKE 'pyagent run %'"
                ).fetchall()
                now: dict[int, int] = defaultdict(int)
                for (name,) in rows:
                    match = _TAG.match(name)
                    if match:
                        run, job = int(match.group(1)), int(match.group(2))
                        now[job] += 1
                        self.runs[job].add(run)
                for job, n in now.items():
                    self.most[job] = max(self.most[job], n)
                time.sleep(0.02)

    def overlaps(self) -> dict[int, int]:
        return {job: n for job, n in self.most.items() if n > 1}


def stamped_job(conn: psycopg.Connection[Any], name: str, seconds: float, **kw: Any) -> int:
    """Three steps: stamp the start; sleep `seconds` and stamp that the sleep completed;
    stamp the end. A step that is cut leaves its stamp out."""
    job = make_job(
        conn,
        name,
        [
            {"jstname": "1 start", "jstcode": "SELECT 1"},
            {"jstname": "2 work", "jstcode": f"SELECT pg_sleep({seconds})"},
            {"jstname": "3 end", "jstcode": "SELECT 1"},
        ],
        **kw,
    )
    for step, what in (("1 start", "start"), ("2 work", "work"), ("3 end", "end")):
        sleep = f"SELECT pg_sleep({seconds}); " if what == "work" else ""
        conn.execute(
            "UPDATE pgagent.pga_jobstep SET jstcode = %s WHERE jstjobid = %s AND jstname = %s",
            (
                f"{sleep}INSERT INTO stamps (job, what, run) SELECT {job}, '{what}',"
                f" max(jlgid) FROM pgagent.pga_joblog WHERE jlgjobid = {job}",
                job,
                step,
            ),
        )
    return job


def agent_pid(conn: psycopg.Connection[Any], station: str) -> int | None:
    row = conn.execute(
        "SELECT jagpid FROM pgagent.pga_jobagent WHERE jagstation = %s", (station,)
    ).fetchone()
    return None if row is None else int(row[0])


def terminate(conn: psycopg.Connection[Any], pid: int) -> None:
    conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


def stamps(conn: psycopg.Connection[Any], job: int) -> list[str]:
    return [
        r[0] for r in conn.execute("SELECT what FROM stamps WHERE job = %s ORDER BY at", (job,))
    ]


def claimed(conn: psycopg.Connection[Any]) -> int:
    return int(
        conn.execute(
            "SELECT count(*) FROM pgagent.pga_job WHERE jobagentid IS NOT NULL"
        ).fetchone()[0]
    )


# ---- a dropped service connection is not a dead agent ---------------------------------------


def test_terminated_service_connection_beside_a_second_agent_aborts_no_run(db, conn, agents):
    """The fault from the issue, three times at different moments of the runs: agent a's
    service session is terminated on the server while agent b polls every second."""
    conn.execute(STAMPS)
    jobs = [stamped_job(conn, f"a{i}", 6, hostagent="a") for i in range(3)]
    jobs += [stamped_job(conn, f"b{i}", 6, hostagent="b") for i in range(3)]
    a = agents(db.dsn, "--station", "a")
    b = agents(db.dsn, "--station", "b")
    a.wait_registered(1)
    b.wait_registered(2)
    with SessionWatch(db.dsn) as watch:
        conn.execute("UPDATE pgagent.pga_job SET jobnextrun = now()")
        started = time.monotonic()
        for at in (1.0, 3.5, 6.5):  # in step 2, later in step 2, around step 3
            time.sleep(max(0.0, started + at - time.monotonic()))
            pid = wait_until(lambda: agent_pid(conn, "a"), what="agent a's row")
            terminate(conn, pid)
            wait_until(
                lambda p=pid: agent_pid(conn, "a") not in (None, p), 10, what="re-registration"
            )
        for job in jobs:
            wait_job_finished(conn, job, timeout=30)
    for job in jobs:
        assert [r[1] for r in job_logs(conn, job)] == ["s"], job
        assert [r[1] for r in step_logs(conn, job)] == ["s", "s", "s"]
        assert stamps(conn, job) == ["start", "work", "end"]
    assert watch.overlaps() == {}
    assert running_rows(conn) == (0, 0) and claimed(conn) == 0
    assert "Clearing zombie agent" not in a.log_text() + b.log_text()
    assert a.log_text().count("Reconnected to the database") == 3
    assert "3 running job(s) kept" in a.log_text()


@pytest.mark.slow
def test_partition_of_the_service_connection_only_keeps_the_lease_and_the_run(
    db, conn, agents, proxies
):
    """The relay stops forwarding agent a's service connection (its other connections
    still work): a renews its lease through its bookkeeping pool, notices the dead service
    connection by its statement timeout, registers again and keeps its run."""
    conn.execute(STAMPS)
    proxy = proxies(db.cluster.port)
    job = stamped_job(conn, "long", 25, hostagent="a")
    a = agents(db.cluster.dsn(db.name, **proxy.dsn_params()), "--station", "a")
    b = agents(db.dsn, "--station", "b")
    b.wait_registered(2)
    with SessionWatch(db.dsn) as watch:
        run_now(conn, job)
        wait_until(lambda: stamps(conn, job) == ["start"], what="step 1")
        pid = agent_pid(conn, "a")
        (port,) = conn.execute(
            "SELECT client_port FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
        assert proxy.freeze_upstream_port(port)
        wait_until(lambda: agent_pid(conn, "a") not in (None, pid), 40, what="a registered again")
        wait_job_finished(conn, job, timeout=40)
    assert [r[1] for r in job_logs(conn, job)] == ["s"]
    assert stamps(conn, job) == ["start", "work", "end"]
    assert watch.overlaps() == {}
    # The frozen session is ended by the agent once it is registered again.
    wait_until(
        lambda: (
            not conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        ),
        10,
        what="the old service session to end",
    )
    assert "Clearing zombie agent" not in b.log_text()
    assert "1 running job(s) kept" in a.log_text()


@pytest.mark.slow
def test_partition_longer_than_the_lease_fences_the_run_and_the_job_never_runs_twice(
    db, conn, agents, proxies
):
    """Every connection of agent a to the database stalls (the relay stops forwarding and
    new connections hang) while its SQL step's own session, reached directly, keeps
    working. a stops the step before its grace ends; b clears a when the lease runs out
    and runs the job again; at no moment do two sessions execute the job's step."""
    proxy = proxies(db.cluster.port)
    # The step reaches the database directly, not through the relay.
    job = make_job(conn, "fenced", [{"jstconnstr": db.dsn, "jstcode": "SELECT 1"}])
    conn.execute(  # long on its first run only
        "UPDATE pgagent.pga_jobstep SET jstcode = %s WHERE jstjobid = %s",
        (
            "SELECT pg_sleep(CASE WHEN count(*) = 1 THEN 120 ELSE 1 END)"
            f" FROM pgagent.pga_joblog WHERE jlgjobid = {job}",
            job,
        ),
    )
    lease = ("--lease", "6")
    a = agents(db.cluster.dsn(db.name, **proxy.dsn_params()), "--station", "a", *lease)
    a.wait_registered(1)
    with SessionWatch(db.dsn) as watch:
        run_now(conn, job)
        wait_until(lambda: watch.runs.get(job), what="a's step")
        b = agents(db.dsn, "--station", "b", *lease)
        b.wait_registered(2)
        time.sleep(2)  # a renews its lease and learns of b (a poll every second)
        proxy.cut(new="blackhole", existing="freeze")
        cut_at = time.monotonic()
        # a stops its step before b may clear it ...
        wait_until(lambda: "No contact with the database" in a.log_text(), 15, what="the fence")
        fenced_in = time.monotonic() - cut_at
        # ... b clears a once its lease has run out, and the run is aborted with a reason.
        wait_until(lambda: [r[1] for r in job_logs(conn, job)] == ["d"], 20, what="the sweep")
        swept_in = time.monotonic() - cut_at
        ((_name, status, _result, output),) = step_logs(conn, job)
        assert status == "d" and "was judged dead" in output, output
        run_now(conn, job)
        logs = wait_job_finished(conn, job, runs=2, timeout=20)
        assert [r[1] for r in logs] == ["d", "s"]
        proxy.restore()
        wait_until(lambda: agent_pid(conn, "a") is not None, 30, what="a registered again")
    print(f"fenced {fenced_in:.1f} s after the cut, swept {swept_in:.1f} s after it")
    assert fenced_in < swept_in
    assert watch.overlaps() == {}
    assert len(watch.runs[job]) == 2
    assert running_rows(conn) == (0, 0)
    # What a wrote after the partition did not overwrite b's record of the run.
    assert [r[1] for r in job_logs(conn, job)] == ["d", "s"]
    assert a.proc.poll() is None and b.proc.poll() is None


# ---- a dead agent's jobs come back within the bound -----------------------------------------


def test_sigkilled_agent_is_cleared_within_the_lease_by_an_agent_that_never_saw_it(
    db, conn, agents
):
    """An agent started after the other one died cannot know its grace: it waits for its
    own lease (here 6 s), then clears it; the dead agent's step session is stopped before
    its run is marked aborted."""
    job = make_job(conn, "orphan", [{"jstcode": "SELECT pg_sleep(120)"}], run_now=True)
    victim = agents(db.dsn, "--station", "victim")
    victim.wait_registered()
    wait_until(
        lambda: conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE application_name LIKE 'pyagent run %%'"
            " AND state = 'active'"
        ).fetchone(),
        what="the step",
    )
    victim.kill()
    killed_at = time.monotonic()
    later = agents(db.dsn, "--station", "later", "--lease", "6")
    wait_until(lambda: [r[1] for r in job_logs(conn, job)] == ["d"], 15, what="the sweep")
    took = time.monotonic() - killed_at
    assert took < 6 + 2, took  # the lease, plus one poll and the clean-up
    active = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pyagent run %%'"
    ).fetchone()[0]
    assert active == 0
    ((_name, status, _result, output),) = step_logs(conn, job)
    assert status == "d" and "no sign of life" in output and "session" in output, output
    assert "Clearing zombie agent" in later.log_text()


# ---- beside a C pgAgent ---------------------------------------------------------------------


PGAGENT = Path("/usr/bin/pgagent")


@pytest.mark.conformance
def test_beside_a_c_pgagent_neither_agent_clears_a_live_one(ext_db, agents):
    """pyagent never clears a live C pgAgent, however old its row (pgAgent does not renew a
    lease); a dropped pyagent service session does not make either agent abort anything; a
    SIGKILLed pgAgent is cleared by pyagent after its lease."""
    if not os.access(PGAGENT, os.X_OK):
        pytest.skip(f"{PGAGENT} (Debian package pgagent) is not installed")
    host = socket.gethostname()  # pgAgent's station
    with ext_db.connect() as conn:
        conn.execute(STAMPS)
        c_job = stamped_job(conn, "for pgagent", 4, hostagent=host)
        py_job = stamped_job(conn, "for pyagent", 4, hostagent="py")
        c = AgentProcess(ext_db.dsn, ["-t", "1"], command=[str(PGAGENT)])
        py = agents(ext_db.dsn, "--station", "py", "--lease", "6")
        py.wait_registered(2)
        run_now(conn, c_job)
        run_now(conn, py_job)
        wait_until(lambda: stamps(conn, py_job)[:1] == ["start"], what="pyagent's run")
        terminate(conn, agent_pid(conn, "py"))
        for job in (c_job, py_job):
            wait_job_finished(conn, job, timeout=30)
            assert [r[1] for r in job_logs(conn, job)] == ["s"]
        # Longer than pyagent's lease: pgAgent's row (never renewed) stays.
        c_pid = agent_pid(conn, host)
        time.sleep(7)
        assert c_pid is not None and agent_pid(conn, host) == c_pid
        assert "Clearing zombie agent" not in py.log_text()
        # A dead pgAgent is cleared after the lease: its running job is aborted.
        slow = make_job(conn, "pgagent dies", [{"jstcode": "SELECT pg_sleep(120)"}], hostagent=host)
        run_now(conn, slow)
        wait_until(lambda: job_logs(conn, slow), 20, what="pgAgent's run")
        c.kill()
        wait_until(lambda: [r[1] for r in job_logs(conn, slow)] == ["d"], 20, what="the sweep")
        assert agent_pid(conn, host) is None
        assert f"Clearing zombie agent {c_pid}" in py.log_text()
