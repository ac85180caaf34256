"""The agent behind a real PgBouncer (Debian's package), in transaction, session and
statement mode: what needs a session refuses a transaction pool with one line and touches
nothing; everything else (steps, management commands, schema check) works through it."""

from __future__ import annotations

import asyncio
import re
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import psycopg
import pytest

from pyagent import schema
from pyagent.agent.listener import Listener
from pyagent.agent.state import AgentState, Wakeups
from pyagent.devcluster import Cluster, ClusterError, PgBouncer, find_pgbouncer, free_port
from pyagent.settings import Settings
from pyagent.store import session_check
from pyagent.store.session_check import Finding
from tests.agentproc import AgentProcess, make_job, wait_until
from tests.jobscli import REPO, jobs

JOBS = 20
ROUNDS = 6  # more than psycopg's prepare threshold (5) runs of each job


def pgbouncer_available() -> bool:
    try:
        find_pgbouncer()
    except ClusterError:
        return False
    return True


pytestmark = pytest.mark.skipif(
    not pgbouncer_available(), reason="pgbouncer is not installed (apt-get install pgbouncer)"
)


def _warm(bouncer: PgBouncer, dbname: str, servers: int = 4) -> None:
    """Open `servers` server connections in the database's pool (held at once, then given
    back), so a round-robin pool hands consecutive transactions of one client to
    different backends."""
    conns = [psycopg.connect(bouncer.dsn(dbname), autocommit=True) for _ in range(servers)]
    try:
        for conn in conns:
            conn.execute("BEGIN")
            conn.execute("SELECT 1")
        for conn in conns:
            conn.execute("COMMIT")
    finally:
        for conn in conns:
            conn.close()


@pytest.fixture(scope="module")
def bouncers(pg_cluster: Cluster) -> Iterator[dict[str, PgBouncer]]:
    """One PgBouncer per pool mode in front of the session's cluster. The transaction pool
    hands out its idle server connections in turn (server_round_robin), as a busy
    production pool does: a client's consecutive transactions land on different backends."""
    made: dict[str, PgBouncer] = {}
    try:
        made["transaction"] = PgBouncer.start_for(
            pg_cluster, "transaction", settings={"server_round_robin": "1"}
        )
        made["session"] = PgBouncer.start_for(pg_cluster, "session")
        made["statement"] = PgBouncer.start_for(pg_cluster, "statement")
        yield made
    finally:
        for bouncer in made.values():
            bouncer.destroy()


@pytest.fixture
def tx_pool(bouncers: dict[str, PgBouncer], db: Any) -> PgBouncer:
    """The transaction pool, with several idle server connections to the test's database."""
    _warm(bouncers["transaction"], db.name)
    return bouncers["transaction"]


def due_jobs(conn: psycopg.Connection[Any], dbname: str, connstr: str = "") -> list[int]:
    """JOBS jobs, due now, each with one SQL step that records its run and its backend; the
    last five name their target with a connection string (`connstr`) when one is given."""
    conn.execute("CREATE TABLE ran (jobid int, backend int, at timestamptz DEFAULT now())")
    ids = []
    for i in range(JOBS):
        step: dict[str, Any] = {"jstcode": ""}
        if connstr and i >= JOBS - 5:
            step["jstconnstr"] = connstr
        else:
            step["jstdbname"] = dbname
        ids.append(make_job(conn, f"pooled-{i:02d}", [step], run_now=True))
    for job_id in ids:
        conn.execute(
            "UPDATE pgagent.pga_jobstep SET jstcode = %s WHERE jstjobid = %s",
            (f"INSERT INTO ran (jobid, backend) VALUES ({job_id}, pg_backend_pid()); SELECT 1", job_id),
        )
    return ids


def run_rounds(conn: psycopg.Connection[Any], ids: list[int], rounds: int) -> None:
    """Make every job due again after each round, until each has run `rounds` times."""
    for done in range(1, rounds + 1):
        if done > 1:
            conn.execute(
                "UPDATE pgagent.pga_job SET jobnextrun = now() WHERE jobid = ANY(%s)", (ids,)
            )

        def finished(done: int = done) -> bool:
            (count,) = conn.execute(
                "SELECT count(*) FROM pgagent.pga_job j WHERE jobid = ANY(%s) AND jobagentid IS NULL"
                "   AND (SELECT count(*) FROM pgagent.pga_joblog l"
                "         WHERE l.jlgjobid = j.jobid AND l.jlgstatus <> 'r') >= %s",
                (ids, done),
            ).fetchone()
            return count == len(ids)

        wait_until(finished, timeout=60, what=f"round {done} of {len(ids)} jobs")


def run_statuses(conn: psycopg.Connection[Any]) -> dict[str, int]:
    return dict(conn.execute("SELECT jlgstatus, count(*) FROM pgagent.pga_joblog GROUP BY 1"))


def assert_no_internal_errors(agent: AgentProcess) -> None:
    text = agent.log_text()
    assert "internal error" not in text, text
    assert "Traceback" not in text, text
    assert "prepared statement" not in text, text


def pooler_clients(bouncer: PgBouncer, dbname: str) -> list[str]:
    """application_name of every client PgBouncer has for `dbname` now."""
    with psycopg.connect(bouncer.dsn("pgbouncer"), autocommit=True) as admin:
        cur = admin.execute("SHOW CLIENTS")
        names = [d.name for d in cur.description or ()]
        rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    return [str(r["application_name"]) for r in rows if r["database"] == dbname]


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


# ---- the session check on its own ------------------------------------------------------


def _examine(dsn: str) -> session_check.SessionFacts:
    async def check() -> session_check.SessionFacts:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        async with conn:
            return await session_check.examine(
                conn, lambda: psycopg.AsyncConnection.connect(dsn, autocommit=True)
            )

    return asyncio.run(check())


def test_a_direct_connection_is_a_session(db):
    facts = _examine(db.dsn)
    assert facts.finding is Finding.SESSION
    assert not facts.through_proxy


def test_a_session_pool_is_a_session_behind_a_proxy(db, bouncers):
    facts = _examine(bouncers["session"].dsn(db.name))
    assert facts.finding is Finding.SESSION
    assert facts.through_proxy  # PgBouncer announces a pid of its own at login


def test_a_transaction_pool_is_not_a_session(db, tx_pool):
    facts = _examine(tx_pool.dsn(db.name))
    assert facts.finding in (Finding.SHARED_BACKEND, Finding.BACKEND_CHANGED), facts


def test_an_idle_transaction_pool_is_found_out_by_the_witness(db, bouncers):
    # One server connection in the pool, handed out last-in first-out: the connection's
    # own transactions would always meet the same backend; the witness is handed it.
    bouncer = PgBouncer.start_for(db.cluster, "transaction")
    try:
        facts = _examine(bouncer.dsn(db.name))
    finally:
        bouncer.destroy()
    assert facts.finding is Finding.SHARED_BACKEND, facts


def test_a_statement_pool_is_not_a_session(db, bouncers):
    facts = _examine(bouncers["statement"].dsn(db.name))
    assert not facts.is_session, facts


# ---- the agent ----------------------------------------------------------------------------


def test_agent_through_a_transaction_pool_says_it_needs_a_session_and_touches_nothing(
    db, conn, tx_pool
):
    ids = due_jobs(conn, db.name)
    port = free_port()
    agent = AgentProcess(
        tx_pool.dsn(db.name), ["-t", "1", "-r", "10", "--http", f"127.0.0.1:{port}"]
    )
    line_re = re.compile(r"^.*\[Attempt #(\d+)\]: .*$", re.MULTILINE)
    wait_until(
        lambda: len(line_re.findall(agent.log_text())) >= 2, timeout=30, what="two attempts"
    )
    assert _http_status(f"http://127.0.0.1:{port}/readyz") == 503
    assert agent.proc.poll() is None  # it waits and checks again, like any wrong set-up
    assert agent.stop(signal.SIGTERM) == 0
    text = agent.log_text()
    lines = [m.group(0) for m in line_re.finditer(text)]
    assert all(
        "WARNING: Couldn't create the primary connection" in line
        and "the agent's connection is not a session of its own (" in line
        and "nothing was registered; fix: connect the agent directly to PostgreSQL, or through"
        " a pool in session mode (job steps may stay on the pooler: --step-conninfo" in line
        for line in lines
    ), lines
    assert_no_internal_errors(agent)
    assert conn.execute("SELECT count(*) FROM pgagent.pga_jobagent").fetchone() == (0,)
    assert run_statuses(conn) == {}
    assert conn.execute(
        "SELECT count(*) FROM pgagent.pga_job WHERE jobid = ANY(%s) AND jobagentid IS NULL"
        "   AND jobnextrun <= now()",
        (ids,),
    ).fetchone() == (JOBS,)  # still due, still unclaimed
    assert conn.execute("SELECT count(*) FROM ran").fetchone() == (0,)
    # Nor did it leave a setting on a pooled server connection other clients get next.
    assert pooled_settings(tx_pool, db.name, "statement_timeout") == {"0"}


def pooled_settings(bouncer: PgBouncer, dbname: str, name: str, servers: int = 6) -> set[str]:
    """The values of setting `name` on up to `servers` server connections of the pool
    (looked at from transactions held at once, so each is on a different one)."""
    conns = [psycopg.connect(bouncer.dsn(dbname), autocommit=True) for _ in range(servers)]
    try:
        values = set()
        for c in conns:
            c.execute("BEGIN")
            values.add(str(c.execute("SELECT current_setting(%s)", [name]).fetchone()[0]))
        return values
    finally:
        for c in conns:
            with suppress(psycopg.Error):
                c.execute("ROLLBACK")
            c.close()


def test_switching_the_pool_to_session_mode_is_picked_up_without_a_restart(db, conn):
    bouncer = PgBouncer.start_for(db.cluster, "transaction")
    try:
        agent = AgentProcess(bouncer.dsn(db.name), ["-t", "1", "-r", "10"])
        wait_until(lambda: "[Attempt #1]" in agent.log_text(), what="the first attempt")
        bouncer.set_pool_mode("session")  # and RELOAD
        agent.wait_registered()
        wait_until(
            lambda: "WARNING: Connected to the database after" in agent.log_text(),
            what="the line saying it got through",
        )
        assert agent.stop(signal.SIGTERM) == 0
    finally:
        bouncer.destroy()
    assert conn.execute("SELECT count(*) FROM pgagent.pga_jobagent").fetchone() == (0,)


def test_agent_through_a_session_pool_runs_due_jobs_repeatedly(db, conn, bouncers):
    bouncer = bouncers["session"]
    ids = due_jobs(conn, db.name)
    agent = AgentProcess(
        bouncer.dsn(db.name), ["-t", "1", "--max-connections-per-target", "1"]
    )
    agent.wait_registered()
    run_rounds(conn, ids, ROUNDS)
    assert agent.stop(signal.SIGTERM) == 0
    assert run_statuses(conn) == {"s": JOBS * ROUNDS}
    assert conn.execute("SELECT count(DISTINCT jobid), count(*) FROM ran").fetchone() == (
        JOBS,
        JOBS * ROUNDS,
    )
    assert_no_internal_errors(agent)
    assert conn.execute("SELECT count(*) FROM pgagent.pga_jobagent").fetchone() == (0,)


def test_agent_on_a_session_pool_entry_with_steps_on_the_transaction_pool(db, conn):
    """The set-up docs/deployment.md shows: one PgBouncer in transaction mode, with one
    database entry in session mode for the agent; the agent's jstdbname steps name the
    application's database, so they use the transaction pool without any option."""
    agent_db = f"{db.name}_agent"
    bouncer = PgBouncer.start_for(
        db.cluster,
        "transaction",
        settings={"server_round_robin": "1"},
        databases={agent_db: f"dbname={db.name} pool_mode=session"},
    )
    try:
        _warm(bouncer, db.name)
        ids = due_jobs(conn, db.name)
        agent = AgentProcess(
            bouncer.dsn(agent_db), ["-t", "1", "--max-connections-per-target", "1"]
        )
        agent.wait_registered()
        run_rounds(conn, ids, ROUNDS)
        # The step connection: one client of the transaction pool (the agent's own
        # connections are clients of the session entry).
        assert len(pooler_clients(bouncer, db.name)) == 1
        assert len(pooler_clients(bouncer, agent_db)) >= 2  # service and bookkeeping pool
        assert agent.stop(signal.SIGTERM) == 0
    finally:
        bouncer.destroy()
    assert run_statuses(conn) == {"s": JOBS * ROUNDS}
    assert conn.execute("SELECT count(DISTINCT backend) FROM ran").fetchone()[0] > 1
    assert_no_internal_errors(agent)
    assert conn.execute("SELECT count(*) FROM pgagent.pga_jobagent").fetchone() == (0,)


def test_direct_agent_runs_its_steps_through_a_transaction_pool_repeatedly(db, conn, tx_pool):
    # jstdbname steps through --step-conninfo, the last five through their jstconnstr:
    # all on one pooled step connection per target, each job more than five times.
    step_pool = tx_pool.dsn("postgres", application_name="pooled step")
    connstr = tx_pool.dsn(db.name, application_name="pooled connstr step")
    ids = due_jobs(conn, db.name, connstr=connstr)
    agent = AgentProcess(
        db.dsn,
        ["-t", "1", "--max-connections-per-target", "1", "--step-conninfo", step_pool],
    )
    agent.wait_registered()
    run_rounds(conn, ids, ROUNDS)
    # The steps' connections are PgBouncer's clients: one per target (the bound). (Their
    # application_name is not compared: after DISCARD ALL PgBouncer shows the pooled
    # server's own, see docs/deployment.md.)
    assert len(pooler_clients(tx_pool, db.name)) == 2
    assert agent.stop(signal.SIGTERM) == 0
    assert run_statuses(conn) == {"s": JOBS * ROUNDS}
    per_job = dict(conn.execute("SELECT jobid, count(*) FROM ran GROUP BY 1"))
    assert per_job == dict.fromkeys(ids, ROUNDS)
    # Round robin: the one client's transactions ran on several server backends.
    assert conn.execute("SELECT count(DISTINCT backend) FROM ran").fetchone()[0] > 1
    assert_no_internal_errors(agent)
    assert conn.execute("SELECT count(*) FROM pgagent.pga_jobagent").fetchone() == (0,)


def test_step_conninfo_is_validated_and_kept_out_of_ps(db, conn):
    bad = AgentProcess(db.dsn, ["--step-conninfo", "host=x port=5432 bogus=1"])
    assert bad.proc.wait(30) == 2
    assert "--step-conninfo is not a valid connection string" in bad.log_text()
    # A password in it never shows in the process's arguments.
    secret = "Sw0rdfish-step"
    agent = AgentProcess(
        db.dsn, ["-t", "1", "--step-conninfo", f"host=127.0.0.1 password={secret}"]
    )
    agent.wait_registered()
    cmdline = open(f"/proc/{agent.pid}/cmdline", "rb").read().decode()
    assert secret not in cmdline and "--step-conninfo" not in cmdline
    agent.stop()
    assert secret not in agent.log_text()


# ---- the LISTEN wake-up -------------------------------------------------------------------


def _listener_outcome(dsn: str) -> tuple[bool, list[str]]:
    """Run the Listener on `dsn` briefly; whether it gave up LISTEN, and the LISTEN
    sessions the server had meanwhile."""

    async def scenario() -> tuple[bool, list[str]]:
        settings = Settings(conninfo=dsn, poll_interval=0.2)
        state = AgentState(registered=True, has_notify_trigger=True)
        wakeups = Wakeups()
        listener = Listener(settings, state, wakeups)
        task = asyncio.create_task(listener.run())
        listening: list[str] = []
        try:
            async with asyncio.timeout(20):
                while not listener.pooled and not listening:
                    await asyncio.sleep(0.1)
                    listening = await asyncio.to_thread(_listen_sessions, dsn)
        finally:
            wakeups.stop.set()
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        return listener.pooled, listening

    return asyncio.run(scenario())


def _listen_sessions(dsn: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as c:
        rows = c.execute(
            "SELECT application_name FROM pg_stat_activity WHERE query LIKE 'LISTEN %'"
            "   AND state = 'idle' AND pid <> pg_backend_pid()"
        ).fetchall()
    return [str(r[0]) for r in rows]


def test_listener_falls_back_to_polling_through_a_transaction_pool(db, tx_pool, capsys):
    pooled, listening = _listener_outcome(tx_pool.dsn(db.name))
    assert pooled and listening == []
    out = capsys.readouterr().out
    assert "LISTEN wake-ups are off: the listening connection is not a session of its own" in out


def test_listener_listens_through_a_session_pool(db, bouncers):
    pooled, listening = _listener_outcome(bouncers["session"].dsn(db.name))
    assert not pooled and listening == ["pyagent listener"]


# ---- steps: what the agent does to a pooled step connection ------------------------------


def test_a_run_name_set_before_a_step_is_the_steps_on_whichever_backend_runs_it(db, tx_pool):
    """The agent names a step's session per run with set_config('application_name', …,
    false) in a transaction of its own just before the step, and resets the connection
    with DISCARD ALL after it. PgBouncer tracks application_name and sets it on whichever
    backend runs the step, so the step sees its run's name, also while another client
    does the same on the same pool."""

    async def client(letter: str) -> list[tuple[int, str, str]]:
        seen = []
        conn = await psycopg.AsyncConnection.connect(
            tx_pool.dsn(db.name, application_name="pyagent step"),
            autocommit=True,
            prepare_threshold=None,
        )
        async with conn:
            for run in range(8):
                tag = f"pyagent {letter} run {run}"
                await conn.execute(
                    "SELECT pg_catalog.set_config('application_name', %s, false)", [tag]
                )
                cur = await conn.execute(
                    "SELECT pg_backend_pid(), current_setting('application_name')"
                )
                pid, name = await cur.fetchone()  # type: ignore[misc]
                seen.append((pid, name, tag))
                await conn.execute("DISCARD ALL")
        return seen

    async def both() -> list[tuple[int, str, str]]:
        a, b = await asyncio.gather(client("a"), client("b"))
        return a + b

    seen = asyncio.run(both())
    assert [name for _pid, name, _tag in seen] == [tag for _pid, _name, tag in seen]
    assert len({pid for pid, _name, _tag in seen}) > 1  # the runs moved between backends


# ---- management commands ------------------------------------------------------------------


def test_management_commands_work_through_a_transaction_pool(db, conn, tx_pool):
    dsn = tx_pool.dsn(db.name)
    job = make_job(conn, "waited", [{"jstcode": "SELECT pg_sleep(2)"}])
    agent = AgentProcess(db.dsn, ["-t", "1"], cwd=str(REPO), env={"PYTHONPATH": str(REPO)})
    agent.wait_registered()
    # run --wait polls the same statements every 0.2 s: well past the prepare threshold.
    waited = jobs(dsn, "run", "waited", "--wait")
    assert waited.returncode == 0, waited.stderr
    assert "succeeded" in waited.stdout
    for _ in range(3):
        listed = jobs(dsn, "list")
        assert listed.returncode == 0 and "waited" in listed.stdout, listed.stderr
        shown = jobs(dsn, "history", str(job))
        assert shown.returncode == 0, shown.stderr
    for _ in range(3):
        assert schema.check(dsn).ok
    agent.stop()
    assert_no_internal_errors(agent)
