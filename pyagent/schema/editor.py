"""`pyagent schema grant-editor`: give a role what pgAdmin's pgAgent dialogs need to edit
jobs, and nothing that would let it forge authorship (docs/security.md); say what the
role holds already that would."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pyagent.conninfo import connect_for_command
from pyagent.schema.privileges import display_role
from pyagent.store.sqlfile import load_blocks

GRANTS_FILE = "pyagent_editor_grants.sql"


def _blocks() -> dict[str, str]:
    return load_blocks("pyagent.sql", GRANTS_FILE)


def grant_statements(role: str, *, with_authorship: bool) -> list[sql.Composed]:
    """The GRANT statements for `role` (quoted as an identifier), one per statement."""
    names = ["pgagent", "authorship"] if with_authorship else ["pgagent"]
    statements: list[sql.Composed] = []
    for name in names:
        body = "\n".join(
            line for line in _blocks()[name].splitlines() if not line.lstrip().startswith("--")
        )
        for text in body.split(";"):
            if text.strip():
                statements.append(sql.SQL(text.strip()).format(role=sql.Identifier(role)))
    return statements


@dataclass(frozen=True)
class EditorGrant:
    """What grant-editor did (or, with dry_run, would do) and the risks it found."""

    role: str
    statements: tuple[str, ...]
    risks: tuple[str, ...]
    applied: bool


class UnknownRole(ValueError):
    """The role to grant to does not exist."""


def grant_editor(conninfo: str, role: str, *, dry_run: bool = False) -> EditorGrant:
    """Grant `role` the job editor's privileges in one transaction (none with dry_run),
    and list what else it holds that could forge authorship."""
    from pyagent import extras

    with connect_for_command(conninfo) as conn:
        if not _role_exists(conn, role):
            raise UnknownRole(f"there is no role named {role!r} in this server")
        statements = grant_statements(role, with_authorship=extras.has_authorship(conn))
        texts = tuple(s.as_string(conn) + ";" for s in statements)
        if not dry_run:
            with conn.transaction():
                for statement in statements:
                    conn.execute(statement)
        risks = tuple(
            dict.fromkeys(str(r[0]) for r in conn.execute(_blocks()["risks"], {"role": role}))
        )
    return EditorGrant(role, texts, risks, not dry_run)


def _role_exists(conn: psycopg.Connection[Any], role: str) -> bool:
    row = conn.execute(_blocks()["role_exists"], {"role": role}).fetchone()
    return bool(row and row[0])


def shown_role(role: str) -> str:
    """A role name for a message (quoted, control characters escaped)."""
    return display_role(role)
