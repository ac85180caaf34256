"""Operator messages: turn any error the agent can meet while connecting, registering or
polling into one line that says the cause and the fix (never a traceback).

The supervisor calls `log_agent_failure` from its reconnect loop; `pyagent schema check`
uses `describe` for a database it cannot reach. No SQL is sent from here: missing
privileges come from AgentStore.missing_privileges. Texts are matched on libpq's and the server's
English messages and on SQLSTATEs; anything unrecognised still gets one line (the error's
first line, its SQLSTATE, and `pyagent schema check` as the next step).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from pyagent.conninfo import mask_text
from pyagent.schema.privileges import MissingPrivilege, grant_statements
from pyagent.store.session_check import NotASession

SCHEMA_CHECK_HINT = "run `pyagent schema check '<connect-string>'` as the agent's role"
PRIVILEGES_DOC = "docs/schema.md#privileges"
POOLERS_DOC = "docs/deployment.md#poolers-pgbouncer-pgcat-cloud-proxies"


@dataclass(frozen=True)
class Diagnosis:
    """What went wrong (`cause`, one line) and what to do about it (`fix`)."""

    cause: str
    fix: str
    sqlstate: str | None = None
    transient: bool = False  # the database is unreachable right now (vs. refused us)

    def text(self) -> str:
        return f"{self.cause}; fix: {self.fix}" if self.fix else self.cause


class MissingPrivileges(Exception):
    """The agent's role lacks privileges on the pgagent schema (found at registration)."""

    def __init__(self, missing: Sequence[MissingPrivilege], role: str) -> None:
        super().__init__(f"role {role} lacks {', '.join(str(m) for m in missing)}")
        self.missing = tuple(missing)
        self.role = role


# Every error the connect/register/poll path can meet: logged as one line, then retried.
DIAGNOSED_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.Error,
    PoolTimeout,
    OSError,
    TimeoutError,
    MissingPrivileges,
    NotASession,
)

# ---- texts ---------------------------------------------------------------------------------

MISSING_SCHEMA = (
    "Could not find the table 'pgagent.pga_job'. Have you run pgagent.sql on this database?"
    " Create the schema with CREATE EXTENSION pgagent (Debian/Ubuntu package pgagent) or"
    " `pyagent schema install '<connect-string>'`, in the database the agent connects to;"
    " pyagent checks again with a growing delay (up to -r seconds)"
)
MISSING_VERSION_FUNCTION = (
    "Couldn't find the function 'pgagent_schema_version' - please run "
    'ALTER EXTENSION "pgagent" UPDATE;. For a schema made without the extension, '
    f"{SCHEMA_CHECK_HINT} to see what is missing; pyagent checks again with a growing delay"
)


# pgAgent's message for a schema version other than 4 (`{version}`), with the fix added.
UNSUPPORTED_VERSION = (
    "Unsupported schema version: {version}. Version 4 is required - please run "
    'ALTER EXTENSION "pgagent" UPDATE;. For a schema made without the extension, '
    f"{SCHEMA_CHECK_HINT}; pyagent checks again with a growing delay"
)


# ---- classification ------------------------------------------------------------------------

_FATAL_PREFIX = re.compile(r"\b(?:FATAL|ERROR):\s+")
_QUOTED = re.compile(r'"([^"]*)"')


def one_line(text: str) -> str:
    """libpq's message on one line: hint lines (indented) dropped, prefixes removed,
    alternatives of a multi-host string joined with '; ', passwords masked."""
    text = text.strip()
    if text.startswith("connection failed: "):
        text = text[len("connection failed: ") :]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln[:1].isspace()]
    kept = []
    for line in lines:
        if line.startswith(("LINE ", "HINT:", "DETAIL:")) or line.strip() == "^":
            continue
        cleaned = _FATAL_PREFIX.sub("", line)
        if cleaned not in kept:
            kept.append(cleaned)
    return mask_text("; ".join(kept) if kept else text.replace("\n", " "))


def _first_quoted(text: str) -> str:
    match = _QUOTED.search(text)
    return match.group(1) if match else ""


def describe(exc: BaseException) -> Diagnosis:
    """Cause and fix for an error met while connecting to or using the pgagent database."""
    if isinstance(exc, MissingPrivileges):
        return privilege_diagnosis(exc.missing, exc.role)
    if isinstance(exc, NotASession):
        return not_a_session_diagnosis(exc)
    if isinstance(exc, PoolTimeout):
        return Diagnosis(
            "no connection to the database within the pool timeout",
            "check that the server is up and reachable",
            transient=True,
        )
    if isinstance(exc, TimeoutError):
        return Diagnosis(
            "timed out connecting to the database (or waiting for a statement)",
            "check host= and port= and the network path (firewall)",
            transient=True,
        )
    if not isinstance(exc, psycopg.Error):
        text = str(exc).strip() or type(exc).__name__
        return Diagnosis(one_line(text), "", transient=True)
    sqlstate = exc.sqlstate
    cause = one_line(str(exc)) or type(exc).__name__
    low = cause.lower()
    if isinstance(exc, psycopg.OperationalError) and sqlstate is None:
        return _connection_failure(cause, low)
    return _server_error(exc, sqlstate, cause, low)


def _any_of(*needles: str) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(needle) for needle in needles))


# Why a connection could not be made -> the fix, and whether it is transient; the first
# pattern found in the lower-cased message wins. In a fix, {role}, {name} and {database}
# stand for the first name the message quotes ({role} and {database} with a placeholder
# when it quotes none), {doc} for PRIVILEGES_DOC.
_CONNECTION_FIXES: tuple[tuple[re.Pattern[str], str, bool], ...] = (
    (
        _any_of("password authentication failed", "authentication failed"),
        "check the password of role {role} (in the connect string, PGPASSWORD or ~/.pgpass);"
        " if the role does not exist yet, create it (README, Quick start)",
        False,
    ),
    (
        _any_of("no password supplied", "password is required"),
        "give the password (in the connect string, PGPASSWORD or ~/.pgpass)",
        False,
    ),
    (
        re.compile(r'role "[^"]*" does not exist'),
        "create the role: CREATE ROLE {name} LOGIN PASSWORD '...'; then grant it"
        " the agent's privileges ({doc}), or fix user= in the connect string",
        False,
    ),
    (
        re.compile(r'database "[^"]*" does not exist'),
        "fix dbname= in the connect string: the database that holds the pgagent schema"
        " (pgAdmin's maintenance database, usually postgres)",
        False,
    ),
    (
        _any_of("no pg_hba.conf entry"),
        "add a matching line to the server's pg_hba.conf and reload it (SELECT pg_reload_conf())",
        False,
    ),
    (_any_of("not permitted to log in"), "ALTER ROLE {role} LOGIN;", False),
    (
        _any_of("permission denied for database"),
        "GRANT CONNECT ON DATABASE {database} TO <the agent's role>;",
        False,
    ),
    (
        _any_of("too many c", "remaining connection slots"),
        "the server is at max_connections: raise it, or lower --max-connections-per-target"
        " and --max-jobs",
        True,
    ),
    (_any_of("starting up", "shutting down", "in recovery mode"), "wait for the server", True),
    (
        _any_of("could not translate host name", "name or service not known"),
        "fix host= in the connect string (or PGHOST)",
        True,
    ),
    (
        _any_of(
            "connection refused",
            "no such file or directory",
            "timeout expired",
            "could not connect",
            "server closed the connection",
            "no route to host",
            "network is unreachable",
            "terminating connection",
            "consuming input failed",
            "the connection is lost",
            "connection is closed",
            "the listening connection was lost",
            "no service connection",
        ),
        "start PostgreSQL, or fix host= and port= in the connect string",
        True,
    ),
)


def _connection_failure(cause: str, low: str) -> Diagnosis:
    """The connection could not be made: libpq's or the server's reason."""
    name = _first_quoted(cause[cause.find(" failed: ") :] if " failed: " in cause else cause)
    for pattern, fix, transient in _CONNECTION_FIXES:
        if pattern.search(low):
            text = fix.format(
                role=name or "<role>",
                name=name,
                database=name or "<database>",
                doc=PRIVILEGES_DOC,
            )
            return Diagnosis(cause, text, transient=transient)
    return Diagnosis(cause, "", transient=True)


def _server_error(exc: psycopg.Error, sqlstate: str | None, cause: str, low: str) -> Diagnosis:
    """The server refused a statement (or ended the session with a SQLSTATE)."""
    state = sqlstate or ""
    shown = f"{cause} (SQLSTATE {state})" if state else cause
    if state == "42501":
        return Diagnosis(
            shown,
            f"grant the agent's role its privileges ({PRIVILEGES_DOC}); {SCHEMA_CHECK_HINT}"
            " prints the GRANT statements",
            sqlstate,
        )
    if state in ("42P01", "42883", "42703", "3F000", "42P02"):
        return Diagnosis(
            shown,
            f"the pgagent schema is incomplete or damaged: {SCHEMA_CHECK_HINT}",
            sqlstate,
        )
    if state == "25006":
        return Diagnosis(
            shown,
            "the server is read-only (default_transaction_read_only?): connect to the primary",
            sqlstate,
            transient=True,
        )
    if state.startswith(("08", "57P", "53")) or isinstance(exc, psycopg.OperationalError):
        base = _connection_failure(cause, low)
        return Diagnosis(shown, base.fix, sqlstate, transient=True)
    if state == "57014":
        return Diagnosis(
            shown,
            "a bookkeeping statement ran longer than 10 s (a lock held on a pgagent table?)",
            sqlstate,
            transient=True,
        )
    return Diagnosis(shown, SCHEMA_CHECK_HINT, sqlstate)


def not_a_session_diagnosis(exc: NotASession) -> Diagnosis:
    """A pooler in transaction or statement mode between the agent and the server."""
    return Diagnosis(
        f"the agent's connection is not a session of its own ({exc.facts.describe()}): a"
        " pooler in transaction or statement mode (PgBouncer, pgcat, a cloud proxy) is"
        " between the agent and PostgreSQL; the agent's identity, claims and LISTEN need"
        " one server session, so nothing was registered",
        "connect the agent directly to PostgreSQL, or through a pool in session mode (job"
        " steps may stay on the pooler: --step-conninfo, or a step's connection string);"
        f" see {POOLERS_DOC}",
    )


def privilege_diagnosis(missing: Sequence[MissingPrivilege], role: str) -> Diagnosis:
    """Name every missing privilege and give the GRANT statements that add them."""
    lacks = ", ".join(str(m) for m in missing[:3])
    if len(missing) > 3:
        lacks += f" and {len(missing) - 3} more"
    grants = " ".join(grant_statements(missing, role))
    return Diagnosis(
        f"permission denied: role {role} lacks privileges the agent needs: {lacks}",
        f"as the schema's owner (or a superuser) run: {grants}"
        " (`pyagent schema check` lists them too)",
        "42501",
    )


# ---- the agent's side ------------------------------------------------------------------------


def log_agent_failure(
    log: Any, exc: BaseException, *, attempt: int, retry_in: float, was_registered: bool
) -> None:
    """One line, at every -l level, for a failed connection, registration or poll."""
    diagnosis = describe(exc)
    fields: dict[str, Any] = {
        "always": True,
        "error": mask_text(str(exc).strip()),
        "error_type": type(exc).__name__,
        "sqlstate": diagnosis.sqlstate,
        "cause": diagnosis.cause,
        "fix": diagnosis.fix,
        "retry_in": retry_in,
    }
    retry = f"retrying in {retry_in:.1f} s"
    if was_registered and diagnosis.transient:
        log.warning(
            f"Lost the connection to the database; reconnecting: {diagnosis.cause}; {retry}",
            **fields,
        )
    elif was_registered:
        log.warning(f"Query error: {diagnosis.text()}; {retry}", **fields)
    else:
        log.warning(
            f"Couldn't create the primary connection [Attempt #{attempt}]: "
            f"{diagnosis.text()}; {retry}",
            attempt=attempt,
            **fields,
        )


def log_connected_again(log: Any, failed_attempts: int, pid: int) -> None:
    """After failed attempts, say (at every level) that the agent is connected now."""
    log.warning(
        f"Connected to the database after {failed_attempts} failed attempt(s); "
        f"agent registered as pid {pid}",
        always=True,
        failed_attempts=failed_attempts,
    )
