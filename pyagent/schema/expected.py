"""What a usable pgagent schema holds: tables and columns with the types the agent and
pgAdmin work with, sequences, functions, triggers, job classes and the agent's privileges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pyagent.schema import privileges
from pyagent.schema.privileges import MissingPrivilege

# Compatible column types, by pg_catalog.format_type(<base type>, NULL).
INT_TYPES: Final = frozenset({"integer", "bigint"})
TEXT_TYPES: Final = frozenset({"text", "character varying"})
CHAR_TYPES: Final = frozenset({"character", "text", "character varying"})
NAME_TYPES: Final = frozenset({"name", "text", "character varying"})
BOOL_TYPES: Final = frozenset({"boolean"})
TSTZ_TYPES: Final = frozenset({"timestamp with time zone"})
INTERVAL_TYPES: Final = frozenset({"interval"})
DATE_TYPES: Final = frozenset({"date"})
TIME_TYPES: Final = frozenset({"time without time zone"})
BOOL_ARRAY_TYPES: Final = frozenset({"boolean[]"})


@dataclass(frozen=True)
class Column:
    name: str
    expected: str  # the type of the 4.2 schema, as shown in messages
    accepted: frozenset[str]
    default_needed_by: str | None = None  # who inserts rows without a value for it


PGADMIN_INSERTS: Final = "pgAdmin inserts rows without a value for it"
AGENT_INSERTS: Final = "the agent inserts rows without a value for it"

# Every table of the 4.2 schema with every column. pgAdmin reads all of them (its job,
# step and schedule dialogs select every column, including the unused jscnextrun); the
# agent reads and writes pga_jobagent, pga_job, pga_jobstep, pga_joblog, pga_jobsteplog.
TABLES: Final[dict[str, tuple[Column, ...]]] = {
    "pga_jobagent": (
        Column("jagpid", "int4", INT_TYPES),
        Column("jaglogintime", "timestamptz", TSTZ_TYPES, AGENT_INSERTS),
        Column("jagstation", "text", TEXT_TYPES),
    ),
    "pga_jobclass": (
        Column("jclid", "int4", INT_TYPES),
        Column("jclname", "text", TEXT_TYPES),
    ),
    "pga_job": (
        Column("jobid", "int4", INT_TYPES, PGADMIN_INSERTS),
        Column("jobjclid", "int4", INT_TYPES),
        Column("jobname", "text", TEXT_TYPES),
        Column("jobdesc", "text", TEXT_TYPES),
        Column("jobhostagent", "text", TEXT_TYPES),
        Column("jobenabled", "bool", BOOL_TYPES),
        Column("jobcreated", "timestamptz", TSTZ_TYPES, PGADMIN_INSERTS),
        Column("jobchanged", "timestamptz", TSTZ_TYPES, PGADMIN_INSERTS),
        Column("jobagentid", "int4", INT_TYPES),
        Column("jobnextrun", "timestamptz", TSTZ_TYPES),
        Column("joblastrun", "timestamptz", TSTZ_TYPES),
    ),
    "pga_jobstep": (
        Column("jstid", "int4", INT_TYPES, PGADMIN_INSERTS),
        Column("jstjobid", "int4", INT_TYPES),
        Column("jstname", "text", TEXT_TYPES),
        Column("jstdesc", "text", TEXT_TYPES),
        Column("jstenabled", "bool", BOOL_TYPES),
        Column("jstkind", "char(1)", CHAR_TYPES),
        Column("jstcode", "text", TEXT_TYPES),
        Column("jstconnstr", "text", TEXT_TYPES),
        Column("jstdbname", "name", NAME_TYPES),
        Column("jstonerror", "char(1)", CHAR_TYPES),
        Column("jscnextrun", "timestamptz", TSTZ_TYPES),
    ),
    "pga_schedule": (
        Column("jscid", "int4", INT_TYPES, PGADMIN_INSERTS),
        Column("jscjobid", "int4", INT_TYPES),
        Column("jscname", "text", TEXT_TYPES),
        Column("jscdesc", "text", TEXT_TYPES),
        Column("jscenabled", "bool", BOOL_TYPES),
        Column("jscstart", "timestamptz", TSTZ_TYPES),
        Column("jscend", "timestamptz", TSTZ_TYPES),
        Column("jscminutes", "bool[]", BOOL_ARRAY_TYPES),
        Column("jschours", "bool[]", BOOL_ARRAY_TYPES),
        Column("jscweekdays", "bool[]", BOOL_ARRAY_TYPES),
        Column("jscmonthdays", "bool[]", BOOL_ARRAY_TYPES),
        Column("jscmonths", "bool[]", BOOL_ARRAY_TYPES),
    ),
    "pga_exception": (
        Column("jexid", "int4", INT_TYPES, PGADMIN_INSERTS),
        Column("jexscid", "int4", INT_TYPES),
        Column("jexdate", "date", DATE_TYPES),
        Column("jextime", "time", TIME_TYPES),
    ),
    "pga_joblog": (
        Column("jlgid", "int4", INT_TYPES),
        Column("jlgjobid", "int4", INT_TYPES),
        Column("jlgstatus", "char(1)", CHAR_TYPES),
        Column("jlgstart", "timestamptz", TSTZ_TYPES, AGENT_INSERTS),
        Column("jlgduration", "interval", INTERVAL_TYPES),
    ),
    "pga_jobsteplog": (
        Column("jslid", "int4", INT_TYPES),
        Column("jsljlgid", "int4", INT_TYPES),
        Column("jsljstid", "int4", INT_TYPES),
        Column("jslstatus", "char(1)", CHAR_TYPES),
        Column("jslresult", "int4", INT_TYPES),
        Column("jslstart", "timestamptz", TSTZ_TYPES, AGENT_INSERTS),
        Column("jslduration", "interval", INTERVAL_TYPES),
        Column("jsloutput", "text", TEXT_TYPES),
    ),
}

# The agent calls nextval() on these by name.
AGENT_SEQUENCES: Final = privileges.AGENT_SEQUENCES


@dataclass(frozen=True)
class Function:
    name: str
    args: tuple[str, ...]  # format_type names
    returns: str
    display: str  # signature in pgAgent's own spelling, for messages


NEXT_SCHEDULE: Final = Function(
    "pga_next_schedule",
    ("integer", "timestamp with time zone", "timestamp with time zone", *(("boolean[]",) * 5)),
    "timestamp with time zone",
    "pga_next_schedule(int4, timestamptz, timestamptz, _bool, _bool, _bool, _bool, _bool)",
)
LEAP_YEAR: Final = Function("pga_is_leap_year", ("smallint",), "boolean", "pga_is_leap_year(int2)")
VERSION_FUNCTION: Final = Function(
    "pgagent_schema_version", (), "smallint", "pgagent_schema_version()"
)


@dataclass(frozen=True)
class Trigger:
    name: str
    table: str
    timing: str
    events: frozenset[str]


ALL_EVENTS: Final = frozenset({"INSERT", "UPDATE", "DELETE"})
TRIGGERS: Final = (
    Trigger("pga_job_trigger", "pga_job", "BEFORE", frozenset({"UPDATE"})),
    Trigger("pga_schedule_trigger", "pga_schedule", "AFTER", ALL_EVENTS),
    Trigger("pga_exception_trigger", "pga_exception", "AFTER", ALL_EVENTS),
)

# pgAdmin's job dialog defaults to class 1; its regression tests use class 4.
JOB_CLASSES: Final = (
    (1, "Routine Maintenance"),
    (2, "Data Import"),
    (3, "Data Export"),
    (4, "Data Summarisation"),
    (5, "Miscellaneous"),
)

# What the agent's role needs: pyagent.privileges (shared with the agent's own check).
AGENT_TABLE_PRIVILEGES: Final = privileges.AGENT_TABLE_PRIVILEGES
AGENT_FUNCTIONS: Final = (VERSION_FUNCTION, NEXT_SCHEDULE, LEAP_YEAR)


def function_signature(spec: Function) -> str:
    return f"{spec.name}({', '.join(spec.args)})"


def required_agent_privileges() -> tuple[MissingPrivilege, ...]:
    """Every privilege the agent's role needs (see pyagent.privileges)."""
    return privileges.required_agent_privileges()


EVENT_BITS: Final = ((4, "INSERT"), (16, "UPDATE"), (8, "DELETE"), (32, "TRUNCATE"))


def describe_trigger(tgtype: int) -> tuple[str, frozenset[str], bool]:
    if tgtype & 2:
        timing = "BEFORE"
    elif tgtype & 64:
        timing = "INSTEAD OF"
    else:
        timing = "AFTER"
    events = frozenset(name for bit, name in EVENT_BITS if tgtype & bit)
    return timing, events, bool(tgtype & 1)


def events_text(events: frozenset[str]) -> str:
    order = [name for _, name in EVENT_BITS]
    return " OR ".join(sorted(events, key=order.index))
