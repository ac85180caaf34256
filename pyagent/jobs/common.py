"""What every `pyagent jobs` command shares: the connection, errors with exit codes, finding
a job by id or name, and the database session's time zone."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import ParamSpec, Protocol, TypeVar

import click
import psycopg
from psycopg import errors as pgerrors

from pyagent import conninfo as ci
from pyagent.jobs.render import quoted
from pyagent.safetext import safe_text
from pyagent.store.catalog import Catalog, JobRecord, connect_catalog

# Exit statuses of the jobs commands (README "pyagent jobs", docs/jobs.md).
EXIT_OK = 0
EXIT_FAILED = 1  # an error, or (run --wait) the job ended failed/aborted
EXIT_USAGE = 2
EXIT_CHANGES = 3  # apply --dry-run: the database differs from the files
EXIT_TIMEOUT = 4  # run --wait --timeout: the run did not end in time
EXIT_NO_AGENT = 5  # run: no live agent can pick the job up
EXIT_LOCK_TIMEOUT = 7  # apply: another apply (or a row lock) outlasted --lock-timeout
EXIT_CONFLICT = 8  # apply: a job it changes was edited by someone else after it read it

APPLICATION_NAME = "pyagent jobs"

P = ParamSpec("P")
R = TypeVar("R")


class JobsError(click.ClickException):
    """A one-line error for the user, with the exit status to use."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(ci.mask_text(message))
        self.exit_code = exit_code


def one_line(exc: BaseException) -> str:
    """The first line of an error, escaped: a server message may quote job text."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return safe_text(ci.mask_text(first.strip()))


def friendly_db_error(exc: psycopg.Error) -> JobsError:
    """A database error as one line that says what to do about it."""
    if isinstance(exc, pgerrors.InsufficientPrivilege):
        return JobsError(
            f"permission denied: {one_line(exc)} (this needs the privileges pgAdmin's job "
            "dialogs need: USAGE on schema pgagent, SELECT/INSERT/UPDATE/DELETE on its "
            "tables, USAGE on its sequences; see docs/schema.md)"
        )
    if isinstance(exc, pgerrors.InvalidSchemaName | pgerrors.UndefinedTable):
        return JobsError(
            f"no usable pgagent schema in this database ({one_line(exc)}); "
            "install it with `pyagent schema install` or CREATE EXTENSION pgagent"
        )
    if isinstance(exc, psycopg.OperationalError):
        return JobsError(f"cannot connect to the database: {one_line(exc)}")
    return JobsError(f"database error: {one_line(exc)}")


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn every error into one line on stderr and an exit status: no tracebacks."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except psycopg.Error as exc:
            raise friendly_db_error(exc) from None
        except KeyboardInterrupt:
            raise JobsError("interrupted", 130) from None
        except OSError as exc:
            raise JobsError(one_line(exc)) from None
        except Exception as exc:  # the promise is "no tracebacks, ever"
            raise JobsError(f"unexpected error: {type(exc).__name__}: {one_line(exc)}") from None

    return wrapper


@contextmanager
def connect(conninfo: str | None) -> Iterator[Catalog]:
    """A Catalog on an autocommit connection: the --db conninfo/URI, PYAGENT_CONNINFO, or
    (when both are empty) libpq's PG* variables and ~/.pgpass."""
    text = conninfo or ""
    try:
        ci.parse(text)
    except ci.ConninfoError as exc:
        raise JobsError(f"invalid connection string: {ci.mask_text(str(exc))}", 2) from None
    try:
        catalog = connect_catalog(text, APPLICATION_NAME)
    except psycopg.Error as exc:
        where = ci.mask_conninfo(text) if text else "PG* environment / defaults"
        raise JobsError(f"cannot connect to the database ({where}): {one_line(exc)}") from None
    with catalog:
        yield catalog


@dataclass(frozen=True)
class Zone:
    """The database session's TimeZone: pgAgent reads schedules in it; we print in it."""

    name: str
    tz: tzinfo

    def fmt(self, value: datetime | None, *, seconds: bool = True) -> str:
        if value is None:
            return "-"
        local = value.astimezone(self.tz)
        text = local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
        return f"{text} {local.tzname() or local.strftime('%z')}"

    def iso(self, value: datetime | None) -> str | None:
        return value.astimezone(self.tz).isoformat() if value is not None else None


def job_zone(desc: str) -> Zone | None:
    """A job's own time zone (`@TIMEZONE=...;` in its comment), None when it has none or
    names an unknown zone (pgAgent's behaviour then: the session's zone)."""
    from zoneinfo import ZoneInfo

    from pyagent.annotations import job_timezone

    name = job_timezone(desc).name
    return Zone(name, ZoneInfo(name)) if name is not None else None


def session_zone(catalog: Catalog) -> Zone:
    info = catalog.session_info()
    tz = catalog.conn.info.timezone
    return Zone(info.timezone, tz)


def find_job(catalog: Catalog, ident: str) -> JobRecord:
    """A job by id (digits) or by exact name; an ambiguous name is an error listing ids."""
    text = ident.strip()
    if text.isdigit():
        found = catalog.jobs([int(text)])
        if found:
            return found[0]
        by_name = catalog.job_ids_by_name(text)
        if not by_name:
            raise JobsError(f"no job with id {text}")
        ids = by_name
    else:
        ids = catalog.job_ids_by_name(text)
    if not ids:
        close = [j.name for j in catalog.jobs() if j.name.lower() == text.lower()]
        hint = f" (did you mean {quoted(close[0])}?)" if close else ""
        raise JobsError(f"no job named {text!r}{hint}; `pyagent jobs list` shows them")
    if len(ids) > 1:
        raise JobsError(
            f"{len(ids)} jobs are named {text!r} (ids {', '.join(map(str, ids))}); "
            "give the id instead"
        )
    return catalog.jobs(ids)[0]


class _OfAJob(Protocol):
    @property
    def jobid(self) -> int: ...


Row = TypeVar("Row", bound=_OfAJob)


def by_job(rows: Iterable[Row]) -> dict[int, list[Row]]:
    """Catalogue rows (steps, schedules) grouped by their job's id, in the order given."""
    grouped: dict[int, list[Row]] = {}
    for row in rows:
        grouped.setdefault(row.jobid, []).append(row)
    return grouped
