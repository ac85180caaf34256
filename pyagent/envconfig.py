"""Configuration from the environment, for containers and service managers.

`pyagent run` with no connect string (the container image's entrypoint) builds its
connection string here. Where a setting comes from, highest precedence first:

1. the connect string given on the command line;
2. ``PYAGENT_CONNINFO`` (or ``PYAGENT_CONNINFO_FILE``): a complete libpq conninfo or URI;
3. ``PGAGENT_DB`` / ``PGAGENT_USER`` / ``PGAGENT_PASSWORD`` (aidboxdb's names);
4. ``POSTGRES_DB`` / ``POSTGRES_USER`` / ``POSTGRES_PASSWORD`` (the postgres image's names);
5. libpq's own variables (``PGHOST``, ``PGPORT``, ``PGDATABASE``, ``PGUSER``,
   ``PGPASSWORD``, ``PGPASSFILE``, ``PGSSLMODE``, ...) and ``~/.pgpass``.

Levels 3 and 4 are chosen per keyword (``PGAGENT_DB`` and ``POSTGRES_USER`` can be
combined); what neither sets is left out of the string, so libpq applies level 5 itself.
This module never reads the ``PG*`` variables.

Every variable read by :func:`read_env` also has a ``NAME_FILE`` form holding the path of
a file with the value (the Docker-secrets convention of the official postgres image).
An empty value counts as unset, for ``NAME`` and ``NAME_FILE`` alike, as in that image,
so ``PGAGENT_PASSWORD: ${PGAGENT_PASSWORD:-}`` in a compose file does no harm.

Options: ``PYAGENT_*`` variables are read by the command line parser itself and win over
the aidboxdb names handled by :func:`option_defaults_from_env`; a flag wins over both.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

FILE_SUFFIX = "_FILE"

CONNINFO_VAR = "PYAGENT_CONNINFO"

# conninfo keyword -> variables that can set it, highest precedence first.
CONNINFO_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("dbname", ("PGAGENT_DB", "POSTGRES_DB")),
    ("user", ("PGAGENT_USER", "POSTGRES_USER")),
    ("password", ("PGAGENT_PASSWORD", "POSTGRES_PASSWORD")),
)

LOG_LEVEL_VAR = "PGAGENT_LOG_LEVEL"
LOG_FILE_VAR = "PGAGENT_LOG_FILE_PATH"
ENABLED_VARS = ("PYAGENT_ENABLED", "PGAGENT_ENABLED")  # first wins
ROLE_VAR = "PG_ROLE"
# Read by pyagent.control.cli (the alert webhook URL is a secret, hence the _FILE form).
ALERT_WEBHOOK_VAR = "PYAGENT_ALERT_WEBHOOK"
# Read by pyagent.cli: --step-conninfo (it may hold a password, hence the _FILE form).
STEP_CONNINFO_VAR = "PYAGENT_STEP_CONNINFO"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
_LOG_LEVELS = {"0": 0, "1": 1, "2": 2}


def _file_variable_names() -> tuple[str, ...]:
    names = [CONNINFO_VAR]
    for _keyword, variables in CONNINFO_KEYWORDS:
        names.extend(variables)
    return tuple(names)


_WITH_FILE_FORM = _file_variable_names()

# Every variable this module reads (the NAME_FILE forms included).
ENV_NAMES: frozenset[str] = frozenset(
    {
        *_WITH_FILE_FORM,
        *(name + FILE_SUFFIX for name in _WITH_FILE_FORM),
        LOG_LEVEL_VAR,
        LOG_FILE_VAR,
        *ENABLED_VARS,
        ROLE_VAR,
        ALERT_WEBHOOK_VAR,
        ALERT_WEBHOOK_VAR + FILE_SUFFIX,
        STEP_CONNINFO_VAR,
        STEP_CONNINFO_VAR + FILE_SUFFIX,
    }
)


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def read_env(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The value of NAME, or the contents of the file named by NAME_FILE.

    One trailing newline (``\\n`` or ``\\r\\n``) is removed from a file's contents; any other
    whitespace is kept, as it may be part of a password. Returns None when neither is set
    (empty counts as unset). Raises ValueError when both are set or when the file cannot
    be read; the message names the variables and the path, never the value.
    """
    env = _environ(environ)
    file_var = name + FILE_SUFFIX
    value = env.get(name) or None
    path = env.get(file_var) or None
    if value is not None and path is not None:
        raise ValueError(f"both {name} and {file_var} are set; set only one of them")
    if path is None:
        return value
    try:
        with open(path, encoding="utf-8") as handle:
            content = handle.read()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ValueError(f"{file_var}: cannot read {path!r}: {reason}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{file_var}: {path!r} is not valid UTF-8 text") from None
    if content.endswith("\r\n"):
        content = content[:-2]
    elif content.endswith("\n"):
        content = content[:-1]
    if "\x00" in content:
        raise ValueError(f"{file_var}: {path!r} contains a NUL character")
    return content


def quote_value(value: str) -> str:
    """A conninfo value in libpq's keyword/value syntax: always single-quoted, with
    backslashes and single quotes escaped by a backslash."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def conninfo_from_env(environ: Mapping[str, str] | None = None) -> str:
    """The connection string for `pyagent run` when none is given on the command line.

    ``PYAGENT_CONNINFO`` (or its _FILE form) is returned as is. Otherwise a keyword/value
    string is built from the ``PGAGENT_*`` / ``POSTGRES_*`` variables; what they leave
    unset is omitted so that libpq's ``PG*`` variables and ``~/.pgpass`` apply. Returns
    "" when nothing relevant is set (libpq's defaults alone). Raises ValueError (see
    :func:`read_env`).
    """
    env = _environ(environ)
    conninfo = read_env(CONNINFO_VAR, env)
    if conninfo is not None:
        return conninfo
    parts: list[str] = []
    for keyword, variables in CONNINFO_KEYWORDS:
        for variable in variables:
            value = read_env(variable, env)
            if value is not None:
                parts.append(f"{keyword}={quote_value(value)}")
                break
    return " ".join(parts)


def option_defaults_from_env(environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """Defaults for `pyagent run`'s options from aidboxdb's variables.

    ``PGAGENT_LOG_LEVEL`` (0, 1 or 2) gives ``log_level``; ``PGAGENT_LOG_FILE_PATH`` gives
    ``log_file``. Empty values count as unset. Meant as click's ``default_map`` for the
    run command, so ``PYAGENT_LOG_LEVEL``/``PYAGENT_LOG_FILE`` and flags win over them.
    Raises ValueError with a one-line message for an invalid level.
    """
    env = _environ(environ)
    defaults: dict[str, object] = {}
    level = env.get(LOG_LEVEL_VAR, "").strip()
    if level:
        if level not in _LOG_LEVELS:
            raise ValueError(
                f"{LOG_LEVEL_VAR} must be 0 (error), 1 (warning) or 2 (debug), not {_shown(level)}"
            )
        defaults["log_level"] = _LOG_LEVELS[level]
    log_file = env.get(LOG_FILE_VAR, "")
    if log_file.strip():
        defaults["log_file"] = log_file
    return defaults


def enabled_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the agent should run at all (aidboxdb's ``PGAGENT_ENABLED`` contract).

    ``PYAGENT_ENABLED`` wins over ``PGAGENT_ENABLED``. Values: 1/true/yes/on enable,
    0/false/no/off/empty disable (case-insensitive); anything else raises ValueError.
    Neither set: enabled (decision: a container that runs pyagent runs the agent unless
    told not to; aidboxdb's database image needed an opt-in because the agent was an
    add-on there). ``PG_ROLE=replica`` disables the agent unless ``PYAGENT_ENABLED``
    explicitly enables it (for a replica's sidecar meant to take over after a
    promotion: the agent detects standbys at run time and stays idle on them).
    """
    env = _environ(environ)
    own, aidbox = ENABLED_VARS
    if own in env:
        return _parse_bool(own, env[own])
    if env.get(ROLE_VAR, "").strip().lower() == "replica":
        return False
    if aidbox in env:
        return _parse_bool(aidbox, env[aidbox])
    return True


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name} must be one of 1/true/yes/on or 0/false/no/off, not {_shown(raw)}")


def _shown(value: str, limit: int = 40) -> str:
    """A user-supplied (non-secret) value for an error message, on one short line."""
    text = value if len(value) <= limit else value[:limit] + "..."
    return repr(text)
