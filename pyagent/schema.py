"""Install and inspect the pgagent schema shipped in sql/."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from pyagent import resources


class SchemaExists(RuntimeError):
    """A pgagent schema (or the pgagent extension) is already present."""


@dataclass(frozen=True)
class InstallResult:
    with_notify: bool


def _existing_schema_reason(conn: psycopg.Connection[tuple[object, ...]]) -> str | None:
    row = conn.execute(
        "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pgagent'"
    ).fetchone()
    if row is not None:
        return f"the pgagent extension (version {row[0]}) is installed in this database"
    row = conn.execute(
        "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'pgagent'"
    ).fetchone()
    if row is not None:
        return "a schema named pgagent already exists in this database"
    return None


def install(conninfo: str, *, with_notify: bool = False) -> InstallResult:
    """Create the pgagent schema in one transaction; refuse if one already exists."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        install_on(conn, with_notify=with_notify)
    return InstallResult(with_notify=with_notify)


def install_on(
    conn: psycopg.Connection[tuple[object, ...]], *, with_notify: bool = False
) -> None:
    """Install on an open autocommit connection (the script carries its own BEGIN/COMMIT)."""
    reason = _existing_schema_reason(conn)
    if reason is not None:
        raise SchemaExists(f"nothing was changed: {reason}")
    try:
        conn.execute(resources.install_script(with_notify=with_notify).encode())
    except BaseException:
        # A failed multi-statement script leaves the session in an aborted transaction.
        conn.execute("ROLLBACK")
        raise
