"""Every wrong set-up of a first run gets one line with the cause and the fix, never a
traceback (docs/troubleshooting.md: one test here per row of its table). Real PostgreSQL,
real agent subprocesses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from pyagent import schema
from pyagent.schema.privileges import MissingPrivilege, grant_statements, required_agent_privileges
from tests.agentproc import AgentProcess, make_job, wait_job_finished, wait_until
from tests.reliability.proxy import TcpProxy, free_loopback_port

ROOT = Path(__file__).resolve().parents[2]
# A pgAgent-shaped log line: `Tue Dec 1 14:03:05 2026 WARNING: ...`.
LOG_LINE = re.compile(r"^\w{3} \w{3} {1,2}\d{1,2} \d\d:\d\d:\d\d \d{4} (DEBUG|WARNING|ERROR): ")


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PG", "PYAGENT", "POSTGRES")) and k != "PYTHONPATH"
    }
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyagent", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(**env),
        cwd=ROOT,
    )


def agent(dsn: str, *args: str) -> AgentProcess:
    """An agent at -l 0 (pgAgent's default) unless args say otherwise."""
    return AgentProcess(dsn, ["-t", "1", "-r", "10", "-l", "0", *args], env=clean_env())


def wait_log(proc: AgentProcess, pattern: str, timeout: float = 30.0) -> re.Match[str]:
    """Wait for a log line matching the regular expression; the agent must stay up."""
    regex = re.compile(pattern, re.MULTILINE)

    def found() -> re.Match[str] | None:
        assert proc.proc.poll() is None, f"agent exited {proc.proc.returncode}:\n{proc.log_text()}"
        return regex.search(proc.log_text())

    return wait_until(found, timeout, what=f"log line /{pattern}/")  # type: ignore[no-any-return]


RETRY = re.compile(r"; retrying in (\d+\.\d) s$")


def without_retry(line: str) -> str:
    """The line without its `; retrying in <s> s` end (the delay has jitter)."""
    match = RETRY.search(line)
    assert match, f"no retry delay at the end of {line!r}"
    return line[: match.start()]


def assert_clean_log(text: str) -> None:
    """No traceback; every physical line is one pgAgent-shaped event (no continuation)."""
    assert "Traceback" not in text, text
    for line in text.splitlines():
        assert LOG_LINE.match(line), f"not a log line: {line!r}\n{text}"


@pytest.fixture
def roles(db) -> Iterator[Callable[..., str]]:
    """roles(tag, password=None): a LOGIN role unique to this test, dropped at the end."""
    made: list[str] = []

    def make(tag: str, password: str | None = None) -> str:
        name = f"{tag}_{db.name}"
        with db.connect() as c:
            c.execute(f"CREATE ROLE {name} LOGIN" + (f" PASSWORD '{password}'" if password else ""))
        made.append(name)
        return name

    yield make
    AgentProcess.cleanup_all()  # their sessions first
    with db.connect() as c:
        for name in made:
            c.execute(f"DROP OWNED BY {name}")
    with psycopg.connect(db.cluster.dsn("postgres"), autocommit=True) as c:
        for name in made:
            c.execute(f"DROP ROLE IF EXISTS {name}")


def grant(conn: psycopg.Connection, role: str, privileges) -> None:
    for statement in grant_statements(privileges, role):
        conn.execute(statement)


# ---- rows: the command line ----------------------------------------------------------------


def test_no_connect_string_prints_pgagents_usage_and_exits_2():
    # Even with PG* variables and PYAGENT_CONNINFO set: they are for `pyagent run` only.
    proc = cli("-f", "-l", "1", PGHOST="127.0.0.1", PYAGENT_CONNINFO="dbname=x")
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert lines[0] == (
        "pyagent: error: a connect string is required"
        " (`pyagent run` reads it from PYAGENT_CONNINFO or the PG* variables instead)"
    )
    assert lines[1:3] == ["Usage:", "pyagent [options] <connect-string>"]
    assert any(line.startswith("-t <poll time interval") for line in lines)
    assert proc.stdout == ""
    bare = cli(PGHOST="127.0.0.1")  # no argument at all
    assert bare.returncode == 2 and bare.stderr == proc.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["-t", "0"],
            "pyagent: error: Invalid value for '-t' / '--poll': 0 is not in the range x>=1.",
        ),
        (
            ["-l", "5"],
            "pyagent: error: Invalid value for '-l' / '--log-level': 5 is not in the range 0<=x<=2.",
        ),
        (
            ["-r", "5"],
            "pyagent: error: Invalid value for '-r' / '--retry': 5 is not in the range x>=10.",
        ),
        (["--bogus"], "pyagent: error: No such option '--bogus'."),
    ],
    ids=["-t 0", "-l 5", "-r 5", "--bogus"],
)
def test_bad_option_values_exit_2_with_one_line(args, expected):
    proc = cli(*args, "host=127.0.0.1 dbname=postgres")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [expected]


def test_invalid_connect_string_exits_2_with_pgagents_message():
    proc = cli("-f", "host=127.0.0.1 bogus=1")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        'pyagent: error: Primary connection string is not valid! invalid connection option "bogus"'
    ]


def test_mistyped_command_gets_a_suggestion():
    proc = cli("dmeo")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "pyagent: error: Unknown command 'dmeo'. Did you mean 'demo'?"
    ]
    other = cli("frobnicate")
    assert other.returncode == 2
    assert other.stderr.startswith(
        "pyagent: error: Unknown command 'frobnicate', and not a connect"
    )


def test_help_shows_the_agent_options_first():
    proc = cli("--help")
    assert proc.returncode == 0
    head = "\n".join(proc.stdout.splitlines()[:12])
    for option in ("-f ", "-t N", "-r N", "-s FILE", "-l 0|1|2", "pyagent run --help"):
        assert option in head, head


# ---- rows: the database ---------------------------------------------------------------------


def test_server_down_is_retried_with_the_reason_and_connected_again_is_said(db):
    with TcpProxy("127.0.0.1", db.cluster.port) as proxy:
        proxy.cut(new="refuse")
        proc = agent(db.cluster.dsn(db.name, **proxy.dsn_params()), "-l", "1")
        line = wait_log(
            proc, r"^.* WARNING: Couldn't create the primary connection \[Attempt #2\]: .*$"
        )
        assert without_retry(line.group(0)).endswith(
            "Connection refused; fix: start PostgreSQL, or fix host= and port= in the connect"
            " string"
        ), line.group(0)
        proxy.restore()
        wait_log(
            proc,
            r"WARNING: Connected to the database after \d+ failed attempt\(s\); agent registered"
            r" as pid \d+$",
        )
        proc.stop()
    text = proc.log_text()
    assert_clean_log(text)
    # One event, one line: psycopg_pool's own records only at -l 2.
    assert "psycopg" not in text, text


def test_wrong_password_names_the_cause_at_level_0_and_masks_it(db, roles):
    role = roles("pw", password="Right-Secret-1")
    proc = agent(db.cluster.dsn(db.name, user=role, password="Wrong-Secret-2"))
    line = wait_log(proc, r"^.*\[Attempt #1\]: .*$").group(0)
    assert without_retry(line).endswith(
        f'password authentication failed for user "{role}"; fix: check the password of role'
        f" {role} (in the connect string, PGPASSWORD or ~/.pgpass); if the role does not exist"
        " yet, create it (README, Quick start)"
    ), line
    wait_log(proc, r"\[Attempt #2\]")
    proc.stop()
    text = proc.log_text()
    assert "Wrong-Secret-2" not in text and "Right-Secret-1" not in text
    assert_clean_log(text)


def test_no_role_names_the_role_and_how_to_create_it(db):
    # Over the Unix socket (trust) the server says so; over TCP with password authentication
    # it answers "password authentication failed" (previous row) and the fix says to
    # create the role.
    proc = agent(
        f"host={db.cluster.socketdir} port={db.cluster.port} dbname={db.name} user=nobody_here"
    )
    line = wait_log(proc, r"^.*\[Attempt #1\]: .*$").group(0)
    assert (
        'role "nobody_here" does not exist; fix: create the role: CREATE ROLE nobody_here' in line
    )
    assert without_retry(line).endswith(
        "then grant it the agent's privileges (docs/schema.md#privileges), or fix user= in the"
        " connect string"
    ), line
    proc.stop()
    assert_clean_log(proc.log_text())


def test_wrong_database_name_names_the_database(db):
    proc = agent(db.cluster.dsn("no_such_db"))
    line = wait_log(proc, r"^.*\[Attempt #1\]: .*$").group(0)
    assert without_retry(line).endswith(
        'database "no_such_db" does not exist; fix: fix dbname= in the connect string: the'
        " database that holds the pgagent schema (pgAdmin's maintenance database, usually"
        " postgres)"
    ), line
    proc.stop()
    assert_clean_log(proc.log_text())


def test_no_schema_says_how_to_install_it_and_starts_once_installed(empty_db):
    proc = agent(empty_db.dsn)
    wait_log(
        proc,
        r"ERROR: Could not find the table 'pgagent.pga_job'\. Have you run pgagent\.sql on this"
        r" database\? Create the schema with CREATE EXTENSION pgagent \(Debian/Ubuntu package"
        r" pgagent\) or `pyagent schema install '<connect-string>'`, in the database the agent"
        r" connects to; pyagent checks again with a growing delay \(up to -r seconds\)$",
    )
    schema.install(empty_db.dsn)
    wait_log(proc, r"WARNING: Connected to the database after \d+ failed attempt\(s\)")
    proc.stop()
    assert_clean_log(proc.log_text())


def test_old_schema_version_keeps_pgagents_message_and_adds_the_fix(db, conn):
    conn.execute(
        "CREATE OR REPLACE FUNCTION pgagent.pgagent_schema_version() RETURNS int2"
        " LANGUAGE sql AS 'SELECT 3::int2'"
    )
    proc = agent(db.dsn)
    wait_log(
        proc,
        r"ERROR: Unsupported schema version: 3\. Version 4 is required - please run ALTER"
        r' EXTENSION "pgagent" UPDATE;\. For a schema made without the extension, run'
        r" `pyagent schema check '<connect-string>'` as the agent's role; pyagent checks again",
    )
    proc.stop()
    assert_clean_log(proc.log_text())


def test_missing_version_function_keeps_pgagents_message(db, conn):
    conn.execute("DROP FUNCTION pgagent.pgagent_schema_version()")
    proc = agent(db.dsn)
    wait_log(
        proc,
        r"ERROR: Couldn't find the function 'pgagent_schema_version' - please run ALTER"
        r' EXTENSION "pgagent" UPDATE;\. For a schema made without the extension, run'
        r" `pyagent schema check",
    )
    proc.stop()
    assert_clean_log(proc.log_text())


def test_role_without_any_grant_gets_the_grant_statements(db, roles):
    role = roles("bare", password="pw-bare")
    proc = agent(db.cluster.dsn(db.name, user=role, password="pw-bare"))
    line = wait_log(proc, r"^.*\[Attempt #1\]: .*$").group(0)
    expected = grant_statements(
        [p for p in required_agent_privileges() if p.kind != "FUNCTION"], role
    )
    assert (
        f"permission denied: role {role} lacks privileges the agent needs: USAGE on SCHEMA"
        " pgagent, SELECT on pgagent.pga_jobagent, INSERT on pgagent.pga_jobagent and 15 more;"
        " fix: as the schema's owner (or a superuser) run: " + " ".join(expected)
    ) in line, line
    assert proc.proc.poll() is None  # retrying, like for a missing schema
    proc.stop()
    assert_clean_log(proc.log_text())


def test_role_without_each_privilege_in_turn_names_it_and_starts_once_granted(db, conn, roles):
    """One role per privilege the agent needs, lacking only that one; every agent names
    its missing privilege with the GRANT, keeps retrying, and registers once granted."""
    required = required_agent_privileges()
    for function in (p for p in required if p.kind == "FUNCTION"):
        conn.execute(f"REVOKE EXECUTE ON FUNCTION pgagent.{function.name} FROM PUBLIC")
    started: list[tuple[MissingPrivilege, str, AgentProcess]] = []
    for i, missing in enumerate(required):
        role = roles(f"lacks{i}", password="pw")
        grant(conn, role, [p for p in required if p != missing])
        started.append((missing, role, agent(db.cluster.dsn(db.name, user=role, password="pw"))))
    for missing, role, proc in started:
        (statement,) = grant_statements([missing], role)
        line = wait_log(proc, r"^.*\[Attempt #1\]: .*$").group(0)
        assert (
            f"permission denied: role {role} lacks privileges the agent needs: {missing}; fix:"
            f" as the schema's owner (or a superuser) run: {statement}"
        ) in line, (missing, line)
    for missing, role, _proc in started:
        conn.execute(grant_statements([missing], role)[0])
    wait_until(
        lambda: (
            conn.execute("SELECT count(*) FROM pgagent.pga_jobagent").fetchone()[0] == len(started)
        ),
        timeout=60,
        what="every agent registered after its grant",
    )
    for _missing, _role, proc in started:
        wait_log(proc, r"WARNING: Connected to the database after \d+ failed attempt\(s\)")
        proc.stop()
        assert_clean_log(proc.log_text())


# ---- rows: jobs ---------------------------------------------------------------------------


def test_failed_job_gives_one_warning_line_at_level_1(db, conn):
    job = make_job(
        conn,
        "nightly load",
        [{"jstname": "a ok", "jstcode": "SELECT 1"}, {"jstname": "b bad", "jstcode": "SELECT 1/0"}],
        run_now=True,
    )
    proc = agent(db.dsn, "-l", "1")
    ((jlgid, status, _duration),) = wait_job_finished(conn, job)
    assert status == "f"
    step_id = conn.execute(
        "SELECT jstid FROM pgagent.pga_jobstep WHERE jstjobid = %s AND jstname = 'b bad'", (job,)
    ).fetchone()[0]
    wait_log(
        proc,
        rf'WARNING: Job {job} \("nightly load"\) failed \(run {jlgid}, status f\): step {step_id}'
        r' "b bad" ended f with result -1: ERROR: division by zero$',
    )
    proc.stop()
    assert_clean_log(proc.log_text())


# ---- `pyagent schema check` ---------------------------------------------------------------------


def test_schema_check_exit_statuses_and_grants(db, roles):
    ok = cli("schema", "check", db.dsn)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    role = roles("chk", password="pw")
    broken = cli("schema", "check", db.cluster.dsn(db.name, user=role, password="pw"))
    assert broken.returncode == 1
    assert "To fix the privileges, run as the schema's owner (or a superuser):" in broken.stdout
    assert f"  GRANT USAGE ON SCHEMA pgagent TO {role};" in broken.stdout.splitlines()
    port = free_loopback_port()
    down = cli("schema", "check", f"host=127.0.0.1 port={port} dbname=postgres")
    assert down.returncode == 3
    assert down.stderr.splitlines() == [
        f'cannot check: connection to server at "127.0.0.1", port {port} failed:'
        " Connection refused; fix: start PostgreSQL, or fix host= and port= in the connect string"
    ]
