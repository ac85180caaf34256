"""The schema commands as a DBA runs them."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
from psycopg.conninfo import conninfo_to_dict


def pyagent(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyagent", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any database setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PYAGENT_"))}
    return env | extra


def pg_variables(dsn: str) -> dict[str, str]:
    """libpq's PG* variables naming the database of a keyword/value conninfo."""
    names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "dbname": "PGDATABASE"}
    return {names[k]: v for k, v in conninfo_to_dict(dsn).items() if k in names}


def test_install_check_and_add_notify(empty_db):
    assert pyagent("schema", "check", empty_db.dsn).returncode == 1
    first = pyagent("schema", "install", empty_db.dsn)
    assert first.returncode == 0 and "installed" in first.stdout
    again = pyagent("schema", "install", empty_db.dsn)
    assert again.returncode == 1 and "nothing was changed" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    ok = pyagent("schema", "check", empty_db.dsn)
    assert ok.returncode == 0 and "OK" in ok.stdout
    assert pyagent("schema", "add-extras", empty_db.dsn).stdout.splitlines() == [
        "pyagent extras added",
        "authorship is recorded from now on (schema pyagent; see docs/security.md)",
    ]
    again = pyagent("schema", "add-notify", empty_db.dsn)  # the earlier name still works
    assert again.stdout.splitlines() == [
        "pyagent extras already present (refreshed)",
        "authorship records already present (refreshed)",
    ]
    with empty_db.connect() as c:
        indexes = {
            r[0] for r in c.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'pga_job'")
        }
    assert "pyagent_pga_job_due" in indexes


def test_check_reports_a_broken_schema(db, conn):
    conn.execute("DROP TRIGGER pga_job_trigger ON pgagent.pga_job")
    result = pyagent("schema", "check", db.dsn)
    assert result.returncode == 1
    assert "pga_job_trigger" in result.stdout


def test_schema_sql_is_a_complete_script(empty_db):
    script = pyagent("schema", "sql", "--with-notify").stdout
    assert script.startswith("BEGIN;") and script.rstrip().endswith("COMMIT;")
    load = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", empty_db.dsn],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert load.returncode == 0, load.stderr
    assert pyagent("schema", "check", empty_db.dsn).returncode == 0


def test_install_into_an_unreachable_server_fails_cleanly():
    result = pyagent("schema", "install", "host=127.0.0.1 port=1 dbname=x connect_timeout=2")
    assert result.returncode == 1
    assert "nothing was changed" in result.stderr


def test_schema_commands_take_the_database_like_pyagent_jobs(empty_db):
    """-d/--db, PYAGENT_CONNINFO and the PG* variables, as `pyagent jobs`."""
    from_pg = clean_env(**pg_variables(empty_db.dsn))
    assert pyagent("jobs", "list", env=from_pg).returncode != 0  # no schema yet
    first = pyagent("schema", "install", env=from_pg)
    assert first.returncode == 0 and "installed" in first.stdout, first.stderr
    assert pyagent("jobs", "list", env=from_pg).returncode == 0
    assert pyagent("schema", "check", "-d", empty_db.dsn, env=clean_env()).returncode == 0
    by_var = pyagent("schema", "add-extras", env=clean_env(PYAGENT_CONNINFO=empty_db.dsn))
    assert by_var.returncode == 0 and "pyagent extras added" in by_var.stdout
    # The connection string as first argument wins over PYAGENT_CONNINFO.
    elsewhere = clean_env(PYAGENT_CONNINFO="host=127.0.0.1 port=1 dbname=x connect_timeout=2")
    assert pyagent("schema", "check", empty_db.dsn, env=elsewhere).returncode == 0


def test_grant_editor_takes_roles_after_the_database_in_any_form(empty_db):
    assert pyagent("schema", "install", empty_db.dsn).returncode == 0
    with psycopg.connect(empty_db.dsn, autocommit=True) as conn:
        for role in ("ed_one", "ed_two", "ed_three"):
            conn.execute(f"CREATE ROLE {role}")
    assert pyagent("schema", "grant-editor", "-d", empty_db.dsn, "ed_one").returncode == 0
    from_pg = clean_env(**pg_variables(empty_db.dsn))
    assert pyagent("schema", "grant-editor", "ed_two", env=from_pg).returncode == 0
    assert pyagent("schema", "grant-editor", empty_db.dsn, "ed_three").returncode == 0
    with psycopg.connect(empty_db.dsn) as conn:
        granted = conn.execute(
            "SELECT grantee FROM information_schema.role_table_grants"
            " WHERE table_schema = 'pgagent' AND table_name = 'pga_job'"
            "   AND privilege_type = 'INSERT' AND grantee LIKE 'ed_%' ORDER BY 1"
        ).fetchall()
    assert granted == [("ed_one",), ("ed_three",), ("ed_two",)]


def test_schema_commands_without_any_database_say_how_to_give_one():
    for args in (("install",), ("check",), ("add-extras",), ("grant-editor", "alice")):
        result = pyagent("schema", *args, env=clean_env())
        assert result.returncode == 2
        assert "which database? Give -d/--db CONNINFO" in result.stderr, args
    twice = pyagent("schema", "check", "dbname=a", "-d", "dbname=b", env=clean_env())
    assert twice.returncode == 2 and "give the database once" in twice.stderr
