"""Secrets and privileges: a non-superuser agent with the documented minimal grants, steps
running with exactly the rights of the connection they name, passwords from .pgpass,
PGPASSWORD and _FILE variables, and batch steps refused or given a clean environment."""

from __future__ import annotations

import os
import signal

import pytest

from tests.agentproc import AgentProcess, make_job, step_logs, wait_job_finished, wait_until
from tests.integration.test_schema_check import agent_grants_from_docs


@pytest.fixture
def runner_role(db, conn):
    role = f"runner_{db.name}"
    conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'runner-Secret-1'")
    for statement in agent_grants_from_docs(role):
        conn.execute(statement)
    yield role, "runner-Secret-1"
    conn.execute(f"DROP OWNED BY {role}")
    conn.execute(f"DROP ROLE {role}")


def test_whole_loop_as_a_non_superuser_with_minimal_grants(
    db, conn, pg_cluster, runner_role, tmp_path
):
    user, password = runner_role
    conn.execute(f"GRANT CREATE ON SCHEMA public TO {user}")
    dsn = pg_cluster.dsn(db.name, user=user)
    env = {"PGPASSWORD": password}
    # A dead superuser agent with a stuck job: the non-superuser's sweep must clear it.
    conn.execute("INSERT INTO pgagent.pga_jobagent (jagpid, jagstation) VALUES (999998, 'gone')")
    stuck = make_job(conn, "stuck", [{"jstcode": "SELECT 1"}])
    conn.execute(
        "UPDATE pgagent.pga_job SET jobagentid = 999998, jobnextrun = now() WHERE jobid = %s",
        (stuck,),
    )
    conn.execute("INSERT INTO pgagent.pga_joblog (jlgjobid, jlgstatus) VALUES (%s, 'r')", (stuck,))
    job = make_job(
        conn,
        "as runner",
        [
            {"jstname": "a", "jstcode": "CREATE TABLE made_by_runner(a int); SELECT current_user"},
            {"jstname": "b", "jstkind": "b", "jstcode": "echo batch ok"},
        ],
        run_now=True,
    )
    agent = AgentProcess(dsn, ["-t", "1"], env=env, check_dsn=db.dsn)
    try:
        agent.wait_registered()
        assert [r[1] for r in wait_job_finished(conn, job)] == ["s"]
        assert step_logs(conn, job) == [("a", "s", 1, ""), ("b", "s", 0, "batch ok\n")]
        owner = conn.execute(
            "SELECT tableowner FROM pg_tables WHERE tablename = 'made_by_runner'"
        ).fetchone()
        assert owner == (user,)
        wait_until(
            lambda: (
                conn.execute(
                    "SELECT count(*) FROM pgagent.pga_jobagent WHERE jagpid = 999998"
                ).fetchone()
                == (0,)
            )
        )
        # The stuck run was aborted ('d') by the sweep and the job released.
        assert [
            r[0]
            for r in conn.execute(
                "SELECT jlgstatus FROM pgagent.pga_joblog WHERE jlgjobid = %s", (stuck,)
            )
        ] == ["d"]
        assert conn.execute(
            "SELECT jobagentid FROM pgagent.pga_job WHERE jobid = %s", (stuck,)
        ).fetchone() == (None,)
        assert password not in agent.log_text()
    finally:
        assert agent.stop(signal.SIGTERM) == 0


def test_a_step_runs_with_the_rights_of_the_connection_it_names(db, conn, pg_cluster):
    conn.execute("CREATE ROLE lowpriv LOGIN PASSWORD 'low-Secret-2'")
    conn.execute("GRANT USAGE ON SCHEMA pgagent TO lowpriv")
    try:
        job = make_job(
            conn,
            "rights",
            [
                {
                    "jstname": "a",
                    "jstcode": "SELECT current_user, session_user",
                    "jstconnstr": pg_cluster.dsn(db.name, user="lowpriv", password="low-Secret-2"),
                },
                {
                    "jstname": "b",
                    "jstcode": "SELECT count(*) FROM pgagent.pga_job",
                    "jstconnstr": pg_cluster.dsn(db.name, user="lowpriv", password="low-Secret-2"),
                    "jstonerror": "i",
                },
                {"jstname": "c", "jstcode": "SELECT 1 WHERE current_user = 'postgres'"},
            ],
            run_now=True,
        )
        agent = AgentProcess(db.dsn, ["-t", "1"])
        try:
            wait_job_finished(conn, job)
        finally:
            agent.stop()
        logs = step_logs(conn, job)
        assert logs[0][:3] == ("a", "s", 1)
        assert logs[1][:3] == ("b", "i", -1) and "permission denied" in logs[1][3]
        assert logs[2][:3] == ("c", "s", 1)  # a jstdbname step runs as the agent's role
        assert all("low-Secret-2" not in (out or "") for *_rest, out in logs)
        assert "low-Secret-2" not in agent.log_text()
    finally:
        conn.execute("DROP OWNED BY lowpriv")
        conn.execute("DROP ROLE lowpriv")


def test_password_from_pgpass_and_from_a_file_variable(db, conn, pg_cluster, runner_role, tmp_path):
    user, password = runner_role
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:{pg_cluster.port}:{db.name}:{user}:{password}\n")
    pgpass.chmod(0o600)
    agent = AgentProcess(
        pg_cluster.dsn(db.name, user=user),
        ["-t", "1"],
        env={"PGPASSFILE": str(pgpass)},
        check_dsn=db.dsn,
    )
    try:
        agent.wait_registered()
    finally:
        agent.stop()
    secret = tmp_path / "pw"
    secret.write_text(password + "\n")
    agent = AgentProcess(
        f"host=127.0.0.1 port={pg_cluster.port} dbname={db.name} user={user}",
        ["-t", "1"],
        env={"PYAGENT_CONNINFO_FILE": "", "PGPASSWORD": password},
        check_dsn=db.dsn,
    )
    try:
        agent.wait_registered()
        cmdline = open(f"/proc/{agent.pid}/cmdline", "rb").read().decode()
        assert password not in cmdline
    finally:
        agent.stop()


def test_no_batch_refuses_batch_steps_and_clean_env_drops_secrets(db, conn, tmp_path):
    job = make_job(
        conn, "refused", [{"jstkind": "b", "jstcode": "echo should not run"}], run_now=True
    )
    agent = AgentProcess(db.dsn, ["-t", "1", "--no-batch"])
    try:
        wait_job_finished(conn, job)
        assert step_logs(conn, job) == [
            ("step00", "f", -1, "Batch steps are disabled on this agent (--no-batch)")
        ]
    finally:
        agent.stop()
    flag = tmp_path / "env.txt"
    job = make_job(
        conn,
        "clean",
        [{"jstkind": "b", "jstcode": f"env > {flag}; pwd >> {flag}; umask >> {flag}"}],
        run_now=True,
    )
    agent = AgentProcess(
        db.dsn,
        ["-t", "1", "--batch-env", "clean"],
        env={"PGPASSWORD": "leaky-Secret-3", "SOME_TOKEN": "x"},
    )
    try:
        wait_job_finished(conn, job)
        seen = flag.read_text()
        assert "leaky-Secret-3" not in seen and "SOME_TOKEN" not in seen and "PATH=" in seen
    finally:
        agent.stop()
    assert os.path.exists(flag)
