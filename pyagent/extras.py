"""pyagent's optional schema extras: a NOTIFY trigger that lets agents react to "Run now" at
once, an index on due jobs, and a trigger that computes the next run of a job with
`@TIMEZONE=...;` in its own zone whoever edits it (none of them is part of pgAgent's
schema, and none changes pgAgent's own objects)."""

from __future__ import annotations

import psycopg

from pyagent import resources

EXTRA_TRIGGERS = ("pyagent_notify_trigger", "pyagent_timezone_trigger")


def has_notify_trigger(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    """True when pgagent.pga_job carries pyagent's notify trigger."""
    row = conn.execute(
        "SELECT count(*) FROM pg_catalog.pg_trigger"
        " WHERE tgname = 'pyagent_notify_trigger'"
        " AND tgrelid = 'pgagent.pga_job'::pg_catalog.regclass"
    ).fetchone()
    return bool(row and row[0])


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
    with psycopg.connect(conninfo, autocommit=True) as conn:
        present = has_extras(conn)
        with conn.transaction():
            for name in resources.EXTRAS_FILES:
                conn.execute(resources.read_sql_file(name).encode())
    return not present
