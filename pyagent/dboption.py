"""Which database a management command (`pyagent jobs …`, `pyagent schema …`) works on:
`-d`/`--db` CONNINFO, else PYAGENT_CONNINFO, else libpq's own PG* variables and ~/.pgpass
(an empty conninfo). Only click (and the variable names of pyagent.envconfig) is imported."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any, TypeVar

import click

from pyagent.envconfig import CONNINFO_VAR

F = TypeVar("F", bound=Callable[..., Any])

_URI = re.compile(r"^postgres(ql)?://")


def db_option(func: F) -> F:
    """The -d/--db option; the command receives it as `conninfo` (None: not given)."""
    return click.option(
        "-d",
        "--db",
        "conninfo",
        envvar=CONNINFO_VAR,
        metavar="CONNINFO",
        help="Database holding the pgagent schema: a libpq conninfo or URI "
        f"(env {CONNINFO_VAR}; default: libpq's PG* variables and ~/.pgpass).",
    )(func)


def given_on_command_line(ctx: click.Context) -> bool:
    """Whether -d/--db came from the command line (not from the environment)."""
    return ctx.get_parameter_source("conninfo") == click.core.ParameterSource.COMMANDLINE


def looks_like_conninfo(text: str) -> bool:
    """A key=value conninfo or a postgres:// URI, as opposed to a bare word (a role name)."""
    return "=" in text or bool(_URI.match(text))


def database_named(conninfo: str) -> bool:
    """Whether anything names a database to connect to: the conninfo, or a PG* variable
    (libpq's defaults alone are not taken as a choice)."""
    return bool(conninfo) or any(key.startswith("PG") for key in os.environ)
