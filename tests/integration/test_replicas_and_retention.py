"""Standbys, failover and job-history retention."""

from __future__ import annotations

import signal
import threading

import psycopg
import pytest

from pyagent import schema
from pyagent.devcluster import Cluster
from tests.agentproc import AgentProcess, make_job, wait_job_finished, wait_until
from tests.standby import create_standby, promote


@pytest.fixture
def primary_and_standby():
    primary = Cluster.create()
    primary.start()
    standby = None
    try:
        schema.install(primary.dsn("postgres"))
        standby = create_standby(primary)
        standby.start()
        yield primary, standby
    finally:
        if standby is not None:
            standby.destroy()
        primary.destroy()


def _registered(dsn: str) -> list[tuple[int, str]]:
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as c:
            return c.execute("SELECT jagpid, jagstation FROM pgagent.pga_jobagent").fetchall()
    except psycopg.OperationalError:
        return []


@pytest.mark.slow
def test_agent_on_a_standby_waits_and_starts_after_promotion(primary_and_standby):
    primary, standby = primary_and_standby
    agent = AgentProcess(standby.dsn("postgres"), ["-t", "1", "--station", "on-standby"])
    try:
        wait_until(
            lambda: "Connected to a standby server" in agent.log_text(), what="standby notice"
        )
        assert _registered(primary.dsn("postgres")) == []
        primary.stop("fast")
        promote(standby)
        wait_until(lambda: _registered(standby.dsn("postgres")), timeout=30, what="registration")
        with psycopg.connect(standby.dsn("postgres"), autocommit=True) as conn:
            job = make_job(conn, "after promotion", [{"jstcode": "SELECT 1"}], run_now=True)
            assert [r[1] for r in wait_job_finished(conn, job, timeout=30)] == ["s"]
        assert agent.proc.poll() is None
    finally:
        agent.stop()


@pytest.mark.slow
def test_multi_host_conninfo_follows_a_failover(primary_and_standby):
    primary, standby = primary_and_standby
    dsn = (
        f"host=127.0.0.1,127.0.0.1 port={primary.port},{standby.port} user=postgres "
        "dbname=postgres target_session_attrs=read-write connect_timeout=3"
    )
    agent = AgentProcess(dsn, ["-t", "1", "-r", "10", "--station", "multi"])
    try:
        agent.wait_registered()
        assert _registered(primary.dsn("postgres"))
        primary.stop("immediate")
        promote(standby)
        wait_until(lambda: _registered(standby.dsn("postgres")), timeout=40, what="failover")
        with psycopg.connect(standby.dsn("postgres"), autocommit=True) as conn:
            job = make_job(conn, "after failover", [{"jstcode": "SELECT 1"}], run_now=True)
            assert [r[1] for r in wait_job_finished(conn, job, timeout=30)] == ["s"]
        assert agent.proc.poll() is None
    finally:
        agent.stop()


@pytest.mark.slow
def test_log_retention_deletes_old_history_in_small_batches(db, conn):
    job = make_job(conn, "history", [{"jstcode": "SELECT 1"}])
    (step,) = conn.execute(
        "SELECT jstid FROM pgagent.pga_jobstep WHERE jstjobid = %s", (job,)
    ).fetchone()
    # 1,000,000 old runs with a step log each, 10 recent ones, and one old run still 'r'.
    conn.execute(
        "INSERT INTO pgagent.pga_joblog (jlgjobid, jlgstatus, jlgstart, jlgduration)"
        " SELECT %s, 's', now() - interval '40 days' - g * interval '1 second', '1 second'"
        " FROM generate_series(1, 1000000) g",
        (job,),
    )
    conn.execute(
        "INSERT INTO pgagent.pga_jobsteplog (jsljlgid, jsljstid, jslstatus, jslresult)"
        " SELECT jlgid, %s, 's', 1 FROM pgagent.pga_joblog",
        (step,),
    )
    conn.execute(
        "INSERT INTO pgagent.pga_joblog (jlgjobid, jlgstatus, jlgstart)"
        " SELECT %s, 's', now() - interval '1 day' FROM generate_series(1, 10)",
        (job,),
    )
    conn.execute(
        "INSERT INTO pgagent.pga_joblog (jlgjobid, jlgstatus, jlgstart)"
        " VALUES (%s, 'r', now() - interval '90 days')",
        (job,),
    )
    # While the purge runs, pgAdmin-like writes must never wait long for a lock.
    stop = threading.Event()
    blocked: list[str] = []

    def writer() -> None:
        with psycopg.connect(db.dsn, autocommit=True) as w:
            w.execute("SET lock_timeout = '2s'")
            while not stop.is_set():
                try:
                    w.execute(
                        "UPDATE pgagent.pga_job SET jobdesc = 'touched' WHERE jobid = %s", (job,)
                    )
                    w.execute(
                        "INSERT INTO pgagent.pga_joblog (jlgjobid, jlgstatus) VALUES (%s, 's')",
                        (job,),
                    )
                except psycopg.errors.LockNotAvailable as exc:
                    blocked.append(str(exc))

    thread = threading.Thread(target=writer)
    thread.start()
    agent = AgentProcess(db.dsn, ["-t", "1", "--log-retention", "30"])
    try:
        wait_until(
            lambda: (
                conn.execute(
                    "SELECT count(*) FROM pgagent.pga_joblog WHERE jlgstart < now() - interval '30 days'"
                ).fetchone()
                == (1,)
            ),
            timeout=280,
            interval=1,
            what="old history deleted",
        )
    finally:
        stop.set()
        thread.join()
        agent.stop(signal.SIGTERM)
    assert blocked == []
    assert conn.execute("SELECT count(*) FROM pgagent.pga_jobsteplog").fetchone() == (0,)
    assert (
        conn.execute(
            "SELECT count(*) FROM pgagent.pga_joblog WHERE jlgstart > now() - interval '2 days'"
        ).fetchone()[0]
        >= 10
    )
    assert conn.execute(
        "SELECT jlgstatus FROM pgagent.pga_joblog WHERE jlgstart < now() - interval '30 days'"
    ).fetchone() == ("r",)
