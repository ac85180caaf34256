"""schema.check: passes on good schemas (ours and the extension's), and names precisely
what is wrong with broken ones, including a role that lacks privileges."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pyagent import schema

NEXT_SCHEDULE = (
    "pgagent.pga_next_schedule(int4, timestamptz, timestamptz, _bool, _bool, _bool, _bool, _bool)"
)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "schema.md"


def messages(report: schema.CheckReport) -> list[str]:
    return [p.message for p in report.problems]


def codes(report: schema.CheckReport) -> list[str]:
    return [p.code for p in report.problems]


def run(testdb, *statements: str) -> None:
    with testdb.connect() as conn:
        for statement in statements:
            conn.execute(statement)


def drop_function(testdb, signature: str) -> None:
    """DROP FUNCTION, detaching it from the extension first where there is one."""
    with testdb.connect() as conn:
        if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pgagent'").fetchone():
            conn.execute(f"ALTER EXTENSION pgagent DROP FUNCTION {signature}")
        conn.execute(f"DROP FUNCTION {signature}")


@pytest.fixture(params=["db", "ext_db"])
def anydb(request):
    """Our schema and the real extension, in turn."""
    return request.getfixturevalue(request.param)


# --- good schemas ----------------------------------------------------------------------


def test_pyagent_schema_passes(db):
    report = schema.check(db.dsn)
    assert report.ok, report.render()
    assert report.problems == ()
    assert report.flavour == "pyagent"
    assert report.database == db.name
    assert report.role == "postgres"
    assert "OK" in report.render()


def test_extension_passes(ext_db):
    report = schema.check(ext_db.dsn)
    assert report.ok, report.render()
    assert report.flavour == "extension 4.2"


def test_plain_script_flavour(db):
    # pgAgent's own pgagent.sql leaves pga_exception uncommented and puts the exception
    # text on pga_schedule; such a schema is usable, only its flavour differs.
    run(
        db,
        "COMMENT ON TABLE pgagent.pga_schedule IS 'Job schedule exceptions'",
        "COMMENT ON TABLE pgagent.pga_exception IS NULL",
    )
    report = schema.check(db.dsn)
    assert report.ok, report.render()
    assert report.flavour == "plain script"


def test_check_on_leaves_the_connection_as_found(db):
    with psycopg.connect(db.dsn) as conn:  # not autocommit
        conn.execute("SELECT 1")  # a transaction is open
        report = schema.check_on(conn)
        assert report.ok
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        conn.execute("SELECT 1")  # still usable
    with db.connect() as conn:
        report = schema.check_on(conn)
        assert report.ok
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_report_is_frozen(db):
    report = schema.check(db.dsn)
    with pytest.raises(AttributeError):
        report.flavour = "x"  # type: ignore[misc]


# --- absent and broken schemas ---------------------------------------------------------


def test_absent_schema(empty_db):
    report = schema.check(empty_db.dsn)
    assert not report.ok
    assert report.flavour == "absent"
    assert codes(report) == ["schema_missing"]
    assert messages(report) == [
        f"schema pgagent does not exist in database {empty_db.name}"
        " (install it with `pyagent schema install` or CREATE EXTENSION pgagent)"
    ]
    assert "1 problem:" in report.render()


@pytest.mark.parametrize(
    ("trigger", "table"),
    [
        ("pga_job_trigger", "pga_job"),
        ("pga_schedule_trigger", "pga_schedule"),
        ("pga_exception_trigger", "pga_exception"),
    ],
)
def test_dropped_trigger(anydb, trigger, table):
    run(anydb, f"DROP TRIGGER {trigger} ON pgagent.{table}")
    report = schema.check(anydb.dsn)
    assert messages(report) == [f"trigger {trigger} on pgagent.{table} is missing"]
    assert codes(report) == ["trigger_missing"]


def test_disabled_and_replica_only_triggers(db):
    run(
        db,
        "ALTER TABLE pgagent.pga_job DISABLE TRIGGER pga_job_trigger",
        "ALTER TABLE pgagent.pga_exception ENABLE REPLICA TRIGGER pga_exception_trigger",
    )
    assert messages(schema.check(db.dsn)) == [
        "trigger pga_job_trigger on pgagent.pga_job is disabled",
        "trigger pga_exception_trigger on pgagent.pga_exception fires only in replica mode",
    ]


def test_trigger_with_wrong_timing_events_and_level(db):
    run(
        db,
        "DROP TRIGGER pga_job_trigger ON pgagent.pga_job",
        "CREATE TRIGGER pga_job_trigger AFTER INSERT OR UPDATE ON pgagent.pga_job"
        " FOR EACH STATEMENT EXECUTE FUNCTION pgagent.pga_job_trigger()",
        "DROP TRIGGER pga_schedule_trigger ON pgagent.pga_schedule",
        "CREATE TRIGGER pga_schedule_trigger AFTER INSERT OR UPDATE OF jscenabled"
        " ON pgagent.pga_schedule FOR EACH ROW WHEN (true)"
        " EXECUTE FUNCTION pgagent.pga_schedule_trigger()",
    )
    assert messages(schema.check(db.dsn)) == [
        "trigger pga_job_trigger on pgagent.pga_job is AFTER INSERT OR UPDATE FOR EACH"
        " STATEMENT; expected BEFORE UPDATE FOR EACH ROW",
        "trigger pga_schedule_trigger on pgagent.pga_schedule is AFTER INSERT OR UPDATE FOR"
        " EACH ROW; expected AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW",
        "trigger pga_schedule_trigger on pgagent.pga_schedule fires only on UPDATE OF some"
        " columns; expected any UPDATE",
        "trigger pga_schedule_trigger on pgagent.pga_schedule has a WHEN condition; expected none",
    ]


@pytest.mark.parametrize(
    ("table", "column"),
    [("pga_jobstep", "jscnextrun"), ("pga_jobstep", "jstconnstr"), ("pga_job", "jobnextrun")],
)
def test_missing_column(anydb, table, column):
    run(anydb, f"ALTER TABLE pgagent.{table} DROP COLUMN {column} CASCADE")
    report = schema.check(anydb.dsn)
    assert messages(report) == [f"column pgagent.{table}.{column} is missing"]
    assert codes(report) == ["column_missing"]


def test_incompatible_column_type_and_missing_default(db):
    run(
        db,
        "ALTER TABLE pgagent.pga_job ALTER COLUMN jobnextrun TYPE timestamp",
        "ALTER TABLE pgagent.pga_schedule ALTER COLUMN jscminutes TYPE int4[]"
        " USING '{}'::int4[], ALTER COLUMN jscminutes DROP DEFAULT",
        "ALTER TABLE pgagent.pga_joblog ALTER COLUMN jlgstart DROP DEFAULT",
        "ALTER TABLE pgagent.pga_job ALTER COLUMN jobid DROP DEFAULT",
        # Compatible variations are accepted.
        "ALTER TABLE pgagent.pga_jobstep ALTER COLUMN jstdbname TYPE text",
        "ALTER TABLE pgagent.pga_jobagent ALTER COLUMN jagpid TYPE int8",
    )
    assert messages(schema.check(db.dsn)) == [
        "column pgagent.pga_job.jobid has no default; pgAdmin inserts rows without a value for it",
        "column pgagent.pga_job.jobnextrun has type timestamp without time zone;"
        " expected timestamptz",
        "column pgagent.pga_schedule.jscminutes has type integer[]; expected bool[]",
        "column pgagent.pga_joblog.jlgstart has no default; the agent inserts rows without"
        " a value for it",
    ]


def test_missing_table_and_view_instead_of_table(db):
    run(
        db,
        "DROP TABLE pgagent.pga_jobagent CASCADE",
        "ALTER TABLE pgagent.pga_exception RENAME TO pga_exception_old",
        "CREATE VIEW pgagent.pga_exception AS SELECT * FROM pgagent.pga_exception_old",
    )
    report = schema.check(db.dsn)
    assert messages(report) == [
        "table pgagent.pga_jobagent is missing",
        "pgagent.pga_exception is a view, not a table",
    ]
    assert codes(report) == ["table_missing", "not_a_table"]


def test_missing_sequence(db):
    run(
        db,
        "ALTER SEQUENCE pgagent.pga_jobsteplog_jslid_seq RENAME TO pga_jobsteplog_seq",
    )
    assert messages(schema.check(db.dsn)) == [
        "sequence pgagent.pga_jobsteplog_jslid_seq is missing"
    ]


def test_old_schema_version_extension(ext_db):
    run(
        ext_db,
        "CREATE OR REPLACE FUNCTION pgagent.pgagent_schema_version() RETURNS int2"
        " LANGUAGE sql AS 'SELECT 3::int2'",
    )
    report = schema.check(ext_db.dsn)
    assert messages(report) == [
        "pgagent.pgagent_schema_version() returns 3; version 4 is required"
        " — run ALTER EXTENSION pgagent UPDATE"
    ]
    assert codes(report) == ["version_mismatch"]


def test_old_schema_version_plain(db):
    run(
        db,
        "CREATE OR REPLACE FUNCTION pgagent.pgagent_schema_version() RETURNS int2"
        " LANGUAGE sql AS 'SELECT 3::int2'",
    )
    assert messages(schema.check(db.dsn)) == [
        "pgagent.pgagent_schema_version() returns 3; version 4 is required — upgrade the"
        " schema to pgAgent 4 (from 3.4 only pgagent_schema_version() and"
        " pga_next_schedule() change)"
    ]


def test_version_function_missing(anydb):
    drop_function(anydb, "pgagent.pgagent_schema_version()")
    report = schema.check(anydb.dsn)
    assert messages(report) == [
        "function pgagent.pgagent_schema_version() is missing;"
        " the agent refuses to start without it"
    ]
    assert codes(report) == ["version_function_missing"]


def test_version_function_with_wrong_signature(db):
    run(
        db,
        "DROP FUNCTION pgagent.pgagent_schema_version()",
        "CREATE FUNCTION pgagent.pgagent_schema_version(int4) RETURNS int2"
        " LANGUAGE sql AS 'SELECT 4::int2'",
    )
    assert messages(schema.check(db.dsn)) == [
        "function pgagent.pgagent_schema_version() must take no arguments"
        " (found pgagent.pgagent_schema_version(integer))"
    ]
    run(
        db,
        "DROP FUNCTION pgagent.pgagent_schema_version(int4)",
        "CREATE FUNCTION pgagent.pgagent_schema_version() RETURNS int4 LANGUAGE sql AS 'SELECT 4'",
    )
    report = schema.check(db.dsn)
    assert messages(report) == [
        "function pgagent.pgagent_schema_version() returns integer; it must return smallint"
    ]
    assert codes(report) == ["version_function_signature"]


def test_version_function_failing_or_null(db):
    run(
        db,
        "CREATE OR REPLACE FUNCTION pgagent.pgagent_schema_version() RETURNS int2"
        " LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'broken on purpose'; END$$",
    )
    report = schema.check(db.dsn)
    assert messages(report) == ["SELECT pgagent.pgagent_schema_version() failed: broken on purpose"]
    assert codes(report) == ["version_unreadable"]
    run(
        db,
        "CREATE OR REPLACE FUNCTION pgagent.pgagent_schema_version() RETURNS int2"
        " LANGUAGE sql AS 'SELECT NULL::int2'",
    )
    assert messages(schema.check(db.dsn)) == ["pgagent.pgagent_schema_version() returns NULL"]


def test_missing_functions(anydb):
    drop_function(anydb, NEXT_SCHEDULE)
    drop_function(anydb, "pgagent.pga_is_leap_year(int2)")
    report = schema.check(anydb.dsn)
    assert messages(report) == [
        f"function {NEXT_SCHEDULE} is missing",
        "function pgagent.pga_is_leap_year(int2) is missing",
    ]
    assert codes(report) == ["function_missing", "function_missing"]


def test_function_with_wrong_arguments_or_result(db):
    run(
        db,
        f"DROP FUNCTION {NEXT_SCHEDULE}",
        "CREATE FUNCTION pgagent.pga_next_schedule(int4, timestamp, timestamp, bool[], bool[],"
        " bool[], bool[], bool[]) RETURNS timestamptz LANGUAGE sql AS 'SELECT now()'",
        "DROP FUNCTION pgagent.pga_is_leap_year(int2)",
        "CREATE FUNCTION pgagent.pga_is_leap_year(int2) RETURNS int4 LANGUAGE sql AS 'SELECT 1'",
    )
    assert messages(schema.check(db.dsn)) == [
        f"function {NEXT_SCHEDULE} is missing (found pgagent.pga_next_schedule(integer,"
        " timestamp without time zone, timestamp without time zone, boolean[], boolean[],"
        " boolean[], boolean[], boolean[]))",
        "function pgagent.pga_is_leap_year(int2) returns integer; it must return boolean",
    ]


def test_job_class_seed_rows(anydb):
    run(
        anydb,
        "DELETE FROM pgagent.pga_jobclass WHERE jclid = 1",
        "UPDATE pgagent.pga_jobclass SET jclname = 'Data Summarization' WHERE jclid = 4",
        "INSERT INTO pgagent.pga_jobclass (jclname) VALUES ('Extra rows are fine')",
    )
    report = schema.check(anydb.dsn)
    assert messages(report) == [
        "row 1 ('Routine Maintenance') of pgagent.pga_jobclass is missing",
        "row 4 of pgagent.pga_jobclass is named 'Data Summarization';"
        " expected 'Data Summarisation'",
    ]
    assert codes(report) == ["jobclass_missing", "jobclass_name"]


def test_every_problem_code_is_documented():
    text = DOCS.read_text(encoding="utf-8")
    for code in schema.PROBLEM_CODES:
        assert f"`{code}`" in text, f"problem code {code} is not described in docs/schema.md"


# --- privileges ------------------------------------------------------------------------

ALL_AGENT_PRIVILEGE_MESSAGES = [
    "lacks USAGE on schema pgagent",
    "lacks SELECT on pgagent.pga_jobagent",
    "lacks INSERT on pgagent.pga_jobagent",
    "lacks UPDATE on pgagent.pga_jobagent",
    "lacks DELETE on pgagent.pga_jobagent",
    "lacks SELECT on pgagent.pga_job",
    "lacks UPDATE on pgagent.pga_job",
    "lacks SELECT on pgagent.pga_jobstep",
    "lacks SELECT on pgagent.pga_schedule",
    "lacks SELECT on pgagent.pga_exception",
    "lacks SELECT on pgagent.pga_joblog",
    "lacks INSERT on pgagent.pga_joblog",
    "lacks UPDATE on pgagent.pga_joblog",
    "lacks SELECT on pgagent.pga_jobsteplog",
    "lacks INSERT on pgagent.pga_jobsteplog",
    "lacks UPDATE on pgagent.pga_jobsteplog",
    "lacks USAGE (or UPDATE) on sequence pgagent.pga_joblog_jlgid_seq",
    "lacks USAGE (or UPDATE) on sequence pgagent.pga_jobsteplog_jslid_seq",
]


def agent_grants_from_docs(role: str) -> list[str]:
    """The minimal agent GRANT script documented in docs/schema.md, for `role`."""
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(
        r"<!-- BEGIN agent grants -->\s*```sql\n(.*?)```\s*<!-- END agent grants -->",
        text,
        re.DOTALL,
    )
    assert match, "docs/schema.md lost its agent grants block"
    body = "\n".join(
        line for line in match.group(1).splitlines() if not line.lstrip().startswith("--")
    )
    statements = [s.strip() for s in body.split(";") if s.strip()]
    return [s.replace("pyagent_runner", role) for s in statements]


class Role:
    def __init__(self, testdb, name: str, password: str) -> None:
        self.testdb, self.name, self.password = testdb, name, password

    @property
    def dsn(self) -> str:
        return self.testdb.cluster.dsn(self.testdb.name, user=self.name, password=self.password)

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.dsn, autocommit=True)


def _make_role(testdb) -> Iterator[Role]:
    name = f"agent_{uuid.uuid4().hex[:10]}"
    password = uuid.uuid4().hex
    with testdb.connect() as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(password)
            )
        )
    try:
        yield Role(testdb, name, password)
    finally:
        with testdb.connect() as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.fixture
def role(db):
    """A login role with a password and no privileges on the pgagent schema (db)."""
    yield from _make_role(db)


@pytest.fixture
def any_role(anydb):
    """Same, in our schema and in the extension, in turn."""
    yield from _make_role(anydb)


def test_role_without_privileges(any_role):
    report = schema.check(any_role.dsn)
    assert report.role == any_role.name
    assert messages(report) == [f"role {any_role.name} {m}" for m in ALL_AGENT_PRIVILEGE_MESSAGES]
    assert set(codes(report)) == {"privilege_missing"}
    assert report.notes == (
        f"the schema version was not read: role {any_role.name} may not call"
        " pgagent.pgagent_schema_version()",
        f"the pga_jobclass seed rows were not checked: role {any_role.name}"
        " cannot read pgagent.pga_jobclass",
    )
    assert f"role {any_role.name} lacks UPDATE on pgagent.pga_job" in report.render()


def test_minimal_grants_pass(any_role):
    run(any_role.testdb, *agent_grants_from_docs(any_role.name))
    report = schema.check(any_role.dsn)
    assert report.ok, report.render()
    # Exactly the documented set: nothing beyond USAGE on the schema and the listed
    # table/sequence privileges (EXECUTE on the functions is PUBLIC's default).
    assert report.notes == (
        f"the pga_jobclass seed rows were not checked: role {any_role.name}"
        " cannot read pgagent.pga_jobclass",
    )


def test_each_minimal_grant_is_checked(role):
    grants = agent_grants_from_docs(role.name)
    run(role.testdb, *grants)
    revokes = [
        ("REVOKE USAGE ON SCHEMA pgagent FROM {r}", "lacks USAGE on schema pgagent"),
        ("REVOKE DELETE ON pgagent.pga_jobagent FROM {r}", "lacks DELETE on pgagent.pga_jobagent"),
        ("REVOKE UPDATE ON pgagent.pga_job FROM {r}", "lacks UPDATE on pgagent.pga_job"),
        (
            "REVOKE SELECT ON pgagent.pga_exception FROM {r}",
            "lacks SELECT on pgagent.pga_exception",
        ),
        (
            "REVOKE INSERT ON pgagent.pga_jobsteplog FROM {r}",
            "lacks INSERT on pgagent.pga_jobsteplog",
        ),
        (
            "REVOKE ALL ON SEQUENCE pgagent.pga_joblog_jlgid_seq FROM {r}",
            "lacks USAGE (or UPDATE) on sequence pgagent.pga_joblog_jlgid_seq",
        ),
        (
            f"REVOKE EXECUTE ON FUNCTION {NEXT_SCHEDULE} FROM PUBLIC",
            f"lacks EXECUTE on function {NEXT_SCHEDULE}",
        ),
    ]
    for revoke, expected in revokes:
        run(role.testdb, revoke.format(r=role.name))
        problems = messages(schema.check(role.dsn))
        assert problems == [f"role {role.name} {expected}"], revoke
        # Restore everything for the next round.
        run(role.testdb, *grants, f"GRANT EXECUTE ON FUNCTION {NEXT_SCHEDULE} TO PUBLIC")
    # UPDATE instead of USAGE on a sequence is enough for nextval().
    run(
        role.testdb,
        f"REVOKE ALL ON SEQUENCE pgagent.pga_jobsteplog_jslid_seq FROM {role.name}",
        f"GRANT UPDATE ON SEQUENCE pgagent.pga_jobsteplog_jslid_seq TO {role.name}",
    )
    assert schema.check(role.dsn).ok


def test_minimal_grants_are_enough_for_the_agent(any_role):
    """With only the documented grants, the role can do everything an agent does:
    start-up checks, zombie cleanup, registration, polling, claiming a job, logging a
    step, finishing (which recomputes the next run through the triggers) and leaving."""
    testdb = any_role.testdb
    run(testdb, *agent_grants_from_docs(any_role.name))
    # Set up as the superuser: a job with a step and a far-future schedule with an
    # exception, a dead agent (pid 1 is never a backend) holding a second job.
    with testdb.connect() as conn:
        job = conn.execute(
            "INSERT INTO pgagent.pga_job (jobjclid, jobname) VALUES (1, 'due') RETURNING jobid"
        ).fetchone()[0]
        step = conn.execute(
            "INSERT INTO pgagent.pga_jobstep (jstjobid, jstname, jstkind, jstcode, jstdbname)"
            " VALUES (%s, 's1', 's', 'SELECT 1', 'postgres') RETURNING jstid",
            (job,),
        ).fetchone()[0]
        scid = conn.execute(
            "INSERT INTO pgagent.pga_schedule (jscjobid, jscname, jscstart, jscminutes,"
            " jschours) VALUES (%s, 'far', '2090-01-01 00:00+00',"
            " array_fill(false, ARRAY[60]), array_fill(false, ARRAY[24])) RETURNING jscid",
            (job,),
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO pgagent.pga_exception (jexscid, jexdate, jextime)"
            " VALUES (%s, '2090-01-01', '00:00')",
            (scid,),
        )
        conn.execute("UPDATE pgagent.pga_job SET jobnextrun = now() - interval '1 minute'")
        conn.execute("INSERT INTO pgagent.pga_jobagent (jagpid, jagstation) VALUES (1, 'gone')")
        stuck = conn.execute(
            "INSERT INTO pgagent.pga_job (jobjclid, jobname, jobagentid) VALUES (1, 'stuck', 1)"
            " RETURNING jobid"
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO pgagent.pga_joblog (jlgjobid, jlgstatus) VALUES (%s, 'r')", (stuck,)
        )

    with any_role.connect() as conn:
        # Start-up sanity checks.
        assert conn.execute(
            "SELECT count(*) FROM pg_catalog.pg_class cl JOIN pg_catalog.pg_namespace ns"
            " ON ns.oid = relnamespace WHERE relname = 'pga_job' AND nspname = 'pgagent'"
        ).fetchone() == (1,)
        assert conn.execute("SELECT pgagent.pgagent_schema_version()").fetchone() == (4,)
        # Zombie cleanup.
        conn.execute("CREATE TEMP TABLE zombies (jagpid int4)")
        conn.execute(
            "INSERT INTO zombies SELECT jagpid FROM pgagent.pga_jobagent ag"
            " LEFT JOIN pg_catalog.pg_stat_activity pa ON ag.jagpid = pa.pid"
            " WHERE pa.pid IS NULL"
        )
        with conn.transaction():
            conn.execute(
                "UPDATE pgagent.pga_joblog SET jlgstatus = 'd' WHERE jlgstatus = 'r' AND"
                " jlgjobid IN (SELECT jobid FROM pgagent.pga_job"
                "              WHERE jobagentid IN (SELECT jagpid FROM zombies))"
            )
            conn.execute(
                "UPDATE pgagent.pga_jobsteplog SET jslstatus = 'd' WHERE jslstatus = 'r' AND"
                " jsljlgid IN (SELECT jlgid FROM pgagent.pga_joblog WHERE jlgstatus = 'd')"
            )
            conn.execute(
                "UPDATE pgagent.pga_job SET jobagentid = NULL, jobnextrun = NULL"
                " WHERE jobagentid IN (SELECT jagpid FROM zombies)"
            )
            conn.execute(
                "DELETE FROM pgagent.pga_jobagent WHERE jagpid IN (SELECT jagpid FROM zombies)"
            )
        conn.execute("DROP TABLE zombies")
        # Registration and polling.
        conn.execute(
            "INSERT INTO pgagent.pga_jobagent (jagpid, jagstation)"
            " SELECT pg_backend_pid(), 'testhost'"
        )
        due = conn.execute(
            "SELECT jobid FROM pgagent.pga_job WHERE jobenabled AND jobagentid IS NULL"
            " AND jobnextrun <= now() AND (jobhostagent = '' OR jobhostagent = 'testhost')"
            " ORDER BY jobnextrun"
        ).fetchall()
        assert due == [(job,)]
        # Claim, log, run one step, finish.
        claimed = conn.execute(
            "UPDATE pgagent.pga_job SET jobagentid = pg_backend_pid(), joblastrun = now()"
            " WHERE jobagentid IS NULL AND jobid = %s",
            (job,),
        )
        assert claimed.rowcount == 1
        jlgid = conn.execute("SELECT nextval('pgagent.pga_joblog_jlgid_seq')").fetchone()[0]
        conn.execute(
            "INSERT INTO pgagent.pga_joblog (jlgid, jlgjobid, jlgstatus) VALUES (%s, %s, 'r')",
            (jlgid, job),
        )
        steps = conn.execute(
            "SELECT * FROM pgagent.pga_jobstep WHERE jstenabled AND jstjobid = %s"
            " ORDER BY jstname, jstid",
            (job,),
        ).fetchall()
        assert [s[0] for s in steps] == [step]
        jslid = conn.execute("SELECT nextval('pgagent.pga_jobsteplog_jslid_seq')").fetchone()[0]
        inserted = conn.execute(
            "INSERT INTO pgagent.pga_jobsteplog (jslid, jsljlgid, jsljstid, jslstatus)"
            " SELECT %s, %s, %s, 'r' FROM pgagent.pga_jobstep WHERE jstid = %s",
            (jslid, jlgid, step, step),
        )
        assert inserted.rowcount == 1
        conn.execute(
            "UPDATE pgagent.pga_jobsteplog SET jslduration = now() - jslstart, jslresult = 1,"
            " jslstatus = 's', jsloutput = '' WHERE jslid = %s",
            (jslid,),
        )
        with conn.transaction():
            conn.execute(
                "UPDATE pgagent.pga_joblog SET jlgstatus = 's', jlgduration = now() - jlgstart"
                " WHERE jlgid = %s",
                (jlgid,),
            )
            conn.execute(
                "UPDATE pgagent.pga_job SET jobagentid = NULL, jobnextrun = NULL WHERE jobid = %s",
                (job,),
            )
        # The trigger recomputed the next run from the schedule (through pga_next_schedule,
        # which reads pga_exception) with the agent's privileges.
        nextrun = conn.execute(
            "SELECT jobnextrun FROM pgagent.pga_job WHERE jobid = %s", (job,)
        ).fetchone()[0]
        assert nextrun is not None
        conn.execute("DELETE FROM pgagent.pga_jobagent WHERE jagpid = pg_backend_pid()")

    with testdb.connect() as conn:
        assert conn.execute(
            "SELECT jobagentid FROM pgagent.pga_job WHERE jobid = %s", (stuck,)
        ).fetchone() == (None,)
        assert conn.execute(
            "SELECT jlgstatus FROM pgagent.pga_joblog WHERE jlgjobid = %s", (stuck,)
        ).fetchall() == [("d",)]
        assert conn.execute("SELECT count(*) FROM pgagent.pga_jobagent").fetchone() == (0,)
