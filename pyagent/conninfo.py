"""Connection strings: parsing, per-step targets, and masking secrets for display."""

from __future__ import annotations

import functools
import re

import psycopg
from psycopg import conninfo as pgconninfo

SECRET_KEYS = frozenset({"password", "sslpassword"})
_URI_PASSWORD = re.compile(r"(?P<prefix>postgres(?:ql)?://[^:/@\s]*:)(?P<secret>[^@\s]*)(?=@)")
_KV_PASSWORD = re.compile(
    r"(?P<prefix>\b(?:password|sslpassword)\s*=\s*)(?P<secret>'(?:[^'\\]|\\.)*'|[^\s]*)"
)


class ConninfoError(ValueError):
    """A connection string that libpq cannot parse."""


def parse(conninfo: str) -> dict[str, str]:
    """Parse a libpq conninfo or URI into keywords; raise ConninfoError when invalid."""
    try:
        return {k: str(v) for k, v in pgconninfo.conninfo_to_dict(conninfo).items()}
    except Exception as exc:  # psycopg raises ProgrammingError with libpq's message
        raise ConninfoError(str(exc).strip()) from exc


def connect_for_command(
    conninfo: str, application_name: str | None = None
) -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit connection for one management command. No server-side prepared
    statements (psycopg prepares a statement run 5 times): through a transaction pooler
    (PgBouncer) they would land on another client's server connection, and a short-lived
    command gains nothing from them. The session is named `application_name`, if given,
    unless the conninfo names it."""
    params: dict[str, object] = {"autocommit": True, "prepare_threshold": None}
    if application_name and "application_name" not in pgconninfo.conninfo_to_dict(conninfo):
        params["application_name"] = application_name
    return psycopg.connect(conninfo, **params)  # type: ignore[arg-type]


def with_dbname(conninfo: str, dbname: str) -> str:
    """The agent's own connection options with another database (a jstdbname step)."""
    return pgconninfo.make_conninfo(conninfo, dbname=dbname)


def make(conninfo: str, **params: str) -> str:
    """A conninfo with some keywords added or replaced."""
    return pgconninfo.make_conninfo(conninfo, **params)


@functools.lru_cache(maxsize=1024)
def step_conninfo(agent_conninfo: str, application_name: str, connstr: str, dbname: str) -> str:
    """The connection string a SQL step runs on: its jstconnstr exactly as written, or the
    agent's own options with dbname = jstdbname (and a recognisable application_name).
    Raises ConninfoError with libpq's message for an invalid jstconnstr (not cached)."""
    if connstr:
        parse(connstr)
        return connstr
    target = with_dbname(agent_conninfo, dbname)
    if "application_name" not in parse(target):
        target = make(target, application_name=f"{application_name} step")
    return target


def mask_conninfo(conninfo: str) -> str:
    """Replace every password in a conninfo or URI by *****, keeping the rest readable."""
    try:
        params = parse(conninfo)
    except ConninfoError:
        return mask_text(conninfo)
    if not any(key in params for key in SECRET_KEYS):
        return conninfo
    masked = mask_text(conninfo)  # in place, so the string reads as its author wrote it
    try:
        if _masked_params(parse(masked)) == _masked_params(params):
            return masked
    except ConninfoError:
        pass
    return " ".join(
        f"{key}=*****" if key in SECRET_KEYS else f"{key}={_quote(value)}"
        for key, value in params.items()
    )


def _masked_params(params: dict[str, str]) -> dict[str, str]:
    return {key: "*****" if key in SECRET_KEYS else value for key, value in params.items()}


def mask_text(text: str) -> str:
    """Mask password=... and URI passwords anywhere inside a free text."""
    text = _URI_PASSWORD.sub(lambda m: m.group("prefix") + "*****", text)
    return _KV_PASSWORD.sub(lambda m: m.group("prefix") + "*****", text)


def secrets_of(conninfo: str) -> list[str]:
    """The secret values found in a conninfo (to scrub them from any text)."""
    try:
        params = parse(conninfo)
    except ConninfoError:
        return []
    return [value for key, value in params.items() if key in SECRET_KEYS and value]


def _quote(value: str) -> str:
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
