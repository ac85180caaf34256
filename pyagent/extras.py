"""pyagent's optional schema extras: a NOTIFY trigger that lets agents react to "Run now" at
once, an index on due jobs, and a trigger that computes the next run of a job with
`@TIMEZONE=...;` in its own zone whoever edits it (none of them is part of pgAgent's
schema, and none changes pgAgent's own objects)."""

from __future__ import annotations

import psycopg

from pyagent import resources
from pyagent.conninfo import connect_for_command

EXTRA_TRIGGERS = ("pyagent_notify_trigger", "pyagent_timezone_trigger")


def has_extras(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    """True when pgagent.pga_job carries all of pyagent's extra triggers."""
    row = conn.execute(
        "SELECT count(*) FROM pg_catalog.pg_trigger"
        " WHERE tgname = ANY(%s) AND tgrelid = 'pgagent.pga_job'::pg_catalog.regclass",
        (list(EXTRA_TRIGGERS),),
    ).fetchone()
    return bool(row and row[0] == len(EXTRA_TRIGGERS))


def add_notify_trigger(conninfo: str) -> bool:
    """Add pyagent's extras (notify trigger, due-jobs index, time-zone trigger) to an
    existing schema (ours or the extension's); idempotent. False if they were all there."""
    with connect_for_command(conninfo) as conn:
        present = has_extras(conn)
        with conn.transaction():
            for name in resources.EXTRAS_FILES:
                conn.execute(resources.read_sql_file(name).encode())
    return not present


# ---- authorship (docs/security.md) -------------------------------------------------------

AUTHORSHIP_TRIGGERS = (
    ("pga_job", "pyagent_authorship_job"),
    ("pga_jobstep", "pyagent_authorship_step"),
    ("pga_schedule", "pyagent_authorship_schedule"),
    ("pga_exception", "pyagent_authorship_exception"),
)


def has_authorship(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    """True when pyagent's authorship records (schema pyagent) are installed."""
    row = conn.execute(
        "SELECT count(*) FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'pyagent' AND c.relname = 'authorship'"
    ).fetchone()
    return bool(row and row[0])


def add_authorship(conninfo: str, *, change_log_days: float | None = None) -> bool:
    """Install (or refresh) the authorship records and their triggers, in one transaction;
    with `change_log_days`, also set how long the change log keeps entries. False if they
    were already there."""
    with connect_for_command(conninfo) as conn:
        present = has_authorship(conn)
        with conn.transaction():
            conn.execute(resources.read_sql_file(resources.AUTHORSHIP_FILE).encode())
            if change_log_days is not None:
                conn.execute(
                    "UPDATE pyagent.settings SET change_log_retention = make_interval(secs => %s)",
                    (change_log_days * 86400.0,),
                )
    return not present
