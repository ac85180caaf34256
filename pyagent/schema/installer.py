"""Install pyagent's own copy of the pgagent schema (version 4, as used by pgAgent 4.2) in
one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg.rows import tuple_row

from pyagent import resources
from pyagent.conninfo import connect_for_command

SCHEMA_NAME: Final = "pgagent"
REQUIRED_SCHEMA_VERSION: Final = 4


class SchemaExists(RuntimeError):
    """A pgagent schema (or the pgagent extension) is already present."""


@dataclass(frozen=True)
class InstallResult:
    with_notify: bool


def _existing_schema_reason(conn: psycopg.Connection[Any]) -> str | None:
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(
            "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = %s", ("pgagent",)
        )
        row = cur.fetchone()
        if row is not None:
            return f"the pgagent extension (version {row[0]}) is installed in this database"
        cur.execute("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s", (SCHEMA_NAME,))
        if cur.fetchone() is not None:
            return "a schema named pgagent already exists in this database"
    return None


def install(conninfo: str, *, with_notify: bool = False) -> InstallResult:
    """Create the pgagent schema in one transaction; refuse if one already exists."""
    with connect_for_command(conninfo) as conn:
        install_on(conn, with_notify=with_notify)
    return InstallResult(with_notify=with_notify)


def install_on(conn: psycopg.Connection[Any], *, with_notify: bool = False) -> None:
    """Install on an open autocommit connection (the script carries its own BEGIN/COMMIT).

    Raises SchemaExists, changing nothing, when a pgagent schema or the pgagent extension
    is already there. Any error inside the script rolls the whole script back.
    """
    if not conn.autocommit:
        # Inside a caller's transaction the script's BEGIN/COMMIT would commit that
        # transaction instead of making the install atomic.
        raise ValueError("install_on needs an autocommit connection")
    reason = _existing_schema_reason(conn)
    if reason is not None:
        raise SchemaExists(f"nothing was changed: {reason}")
    try:
        conn.execute(resources.install_script(with_notify=with_notify).encode())
    except BaseException:
        # A failed multi-statement script leaves the session in an aborted transaction.
        conn.execute("ROLLBACK")
        raise


# --------------------------------------------------------------------------------------
# check
# --------------------------------------------------------------------------------------
