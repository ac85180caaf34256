"""End-to-end tests: real pyagent processes on a real PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from pyagent.extras import add_notify_trigger
from tests.agentproc import (
    AgentProcess,
    job_logs,
    make_job,
    step_logs,
    wait_job_finished,
    wait_until,
)

FAST = ("-t", "1")


@pytest.fixture
def agents(db):
    started: list[AgentProcess] = []

    def start(*args: str, dsn: str | None = None, **kw) -> AgentProcess:
        agent = AgentProcess(dsn or db.dsn, [*FAST, *args], **kw)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop(signal.SIGKILL if agent.proc.poll() is None else signal.SIGTERM)
        agent.log_path.unlink(missing_ok=True)


def test_sql_and_batch_steps_are_logged_like_pgagent(conn, agents):
    job = make_job(
        conn,
        "mixed",
        [
            {"jstname": "1 rows", "jstcode": "SELECT generate_series(1,7)"},
            {
                "jstname": "2 multi",
                "jstcode": "CREATE TEMP TABLE t(a int); INSERT INTO t VALUES (1),(2); UPDATE t SET a = 3",
            },
            {"jstname": "3 batch", "jstkind": "b", "jstcode": "echo out\necho err >&2\n"},
            {"jstname": "4 utility", "jstcode": "CREATE TABLE made_by_job(a int)"},
        ],
        run_now=True,
    )
    agents().wait_registered()
    logs = wait_job_finished(conn, job)
    assert [r[1] for r in logs] == ["s"]
    assert logs[0][2] is not None  # duration set
    assert step_logs(conn, job) == [
        ("1 rows", "s", 7, ""),
        ("2 multi", "s", 2, ""),
        ("3 batch", "s", 0, "out\n\nScript Error: \nerr\n\n"),
        ("4 utility", "s", 0, ""),
    ]
    row = conn.execute(
        "SELECT jobagentid, joblastrun FROM pgagent.pga_job WHERE jobid=%s", (job,)
    ).fetchone()
    assert row[0] is None and row[1] is not None


@pytest.mark.parametrize(
    ("onerror", "job_status", "steps"),
    [
        ("f", "f", [("a", "f", -1)]),
        ("s", "s", [("a", "s", -1), ("b", "s", 1)]),
        ("i", "s", [("a", "i", -1), ("b", "s", 1)]),
    ],
)
def test_on_error_rules(conn, agents, onerror, job_status, steps):
    job = make_job(
        conn,
        "onerror",
        [
            {"jstname": "a", "jstcode": "SELECT 1/0", "jstonerror": onerror},
            {"jstname": "b", "jstcode": "SELECT 1"},
        ],
        run_now=True,
    )
    agents().wait_registered()
    logs = wait_job_finished(conn, job)
    assert logs[0][1] == job_status
    got = [(name, st, res) for name, st, res, _out in step_logs(conn, job)]
    assert got == steps
    assert step_logs(conn, job)[0][3] == "ERROR:  division by zero"


def test_successful_step_after_failed_one_has_empty_output(conn, agents):
    # pgAgent 4.2.2 repeats the previous error here; a clean connection must not.
    job = make_job(
        conn,
        "clean",
        [
            {"jstname": "a", "jstcode": "SELECT 1/0", "jstonerror": "i"},
            {"jstname": "b", "jstcode": "SELECT 1"},
            {
                "jstname": "c",
                "jstcode": "BEGIN; CREATE TEMP TABLE leak(a int); SET work_mem = '77MB'",
            },
            {
                "jstname": "d",
                "jstcode": "SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM pg_class WHERE relname = 'leak')"
                " AND current_setting('work_mem') <> '77MB'",
            },
        ],
        run_now=True,
    )
    agents().wait_registered()
    wait_job_finished(conn, job)
    logs = step_logs(conn, job)
    assert logs[1] == ("b", "s", 1, "")
    assert logs[3][1:] == ("s", 1, "")


def test_job_without_steps_succeeds_and_disabled_things_are_skipped(conn, agents):
    empty = make_job(conn, "empty", [], run_now=True)
    disabled_job = make_job(conn, "disabled", [{"jstcode": "SELECT 1"}], enabled=False)
    conn.execute("UPDATE pgagent.pga_job SET jobnextrun = now() WHERE jobid = %s", (disabled_job,))
    partly = make_job(
        conn,
        "partly",
        [
            {"jstname": "on", "jstcode": "SELECT 1"},
            {"jstname": "off", "jstcode": "SELECT 1/0", "jstenabled": False},
        ],
        run_now=True,
    )
    agents().wait_registered()
    assert [r[1] for r in wait_job_finished(conn, empty)] == ["s"]
    wait_job_finished(conn, partly)
    assert [r[0] for r in step_logs(conn, partly)] == ["on"]
    assert job_logs(conn, disabled_job) == []


def test_steps_run_in_name_then_id_order(conn, agents):
    job = make_job(
        conn,
        "order",
        [
            {"jstname": "b", "jstcode": "SELECT 2"},
            {"jstname": "a", "jstcode": "SELECT 1"},
            {"jstname": "b", "jstcode": "SELECT 3"},
        ],
        run_now=True,
    )
    agents().wait_registered()
    wait_job_finished(conn, job)
    assert [name for name, *_ in step_logs(conn, job)] == ["a", "b", "b"]


def test_sql_steps_on_another_database_by_name_and_by_connstr(db, conn, agents, pg_cluster):
    other = f"{db.name}_other"
    with psycopg.connect(pg_cluster.dsn("postgres"), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {other}")
    try:
        job = make_job(
            conn,
            "remote",
            [
                {"jstname": "a", "jstcode": "CREATE TABLE here(a int)", "jstdbname": other},
                {
                    "jstname": "b",
                    "jstcode": "INSERT INTO here VALUES (1),(2)",
                    "jstconnstr": pg_cluster.dsn(other),
                },
                {"jstname": "c", "jstcode": "SELECT 1", "jstconnstr": pg_cluster.dsn("no_such_db")},
                {"jstname": "d", "jstcode": "SELECT 1", "jstconnstr": "host=127.0.0.1 bogus=1"},
            ],
            run_now=True,
        )
        agent = agents()
        agent.wait_registered()
        wait_job_finished(conn, job)
        logs = step_logs(conn, job)
        assert logs[0][:3] == ("a", "s", 0)
        assert logs[1][:3] == ("b", "s", 2)
        assert logs[2][1:3] == ("f", -1)
        assert logs[2][3].startswith("Couldn't get a connection to the database!")
        assert "no_such_db" in logs[2][3]
        with psycopg.connect(pg_cluster.dsn(other)) as oc:
            assert oc.execute("SELECT count(*) FROM here").fetchone() == (2,)
        # The agent is unaffected: it runs the next job.
        again = make_job(conn, "after", [{"jstcode": "SELECT 1"}], run_now=True)
        assert [r[1] for r in wait_job_finished(conn, again)] == ["s"]
    finally:
        with psycopg.connect(pg_cluster.dsn("postgres"), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {other} WITH (FORCE)")


def test_invalid_connstr_fails_the_step_with_a_clear_message(conn, agents):
    job = make_job(
        conn,
        "badconn",
        [{"jstcode": "SELECT 1", "jstconnstr": "host=127.0.0.1 bogus=1"}],
        run_now=True,
    )
    agent = agents()
    agent.wait_registered()
    wait_job_finished(conn, job)
    ((_name, status, result, output),) = step_logs(conn, job)
    assert (status, result) == ("f", -1)
    assert "invalid connection" in output and "bogus" in output


def test_several_agents_never_run_a_job_twice(conn, agents):
    jobs = [make_job(conn, f"j{i}", [{"jstcode": "SELECT pg_sleep(0.01)"}]) for i in range(60)]
    for _ in range(3):
        agents()
    wait_until(
        lambda: len(conn.execute("SELECT jagpid FROM pgagent.pga_jobagent").fetchall()) == 3,
        what="3 agents",
    )
    conn.execute("UPDATE pgagent.pga_job SET jobnextrun = now()")
    for job in jobs:
        wait_job_finished(conn, job)
    counts = conn.execute(
        "SELECT jlgjobid, count(*), bool_and(jlgstatus = 's') FROM pgagent.pga_joblog GROUP BY 1"
    ).fetchall()
    assert len(counts) == 60
    assert all(n == 1 and ok for _job, n, ok in counts)


def test_jobhostagent_pins_a_job_to_its_station(conn, agents):
    pinned = make_job(
        conn, "pinned", [{"jstcode": "SELECT 1"}], hostagent="station-b", run_now=True
    )
    free = make_job(conn, "free", [{"jstcode": "SELECT 1"}], run_now=True)
    agents("--station", "station-a").wait_registered()
    wait_job_finished(conn, free)
    assert job_logs(conn, pinned) == []
    agents("--station", "station-b").wait_registered(2)
    wait_job_finished(conn, pinned)
    stations = {r[0] for r in conn.execute("SELECT jagstation FROM pgagent.pga_jobagent")}
    assert stations == {"station-a", "station-b"}


def test_job_deleted_while_running(conn, agents, tmp_path):
    flag = tmp_path / "started"
    job = make_job(
        conn,
        "doomed",
        [
            {"jstname": "a", "jstkind": "b", "jstcode": f"touch {flag}; sleep 2"},
            {"jstname": "b", "jstcode": "SELECT 1"},
        ],
        run_now=True,
    )
    agent = agents()
    agent.wait_registered()
    wait_until(flag.exists, what="step start")
    conn.execute("DELETE FROM pgagent.pga_job WHERE jobid = %s", (job,))
    after = make_job(conn, "after", [{"jstcode": "SELECT 1"}], run_now=True)
    assert [r[1] for r in wait_job_finished(conn, after)] == ["s"]
    assert agent.proc.poll() is None


def test_run_now_during_a_run_is_kept(conn, agents, tmp_path):
    flag = tmp_path / "started"
    job = make_job(
        conn, "twice", [{"jstkind": "b", "jstcode": f"touch {flag}.$$; sleep 1"}], run_now=True
    )
    agents().wait_registered()
    wait_until(lambda: list(tmp_path.glob("started.*")), what="first run")
    conn.execute("UPDATE pgagent.pga_job SET jobnextrun = now() WHERE jobid = %s", (job,))
    logs = wait_job_finished(conn, job, runs=2, timeout=30)
    assert [r[1] for r in logs] == ["s", "s"]


def test_sigterm_during_a_long_step_aborts_and_releases(conn, agents, tmp_path):
    flag = tmp_path / "started"
    job = make_job(
        conn, "long", [{"jstkind": "b", "jstcode": f"echo $$ > {flag}; sleep 300"}], run_now=True
    )
    sql_job = make_job(conn, "longsql", [{"jstcode": "SELECT pg_sleep(300)"}], run_now=True)
    agent = agents("--grace-period", "1")
    agent.wait_registered()
    wait_until(lambda: flag.exists() and flag.read_text().strip(), what="batch step start")
    wait_until(
        lambda: conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(300)'"
        ).fetchone(),
        what="sql start",
    )
    child = int(flag.read_text())
    assert agent.stop(signal.SIGTERM, timeout=40) == 0
    for jid in (job, sql_job):
        assert [r[1] for r in job_logs(conn, jid)] == ["d"]
        assert [r[1] for r in step_logs(conn, jid)] == ["d"]
        assert conn.execute(
            "SELECT jobagentid FROM pgagent.pga_job WHERE jobid=%s", (jid,)
        ).fetchone() == (None,)
    assert conn.execute("SELECT count(*) FROM pgagent.pga_jobagent").fetchone() == (0,)
    assert conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(300)'"
    ).fetchone() == (0,)
    wait_until(lambda: _process_gone(child), timeout=10, what="batch child gone")


def test_killed_agents_jobs_are_recovered_by_another_agents_sweep(conn, agents, tmp_path):
    flag = tmp_path / "started"
    job = make_job(
        conn, "orphan", [{"jstkind": "b", "jstcode": f"touch {flag}; sleep 300"}], run_now=True
    )
    victim = agents()
    victim.wait_registered()
    wait_until(flag.exists, what="step start")
    survivor = agents("--station", "survivor")
    survivor.wait_registered(2)
    victim.kill()
    wait_until(
        lambda: job_logs(conn, job) and job_logs(conn, job)[0][1] == "d", what="zombie sweep"
    )
    assert [r[1] for r in step_logs(conn, job)] == ["d"]
    wait_until(
        lambda: conn.execute(
            "SELECT jobagentid IS NULL FROM pgagent.pga_job WHERE jobid=%s", (job,)
        ).fetchone()[0]
    )
    # The sweep deletes the dead agent's row in a later statement than the one that
    # releases the job, so the count is polled rather than read once.
    wait_until(
        lambda: conn.execute("SELECT count(*) FROM pgagent.pga_jobagent").fetchone() == (1,),
        what="the dead agent's pga_jobagent row to be deleted",
    )
    assert "Clearing zombie agent" in survivor.log_text()


def test_zombies_are_cleared_at_startup(conn, agents):
    conn.execute("INSERT INTO pgagent.pga_jobagent (jagpid, jagstation) VALUES (999999, 'gone')")
    job = make_job(conn, "stuck", [{"jstcode": "SELECT 1"}])
    conn.execute(
        "UPDATE pgagent.pga_job SET jobagentid = 999999, jobnextrun = now() WHERE jobid = %s",
        (job,),
    )
    conn.execute("INSERT INTO pgagent.pga_joblog (jlgjobid, jlgstatus) VALUES (%s, 'r')", (job,))
    agents().wait_registered()
    wait_until(
        lambda: (
            conn.execute(
                "SELECT count(*) FROM pgagent.pga_jobagent WHERE jagpid = 999999"
            ).fetchone()
            == (0,)
        )
    )
    assert [r[1] for r in job_logs(conn, job)] == ["d"]


def test_run_now_wakes_the_agent_through_notify(db, conn, agents):
    add_notify_trigger(db.dsn)
    agent = agents("-t", "3600")
    agent.wait_registered()
    wait_until(lambda: "Sleeping..." in agent.log_text())
    job = make_job(conn, "quick", [{"jstcode": "SELECT 1"}], run_now=True)
    # With an hour-long poll only the notification can explain a run within seconds.
    assert [r[1] for r in wait_job_finished(conn, job, timeout=15)] == ["s"]


def test_agent_wakes_at_the_next_due_time(conn, agents):
    job = make_job(conn, "soon", [{"jstcode": "SELECT 1"}])
    conn.execute(
        "UPDATE pgagent.pga_job SET jobnextrun = now() + interval '2 seconds' WHERE jobid=%s",
        (job,),
    )
    # With an hour-long poll and no notify trigger, only the agent's own wake-up at the
    # job's jobnextrun can explain a run within seconds.
    agents("-t", "3600").wait_registered()
    assert [r[1] for r in wait_job_finished(conn, job, timeout=15)] == ["s"]


def test_agent_survives_a_database_restart(conn, db, agents, pg_cluster):
    agent = agents("-r", "10")
    agent.wait_registered()
    before = agent.agent_pids()
    pg_cluster.restart("fast")
    wait_until(
        lambda: _registered_pids(db.dsn) and _registered_pids(db.dsn) != before,
        timeout=30,
        what="re-registration",
    )
    with db.connect() as c2:
        job = make_job(c2, "after restart", [{"jstcode": "SELECT 1"}], run_now=True)
        assert [r[1] for r in wait_job_finished(c2, job, timeout=30)] == ["s"]
    assert agent.proc.poll() is None
    assert "Lost the connection to the database; reconnecting" in agent.log_text()


def _process_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _registered_pids(dsn):
    try:
        with psycopg.connect(dsn, autocommit=True) as c:
            return [r[0] for r in c.execute("SELECT jagpid FROM pgagent.pga_jobagent")]
    except psycopg.OperationalError:
        return None


def test_missing_schema_is_reported_with_pgagents_message(empty_db, agents):
    agent = agents(dsn=empty_db.dsn)
    wait_until(lambda: "Could not find the table 'pgagent.pga_job'" in agent.log_text())
    assert agent.proc.poll() is None  # keeps waiting for the schema instead of dying


def test_password_never_in_log_or_process_arguments(db, conn, agents, pg_cluster):
    conn.execute("CREATE ROLE agent_pw LOGIN SUPERUSER PASSWORD 's3cret-PW'")
    dsn = pg_cluster.dsn(db.name, user="agent_pw", password="s3cret-PW")
    agent = agents(dsn=dsn)
    agent.wait_registered()
    job = make_job(conn, "pw", [{"jstcode": "SELECT 1"}], run_now=True)
    wait_job_finished(conn, job)
    cmdline = open(f"/proc/{agent.pid}/cmdline", "rb").read().decode()
    assert "s3cret-PW" not in cmdline
    assert "s3cret-PW" not in agent.log_text()
    assert "password=*****" in agent.log_text()


def test_bad_arguments_give_one_line_and_exit_2():
    for args in (
        ["-t", "zero", "dbname=x"],
        ["-l", "7", "dbname=x"],
        ["-r", "5", "dbname=x"],
        ["--bogus"],
        ["-f", "dbname=x bogus=1"],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "pyagent", *args], capture_output=True, text=True, timeout=30
        )
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "pyagent", "-v"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0 and "Version:" in proc.stdout


def test_release_survives_the_extensions_failing_next_run_function(ext_db, agents):
    # pgAgent's own pga_next_schedule raises for day 31 in a 30-day month (here April
    # 2027): pgAgent then leaves the job claimed and 'r' forever. pyagent releases it.
    with ext_db.connect() as c:
        job = make_job(c, "day31", [{"jstcode": "SELECT 1"}])
        c.execute("ALTER TABLE pgagent.pga_schedule DISABLE TRIGGER pga_schedule_trigger")
        days = [False] * 32
        days[30] = True
        c.execute(
            "INSERT INTO pgagent.pga_schedule (jscjobid, jscname, jscstart, jscmonthdays)"
            " VALUES (%s, 'day 31', '2027-04-01 00:00+00', %s)",
            (job, days),
        )
        c.execute("ALTER TABLE pgagent.pga_schedule ENABLE TRIGGER pga_schedule_trigger")
        with pytest.raises(psycopg.errors.DatetimeFieldOverflow):
            c.execute("UPDATE pgagent.pga_job SET jobnextrun = NULL WHERE jobid = %s", (job,))
        c.execute("UPDATE pgagent.pga_job SET jobnextrun = now() WHERE jobid = %s", (job,))
        agent = agents(dsn=ext_db.dsn)
        agent.wait_registered()
        assert [r[1] for r in wait_job_finished(c, job)] == ["s"]
        c.execute("SET TimeZone = 'UTC'")
        nextrun = c.execute(
            "SELECT to_char(jobnextrun, 'YYYY-MM-DD HH24:MI') FROM pgagent.pga_job WHERE jobid = %s",
            (job,),
        ).fetchone()[0]
        assert nextrun == "2027-05-31 00:00"
        assert "could not compute the next run of job" in agent.log_text()


def test_a_burst_waits_for_the_bound_and_never_fails(db, conn, agents):
    jobs = [make_job(conn, f"b{i}", [{"jstcode": "SELECT pg_sleep(0.02)"}]) for i in range(40)]
    agents("--max-jobs", "3").wait_registered()
    peak = 0
    conn.execute("UPDATE pgagent.pga_job SET jobnextrun = now()")

    def all_done():
        nonlocal peak
        (n,) = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (db.name,),
        ).fetchone()
        peak = max(peak, n)
        (done,) = conn.execute(
            "SELECT count(*) FROM pgagent.pga_joblog WHERE jlgstatus <> 'r'"
        ).fetchone()
        return done == len(jobs)

    wait_until(all_done, timeout=60, interval=0.005, what="the burst")
    statuses = conn.execute(
        "SELECT jlgstatus, count(*) FROM pgagent.pga_joblog GROUP BY 1"
    ).fetchall()
    assert statuses == [("s", 40)]
    # service connection + bookkeeping pool (<= 4) + at most 3 step connections
    assert 1 <= peak <= 8


def test_json_log_to_a_file(conn, agents, tmp_path):
    logfile = tmp_path / "agent.log"
    job = make_job(conn, "json", [{"jstcode": "SELECT 1"}], run_now=True)
    agents("-s", str(logfile), "--log-format", "json").wait_registered()
    wait_job_finished(conn, job)
    # The run's last line is written just after its release: wait for it, not only the row.
    wait_until(lambda: f"Completed job: {job}" in logfile.read_text(), what="the last line")
    events = [json.loads(line) for line in logfile.read_text().splitlines()]
    started = [e for e in events if e["event"] == f"Starting job: {job}"]
    assert started and started[0]["job_id"] == job and started[0]["level"] == "debug"
    finished = [e for e in events if e.get("status") and e.get("jlgid")]
    assert any(e["event"] == f"Completed job: {job}" and e["status"] == "s" for e in finished)


def test_without_foreground_the_agent_detaches(db, conn):
    station = f"detached-{db.name}"
    proc = subprocess.run(
        [sys.executable, "-m", "pyagent", "-t", "1", "--station", station, db.dsn],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=30,
    )
    assert proc.returncode == 0  # the parent returns at once; the daemon lives on
    wait_until(
        lambda: conn.execute(
            "SELECT 1 FROM pgagent.pga_jobagent WHERE jagstation = %s", (station,)
        ).fetchone()
    )
    daemon = [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and station.encode() in _cmdline(p)
    ]
    assert len(daemon) == 1
    assert os.getsid(daemon[0]) != os.getsid(0)  # a new session: detached from ours
    os.kill(daemon[0], signal.SIGTERM)
    wait_until(
        lambda: (
            conn.execute(
                "SELECT count(*) FROM pgagent.pga_jobagent WHERE jagstation = %s", (station,)
            ).fetchone()
            == (0,)
        )
    )


def _cmdline(path) -> bytes:
    try:
        return (path / "cmdline").read_bytes()
    except OSError:
        return b""


def test_wrong_schema_version_is_reported_with_pgagents_message(conn, agents):
    conn.execute(
        "CREATE OR REPLACE FUNCTION pgagent.pgagent_schema_version() RETURNS int2"
        " LANGUAGE sql AS 'SELECT 3::int2'"
    )
    agent = agents("-l", "0")
    wait_until(lambda: "Unsupported schema version: 3. Version 4 is required" in agent.log_text())
    assert conn.execute("SELECT count(*) FROM pgagent.pga_jobagent").fetchone() == (0,)
    assert "DEBUG" not in agent.log_text()  # -l 0: errors (and start-up lines) only


def test_step_timeouts_cancel_sql_on_the_server_and_batch_groups(conn, agents):
    job = make_job(
        conn,
        "slow",
        [
            {
                "jstname": "a sql",
                "jstcode": "SELECT pg_sleep(60)",
                "jstdesc": "@JOB_STEP_TIMEOUT=500ms;",
                "jstonerror": "i",
            },
            {
                "jstname": "b batch",
                "jstkind": "b",
                "jstcode": "sleep 60",
                "jstdesc": "@STEP_TIMEOUT=1 s;",
                "jstonerror": "i",
            },
            {"jstname": "c fast", "jstcode": "SELECT 1"},
        ],
        run_now=True,
    )
    agents().wait_registered()
    logs = wait_job_finished(conn, job, timeout=30)
    assert logs[0][1] == "s"
    steps = step_logs(conn, job)
    assert [s[:3] for s in steps] == [("a sql", "i", -1), ("b batch", "i", -1), ("c fast", "s", 1)]
    assert "timed out after 0.5 s" in steps[0][3]
    assert "timed out after 1 s" in steps[1][3]
    assert conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'"
    ).fetchone() == (0,)


def test_job_timeout_aborts_the_running_step_and_fails_the_job(conn, agents):
    job = make_job(
        conn,
        "jobslow",
        [
            {"jstname": "a", "jstcode": "SELECT 1"},
            {"jstname": "b", "jstkind": "b", "jstcode": "sleep 60"},
            {"jstname": "c", "jstcode": "SELECT 1"},
        ],
        run_now=True,
        desc="Nightly\n@JOB_TIMEOUT=1 s;\n",
    )
    agents().wait_registered()
    logs = wait_job_finished(conn, job, timeout=30)
    assert logs[0][1] == "f"
    steps = step_logs(conn, job)
    assert [s[:2] for s in steps] == [("a", "s"), ("b", "d")]
    assert "job's timeout (1 s)" in steps[1][3]
