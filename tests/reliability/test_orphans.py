"""What a killed agent leaves running: its SQL step's statement on the server (on the
agent's own database, and on another server through a connection string) and its batch
step's processes on its host. Another agent stops the statements before it releases the
job; the next agent started on the host ends the processes. docs/reliability.md lists
each test."""

from __future__ import annotations

import time

import psycopg
import pytest

from tests.agentproc import job_logs, make_job, step_logs, wait_job_finished, wait_until
from tests.integration.test_schema_check import agent_grants_from_docs
from tests.reliability.test_faults import process_gone, run_now, running_rows
from tests.reliability.test_liveness import SessionWatch


def tagged_sessions(dsn: str, job: int, *, active: bool = True) -> list[int]:
    """The sessions pyagent named after a run of `job` (executing ones only, by default)."""
    with psycopg.connect(dsn, autocommit=True) as c:
        return [
            r[0]
            for r in c.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s"
                " AND (state = 'active' OR NOT %s)",
                (f"pyagent run % (job {job},%", active),
            )
        ]


@pytest.mark.parametrize("where", ["own database", "connection string to another server"])
def test_a_killed_agents_sql_statement_is_stopped_before_its_run_is_aborted(
    db, conn, agents, own_db, where
):
    """The issue's case: two agents, a job whose SQL step sleeps 120 s. Its agent is
    SIGKILLed in the step; the other agent clears it: by the time the run shows 'd', no
    session of that run still executes, the step's output says what was stopped, and when
    the job runs again, it is the only session executing it."""
    remote = where != "own database"
    step_dsn = own_db.dsn() if remote else db.dsn
    with psycopg.connect(step_dsn, autocommit=True) as c:
        c.execute("CREATE SEQUENCE runs")
    # Long on its first run only (a sequence: a cancelled statement does not roll it back).
    code = "SELECT pg_sleep(CASE WHEN nextval('runs') = 1 THEN 120 ELSE 1 END)"
    step = {"jstcode": code, **({"jstconnstr": step_dsn} if remote else {})}
    job = make_job(conn, "long", [step], run_now=True)
    victim = agents(db.dsn, "--station", "victim")
    victim.wait_registered()
    with SessionWatch(step_dsn) as watch:
        wait_until(lambda: tagged_sessions(step_dsn, job), what="the step's statement")
        survivor = agents(db.dsn, "--station", "survivor")
        survivor.wait_registered(2)
        time.sleep(1.5)  # the survivor sees the victim alive (it learns its lease terms)
        victim.kill()
        wait_until(lambda: [r[1] for r in job_logs(conn, job)] == ["d"], 15, what="the sweep")
        assert tagged_sessions(step_dsn, job) == []
        ((_name, status, _result, output),) = step_logs(conn, job)
        assert status == "d" and "session" in output, output
        if remote:
            assert f"port={own_db.cluster.port}" in output, output
        run_now(conn, job)
        assert [r[1] for r in wait_job_finished(conn, job, runs=2, timeout=20)] == ["d", "s"]
    assert watch.overlaps() == {}
    assert len(watch.runs[job]) == 2
    assert running_rows(conn) == (0, 0)
    assert "of dead agent" in survivor.log_text()


def test_a_killed_agents_batch_step_is_ended_by_the_next_agent_on_its_host(
    db, conn, agents, reaper, tmp_path
):
    """A batch step's process group outlives a SIGKILLed agent (it runs in its own
    session); the next agent started on the same host (same user, same TMPDIR) ends it at
    start-up and removes its directory."""
    shared_tmp = tmp_path / "steps"
    shared_tmp.mkdir()
    pidfile = tmp_path / "batch.pid"
    reaper(pidfile)
    job = make_job(
        conn,
        "left behind",
        [{"jstkind": "b", "jstcode": f"echo $$ > {pidfile}; exec sleep 300"}],
        run_now=True,
    )
    env = {"TMPDIR": str(shared_tmp)}
    first = agents(db.dsn, env=env)
    first.wait_registered()
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the batch step")
    child = int(pidfile.read_text())
    first.kill()
    time.sleep(0.5)
    assert not process_gone(child), "the batch step must outlive its agent for this test"
    assert any(p.name.startswith("pga_") for p in shared_tmp.iterdir())
    second = agents(db.dsn, env=env)
    wait_until(lambda: process_gone(child), 15, what="the orphaned step to end")
    wait_until(
        lambda: "Ended a batch step left running by a killed agent" in second.log_text(),
        what="the agent's line",
    )
    assert "pyagent run " in second.log_text()
    assert not any(p.name.startswith("pga_") for p in shared_tmp.iterdir())
    # The run itself is the sweep's business: aborted once the lease has run out.
    wait_until(lambda: [r[1] for r in job_logs(conn, job)] == ["d"], 25, what="the sweep")


@pytest.fixture
def two_roles(db, conn):
    """An agent role with the documented grants, and another login role."""
    agent, other = f"sweeper_{db.name}", f"stepuser_{db.name}"
    conn.execute(f"CREATE ROLE {agent} LOGIN PASSWORD 'Sweeper-Secret-1'")
    conn.execute(f"CREATE ROLE {other} LOGIN PASSWORD 'Other-Secret-1'")
    for statement in agent_grants_from_docs(agent):
        conn.execute(statement)
    yield agent, other
    conn.execute(f"DROP OWNED BY {agent}")
    conn.execute(f"DROP ROLE {agent}")
    conn.execute(f"DROP ROLE {other}")


@pytest.mark.parametrize("signal_grant", [False, True])
def test_a_non_superuser_sweeper_stops_sessions_it_has_the_right_to_stop(
    db, conn, pg_cluster, agents, two_roles, signal_grant
):
    """Agents running as a role with only the documented grants: the dead agent's session
    of the same role is always stopped; a session of another role (a connection-string
    step) only with pg_signal_backend, otherwise the step's output says plainly that the
    statement may still run."""
    agent_role, other = two_roles
    if signal_grant:
        conn.execute(f"GRANT pg_signal_backend TO {agent_role}")
    env = {"PGPASSWORD": "Sweeper-Secret-1"}
    dsn = pg_cluster.dsn(db.name, user=agent_role)
    own = make_job(conn, "as the agent", [{"jstcode": "SELECT pg_sleep(120)"}], run_now=True)
    other_dsn = pg_cluster.dsn(db.name, user=other, password="Other-Secret-1")
    foreign = make_job(
        conn,
        "as another role",
        [{"jstcode": "SELECT pg_sleep(120)", "jstconnstr": other_dsn}],
        run_now=True,
    )
    victim = agents(dsn, "--station", "victim", env=env)
    wait_until(
        lambda: tagged_sessions(db.dsn, own) and tagged_sessions(db.dsn, foreign),
        what="both steps",
    )
    survivor = agents(dsn, "--station", "survivor", env=env)
    wait_until(
        lambda: conn.execute("SELECT count(*) FROM pgagent.pga_jobagent").fetchone()[0] == 2,
        what="both agents",
    )
    time.sleep(1.5)
    victim.kill()
    for job in (own, foreign):
        wait_until(lambda j=job: [r[1] for r in job_logs(conn, j)] == ["d"], 15, what="sweep")
    assert tagged_sessions(db.dsn, own) == []
    (_n, _s, _r, foreign_output) = step_logs(conn, foreign)[0]
    if signal_grant:
        assert tagged_sessions(db.dsn, foreign) == []
        assert "could not stop" not in foreign_output
    else:
        assert tagged_sessions(db.dsn, foreign) != []
        assert "could not stop session" in foreign_output
        assert "may still run" in foreign_output
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (other,)
        )
    assert "Sweeper-Secret-1" not in survivor.log_text() + foreign_output
    assert "Other-Secret-1" not in survivor.log_text() + foreign_output
