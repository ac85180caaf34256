"""Who wrote a step decides what it may do (docs/security.md): authorship recorded by the
database, and `--step-rights author` with real roles, a real agent connected as a
superuser, and a job editor holding exactly what `pyagent schema grant-editor` grants."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import errors as pgerrors
from psycopg import sql

from pyagent import extras
from pyagent.devcluster import free_port
from pyagent.schema import editor
from tests.agentproc import AgentProcess, make_job, step_logs, wait_job_finished, wait_until
from tests.integration.test_pgadmin_contract import (
    LOCAL_STEP,
    pgadmin_session,
    run_scenario,
    superuser,
)
from tests.jobscli import jobs, no_traceback

REPO = Path(__file__).resolve().parents[2]
AUTHOR_MODE = ["-t", "1", "--step-rights", "author"]


@dataclass(frozen=True)
class Role:
    name: str
    password: str
    dsn: str

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.dsn, autocommit=True)


def schema_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PYAGENT_"))}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "pyagent", "schema", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


class Roles:
    """Login roles made by a test (cluster-wide, so named after the test's database),
    dropped at the end."""

    def __init__(self, db, conn) -> None:
        self.db = db
        self.conn = conn
        self.made: list[str] = []

    def login(self, base: str, *, editor: bool = False) -> Role:
        name = f"{base}_{self.db.name}"
        password = f"{base}-Secret-9"
        self.conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(password)
            )
        )
        self.made.append(name)
        if editor:
            # The documented way: the command, as the schema's owner.
            proc = schema_cli("grant-editor", self.db.dsn, name)
            assert proc.returncode == 0, proc.stderr
        dsn = self.db.cluster.dsn(self.db.name, user=name, password=password)
        return Role(name, password, dsn)

    def drop_all(self) -> None:
        for name in reversed(self.made):
            self.conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            self.conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.fixture
def roles(db, conn) -> Iterator[Roles]:
    made = Roles(db, conn)
    yield made
    made.drop_all()


@pytest.fixture
def authored(db, conn):
    """The test database with pyagent's extras, authorship included."""
    extras.add_notify_trigger(db.dsn)
    assert extras.add_authorship(db.dsn) is True
    return db


def pgpass(tmp_path: Path, port: int, *entries: Role) -> Path:
    path = tmp_path / "pgpass"
    path.write_text("".join(f"127.0.0.1:{port}:*:{r.name}:{r.password}\n" for r in entries))
    path.chmod(0o600)
    return path


def author_of(conn, kind: str, oid: int) -> str | None:
    row = conn.execute(
        "SELECT author FROM pyagent.authorship WHERE kind = %s AND id = %s", (kind, oid)
    ).fetchone()
    return None if row is None else str(row[0])


def step_ids(conn, job: int) -> dict[str, int]:
    rows = conn.execute(
        "SELECT jstname, jstid FROM pgagent.pga_jobstep WHERE jstjobid = %s", (job,)
    ).fetchall()
    return {str(name): int(jstid) for name, jstid in rows}


def editor_job(role: Role, name: str, steps: list[dict[str, object]]) -> int:
    """A job written by `role` itself, with its own connection (as pgAdmin would)."""
    with role.connect() as own:
        return make_job(own, name, steps, run_now=True)


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return resp.read().decode()


def metric_value(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name + (f"{{{labels}}}" if labels else "")) + r" ([0-9.e+]+)"
    match = re.search(pattern, text)
    assert match, f"{name}{labels} not in /metrics"
    return float(match.group(1))


# --- a job editor under --step-rights author ---------------------------------------------


HOSTILE_STEPS = [
    # name, kind, code (every step "ignore on error", so all of them run)
    ("a_legit", "s", "INSERT INTO seen SELECT 'a', current_user, session_user"),
    ("b_superuser", "s", "ALTER ROLE {me} SUPERUSER"),
    ("c_reset", "s", "RESET ROLE; INSERT INTO seen SELECT 'c', current_user, session_user"),
    ("d_set_role", "s", "SET ROLE postgres"),
    ("e_session_auth", "s", "SET SESSION AUTHORIZATION postgres"),
    ("f_set_config", "s", "SELECT set_config('role', 'postgres', false)"),
    ("g_victim_role", "s", "SET ROLE {victim}"),
    ("h_shell", "b", "id > {flag}"),
]


def test_an_editor_gets_no_more_than_its_own_rights(authored, conn, roles, tmp_path, pg_cluster):
    db = authored
    mallory = roles.login("mallory", editor=True)
    victim = roles.login("victim")
    conn.execute("CREATE TABLE seen (step text, cu text, su text)")
    conn.execute(sql.SQL("GRANT INSERT ON seen TO {}").format(sql.Identifier(mallory.name)))
    flag = tmp_path / "owned.txt"
    steps: list[dict[str, object]] = [
        {
            "jstname": name,
            "jstkind": kind,
            "jstcode": code.format(me=mallory.name, victim=victim.name, flag=flag),
            "jstonerror": "i",
            **({"jstdbname": ""} if kind == "b" else {}),
        }
        for name, kind, code in HOSTILE_STEPS
    ]
    # The agent's password file holds the victim's password: a connection string naming
    # the victim would log in as the victim under pgAgent's rules.
    steps.append(
        {
            "jstname": "i_connstr",
            "jstcode": "INSERT INTO seen SELECT 'i', current_user, session_user",
            "jstconnstr": pg_cluster.dsn(db.name, user=victim.name),
            "jstdbname": "",
            "jstonerror": "i",
        }
    )
    job = editor_job(mallory, "hostile", steps)
    port = free_port()
    agent = AgentProcess(
        db.dsn,
        [*AUTHOR_MODE, "--http", f"127.0.0.1:{port}"],
        env={"PGPASSFILE": str(pgpass(tmp_path, pg_cluster.port, mallory, victim))},
    )
    try:
        assert [r[1] for r in wait_job_finished(conn, job)] == ["s"]
        text = metrics(port)
    finally:
        agent.stop()
    logs = {name: (status, result, output) for name, status, result, output in step_logs(conn, job)}
    # Its legitimate SQL ran in a session logged in as itself.
    assert logs["a_legit"] == ("s", 1, "")
    assert conn.execute("SELECT * FROM seen ORDER BY step").fetchall() == [
        ("a", mallory.name, mallory.name),
        ("c", mallory.name, mallory.name),
    ]
    # It cannot become superuser, nor escape its login from inside the step.
    assert logs["b_superuser"][:2] == ("i", -1)
    assert "must be superuser" in logs["b_superuser"][2]
    assert conn.execute(
        "SELECT rolsuper FROM pg_roles WHERE rolname = %s", (mallory.name,)
    ).fetchone() == (False,)
    assert logs["c_reset"] == ("s", 1, "")  # RESET ROLE: still itself (the insert above)
    assert 'permission denied to set role "postgres"' in logs["d_set_role"][2]
    assert "permission denied to set session authorization" in logs["e_session_auth"][2]
    assert 'permission denied to set role "postgres"' in logs["f_set_config"][2]
    assert f'permission denied to set role "{victim.name}"' in logs["g_victim_role"][2]
    # No shell command, no other role through a connection string.
    assert logs["h_shell"][:2] == ("i", -1)
    assert logs["h_shell"][2].startswith("Step refused (--step-rights author): batch steps")
    assert f'role "{mallory.name}"' in logs["h_shell"][2]
    assert not flag.exists()
    assert logs["i_connstr"][:2] == ("i", -1)
    assert "connection-string steps run only for trusted authors" in logs["i_connstr"][2]
    # One WARNING line per refusal, and the counters.
    log = agent.log_text()
    assert log.count("WARNING: Step ") == 2
    assert metric_value(text, "pyagent_steps_refused_total", 'reason="batch_untrusted"') == 1
    assert metric_value(text, "pyagent_steps_refused_total", 'reason="connstr_untrusted"') == 1
    assert metric_value(text, "pyagent_steps_run_as_author_total") == 7
    assert victim.password not in log and mallory.password not in log


def test_the_same_job_runs_with_the_agents_rights_by_default(
    authored, conn, roles, tmp_path, pg_cluster
):
    """The default mode is pgAgent's: the editor's step makes it a superuser and its
    shell command runs (what --step-rights author is for)."""
    mallory = roles.login("mallory", editor=True)
    flag = tmp_path / "owned.txt"
    job = editor_job(
        mallory,
        "hostile",
        [
            {"jstname": "a", "jstcode": f"ALTER ROLE {mallory.name} SUPERUSER"},
            {"jstname": "b", "jstkind": "b", "jstdbname": "", "jstcode": f"id > {flag}"},
        ],
    )
    agent = AgentProcess(authored.dsn, ["-t", "1"])
    try:
        wait_job_finished(conn, job)
    finally:
        agent.stop()
    assert [r[:2] for r in step_logs(conn, job)] == [("a", "s"), ("b", "s")]
    assert conn.execute(
        "SELECT rolsuper FROM pg_roles WHERE rolname = %s", (mallory.name,)
    ).fetchone() == (True,)
    assert flag.exists()
    conn.execute(sql.SQL("ALTER ROLE {} NOSUPERUSER").format(sql.Identifier(mallory.name)))


def test_an_author_who_cannot_log_in_never_runs_with_the_agents_rights(
    authored, conn, roles, tmp_path, pg_cluster
):
    mallory = roles.login("mallory", editor=True)
    conn.execute("CREATE TABLE seen (who text)")
    conn.execute(sql.SQL("GRANT INSERT ON seen TO {}").format(sql.Identifier(mallory.name)))
    job = editor_job(mallory, "no login", [{"jstcode": "INSERT INTO seen VALUES (current_user)"}])
    port = free_port()
    # No password file entry for the editor: the server asks for a password, none is found.
    agent = AgentProcess(
        authored.dsn,
        [*AUTHOR_MODE, "--http", f"127.0.0.1:{port}"],
        env={"PGPASSFILE": str(tmp_path / "absent"), "PGPASSWORD": "the-agents-own"},
    )
    try:
        assert [r[1] for r in wait_job_finished(conn, job)] == ["f"]
        text = metrics(port)
    finally:
        agent.stop()
    ((_name, status, result, output),) = step_logs(conn, job)
    assert (status, result) == ("f", -1)
    assert output.startswith(
        f'Step not run (--step-rights author): cannot log in as its author, role "{mallory.name}": '
    )
    assert "no password supplied" in output
    assert output.endswith("it never runs with the agent's rights")
    assert "\n" not in output
    assert conn.execute("SELECT count(*) FROM seen").fetchone() == (0,)
    assert metric_value(text, "pyagent_steps_refused_total", 'reason="author_login_failed"') == 1
    assert metric_value(text, "pyagent_steps_run_as_author_total") == 0
    assert "the-agents-own" not in agent.log_text()


def test_members_of_a_trusted_role_run_as_the_agent(authored, conn, roles, tmp_path):
    ops = roles.login("ops")
    alice = roles.login("alice", editor=True)
    conn.execute(sql.SQL("GRANT {} TO {}").format(*map(sql.Identifier, (ops.name, alice.name))))
    flag = tmp_path / "ran.txt"
    job = editor_job(
        alice,
        "trusted",
        [
            {"jstname": "a", "jstkind": "b", "jstdbname": "", "jstcode": f"echo ok > {flag}"},
            {"jstname": "b", "jstcode": "SELECT 1 WHERE current_user = 'postgres'"},
        ],
    )
    agent = AgentProcess(
        authored.dsn, [*AUTHOR_MODE, "--trusted-role", f"nobody_{authored.name},{ops.name}"]
    )
    try:
        wait_job_finished(conn, job)
    finally:
        agent.stop()
    assert [r[:3] for r in step_logs(conn, job)] == [("a", "s", 0), ("b", "s", 1)]
    assert flag.read_text() == "ok\n"
    assert f'--trusted-role "nobody_{authored.name}": no such role' in agent.log_text()


# --- authorship cannot be forged or erased ------------------------------------------------


def test_an_editor_cannot_forge_or_erase_authorship(authored, conn, roles):
    mallory = roles.login("mallory", editor=True)
    helper = roles.login("helper", editor=True)
    conn.execute(
        sql.SQL("GRANT {} TO {}").format(*map(sql.Identifier, (helper.name, mallory.name)))
    )
    trusted = make_job(conn, "trusted", [{"jstname": "a", "jstcode": "SELECT 1"}])
    (step,) = step_ids(conn, trusted).values()
    assert author_of(conn, "s", step) == "postgres"
    refused = []
    with mallory.connect() as own:
        for statement in [
            "INSERT INTO pyagent.authorship VALUES ('s', 99999, 1, 'postgres', now(), '')",
            "UPDATE pyagent.authorship SET author = 'postgres'",
            "DELETE FROM pyagent.authorship",
            "TRUNCATE pyagent.authorship",
            "DELETE FROM pyagent.change_log",
            "UPDATE pyagent.settings SET change_log_retention = '1 second'",
            "ALTER TABLE pgagent.pga_jobstep DISABLE TRIGGER pyagent_authorship_step",
            "ALTER TABLE pgagent.pga_jobstep DISABLE TRIGGER ALL",
            "DROP TRIGGER pyagent_authorship_step ON pgagent.pga_jobstep",
            "SET session_replication_role = replica",
            "SET SESSION AUTHORIZATION postgres",
            "CREATE FUNCTION pgagent.swap() RETURNS trigger LANGUAGE plpgsql"
            " AS 'BEGIN RETURN NEW; END'",
            "CREATE TRIGGER swap BEFORE UPDATE ON pgagent.pga_jobstep"
            " FOR EACH ROW EXECUTE FUNCTION pg_catalog.suppress_redundant_updates_trigger()",
            "SELECT pyagent.log_change(1, 'job', 1, 'x', 'adopt', '{}', true)",
            "CREATE TABLE pyagent.authorship2 (a int)",
        ]:
            with pytest.raises(pgerrors.InsufficientPrivilege):
                own.execute(statement)
            refused.append(statement)
        # SET ROLE changes current_user, not session_user: the change is still its own.
        own.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(helper.name)))
        own.execute("UPDATE pgagent.pga_jobstep SET jstcode = 'SELECT 2' WHERE jstid = %s", (step,))
        own.execute("RESET ROLE")
        assert author_of(conn, "s", step) == mallory.name
        # Deleting a step takes its record with it; a step inserted again under the same
        # id is the editor's.
        own.execute("DELETE FROM pgagent.pga_jobstep WHERE jstid = %s", (step,))
        assert author_of(conn, "s", step) is None
        own.execute(
            "INSERT INTO pgagent.pga_jobstep (jstid, jstjobid, jstname, jstkind, jstcode,"
            " jstdbname) VALUES (%s, %s, 'a', 's', 'SELECT 3', current_database())",
            (step, trusted),
        )
        assert author_of(conn, "s", step) == mallory.name
        # Enabling someone else's job makes the job's switch its own.
        own.execute("UPDATE pgagent.pga_job SET jobenabled = false WHERE jobid = %s", (trusted,))
    assert author_of(conn, "j", trusted) == mallory.name
    assert len(refused) == 15
    # Everything it did is in the change log, under its login.
    log = conn.execute(
        "SELECT author, object, action, fields FROM pyagent.change_log WHERE jobid = %s"
        " ORDER BY id",
        (trusted,),
    ).fetchall()
    assert log[-4:] == [
        (mallory.name, "step", "change", ["code"]),
        (mallory.name, "step", "delete", []),
        (mallory.name, "step", "create", []),
        (mallory.name, "job", "change", ["enabled"]),
    ]


def test_changes_made_while_recording_was_bypassed_run_for_nobody(
    authored, conn, roles, tmp_path, pg_cluster
):
    """A record vouches for the row it was written for: the owner disabling the trigger
    (or restoring rows without it) leaves steps that no record matches, and those are
    refused until adopted. So are jobs written before authorship was installed."""
    db = authored
    mallory = roles.login("mallory", editor=True)
    job = editor_job(mallory, "edited", [{"jstname": "a", "jstcode": "SELECT 1"}])
    conn.execute("ALTER TABLE pgagent.pga_jobstep DISABLE TRIGGER pyagent_authorship_step")
    conn.execute("UPDATE pgagent.pga_jobstep SET jstcode = 'SELECT 2' WHERE jstjobid = %s", (job,))
    conn.execute("ALTER TABLE pgagent.pga_jobstep ENABLE ALWAYS TRIGGER pyagent_authorship_step")
    agent = AgentProcess(db.dsn, AUTHOR_MODE)
    try:
        wait_job_finished(conn, job)
    finally:
        agent.stop()
    ((_name, status, result, output),) = step_logs(conn, job)
    assert (status, result) == ("f", -1)
    assert f'changed after its recorded author (role "{mallory.name}")' in output
    assert output.endswith(f"pyagent jobs adopt {job}")


def test_jobs_from_before_authorship_are_refused_until_adopted(
    db, conn, roles, tmp_path, pg_cluster
):
    mallory = roles.login("mallory")
    old = make_job(conn, "old", [{"jstname": "a", "jstcode": "SELECT current_user"}])
    extras.add_authorship(db.dsn)
    for statement in editor.grant_statements(mallory.name, with_authorship=True):
        conn.execute(statement)
    conn.execute("UPDATE pgagent.pga_job SET jobnextrun = now() WHERE jobid = %s", (old,))
    agent = AgentProcess(db.dsn, AUTHOR_MODE)
    try:
        wait_job_finished(conn, old)
        ((*_, output),) = step_logs(conn, old)
        assert "it has no recorded author" in output
        assert output.endswith(f"pyagent jobs adopt {old}")
        # The review: every step with its code, nothing changed, exit 3.
        review = jobs(db.dsn, "adopt", "--unrecorded", "--dry-run")
        no_traceback(review)
        assert review.returncode == 3, review.stderr
        assert "step " in review.stdout and "| SELECT current_user" in review.stdout
        assert "no recorded author" in review.stdout
        assert author_of(conn, "s", step_ids(conn, old)["a"]) is None
        # Not on a terminal and without --yes it asks for --yes; a job editor cannot adopt.
        asked = jobs(db.dsn, "adopt", str(old))
        assert asked.returncode == 2 and "--yes" in asked.stderr
        denied = jobs(mallory.dsn, "adopt", str(old), "--yes")
        assert denied.returncode == 1
        assert "only its owner" in denied.stderr
        # Adopted as the editor: its step now runs logged in as the editor.
        adopted = jobs(db.dsn, "adopt", str(old), "--as", mallory.name, "--yes")
        assert adopted.returncode == 0, adopted.stderr
        assert author_of(conn, "s", step_ids(conn, old)["a"]) == mallory.name
        conn.execute("UPDATE pgagent.pga_job SET jobnextrun = now() WHERE jobid = %s", (old,))
        wait_job_finished(conn, old, runs=2)
    finally:
        agent.stop()
    *_, (_name, status, _result, output) = step_logs(conn, old)
    assert status == "f" and "cannot log in as its author" in output
    changes = jobs(db.dsn, "changes", str(old))
    assert changes.returncode == 0, changes.stderr
    assert f'adopted job "old" ({old}): attributed to {mallory.name}' in changes.stdout


def test_author_mode_runs_nothing_until_authorship_is_installed(db, conn):
    job = make_job(conn, "waits", [{"jstcode": "SELECT 1"}], run_now=True)
    agent = AgentProcess(db.dsn, [*AUTHOR_MODE, "-r", "10"])
    try:
        wait_until(lambda: "needs pyagent's authorship records" in agent.log_text())
        assert conn.execute(
            "SELECT count(*) FROM pgagent.pga_joblog WHERE jlgjobid = %s", (job,)
        ).fetchone() == (0,)
        extras.add_authorship(db.dsn)
        # Written before: refused (no author), but the agent now works.
        wait_job_finished(conn, job, timeout=40)
    finally:
        agent.stop()
    assert "no recorded author" in step_logs(conn, job)[0][3]


# --- pgAdmin, jobs apply and plain SQL record the right author -----------------------------


def test_the_real_extension_records_and_enforces_authorship(ext_db, tmp_path, pg_cluster):
    with ext_db.connect() as conn:
        local = Roles(ext_db, conn)
        try:
            extras.add_notify_trigger(ext_db.dsn)
            extras.add_authorship(ext_db.dsn)
            mallory = local.login("mallory", editor=True)
            job = editor_job(
                mallory,
                "on the extension",
                [
                    {"jstname": "a", "jstcode": "SELECT 1 WHERE session_user = current_user"},
                    {"jstname": "b", "jstcode": "ALTER ROLE postgres NOSUPERUSER"},
                ],
            )
            assert author_of(conn, "s", step_ids(conn, job)["a"]) == mallory.name
            agent = AgentProcess(
                ext_db.dsn,
                AUTHOR_MODE,
                env={"PGPASSFILE": str(pgpass(tmp_path, pg_cluster.port, mallory))},
            )
            try:
                wait_job_finished(conn, job)
            finally:
                agent.stop()
            logs = step_logs(conn, job)
            assert logs[0][:3] == ("a", "s", 1)
            assert logs[1][:2] == ("b", "f") and "must be superuser" in logs[1][3]
            assert conn.execute(
                "SELECT rolsuper FROM pg_roles WHERE rolname = 'postgres'"
            ).fetchone() == (True,)
        finally:
            local.drop_all()


def test_jobs_apply_and_show_name_the_author(authored, conn, roles, tmp_path):
    mallory = roles.login("mallory", editor=True)
    spec = tmp_path / "job.yaml"
    spec.write_text(
        f"name: applied\nsteps:\n  - name: one\n    database: {authored.name}\n    code: SELECT 1\n"
    )
    applied = jobs(mallory.dsn, "apply", str(spec))
    assert applied.returncode == 0, applied.stderr
    (job,) = [r[0] for r in conn.execute("SELECT jobid FROM pgagent.pga_job")]
    assert author_of(conn, "j", job) == mallory.name
    # Applying the same file again changes nothing, so the author stays; the owner's
    # change of the code makes the owner the step's author.
    assert jobs(authored.dsn, "apply", str(spec)).returncode == 0
    assert author_of(conn, "s", step_ids(conn, job)["one"]) == mallory.name
    spec.write_text(spec.read_text().replace("SELECT 1", "SELECT 2"))
    assert jobs(authored.dsn, "apply", str(spec)).returncode == 0
    assert author_of(conn, "s", step_ids(conn, job)["one"]) == "postgres"
    shown = jobs(mallory.dsn, "show", "applied")
    assert shown.returncode == 0, shown.stderr
    assert re.search(rf"  author: +{mallory.name} at .* \(on/off, host agent\)", shown.stdout)
    assert re.search(r"     author: postgres at .* \(code, kind, target, on/off\)", shown.stdout)
    as_json = jobs(mallory.dsn, "show", "applied", "--json")
    assert '"role": "postgres"' in as_json.stdout
    changes = jobs(mallory.dsn, "changes", "applied")
    assert changes.returncode == 0, changes.stderr
    lines = changes.stdout.splitlines()
    assert lines[0].split() == ["WHEN", "BY", "JOB", "CHANGE"]
    assert "postgres" in lines[1] and 'changed step "one"' in lines[1] and ": code" in lines[1]
    assert any(mallory.name in line and "created job" in line for line in lines)


def test_history_names_who_last_changed_what_each_run_ran(authored, conn, roles):
    mallory = roles.login("mallory", editor=True)
    job = make_job(conn, "hist", [{"jstname": "a", "jstcode": "SELECT 1"}], run_now=True)
    agent = AgentProcess(authored.dsn, ["-t", "1"])
    try:
        wait_job_finished(conn, job)
        with mallory.connect() as own:
            own.execute(
                "UPDATE pgagent.pga_jobstep SET jstcode = 'SELECT 2' WHERE jstjobid = %s", (job,)
            )
            own.execute("UPDATE pgagent.pga_job SET jobnextrun = now() WHERE jobid = %s", (job,))
        wait_job_finished(conn, job, runs=2)
    finally:
        agent.stop()
    shown = jobs(mallory.dsn, "history", "hist")
    assert shown.returncode == 0, shown.stderr
    header, newest, oldest = shown.stdout.splitlines()
    assert header.split()[-3:] == ["LAST", "CHANGED", "BY"]
    assert newest.endswith(mallory.name) and oldest.endswith("postgres")


def test_change_log_keeps_entries_for_its_retention(authored, conn):
    job = make_job(conn, "old changes", [{"jstcode": "SELECT 1"}])
    proc = schema_cli("add-extras", authored.dsn, "--change-log-retention", "30")
    assert proc.returncode == 0 and "already present" in proc.stdout, proc.stderr
    assert (
        conn.execute("SELECT change_log_retention FROM pyagent.settings").fetchone()[0].days == 30
    )
    conn.execute("UPDATE pyagent.change_log SET changed_at = now() - interval '31 days'")
    before = conn.execute("SELECT count(*) FROM pyagent.change_log").fetchone()[0]
    assert before >= 2
    conn.execute("UPDATE pgagent.pga_job SET jobdesc = 'new' WHERE jobid = %s", (job,))
    assert conn.execute("SELECT action, fields FROM pyagent.change_log").fetchall() == [
        ("change", ["comment"])
    ]


# --- grants for job editors ---------------------------------------------------------------


def test_grant_editor_grants_what_the_docs_say_and_names_risks(authored, conn, roles):
    from tests.integration.test_pgadmin_contract import pgadmin_grants_from_docs

    documented = [" ".join(s.split()) for s in pgadmin_grants_from_docs("x")]
    granted = [
        " ".join(s.as_string(conn).split())
        for s in editor.grant_statements("x", with_authorship=False)
    ]
    assert granted == [s.replace("TO x", 'TO "x"') for s in documented]
    risky = roles.login("risky")
    conn.execute(
        sql.SQL("GRANT TRIGGER ON pgagent.pga_jobstep TO {}").format(sql.Identifier(risky.name))
    )
    proc = schema_cli("grant-editor", authored.dsn, risky.name)
    assert proc.returncode == 1
    assert f'"{risky.name}" holds TRIGGER on pgagent.pga_jobstep' in proc.stderr
    assert "could forge or erase authorship" in proc.stderr
    unknown = schema_cli("grant-editor", authored.dsn, "no such role")
    assert unknown.returncode == 1 and "there is no role named" in unknown.stderr


# --- pgAdmin's own dialogs -----------------------------------------------------------------


@pytest.fixture(params=["db", "ext_db"])
def target(request):
    """Our schema, then the real extension, each with pyagent's extras."""
    testdb = request.getfixturevalue(request.param)
    extras.add_notify_trigger(testdb.dsn)
    extras.add_authorship(testdb.dsn)
    with testdb.connect() as conn:
        made = Roles(testdb, conn)
        yield testdb, made
        made.drop_all()


def test_pgadmin_dialogs_work_unchanged_for_an_editor_and_log_its_login(pgadmin, target):
    """pgAdmin's whole job scenario, as a role with grant-editor's grants only, with the
    authorship triggers installed; every change is logged under that role's login."""
    testdb, made = target
    editor_role = made.login("pgadm", editor=True)
    with superuser(testdb) as admin, pgadmin_session(pgadmin, editor_role.dsn) as session:
        run_scenario(session, admin)
        logged = admin.execute(
            "SELECT DISTINCT author, object, action FROM pyagent.change_log ORDER BY 2, 3"
        ).fetchall()
    assert {author for author, _object, _action in logged} == {editor_role.name}
    assert {(o, a) for _author, o, a in logged} >= {
        ("job", "create"),
        ("job", "change"),
        ("step", "create"),
        ("step", "change"),
        ("step", "delete"),
        ("schedule", "create"),
        ("schedule", "change"),
        ("exception", "create"),
    }


def test_a_job_made_in_pgadmin_runs_as_its_author(pgadmin, target, tmp_path, pg_cluster):
    testdb, made = target
    editor_role = made.login("pgadm", editor=True)
    step = dict(
        LOCAL_STEP,
        jstdbname=testdb.name,
        jstcode=f"SELECT 1 WHERE session_user = '{editor_role.name}' AND current_user = session_user",
    )
    data = {
        "jobname": "made in pgadmin",
        "jobenabled": True,
        "jobhostagent": "",
        "jobjclid": 1,
        "jobdesc": "",
        "jsteps": [step],
        "jschedules": [],
    }
    with pgadmin_session(pgadmin, editor_role.dsn) as session:
        job, _fetched = session.job_create(data)
    with superuser(testdb) as admin:
        assert author_of(admin, "j", job) == editor_role.name
        (jstid,) = step_ids(admin, job).values()
        assert author_of(admin, "s", jstid) == editor_role.name
    shown = jobs(testdb.dsn, "show", str(job))
    assert re.search(rf"  author: +{editor_role.name} at ", shown.stdout), shown.stdout
    assert re.search(rf"     author: {editor_role.name} at ", shown.stdout), shown.stdout
    # "Run now" from pgAdmin, by the superuser, changes no authorship.
    with pgadmin_session(pgadmin, testdb.dsn) as session:
        session.job_run_now(job)
    with superuser(testdb) as admin:
        assert author_of(admin, "j", job) == editor_role.name
        agent = AgentProcess(
            testdb.dsn,
            AUTHOR_MODE,
            env={"PGPASSFILE": str(pgpass(tmp_path, pg_cluster.port, editor_role))},
        )
        try:
            wait_job_finished(admin, job)
        finally:
            agent.stop()
        assert [r[1:3] for r in step_logs(admin, job)] == [("s", 1)]
    # The superuser's edit of the code in pgAdmin's step dialog makes it the author.
    with pgadmin_session(pgadmin, testdb.dsn) as session:
        session.step_update(job, jstid, {"jstid": jstid, "jstcode": "SELECT 2;"})
    with superuser(testdb) as admin:
        assert author_of(admin, "s", jstid) == "postgres"
        assert author_of(admin, "j", job) == editor_role.name


def test_add_extras_refuses_a_schema_pyagent_made_by_someone_else(db, conn, roles):
    """Whoever owns schema pyagent could replace the records: a schema of that name made
    by another role (not a superuser) is not used."""
    mallory = roles.login("mallory")
    conn.execute(
        sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
            sql.Identifier(db.name), sql.Identifier(mallory.name)
        )
    )
    with mallory.connect() as own:
        own.execute("CREATE SCHEMA pyagent")
    proc = schema_cli("add-extras", db.dsn)
    assert proc.returncode == 1
    assert f"schema pyagent exists and is owned by role {mallory.name}, not by postgres" in (
        proc.stderr
    )
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert conn.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pyagent_authorship%'"
    ).fetchone() == (0,)


def test_a_non_superuser_agent_needs_to_read_the_records(authored, conn, roles, pg_cluster):
    from tests.integration.test_schema_check import agent_grants_from_docs

    runner = roles.login("runner")
    for statement in agent_grants_from_docs(runner.name):
        conn.execute(statement)
    conn.execute("REVOKE SELECT ON pyagent.authorship FROM PUBLIC")
    job = make_job(conn, "by the owner", [{"jstcode": "SELECT 1"}], run_now=True)
    agent = AgentProcess(
        pg_cluster.dsn(authored.name, user=runner.name),
        [*AUTHOR_MODE, "-r", "10"],
        env={"PGPASSWORD": runner.password},
        check_dsn=authored.dsn,
    )
    try:
        wait_until(lambda: "cannot read pyagent.authorship" in agent.log_text())
        assert conn.execute(
            "SELECT count(*) FROM pgagent.pga_joblog WHERE jlgjobid = %s", (job,)
        ).fetchone() == (0,)
        conn.execute("GRANT SELECT ON pyagent.authorship TO PUBLIC")
        # A superuser's step runs with the agent's (lesser) rights, as today.
        wait_job_finished(conn, job, timeout=40)
    finally:
        agent.stop()
    assert step_logs(conn, job)[0][1:3] == ("s", 1)
    assert runner.password not in agent.log_text()
