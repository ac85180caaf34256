"""Operator messages without a database: libpq texts folded into one line with a fix,
GRANT statements, and the failed-run detail line."""

from __future__ import annotations

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from pyagent import diagnose
from pyagent.agent.runreport import telling_line
from pyagent.schema.privileges import MissingPrivilege, grant_statements, quote_role
from pyagent.store.session_check import Finding, NotASession, SessionFacts

REFUSED = (
    'connection failed: connection to server at "127.0.0.1", port 1 failed: Connection refused\n'
    "\tIs the server running on that host and accepting TCP/IP connections?"
)


def test_libpq_hint_is_dropped_and_the_fix_given_instead():
    d = diagnose.describe(psycopg.OperationalError(REFUSED))
    assert d.cause == 'connection to server at "127.0.0.1", port 1 failed: Connection refused'
    assert d.fix == "start PostgreSQL, or fix host= and port= in the connect string"
    assert d.transient
    assert "\n" not in d.text()


def test_multi_host_alternatives_are_joined_on_one_line():
    text = (
        'connection failed: connection to server at "10.0.0.1", port 5432 failed: timeout expired\n'
        'connection to server at "10.0.0.2", port 5432 failed: Connection refused\n'
        "\tIs the server running on that host and accepting TCP/IP connections?"
    )
    d = diagnose.describe(psycopg.OperationalError(text))
    assert d.cause == (
        'connection to server at "10.0.0.1", port 5432 failed: timeout expired; '
        'connection to server at "10.0.0.2", port 5432 failed: Connection refused'
    )


def test_password_failure_names_the_role_and_masks_passwords():
    text = (
        'connection failed: connection to server at "db", port 5432 failed: FATAL:  password '
        'authentication failed for user "pgagent" (password=hunter2)'
    )
    d = diagnose.describe(psycopg.OperationalError(text))
    assert "hunter2" not in d.text()
    assert d.fix.startswith("check the password of role pgagent")


@pytest.mark.parametrize(
    ("message", "fix_start"),
    [
        ('FATAL:  role "bob" does not exist', "create the role: CREATE ROLE bob LOGIN"),
        ('FATAL:  database "jobs" does not exist', "fix dbname= in the connect string"),
        ('FATAL:  no pg_hba.conf entry for host "10.1.1.1", user "x"', "add a matching line"),
        ('FATAL:  role "bob" is not permitted to log in', "ALTER ROLE bob LOGIN;"),
        ("FATAL:  sorry, too many clients already", "the server is at max_connections"),
        ("FATAL:  the database system is starting up", "wait for the server"),
        ("fe_sendauth: no password supplied", "give the password"),
    ],
)
def test_connection_failures_get_their_fix(message, fix_start):
    text = f'connection failed: connection to server at "h", port 1 failed: {message}'
    assert diagnose.describe(psycopg.OperationalError(text)).fix.startswith(fix_start)


def test_permission_denied_points_to_the_grants():
    exc = psycopg.errors.InsufficientPrivilege(
        "permission denied for schema pgagent\nLINE 1: SELECT pgagent.x()\n               ^"
    )
    d = diagnose.describe(exc)
    assert d.cause.startswith("permission denied for schema pgagent")
    assert "LINE 1" not in d.cause
    assert "pyagent schema check" in d.fix and "docs/schema.md#privileges" in d.fix


def test_timeouts_and_unknown_errors_still_get_one_line():
    assert diagnose.describe(TimeoutError()).transient
    assert diagnose.describe(PoolTimeout("x")).transient
    unknown = diagnose.describe(psycopg.errors.DivisionByZero("division by zero"))
    assert "pyagent schema check" in unknown.fix


def test_grant_statements_group_by_object_and_quote_roles():
    missing = [
        MissingPrivilege("USAGE", "SCHEMA", "pgagent"),
        MissingPrivilege("SELECT", "TABLE", "pga_job"),
        MissingPrivilege("UPDATE", "TABLE", "pga_job"),
        MissingPrivilege("USAGE", "SEQUENCE", "pga_joblog_jlgid_seq"),
        MissingPrivilege("EXECUTE", "FUNCTION", "pgagent_schema_version()"),
    ]
    assert grant_statements(missing, "Agent Role") == [
        'GRANT USAGE ON SCHEMA pgagent TO "Agent Role";',
        'GRANT SELECT, UPDATE ON pgagent.pga_job TO "Agent Role";',
        'GRANT USAGE ON SEQUENCE pgagent.pga_joblog_jlgid_seq TO "Agent Role";',
        'GRANT EXECUTE ON FUNCTION pgagent.pgagent_schema_version() TO "Agent Role";',
    ]
    assert quote_role("pgagent") == "pgagent"
    assert quote_role('we"ird') == '"we""ird"'


def test_privilege_line_names_the_first_three_and_gives_every_grant():
    missing = [MissingPrivilege(p, "TABLE", "pga_jobagent") for p in ("SELECT", "INSERT")] + [
        MissingPrivilege("SELECT", "TABLE", t) for t in ("pga_job", "pga_jobstep", "pga_joblog")
    ]
    d = diagnose.privilege_diagnosis(missing, "pgagent")
    assert d.cause.endswith("SELECT on pgagent.pga_job and 2 more")
    assert "GRANT SELECT ON pgagent.pga_joblog TO pgagent;" in d.fix


@pytest.mark.parametrize(
    ("output", "line"),
    [
        ("NOTICE:  hello\nERROR:  division by zero\n", "ERROR: division by zero"),
        ("out\n\nScript Error: \nboom: not found\n", "boom: not found"),
        ("first\nlast\n", "last"),
        ("", ""),
        ("x" * 500, "x" * 297 + "..."),
    ],
)
def test_telling_line_of_a_failed_step(output, line):
    assert telling_line(output) == line


def test_the_agents_privilege_list_matches_the_schema_checks():
    from pyagent import schema
    from pyagent.schema import privileges

    assert (
        tuple(schema.function_signature(spec) for spec in schema.AGENT_FUNCTIONS)
        == privileges.AGENT_FUNCTIONS
    )
    assert schema.AGENT_TABLE_PRIVILEGES is privileges.AGENT_TABLE_PRIVILEGES


@pytest.mark.parametrize(
    ("facts", "seen"),
    [
        (
            SessionFacts(Finding.SHARED_BACKEND, 41, 41, 9),
            "another connection was handed its server backend, pid 41, between two of its"
            " transactions",
        ),
        (
            SessionFacts(Finding.BACKEND_CHANGED, 41, 42, 9),
            "its transactions ran on different server backends, pid 41 then pid 42",
        ),
        (
            SessionFacts(Finding.MARK_LOST, 41, 41, 9),
            "a setting made in one transaction was gone in the next, on server backend pid 41",
        ),
        (
            SessionFacts(Finding.NO_TRANSACTION_BLOCKS, 41, None, 9, "not allowed"),
            "a second connection made the same way was refused a transaction block: not allowed",
        ),
    ],
)
def test_a_connection_that_is_not_a_session_gets_one_line_saying_what_was_seen_and_the_fix(
    facts, seen
):
    exc = NotASession(facts)
    assert isinstance(exc, diagnose.DIAGNOSED_ERRORS)  # logged as one line, then retried
    d = diagnose.describe(exc)
    assert d.cause.startswith(f"the agent's connection is not a session of its own ({seen}): ")
    assert "nothing was registered" in d.cause
    assert d.fix.startswith("connect the agent directly to PostgreSQL, or through a pool in")
    assert "--step-conninfo" in d.fix and diagnose.POOLERS_DOC in d.fix
    assert not d.transient
    assert "\n" not in d.text()


def test_session_facts_tell_a_proxy_from_a_direct_connection():
    assert SessionFacts(Finding.SESSION, 41, 41, 41).is_session
    assert not SessionFacts(Finding.SESSION, 41, 41, 41).through_proxy
    assert SessionFacts(Finding.SESSION, 41, 41, -1905927365).through_proxy
    assert not SessionFacts(Finding.BACKEND_CHANGED, 41, 42, 41).is_session
