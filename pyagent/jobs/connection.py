"""The database connection of the `pyagent jobs` commands."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from pyagent import conninfo as ci
from pyagent.exitcodes import EXIT_USAGE
from pyagent.jobs.errors import JobsError, one_line
from pyagent.store.catalog import Catalog

APPLICATION_NAME = "pyagent jobs"


@contextmanager
def connect(conninfo: str | None) -> Iterator[Catalog]:
    """A Catalog on an autocommit connection: the --db conninfo/URI, PYAGENT_CONNINFO, or
    (when both are empty) libpq's PG* variables and ~/.pgpass."""
    text = conninfo or ""
    try:
        ci.parse(text)
    except ci.ConninfoError as exc:
        raise JobsError(
            f"invalid connection string: {ci.mask_text(str(exc))}", EXIT_USAGE
        ) from None
    # No server-side prepared statements (psycopg prepares a statement run 5 times, as
    # `run --wait` polls): through a transaction pooler (PgBouncer) they would land on
    # another client's server connection. A short-lived command gains nothing from them.
    params: dict[str, Any] = {"autocommit": True, "prepare_threshold": None}
    if "application_name" not in ci.parse(text):
        params["application_name"] = APPLICATION_NAME
    try:
        conn = psycopg.connect(text, **params)
    except psycopg.Error as exc:
        where = ci.mask_conninfo(text) if text else "PG* environment / defaults"
        raise JobsError(f"cannot connect to the database ({where}): {one_line(exc)}") from None
    try:
        yield Catalog(conn)
    finally:
        conn.close()
