"""The database connection of the `pyagent jobs` commands."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from pyagent import conninfo as ci
from pyagent.exitcodes import EXIT_USAGE
from pyagent.jobs.errors import JobsError, one_line
from pyagent.store.catalog import Catalog, connect_catalog

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
    try:
        catalog = connect_catalog(text, APPLICATION_NAME)
    except psycopg.Error as exc:
        where = ci.mask_conninfo(text) if text else "PG* environment / defaults"
        raise JobsError(f"cannot connect to the database ({where}): {one_line(exc)}") from None
    with catalog:
        yield catalog
