"""Errors of the `pyagent jobs` commands: one line for the user and an exit status, never a
traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import click
import psycopg
from psycopg import errors as pgerrors

from pyagent import conninfo as ci
from pyagent.exitcodes import EXIT_FAILED, EXIT_INTERRUPTED
from pyagent.safetext import safe_text

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
            raise JobsError("interrupted", EXIT_INTERRUPTED) from None
        except OSError as exc:
            raise JobsError(one_line(exc)) from None
        except Exception as exc:  # the promise is "no tracebacks, ever"
            raise JobsError(f"unexpected error: {type(exc).__name__}: {one_line(exc)}") from None

    return wrapper
