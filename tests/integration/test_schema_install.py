"""schema.install: creates a schema that passes schema.check, refuses (changing nothing)
where a pgagent schema or the extension exists, and is atomic when it fails half-way.
The script `pyagent schema sql` prints loads with psql just as well."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pyagent import resources, schema

# Fails the install half-way: after the first seven tables exist, creating pga_jobsteplog
# raises. Installed by the superuser as an event trigger (ddl_command_end).
FAIL_ON_JOBSTEPLOG = """
CREATE FUNCTION public.refuse_jobsteplog() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands()
                WHERE object_identity = 'pgagent.pga_jobsteplog') THEN
        RAISE EXCEPTION 'planted failure: pga_jobsteplog refused';
    END IF;
END
$$;
CREATE EVENT TRIGGER refuse_jobsteplog ON ddl_command_end
    EXECUTE FUNCTION public.refuse_jobsteplog();
"""
REMOVE_FAILURE = """
DROP EVENT TRIGGER refuse_jobsteplog;
DROP FUNCTION public.refuse_jobsteplog();
"""


def fingerprint(testdb) -> dict[str, object]:
    """Everything install could create or change, outside the system schemas."""
    with testdb.connect() as conn:
        relations = conn.execute(
            "SELECT n.nspname, c.relname, c.relkind FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
            " ORDER BY 1, 2"
        ).fetchall()
        functions = conn.execute(
            "SELECT n.nspname, p.oid::regprocedure::text FROM pg_proc p"
            " JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
        ).fetchall()
        namespaces = conn.execute(
            "SELECT nspname, obj_description(oid, 'pg_namespace') FROM pg_namespace ORDER BY 1"
        ).fetchall()
        extensions = conn.execute(
            "SELECT extname, extversion FROM pg_extension ORDER BY 1"
        ).fetchall()
        triggers = conn.execute(
            "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1"
        ).fetchall()
        data: object = None
        if any(r[0] == "pgagent" and r[1] == "pga_job" for r in relations):
            data = conn.execute(
                "SELECT (SELECT array_agg(jobname ORDER BY jobid) FROM pgagent.pga_job),"
                "       (SELECT array_agg(jclname ORDER BY jclid) FROM pgagent.pga_jobclass)"
            ).fetchone()
    return {
        "relations": relations,
        "functions": functions,
        "namespaces": namespaces,
        "extensions": extensions,
        "triggers": triggers,
        "data": data,
    }


def assert_nothing_installed(testdb) -> None:
    fp = fingerprint(testdb)
    assert not [r for r in fp["relations"] if r[0] == "pgagent" or r[1].startswith("pga_")]
    assert not [f for f in fp["functions"] if f[0] == "pgagent"]
    assert "pgagent" not in [n[0] for n in fp["namespaces"]]


def psql_binary(cluster) -> str:
    candidate = Path(cluster.bindir) / "psql"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("psql")
    if not found:
        pytest.skip("psql not found")
    return found


def run_psql(cluster, dsn: str, script: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [psql_binary(cluster), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# --- success ---------------------------------------------------------------------------


def test_install_into_empty_database_then_check_passes(empty_db):
    result = schema.install(empty_db.dsn)
    assert result == schema.InstallResult(with_notify=False)
    report = schema.check(empty_db.dsn)
    assert report.ok, report.render()
    assert report.flavour == "pyagent"
    with empty_db.connect() as conn:
        assert conn.execute(
            "SELECT array_agg(jclid ORDER BY jclid) FROM pgagent.pga_jobclass"
        ).fetchone() == ([1, 2, 3, 4, 5],)


def test_install_on_open_connection(empty_db):
    with empty_db.connect() as conn:
        schema.install_on(conn)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert schema.check_on(conn).ok


def test_install_on_refuses_a_connection_in_a_transaction(empty_db):
    with (
        psycopg.connect(empty_db.dsn) as conn,  # not autocommit
        pytest.raises(ValueError, match="autocommit"),
    ):
        schema.install_on(conn)
    assert_nothing_installed(empty_db)


def test_install_script_is_self_contained_and_transactional():
    script = resources.install_script()
    statements = [line for line in script.splitlines() if line.strip()]
    assert statements[0] == "BEGIN;"
    assert statements[1] == "CREATE SCHEMA pgagent;"
    assert statements[-1] == "COMMIT;"
    assert script.count("COMMIT;") == 1
    assert "\\" not in "".join(line[:1] for line in script.splitlines()), "no psql meta-commands"


# --- refusal ---------------------------------------------------------------------------


def test_install_refuses_where_our_schema_exists(db):
    with db.connect() as conn:
        conn.execute("INSERT INTO pgagent.pga_job (jobjclid, jobname) VALUES (1, 'keep me')")
    before = fingerprint(db)
    with pytest.raises(schema.SchemaExists) as info:
        schema.install(db.dsn)
    assert str(info.value) == (
        "nothing was changed: a schema named pgagent already exists in this database"
    )
    assert fingerprint(db) == before


def test_install_refuses_where_the_extension_exists(ext_db):
    before = fingerprint(ext_db)
    with pytest.raises(schema.SchemaExists) as info:
        schema.install(ext_db.dsn)
    assert str(info.value) == (
        "nothing was changed: the pgagent extension (version 4.2) is installed in this database"
    )
    assert fingerprint(ext_db) == before


def test_install_refuses_on_an_empty_pgagent_schema(empty_db):
    with empty_db.connect() as conn:
        conn.execute("CREATE SCHEMA pgagent")
    before = fingerprint(empty_db)
    with pytest.raises(schema.SchemaExists, match="a schema named pgagent already exists"):
        schema.install(empty_db.dsn)
    assert fingerprint(empty_db) == before


# --- atomicity -------------------------------------------------------------------------


def test_install_is_atomic_when_a_statement_fails_half_way(empty_db):
    with empty_db.connect() as conn:
        conn.execute(FAIL_ON_JOBSTEPLOG)
    before = fingerprint(empty_db)
    with empty_db.connect() as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="planted failure"):
            schema.install_on(conn)
        # The session is usable again, and nothing of the script is left.
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert fingerprint(empty_db) == before
    assert_nothing_installed(empty_db)
    # Once the obstacle is gone, the same install goes through.
    with empty_db.connect() as conn:
        conn.execute(REMOVE_FAILURE)
    schema.install(empty_db.dsn)
    assert schema.check(empty_db.dsn).ok


def test_install_is_atomic_when_a_privilege_is_missing_half_way(empty_db):
    """A role that may create the schema and its tables but not PL/pgSQL functions (as on
    a locked-down server) fails at the first CREATE FUNCTION; the tables go too."""
    name = f"installer_{uuid.uuid4().hex[:10]}"
    password = uuid.uuid4().hex
    with empty_db.connect() as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(password)
            )
        )
        conn.execute(
            sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
                sql.Identifier(empty_db.name), sql.Identifier(name)
            )
        )
        conn.execute("REVOKE USAGE ON LANGUAGE plpgsql FROM PUBLIC")
    try:
        before = fingerprint(empty_db)
        dsn = empty_db.cluster.dsn(empty_db.name, user=name, password=password)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="language plpgsql"):
            schema.install(dsn)
        assert fingerprint(empty_db) == before
        assert_nothing_installed(empty_db)
        with empty_db.connect() as conn:
            conn.execute(
                sql.SQL("GRANT USAGE ON LANGUAGE plpgsql TO {}").format(sql.Identifier(name))
            )
        schema.install(dsn)
        report = schema.check(dsn)
        assert report.ok, report.render()  # the owner has every privilege
    finally:
        with empty_db.connect() as conn:
            conn.execute("DROP SCHEMA IF EXISTS pgagent CASCADE")
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


# --- `pyagent schema sql | psql` -------------------------------------------------------


def test_printed_script_loads_with_psql(empty_db, tmp_path):
    script = tmp_path / "pgagent.sql"
    script.write_text(resources.install_script(), encoding="utf-8")
    proc = run_psql(empty_db.cluster, empty_db.dsn, script)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    report = schema.check(empty_db.dsn)
    assert report.ok, report.render()
    assert report.flavour == "pyagent"


def test_printed_script_with_psql_is_atomic_and_refuses_a_second_time(empty_db, tmp_path):
    script = tmp_path / "pgagent.sql"
    script.write_text(resources.install_script(), encoding="utf-8")
    with empty_db.connect() as conn:
        conn.execute(FAIL_ON_JOBSTEPLOG)
    before = fingerprint(empty_db)
    proc = run_psql(empty_db.cluster, empty_db.dsn, script)
    assert proc.returncode == 3, proc.stderr  # psql: an error with ON_ERROR_STOP
    assert "planted failure" in proc.stderr
    assert fingerprint(empty_db) == before
    assert_nothing_installed(empty_db)

    with empty_db.connect() as conn:
        conn.execute(REMOVE_FAILURE)
    assert run_psql(empty_db.cluster, empty_db.dsn, script).returncode == 0
    before = fingerprint(empty_db)
    again = run_psql(empty_db.cluster, empty_db.dsn, script)
    assert again.returncode == 3
    assert 'schema "pgagent" already exists' in again.stderr
    assert fingerprint(empty_db) == before
