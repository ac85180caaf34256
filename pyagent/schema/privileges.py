"""The privileges the agent's role needs on the pgagent schema, and the GRANT statements
that add missing ones.

Shared by `pyagent schema check` (from its catalog checks) and by the agent, which asks the
store for the missing ones at every (re)connection (AgentStore.missing_privileges), so that
a role with partial grants gets one line with the fix instead of failing later in the
middle of a job. Pure data and text: no SQL is sent from here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

ObjectKind = Literal["SCHEMA", "TABLE", "SEQUENCE", "FUNCTION"]

SCHEMA_NAME: Final = "pgagent"

# What the agent's role needs (docs/schema.md#privileges). EXECUTE on the functions is
# granted to PUBLIC when they are created.
AGENT_TABLE_PRIVILEGES: Final[dict[str, tuple[str, ...]]] = {
    "pga_jobagent": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "pga_job": ("SELECT", "UPDATE"),
    "pga_jobstep": ("SELECT",),
    "pga_schedule": ("SELECT",),
    "pga_exception": ("SELECT",),
    "pga_joblog": ("SELECT", "INSERT", "UPDATE"),
    "pga_jobsteplog": ("SELECT", "INSERT", "UPDATE"),
}
# The agent calls nextval() on these by name.
AGENT_SEQUENCES: Final = ("pga_joblog_jlgid_seq", "pga_jobsteplog_jslid_seq")
# pgagent_schema_version: called at start-up; pga_next_schedule: called by pga_job_trigger
# when the agent updates pga_job; pga_is_leap_year: called by the extension's
# pga_next_schedule. Triggers run with the privileges of the role that fires them.
# Signatures as pg_catalog.format_type spells the argument types.
AGENT_FUNCTIONS: Final = (
    "pgagent_schema_version()",
    "pga_next_schedule(integer, timestamp with time zone, timestamp with time zone,"
    " boolean[], boolean[], boolean[], boolean[], boolean[])",
    "pga_is_leap_year(smallint)",
)


@dataclass(frozen=True)
class MissingPrivilege:
    """One privilege the role lacks. `name` is unqualified (`pga_job`, or for a function
    its signature `pgagent_schema_version()`); `SCHEMA` names the schema itself."""

    privilege: str
    kind: ObjectKind
    name: str

    @property
    def target(self) -> str:
        """The object as written in a GRANT statement."""
        if self.kind == "SCHEMA":
            return f"SCHEMA {self.name}"
        qualified = f"{SCHEMA_NAME}.{self.name}"
        return qualified if self.kind == "TABLE" else f"{self.kind} {qualified}"

    def __str__(self) -> str:
        return f"{self.privilege} on {self.target}"


_SIMPLE_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_$]*")


def quote_role(role: str) -> str:
    """A role name as an SQL identifier (double-quoted unless plainly lower case)."""
    if _SIMPLE_IDENTIFIER.fullmatch(role):
        return role
    return '"' + role.replace('"', '""') + '"'


def display_role(role: str) -> str:
    """A role name for a message or a log line: always double-quoted, control characters
    escaped (a role name is whatever text its creator chose)."""
    import unicodedata  # not at import: the agent loads this module, and needs it rarely

    shown = "".join(
        (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        if unicodedata.category(ch).startswith("C")
        else ch
        for ch in role
    )
    return '"' + shown.replace('"', '""') + '"'


def grant_statements(missing: Iterable[MissingPrivilege], role: str) -> list[str]:
    """GRANT statements adding every missing privilege, one per object, in order."""
    by_target: dict[str, list[str]] = {}
    for item in missing:
        privileges = by_target.setdefault(item.target, [])
        if item.privilege not in privileges:
            privileges.append(item.privilege)
    grantee = quote_role(role)
    return [
        f"GRANT {', '.join(privileges)} ON {target} TO {grantee};"
        for target, privileges in by_target.items()
    ]


def required_agent_privileges() -> tuple[MissingPrivilege, ...]:
    """Every privilege the agent's role needs, in the order of docs/schema.md's GRANTs."""
    needed: list[MissingPrivilege] = [MissingPrivilege("USAGE", "SCHEMA", SCHEMA_NAME)]
    for table, privileges in AGENT_TABLE_PRIVILEGES.items():
        needed.extend(MissingPrivilege(p, "TABLE", table) for p in privileges)
    needed.extend(MissingPrivilege("USAGE", "SEQUENCE", name) for name in AGENT_SEQUENCES)
    needed.extend(MissingPrivilege("EXECUTE", "FUNCTION", sig) for sig in AGENT_FUNCTIONS)
    return tuple(needed)
