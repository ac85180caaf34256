"""What `pyagent schema check` reports: problems with stable codes, and their rendering."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from pyagent.schema.privileges import MissingPrivilege, grant_statements


@dataclass(frozen=True)
class Problem:
    """One reason why the schema is not usable as it is.

    `code` is a short, stable identifier (see PROBLEM_CODES); `message` says precisely
    what is wrong, naming the object.
    """

    code: str
    message: str

    def __str__(self) -> str:
        return self.message


# Every code `check` can report, with what it means.
PROBLEM_CODES: Final[dict[str, str]] = {
    "schema_missing": "there is no schema pgagent",
    "version_function_missing": "pgagent.pgagent_schema_version() does not exist",
    "version_function_signature": "pgagent_schema_version has the wrong arguments/result",
    "version_unreadable": "calling pgagent_schema_version() failed or returned NULL",
    "version_mismatch": "pgagent_schema_version() does not return 4",
    "table_missing": "a table of the schema is missing",
    "not_a_table": "a relation of the schema is not a table",
    "column_missing": "a column of the schema is missing",
    "column_type": "a column has a type the agent or pgAdmin cannot work with",
    "column_default_missing": "a column that inserts leave out has no default",
    "sequence_missing": "a sequence the agent calls nextval() on is missing",
    "function_missing": "a function of the schema is missing",
    "function_signature": "a function of the schema has the wrong result type",
    "trigger_missing": "one of the three triggers is missing",
    "trigger_disabled": "one of the three triggers is disabled",
    "trigger_definition": "a trigger has the wrong timing, events, level or condition",
    "jobclass_missing": "one of the five seed rows of pga_jobclass is missing",
    "jobclass_name": "a seed row of pga_jobclass has another name",
    "privilege_missing": "the current role lacks a privilege the agent needs",
}


@dataclass(frozen=True)
class CheckReport:
    """The outcome of `check`.

    flavour: 'extension <version>' (CREATE EXTENSION pgagent), 'pyagent' (made by
    `pyagent schema install`), 'plain script' (any other pgagent schema, such as
    pgAgent's pgagent.sql loaded with psql) or 'absent' (no schema pgagent).
    notes: things that could not be verified (they do not make the report fail).
    """

    flavour: str
    problems: tuple[Problem, ...]
    database: str = ""
    role: str = ""
    notes: tuple[str, ...] = field(default=())
    # The privileges behind the privilege_missing problems, for grant_statements().
    missing_privileges: tuple[MissingPrivilege, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    def grant_statements(self) -> list[str]:
        """GRANT statements that give the checked role every privilege it lacks."""
        return grant_statements(self.missing_privileges, self.role)

    def render(self) -> str:
        where = f" in database {self.database}" if self.database else ""
        who = f" (checked as role {self.role})" if self.role else ""
        lines = [f"pgagent schema{where}{who}: {self.flavour}"]
        if self.ok:
            lines.append(
                "OK: everything the agent and pgAdmin rely on is present"
                + (
                    f", and role {self.role} has the privileges an agent needs."
                    if self.role
                    else "."
                )
            )
        else:
            count = len(self.problems)
            lines.append(f"{count} problem{'s' if count != 1 else ''}:")
            lines.extend(f"  - {p.message} [{p.code}]" for p in self.problems)
            grants = self.grant_statements()
            if grants:
                lines.append("To fix the privileges, run as the schema's owner (or a superuser):")
                lines.extend(f"  {g}" for g in grants)
        if self.notes:
            lines.append("Not verified:")
            lines.extend(f"  - {note}" for note in self.notes)
        return "\n".join(lines)
