"""pyagent's optional schema extras: a NOTIFY trigger that lets agents react to "Run now" at
once, and an index on due jobs (neither is part of pgAgent's schema)."""

from __future__ import annotations

import psycopg

from pyagent import resources


def has_notify_trigger(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    """True when pgagent.pga_job carries pyagent's notify trigger."""
    row = conn.execute(
        "SELECT count(*) FROM pg_catalog.pg_trigger"
        " WHERE tgname = 'pyagent_notify_trigger'"
        " AND tgrelid = 'pgagent.pga_job'::pg_catalog.regclass"
    ).fetchone()
    return bool(row and row[0])


def add_notify_trigger(conninfo: str) -> bool:
    """Add pyagent's extras (notify trigger, due-jobs index) to an existing schema (ours
    or the extension's); idempotent. False if the trigger was already there."""
    # prepare_threshold=None: usable through a transaction pooler (see schema.checker).
    with psycopg.connect(conninfo, autocommit=True, prepare_threshold=None) as conn:
        present = has_notify_trigger(conn)
        with conn.transaction():
            conn.execute(resources.read_sql_file(resources.NOTIFY_FILE).encode())
    return not present
