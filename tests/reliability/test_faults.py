"""Faults: real pyagent processes, a real PostgreSQL, real signals, restarts and network
cuts. Each test states the fault and the outcome it pins; docs/reliability.md lists them."""

from __future__ import annotations

import os
import random
import signal
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from pyagent import schedule
from tests.agentproc import (
    AgentProcess,
    job_logs,
    make_job,
    step_logs,
    wait_job_finished,
    wait_until,
)
from tests.reliability.proxy import free_loopback_port

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# ---- helpers ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3 of stat); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def log_lines(agent: AgentProcess) -> int:
    return len(agent.log_text().splitlines())


def registered_pids(dsn: str) -> list[int] | None:
    """Agents in pga_jobagent, or None while the database cannot be reached."""
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as c:
            return sorted(r[0] for r in c.execute("SELECT jagpid FROM pgagent.pga_jobagent"))
    except psycopg.OperationalError:
        return None


def live_registration(dsn: str) -> list[int] | None:
    """The registered agents when every one of them is a live backend, else None."""
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as c:
            rows = c.execute(
                "SELECT a.jagpid, s.pid IS NOT NULL FROM pgagent.pga_jobagent a"
                " LEFT JOIN pg_stat_activity s ON s.pid = a.jagpid"
            ).fetchall()
    except psycopg.OperationalError:
        return None
    if rows and all(alive for _pid, alive in rows):
        return sorted(pid for pid, _alive in rows)
    return None


def running_rows(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """(job log rows, step log rows) still marked running."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM pgagent.pga_joblog WHERE jlgstatus = 'r'),"
        "       (SELECT count(*) FROM pgagent.pga_jobsteplog WHERE jslstatus = 'r')"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def job_row(conn: psycopg.Connection[Any], job_id: int) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT jobagentid, jobnextrun, jobenabled FROM pgagent.pga_job WHERE jobid = %s",
        (job_id,),
    ).fetchone()
    assert row is not None
    return tuple(row)


def add_schedule(conn: psycopg.Connection[Any], job_id: int, **arrays: list[bool]) -> int:
    """A schedule (all-false arrays: every minute) started yesterday."""
    cols = {
        "jscminutes": [False] * 60,
        "jschours": [False] * 24,
        "jscweekdays": [False] * 7,
        "jscmonthdays": [False] * 32,
        "jscmonths": [False] * 12,
        **arrays,
    }
    names = ", ".join(cols)
    marks = ", ".join(["%s"] * len(cols))
    row = conn.execute(
        f"INSERT INTO pgagent.pga_schedule (jscjobid, jscname, jscstart, {names})"
        f" VALUES (%s, 'sched', now() - interval '1 day', {marks}) RETURNING jscid",
        [job_id, *cols.values()],
    ).fetchone()
    assert row is not None
    return int(row[0])


def run_now(conn: psycopg.Connection[Any], job_id: int) -> None:
    """What pgAdmin's Run now sends."""
    conn.execute(
        "UPDATE pgagent.pga_job SET jobnextrun = now()::timestamptz WHERE jobid = %s", (job_id,)
    )


def query_running(conn: psycopg.Connection[Any], fragment: str) -> bool:
    return bool(
        conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s"
            " AND pid <> pg_backend_pid()",
            (f"%{fragment}%",),
        ).fetchone()
    )


def terminate_queries(conn: psycopg.Connection[Any], fragment: str) -> None:
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE %s"
        " AND pid <> pg_backend_pid()",
        (f"%{fragment}%",),
    )


def assert_on_time(conn: psycopg.Connection[Any], agent: AgentProcess, slack: float = 3.0) -> None:
    """A job due two seconds from now starts within `slack` seconds of its jobnextrun."""
    job = make_job(conn, "on time", [{"jstcode": "SELECT 1"}])
    due = conn.execute(
        "UPDATE pgagent.pga_job SET jobnextrun = now() + interval '2 s' WHERE jobid = %s"
        " RETURNING jobnextrun",
        (job,),
    ).fetchone()[0]
    logs = wait_job_finished(conn, job, timeout=20)
    assert [r[1] for r in logs] == ["s"], agent.log_text()[-3000:]
    (start,) = conn.execute(
        "SELECT jlgstart FROM pgagent.pga_joblog WHERE jlgjobid = %s", (job,)
    ).fetchone()
    assert due <= start < due + timedelta(seconds=slack)


# ---- 1. an agent SIGKILLed mid-step; a second agent sweeps and runs the jobs again ----------


@pytest.mark.slow
def test_sigkilled_agent_mid_sql_and_batch_step_is_swept_and_jobs_rerun_on_schedule(
    db, conn, agents, reaper, tmp_path
):
    pidfile = tmp_path / "batch.pid"
    reaper(pidfile)
    sql_job = make_job(
        conn,
        "sql victim",
        [{"jstname": "a", "jstcode": "SELECT 1"}, {"jstname": "b", "jstcode": "SELECT 0"}],
    )
    # Sleeps on its first run only (its own log row is the only one then).
    conn.execute(
        "UPDATE pgagent.pga_jobstep SET jstcode = %s WHERE jstjobid = %s AND jstname = 'b'",
        (
            "SELECT pg_sleep(CASE WHEN count(*) = 1 THEN 300 ELSE 0 END)"
            f" FROM pgagent.pga_joblog WHERE jlgjobid = {sql_job}",
            sql_job,
        ),
    )
    batch_job = make_job(
        conn,
        "batch victim",
        [
            {
                "jstkind": "b",
                "jstcode": f"if [ ! -e {pidfile} ]; then echo $$ > {pidfile}; exec sleep 300; fi",
            }
        ],
    )
    for job in (sql_job, batch_job):
        add_schedule(conn, job)  # every minute
        run_now(conn, job)
    victim = agents(db.dsn)
    victim.wait_registered()
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), what="batch step")
    wait_until(lambda: query_running(conn, "pg_sleep(CASE"), what="sql step")
    survivor = agents(db.dsn, "--station", "survivor")
    survivor.wait_registered(2)

    killed_at = time.monotonic()
    victim.kill()
    wait_until(
        lambda: all(
            job_logs(conn, j) and job_logs(conn, j)[0][1] == "d" for j in (sql_job, batch_job)
        ),
        timeout=15,
        what="the survivor's sweep",
    )
    swept_in = time.monotonic() - killed_at
    (swept_at,) = conn.execute("SELECT clock_timestamp()").fetchone()
    terminate_queries(conn, "pg_sleep(CASE")  # the dead agent's step backend would sleep on
    # -t 1: the survivor sweeps on its next poll (plus the time the server needs to see the
    # dead agent's session end).
    assert swept_in < 5, swept_in
    assert [(r[0], r[1]) for r in step_logs(conn, sql_job)] == [("a", "s"), ("b", "d")]
    assert [r[1] for r in step_logs(conn, batch_job)] == ["d"]
    # Nothing of the dead agent's is left in 'r' (a run the survivor may already have started
    # at the next minute is not the dead agent's).
    (left,) = conn.execute(
        "SELECT count(*) FROM pgagent.pga_joblog WHERE jlgstatus = 'r' AND jlgstart < %s",
        (swept_at,),
    ).fetchone()
    assert left == 0
    only = live_registration(db.dsn)
    assert only is not None and len(only) == 1 and registered_pids(db.dsn) == only
    assert "Clearing zombie agent" in survivor.log_text()

    # Released to their schedule: the next whole minute, as pga_next_schedule says.
    next_runs = {}
    for job in (sql_job, batch_job):
        agent_id, next_run, _enabled = job_row(conn, job)
        assert agent_id is None
        (expected,) = conn.execute(
            "SELECT pgagent.pga_next_schedule(jscid, jscstart, jscend, jscminutes, jschours,"
            " jscweekdays, jscmonthdays, jscmonths) FROM pgagent.pga_schedule WHERE jscjobid = %s",
            (job,),
        ).fetchone()
        assert next_run.second == 0 and next_run.microsecond == 0
        assert expected - timedelta(minutes=1) <= next_run <= expected
        next_runs[job] = next_run

    # The survivor runs them again at that time.
    for job in (sql_job, batch_job):
        logs = wait_job_finished(conn, job, runs=2, timeout=75)
        assert [r[1] for r in logs[:2]] == ["d", "s"]
        (start,) = conn.execute(
            "SELECT jlgstart FROM pgagent.pga_joblog WHERE jlgid = %s", (logs[1][0],)
        ).fetchone()
        assert next_runs[job] <= start < next_runs[job] + timedelta(seconds=3)
    assert survivor.proc.poll() is None


# ---- 2. PostgreSQL restarts (dedicated cluster) --------------------------------------------


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_database_restart_while_jobs_run(own_db, agents, reaper, tmp_path, mode):
    pidfile = tmp_path / "batch.pid"
    reaper(pidfile)
    with own_db.connect() as conn:
        sql_job = make_job(conn, "long sql", [{"jstcode": "SELECT pg_sleep(300)"}], run_now=True)
        batch_job = make_job(
            conn,
            "batch across the restart",
            [{"jstkind": "b", "jstcode": f"echo $$ > {pidfile}; sleep 3; echo done"}],
            run_now=True,
        )
        agent = agents(own_db.dsn(), "-r", "10")
        agent.wait_registered()
        wait_until(lambda: query_running(conn, "pg_sleep(300)"), what="sql step")
        wait_until(pidfile.exists, what="batch step")
        before = agent.agent_pids()

    own_db.cluster.restart(mode)

    wait_until(
        lambda: (pids := live_registration(own_db.dsn())) and pids != before,
        timeout=40,
        what="re-registration",
    )
    with own_db.connect() as conn:
        sql_logs = wait_job_finished(conn, sql_job, timeout=40)
        batch_logs = wait_job_finished(conn, batch_job, timeout=40)
        # Interrupted by the restart: failed with the error (or aborted), never left 'r'.
        assert sql_logs[0][1] in ("f", "d")
        ((_n, status, result, output),) = step_logs(conn, sql_job)
        assert status in ("f", "d") and result == -1
        assert output.strip(), "the error must be recorded"
        print(f"{mode} restart: sql job {sql_logs[0][1]}, step {status}: {output!r}")
        # A batch step does not need the database: it finished and was recorded.
        assert [r[1] for r in batch_logs] == ["s"]
        assert step_logs(conn, batch_job)[0][1:] == ("s", 0, "done\n")
        assert running_rows(conn) == (0, 0)
        assert len(registered_pids(own_db.dsn()) or []) == 1
        assert_on_time(conn, agent)
    assert agent.proc.poll() is None
    assert "Lost the connection to the database; reconnecting" in agent.log_text()


def test_database_down_while_idle_then_back(own_db, agents):
    agent = agents(own_db.dsn(), "-r", "10")
    agent.wait_registered()
    before = agent.agent_pids()
    own_db.cluster.stop("immediate")
    # Down long enough for a few failed reconnection attempts.
    wait_until(lambda: "[Attempt #2]" in agent.log_text(), timeout=30, what="two failed attempts")
    own_db.cluster.start()
    wait_until(
        lambda: (pids := live_registration(own_db.dsn())) and pids != before,
        timeout=30,
        what="re-registration",
    )
    with own_db.connect() as conn:
        assert registered_pids(own_db.dsn()) == live_registration(own_db.dsn())
        assert_on_time(conn, agent)
    assert agent.proc.poll() is None


# ---- 3. the network to the database cut for 30 seconds --------------------------------------

OUTAGE = 30.0


@pytest.mark.slow
def test_network_cut_for_30s_without_busy_looping(db, conn, agents, proxies, reaper, tmp_path):
    proxy = proxies(db.cluster.port)
    via_proxy = db.cluster.dsn(db.name, **proxy.dsn_params())
    pidfile = tmp_path / "batch.pid"
    reaper(pidfile)
    sql_job = make_job(conn, "cut sql", [{"jstcode": "SELECT pg_sleep(300)"}], run_now=True)
    batch_job = make_job(
        conn,
        "cut batch",
        [{"jstkind": "b", "jstcode": f"echo $$ > {pidfile}; sleep 5; echo done"}],
        run_now=True,
    )
    agent = agents(via_proxy, "-r", "10")
    agent.wait_registered()
    wait_until(lambda: query_running(conn, "pg_sleep(300)"), what="sql step")
    wait_until(pidfile.exists, what="batch step")
    before = agent.agent_pids()

    lines_before, cpu_before = log_lines(agent), cpu_seconds(agent.pid)
    proxy.cut(new="refuse", existing="reset")
    due_during_outage = make_job(
        conn, "due during the cut", [{"jstcode": "SELECT 1"}], run_now=True
    )
    cut_at = time.monotonic()
    while time.monotonic() - cut_at < OUTAGE:  # the outage itself: watch the agent live
        assert agent.proc.poll() is None, agent.log_text()[-3000:]
        time.sleep(0.5)
    cpu_used = cpu_seconds(agent.pid) - cpu_before
    lines = log_lines(agent) - lines_before
    proxy.restore()
    print(f"30 s outage: {cpu_used:.2f} CPU seconds, {lines} log lines (-l 2)")
    # Behaviour bounds, not performance targets: no busy loop, no log flood.
    assert cpu_used < 2.0, cpu_used
    assert lines < 100, agent.log_text()[-5000:]

    wait_until(
        lambda: (pids := live_registration(db.dsn)) and pids != before,
        timeout=30,
        what="re-registration",
    )
    sql_logs = wait_job_finished(conn, sql_job, timeout=30)
    assert sql_logs[0][1] in ("f", "d")
    ((_n, status, result, output),) = step_logs(conn, sql_job)
    assert status in ("f", "d") and result == -1 and output.strip()
    assert [r[1] for r in wait_job_finished(conn, batch_job, timeout=30)] == ["s"]
    assert step_logs(conn, batch_job)[0][1:] == ("s", 0, "done\n")
    assert [r[1] for r in wait_job_finished(conn, due_during_outage, timeout=30)] == ["s"]
    terminate_queries(conn, "pg_sleep(300)")
    assert running_rows(conn) == (0, 0)
    assert len(registered_pids(db.dsn) or []) == 1
    assert_on_time(conn, agent)
    assert agent.proc.poll() is None


def test_outage_messages_all_go_to_the_log_file(db, conn, agents, proxies, tmp_path):
    """psycopg_pool's own records ("error connecting in ...", "reconnection attempt ...
    failed") go through pyagent's logging, honouring -s, -l and --log-format."""
    proxy = proxies(db.cluster.port)
    logfile = tmp_path / "agent.log"
    job, started, go = _gated_job(conn, tmp_path, "bookkeeping in the outage")
    agent = agents(db.cluster.dsn(db.name, **proxy.dsn_params()), "-l", "1", "-s", str(logfile))
    agent.wait_registered()
    run_now(conn, job)
    wait_until(started.exists, what="step a")
    proxy.cut(new="refuse", existing="reset")
    go.touch()  # the step ends in the outage: its bookkeeping waits for the database
    wait_until(
        lambda: logfile.exists() and "[Attempt #2]" in logfile.read_text(),
        timeout=15,
        what="two failed reconnection attempts",
    )
    proxy.restore()
    (first_run,) = wait_job_finished(conn, job, timeout=30)
    assert first_run[1] in ("s", "f")
    # With -s every message goes to the file: nothing on stdout or stderr.
    assert agent.log_text() == ""


# ---- 4. a step's target database unreachable ------------------------------------------------


def test_unreachable_step_targets_fail_clearly_and_the_agent_is_unaffected(
    db, conn, agents, proxies, pg_cluster
):
    blackhole = proxies(forward=False)  # accepts TCP, never answers
    nobody = free_loopback_port()
    conn.execute("CREATE ROLE step_pw LOGIN PASSWORD 'Right-Secret-7'")
    try:
        good_pw = pg_cluster.dsn(db.name, user="step_pw", password="Right-Secret-7")
        bad_pw = pg_cluster.dsn(db.name, user="step_pw", password="Wrong-Secret-9")
        job = make_job(
            conn,
            "unreachable targets",
            [
                {
                    "jstname": "a blackhole",
                    "jstcode": "SELECT 1",
                    "jstconnstr": f"host=127.0.0.1 port={blackhole.port} dbname=x user=postgres"
                    " connect_timeout=2",
                },
                {
                    "jstname": "b refused",
                    "jstcode": "SELECT 1",
                    "jstconnstr": f"host=127.0.0.1 port={nobody} dbname=x connect_timeout=2",
                },
                {"jstname": "c no such db", "jstcode": "SELECT 1", "jstdbname": "no_such_database"},
                {"jstname": "d wrong password", "jstcode": "SELECT 1", "jstconnstr": bad_pw},
                {"jstname": "e right password", "jstcode": "SELECT 42", "jstconnstr": good_pw},
            ],
            run_now=True,
        )
        conn.execute("UPDATE pgagent.pga_jobstep SET jstonerror = 'i' WHERE jstjobid = %s", (job,))
        agent = agents(db.dsn)
        agent.wait_registered()
        logs = wait_job_finished(conn, job, timeout=40)
        assert [r[1] for r in logs] == ["s"]
        steps = {
            name: (status, result, output) for name, status, result, output in step_logs(conn, job)
        }
        for name in ("a blackhole", "b refused", "c no such db", "d wrong password"):
            status, result, output = steps[name]
            assert (status, result) == ("i", -1), name
            assert output.startswith("Couldn't get a connection to the database!\n"), output
        assert "timeout" in steps["a blackhole"][2]
        assert "refused" in steps["b refused"][2]
        assert 'database "no_such_database" does not exist' in steps["c no such db"][2]
        assert 'password authentication failed for user "step_pw"' in steps["d wrong password"][2]
        assert steps["e right password"] == ("s", 1, "")
        (blackhole_took,) = conn.execute(
            "SELECT extract(epoch FROM l.jslduration) FROM pgagent.pga_jobsteplog l"
            " JOIN pgagent.pga_jobstep s ON s.jstid = l.jsljstid WHERE s.jstname = 'a blackhole'"
            " AND s.jstjobid = %s",
            (job,),
        ).fetchone()
        assert 1.5 <= float(blackhole_took) < 10, blackhole_took  # connect_timeout=2 held
        everything = "\n".join(o for _s, _r, o in steps.values()) + agent.log_text()
        for secret in ("Wrong-Secret-9", "Right-Secret-7"):
            assert secret not in everything
        after = make_job(conn, "after", [{"jstcode": "SELECT 1"}], run_now=True)
        assert [r[1] for r in wait_job_finished(conn, after)] == ["s"]
        assert agent.proc.poll() is None
    finally:
        conn.execute("DROP OWNED BY step_pw")
        conn.execute("DROP ROLE step_pw")


# ---- 8. SIGTERM while the database is unreachable -------------------------------------------


def test_sigterm_while_the_database_is_unreachable_exits_and_leaves_rows_for_the_sweep(
    db, conn, agents, proxies, reaper, tmp_path
):
    proxy = proxies(db.cluster.port)
    pidfile = tmp_path / "batch.pid"
    reaper(pidfile)
    job = make_job(
        conn,
        "long batch",
        [{"jstkind": "b", "jstcode": f"echo $$ > {pidfile}; exec sleep 300"}],
        run_now=True,
    )
    agent = agents(db.cluster.dsn(db.name, **proxy.dsn_params()), "--grace-period", "2")
    agent.wait_registered()
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), what="batch step")
    child = int(pidfile.read_text())
    proxy.cut(new="blackhole", existing="reset")  # no RST for new connections: they hang
    wait_until(
        lambda: "Lost the connection to the database" in agent.log_text(),
        timeout=10,
        what="the agent noticing",
    )
    signalled = time.monotonic()
    agent.send_signal(signal.SIGTERM)
    rc = agent.proc.wait(90)
    took = time.monotonic() - signalled
    print(f"exit {rc} after {took:.1f} s")
    assert rc == 0
    assert took < 60, took
    wait_until(lambda: process_gone(child), timeout=10, what="the batch step's process")
    proxy.restore()

    # Nothing could be written: the rows wait for a sweep ...
    assert [r[1] for r in job_logs(conn, job)] == ["r"]
    (old_pid,) = conn.execute("SELECT jagpid FROM pgagent.pga_jobagent").fetchone()
    # ... which the next agent does at start-up.
    later = agents(db.dsn, "--station", "later")
    wait_until(lambda: [r[1] for r in job_logs(conn, job)] == ["d"], timeout=20, what="sweep")
    assert [r[1] for r in step_logs(conn, job)] == ["d"]
    assert job_row(conn, job)[0] is None
    assert old_pid not in (registered_pids(db.dsn) or [])
    assert running_rows(conn) == (0, 0)
    assert later.proc.poll() is None


def process_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


# ---- 5. four agents, 2,000 due jobs, random SIGKILLs and restarts ---------------------------

CHAOS_JOBS = 2000
CHAOS_AGENTS = 4


class JobsNeverRan(AssertionError):
    """Due jobs that got no run at all: a job claimed by an agent that died before its
    pga_joblog row was written must stay due, not lose its run."""


@pytest.mark.slow
def test_four_agents_2000_jobs_random_sigkills_each_job_logged_exactly_once(
    db, conn, agents, record_property
):
    conn.execute(
        "INSERT INTO pgagent.pga_job (jobjclid, jobname)"
        " SELECT 1, 'bulk ' || g FROM generate_series(1, %s) g",
        (CHAOS_JOBS,),
    )
    conn.execute(
        "INSERT INTO pgagent.pga_jobstep (jstjobid, jstname, jstkind, jstcode, jstdbname)"
        " SELECT jobid, 'only', 's', 'SELECT 1', current_database() FROM pgagent.pga_job"
    )
    alive = [agents(db.dsn, "--station", f"chaos{i}") for i in range(CHAOS_AGENTS)]
    alive[0].wait_registered(CHAOS_AGENTS)
    rng = random.Random(20261126)
    conn.execute("UPDATE pgagent.pga_job SET jobnextrun = now()")
    started = time.monotonic()

    def finished_runs() -> int:
        (n,) = conn.execute(
            "SELECT count(*) FROM pgagent.pga_joblog WHERE jlgstatus <> 'r'"
        ).fetchone()
        return int(n)

    # Kill one agent at a random point of every stretch of ~150 finished runs, and start a
    # new one in its place right away, until three quarters of the jobs are done.
    kills = 0
    next_kill_at = rng.randint(50, 200)
    while True:
        done = finished_runs()
        if done >= CHAOS_JOBS * 3 // 4:
            break
        assert time.monotonic() - started < 120, f"only {done} runs after 120 s"
        if done >= next_kill_at:
            victim = alive.pop(rng.randrange(len(alive)))
            victim.kill()
            kills += 1
            alive.append(agents(db.dsn, "--station", f"chaos-restart{kills}"))
            next_kill_at = done + rng.randint(100, 200)
        time.sleep(0.05)

    def settled() -> bool:
        # No run left open, nothing claimed, nothing due: the survivors swept everything.
        (busy,) = conn.execute(
            "SELECT (SELECT count(*) FROM pgagent.pga_joblog WHERE jlgstatus = 'r')"
            "     + (SELECT count(*) FROM pgagent.pga_job WHERE jobagentid IS NOT NULL"
            "           OR jobnextrun <= now())"
        ).fetchone()
        return busy == 0

    wait_until(settled, timeout=60, interval=0.2, what="all jobs done and swept")
    took = time.monotonic() - started
    per_job = dict(
        conn.execute(
            "SELECT j.jobid, coalesce(string_agg(l.jlgstatus, '' ORDER BY l.jlgid), '')"
            "  FROM pgagent.pga_job j LEFT JOIN pgagent.pga_joblog l ON l.jlgjobid = j.jobid"
            " GROUP BY j.jobid"
        ).fetchall()
    )
    histogram: dict[str, int] = {}
    for statuses in per_job.values():
        histogram[statuses] = histogram.get(statuses, 0) + 1
    aborted = histogram.get("d", 0)
    print(f"{CHAOS_JOBS} jobs, {kills} SIGKILLs, {took:.0f} s: {histogram}")
    record_property("sigkills", kills)
    record_property("aborted_runs", aborted)
    assert kills >= 3
    assert running_rows(conn) == (0, 0)
    never_ran = sorted(j for j, s in per_job.items() if s == "")
    twice = sorted(j for j, s in per_job.items() if len(s) > 1)
    assert not twice, f"jobs with several runs: {twice[:20]}"
    assert set(histogram) <= {"s", "d", ""}, histogram
    assert sum(1 for a in alive if a.proc.poll() is None) == CHAOS_AGENTS
    if never_ran:
        raise JobsNeverRan(f"{len(never_ran)} jobs never ran: {never_ran[:20]}")


def test_job_claimed_by_an_agent_that_died_before_starting_it_still_runs(db, conn, agents):
    # The state a SIGKILL leaves between the claim and the job's first log row.
    conn.execute("INSERT INTO pgagent.pga_jobagent (jagpid, jagstation) VALUES (999998, 'dead')")
    job = make_job(conn, "claimed, never started", [{"jstcode": "SELECT 1"}])
    conn.execute(
        "UPDATE pgagent.pga_job SET jobagentid = 999998, joblastrun = now(),"
        " jobnextrun = now() - interval '1 s' WHERE jobid = %s",
        (job,),
    )
    agent = agents(db.dsn)
    agent.wait_registered()
    wait_until(lambda: "Clearing zombie agent 999998" in agent.log_text(), what="the sweep")
    assert [r[1] for r in wait_job_finished(conn, job, timeout=10)] == ["s"]


def test_job_claimed_but_not_started_at_sigterm_stays_due(db, conn, agents):
    job = make_job(conn, "claimed at shutdown", [{"jstcode": "SELECT 1"}])
    # Job log inserts wait behind this lock: the job is claimed but cannot start.
    with db.connect() as blocker:
        blocker.execute("BEGIN")
        blocker.execute("LOCK TABLE pgagent.pga_joblog IN EXCLUSIVE MODE")
        run_now(conn, job)
        agent = agents(db.dsn, "--grace-period", "0")
        agent.wait_registered()
        wait_until(lambda: job_row(conn, job)[0] is not None, what="the claim")
        wait_until(lambda: query_running(conn, "INSERT INTO pgagent.pga_joblog"), what="insert")
        assert agent.stop(signal.SIGTERM, timeout=40) == 0
        blocker.execute("ROLLBACK")
    assert job_logs(conn, job) == []
    agent_id, next_run, _enabled = job_row(conn, job)
    assert agent_id is None
    # The run never happened, so it is still due (for the next agent to run).
    assert next_run is not None


def lock_waiter(conn: psycopg.Connection[Any], fragment: str) -> list[int]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
            (f"%{fragment}%",),
        )
    ]


def test_release_interrupted_by_a_connection_loss_and_reconnect_still_releases(
    db, conn, agents, tmp_path
):
    """A release retried after the agent registered again and adopted the claim names the
    new identity (asked at every attempt), so the job does not stay claimed."""
    flag = tmp_path / "started"
    job = make_job(
        conn, "release across a reconnect", [{"jstkind": "b", "jstcode": f"touch {flag}; sleep 1"}]
    )
    run_now(conn, job)
    agent = agents(db.dsn, "-r", "10")
    agent.wait_registered()
    wait_until(flag.exists, what="the step")
    with db.connect() as holder:
        # Hold the job's row so that the release is in flight when the connections drop.
        holder.execute("BEGIN")
        holder.execute("SELECT 1 FROM pgagent.pga_job WHERE jobid = %s FOR UPDATE", (job,))
        wait_until(lambda: lock_waiter(conn, "SET jobagentid = NULL"), what="the release")
        before = agent.agent_pids()
        conn.execute(  # the connection loss: every session of the agent ends
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name LIKE 'pyagent%' AND pid <> pg_backend_pid()"
        )
        # The agent reconnects, registers again and adopts the claim of the running job.
        wait_until(lambda: lock_waiter(conn, "SET jobagentid = $1"), timeout=15, what="adopt")
        assert agent.agent_pids() != before
        for pid in lock_waiter(conn, "SET jobagentid = NULL"):
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))  # one more failed attempt
        holder.execute("COMMIT")
    wait_until(lambda: [r[1] for r in job_logs(conn, job)] == ["s"], what="the end of the run")
    wait_until(lambda: job_row(conn, job)[0] is None, timeout=15, what="the release")
    assert [r[1] for r in job_logs(conn, job)] == ["s"]


# ---- 6. jobs and steps deleted, disabled or edited (as pgAdmin does) while they run --------


def _gated_job(conn: psycopg.Connection[Any], tmp_path: Path, name: str) -> tuple[int, Path, Path]:
    """A job whose first step ("a") waits until the test lets it go, then steps b and c."""
    slug = name.replace(" ", "-")
    started, go = tmp_path / f"{slug}.started", tmp_path / f"{slug}.go"
    gate = f"touch {started}; while [ ! -e {go} ]; do sleep 0.05; done; rm -f {started} {go}"
    job = make_job(
        conn,
        name,
        [
            {"jstname": "a", "jstkind": "b", "jstcode": gate},
            {"jstname": "b", "jstcode": "SELECT generate_series(1, 3)"},
            {"jstname": "c", "jstcode": "SELECT 1"},
        ],
    )
    return job, started, go


def _step_id(conn: psycopg.Connection[Any], job: int, name: str) -> int:
    (jstid,) = conn.execute(
        "SELECT jstid FROM pgagent.pga_jobstep WHERE jstjobid = %s AND jstname = %s", (job, name)
    ).fetchone()
    return int(jstid)


def test_running_step_deleted_in_pgadmin(db, conn, agents, tmp_path):
    job, started, go = _gated_job(conn, tmp_path, "delete running step")
    agent = agents(db.dsn)
    agent.wait_registered()
    run_now(conn, job)
    wait_until(started.exists, what="step a")
    # pgAdmin's step delete; the step's log rows go with it (ON DELETE CASCADE).
    conn.execute("DELETE FROM pgagent.pga_jobstep WHERE jstid = %s", (_step_id(conn, job, "a"),))
    go.touch()
    logs = wait_job_finished(conn, job)
    # The step's result had nowhere to go: the run fails (as in pgAgent) and stops there.
    assert [r[1] for r in logs] == ["f"]
    assert step_logs(conn, job) == []
    assert running_rows(conn) == (0, 0)
    run_now(conn, job)  # the next run uses what is left
    assert [r[1] for r in wait_job_finished(conn, job, runs=2)] == ["f", "s"]
    assert [(n, st) for n, st, _r, _o in step_logs(conn, job)] == [("b", "s"), ("c", "s")]
    assert agent.proc.poll() is None


def test_later_step_deleted_while_the_job_runs(db, conn, agents, tmp_path):
    job, started, go = _gated_job(conn, tmp_path, "delete later step")
    agent = agents(db.dsn)
    agent.wait_registered()
    run_now(conn, job)
    wait_until(started.exists, what="step a")
    conn.execute("DELETE FROM pgagent.pga_jobstep WHERE jstid = %s", (_step_id(conn, job, "b"),))
    go.touch()
    logs = wait_job_finished(conn, job)
    # pgAgent's rule: a step that cannot get its log row is an internal error ('i').
    assert [r[1] for r in logs] == ["i"]
    assert [(n, st) for n, st, _r, _o in step_logs(conn, job)] == [("a", "s")]
    assert running_rows(conn) == (0, 0)
    assert agent.proc.poll() is None


def test_sql_job_deleted_in_pgadmin_while_its_step_runs(db, conn, agents):
    job = make_job(conn, "deleted mid-sql", [{"jstcode": "SELECT pg_sleep(1.5)"}], run_now=True)
    agent = agents(db.dsn)
    agent.wait_registered()
    wait_until(lambda: query_running(conn, "pg_sleep(1.5)"), what="the step")
    conn.execute("DELETE FROM pgagent.pga_job WHERE jobid = %s", (job,))
    after = make_job(conn, "after", [{"jstcode": "SELECT 1"}])
    wait_until(lambda: not query_running(conn, "pg_sleep(1.5)"), what="the step's end")
    run_now(conn, after)
    assert [r[1] for r in wait_job_finished(conn, after)] == ["s"]
    assert conn.execute(
        "SELECT count(*) FROM pgagent.pga_joblog WHERE jlgjobid = %s", (job,)
    ).fetchone() == (0,)
    assert running_rows(conn) == (0, 0)
    assert "internal error" not in agent.log_text()
    assert agent.proc.poll() is None


def test_job_disabled_in_pgadmin_while_it_runs(db, conn, agents, tmp_path):
    job, started, go = _gated_job(conn, tmp_path, "disable running job")
    add_schedule(conn, job)  # every minute
    agent = agents(db.dsn)
    agent.wait_registered()
    run_now(conn, job)
    wait_until(started.exists, what="step a")
    conn.execute("UPDATE pgagent.pga_job SET jobenabled = false WHERE jobid = %s", (job,))
    go.touch()
    # The run in progress completes (as in pgAgent); a disabled job gets no next run.
    assert [r[1] for r in wait_job_finished(conn, job)] == ["s"]
    assert job_row(conn, job) == (None, None, False)
    conn.execute("UPDATE pgagent.pga_job SET jobenabled = true WHERE jobid = %s", (job,))
    (next_run,) = conn.execute(
        "SELECT jobnextrun FROM pgagent.pga_job WHERE jobid = %s", (job,)
    ).fetchone()
    assert next_run is not None  # enabled again: the schedule applies again
    assert agent.proc.poll() is None


def test_steps_and_schedule_edited_in_pgadmin_while_the_job_runs(db, conn, agents, tmp_path):
    job, started, go = _gated_job(conn, tmp_path, "edit running job")
    sched = add_schedule(conn, job)  # every minute
    agent = agents(db.dsn)
    agent.wait_registered()
    run_now(conn, job)
    wait_until(started.exists, what="step a")
    # pgAdmin's job dialog sends one multi-statement string: job, steps, schedules.
    conn.execute(
        "UPDATE pgagent.pga_job SET jobname = 'edited', jobdesc = 'new' WHERE jobid = {j};"
        "UPDATE pgagent.pga_jobstep SET jstcode = 'SELECT generate_series(1, 5)'"
        " WHERE jstid = {b};"
        "UPDATE pgagent.pga_jobstep SET jstenabled = false WHERE jstid = {c};"
        "INSERT INTO pgagent.pga_jobstep (jstjobid, jstname, jstkind, jstcode, jstdbname)"
        " VALUES ({j}, 'd', 's', 'SELECT 7', current_database());"
        "UPDATE pgagent.pga_schedule SET jscstart = now() + interval '1 day' WHERE jscid = {s}".format(
            j=job, b=_step_id(conn, job, "b"), c=_step_id(conn, job, "c"), s=sched
        )
    )
    (edited_next,) = conn.execute(
        "SELECT jobnextrun FROM pgagent.pga_job WHERE jobid = %s", (job,)
    ).fetchone()
    go.touch()
    assert [r[1] for r in wait_job_finished(conn, job)] == ["s"]
    # The run in progress keeps the definition it started with (steps are read at its start,
    # as pgAgent does) ...
    assert [(n, st, r) for n, st, r, _o in step_logs(conn, job)] == [
        ("a", "s", 0),
        ("b", "s", 3),
        ("c", "s", 1),
    ]
    # ... its release keeps the next run the schedule edit computed ...
    assert job_row(conn, job)[1] == edited_next
    # ... and the next run uses the new definition.
    run_now(conn, job)
    go.touch()
    assert [r[1] for r in wait_job_finished(conn, job, runs=2)] == ["s", "s"]
    assert [(n, st, r) for n, st, r, _o in step_logs(conn, job)][3:] == [
        ("a", "s", 0),
        ("b", "s", 5),
        ("d", "s", 1),
    ]
    assert agent.proc.poll() is None


# ---- 7. time zones and daylight-saving time -------------------------------------------------

NEXT_SCHEDULE = (
    "SELECT pgagent.pga_next_schedule(jscid, jscstart, jscend, jscminutes, jschours,"
    " jscweekdays, jscmonthdays, jscmonths) FROM pgagent.pga_schedule WHERE jscid = %s"
)


def _next_schedule_in(dsn: str, zone: str, jscid: int) -> datetime:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("SELECT set_config('TimeZone', %s, false)", (zone,))
        (value,) = c.execute(NEXT_SCHEDULE, (jscid,)).fetchone()
    return value  # type: ignore[no-any-return]


@pytest.mark.parametrize("how", ["conninfo options", "PGTZ"])
def test_next_run_after_a_run_is_computed_in_the_agents_session_zone(db, conn, agents, how):
    # Created in pgAdmin by a user in New York: daily at 09:00 (wall clock of the session).
    with db.connect() as ny:
        ny.execute("SET TimeZone = 'America/New_York'")
        job = make_job(ny, "daily 09:00", [{"jstcode": "SELECT 1"}])
        hours = [False] * 24
        hours[9] = True
        minutes = [False] * 60
        minutes[0] = True
        sched = add_schedule(ny, job, jschours=hours, jscminutes=minutes)
        (created_next,) = ny.execute(
            "SELECT jobnextrun FROM pgagent.pga_job WHERE jobid = %s", (job,)
        ).fetchone()
    assert created_next.astimezone(ZoneInfo("America/New_York")).hour == 9
    run_now(conn, job)
    if how == "PGTZ":
        agent = agents(db.dsn, env={"PGTZ": "Asia/Tokyo"})
    else:
        agent = agents(db.cluster.dsn(db.name, options="-c TimeZone=Asia/Tokyo"))
    agent.wait_registered()
    assert [r[1] for r in wait_job_finished(conn, job)] == ["s"]
    next_run = job_row(conn, job)[1]
    # The release asks the trigger for the next run: it is evaluated in the agent's session
    # zone, as pgAgent does -- 09:00 in Tokyo now, not 09:00 in New York.
    assert next_run == _next_schedule_in(db.dsn, "Asia/Tokyo", sched)
    assert next_run != _next_schedule_in(db.dsn, "America/New_York", sched)
    local = next_run.astimezone(ZoneInfo("Asia/Tokyo"))
    assert (local.hour, local.minute) == (9, 0)


DST_CASES = [
    # (case, jscstart in New York wall time, expected next run in UTC)
    ("the day before spring-forward", "2027-03-13 00:00", "2027-03-13 07:30"),
    # 02:30 does not exist on 2027-03-14 (02:00 -> 03:00): that day is skipped.
    ("spring-forward day", "2027-03-14 00:00", "2027-03-15 06:30"),
    ("the day after", "2027-03-15 00:00", "2027-03-15 06:30"),
]


@pytest.mark.parametrize(
    ("case", "start", "expected_utc"), DST_CASES, ids=[c[0] for c in DST_CASES]
)
def test_daily_0230_across_the_new_york_spring_forward_day(conn, case, start, expected_utc):
    ny = ZoneInfo("America/New_York")
    job = make_job(conn, f"dst {case}", [{"jstcode": "SELECT 1"}])
    hours = [False] * 24
    hours[2] = True
    minutes = [False] * 60
    minutes[30] = True
    sched = add_schedule(conn, job, jschours=hours, jscminutes=minutes)
    conn.execute(
        "UPDATE pgagent.pga_schedule SET jscstart = %s WHERE jscid = %s",
        (datetime.fromisoformat(start).replace(tzinfo=ny), sched),
    )
    conn.execute("SET TimeZone = 'America/New_York'")
    (in_sql,) = conn.execute(NEXT_SCHEDULE, (sched,)).fetchone()
    expected = datetime.fromisoformat(expected_utc).replace(tzinfo=ZoneInfo("UTC"))
    assert in_sql == expected
    # pyagent's own computation (its fallback when the schema's function fails) agrees.
    row = conn.execute(
        "SELECT jscid, jscstart, jscend, jscminutes, jschours, jscweekdays, jscmonthdays,"
        " jscmonths FROM pgagent.pga_schedule WHERE jscid = %s",
        (sched,),
    ).fetchone()
    now = datetime.now(ZoneInfo("UTC"))
    assert (
        schedule.next_run_for_schedules([schedule.ScheduleSpec.from_row(row)], now, ny) == expected
    )
    # And the job's jobnextrun (computed by the trigger in this session) is the same.
    conn.execute("UPDATE pgagent.pga_job SET jobnextrun = NULL WHERE jobid = %s", (job,))
    assert job_row(conn, job)[1] == expected


def test_the_extensions_function_agrees_on_the_spring_forward_day(ext_db):
    ny = ZoneInfo("America/New_York")
    with ext_db.connect() as conn:
        conn.execute("SET TimeZone = 'America/New_York'")
        hours = [False] * 24
        hours[2] = True
        minutes = [False] * 60
        minutes[30] = True
        for _case, start, expected_utc in DST_CASES:
            (value,) = conn.execute(
                "SELECT pgagent.pga_next_schedule(0, %s, NULL, %s, %s, %s, %s, %s)",
                (
                    datetime.fromisoformat(start).replace(tzinfo=ny),
                    minutes,
                    hours,
                    [False] * 7,
                    [False] * 32,
                    [False] * 12,
                ),
            ).fetchone()
            assert value == datetime.fromisoformat(expected_utc).replace(tzinfo=ZoneInfo("UTC"))
