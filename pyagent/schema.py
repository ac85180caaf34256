"""Install and inspect the pgagent schema shipped in sql/.

`install` creates pyagent's own copy of the pgagent schema (version 4, as used by
pgAgent 4.2) in one transaction. `check` inspects an existing schema, ours or the one made
by `CREATE EXTENSION pgagent`, and reports whether an agent connecting as the current
role can use it, and whether pgAdmin will find everything it relies on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, LiteralString

import psycopg
from psycopg.rows import tuple_row

from pyagent import privileges, resources
from pyagent.privileges import MissingPrivilege, grant_statements

SCHEMA_NAME: Final = "pgagent"
REQUIRED_SCHEMA_VERSION: Final = 4


class SchemaExists(RuntimeError):
    """A pgagent schema (or the pgagent extension) is already present."""


@dataclass(frozen=True)
class InstallResult:
    with_notify: bool


def _existing_schema_reason(conn: psycopg.Connection[Any]) -> str | None:
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(
            "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = %s", ("pgagent",)
        )
        row = cur.fetchone()
        if row is not None:
            return f"the pgagent extension (version {row[0]}) is installed in this database"
        cur.execute("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s", (SCHEMA_NAME,))
        if cur.fetchone() is not None:
            return "a schema named pgagent already exists in this database"
    return None


def install(conninfo: str, *, with_notify: bool = False) -> InstallResult:
    """Create the pgagent schema in one transaction; refuse if one already exists."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        install_on(conn, with_notify=with_notify)
    return InstallResult(with_notify=with_notify)


def install_on(conn: psycopg.Connection[Any], *, with_notify: bool = False) -> None:
    """Install on an open autocommit connection (the script carries its own BEGIN/COMMIT).

    Raises SchemaExists, changing nothing, when a pgagent schema or the pgagent extension
    is already there. Any error inside the script rolls the whole script back.
    """
    if not conn.autocommit:
        # Inside a caller's transaction the script's BEGIN/COMMIT would commit that
        # transaction instead of making the install atomic.
        raise ValueError("install_on needs an autocommit connection")
    reason = _existing_schema_reason(conn)
    if reason is not None:
        raise SchemaExists(f"nothing was changed: {reason}")
    try:
        conn.execute(resources.install_script(with_notify=with_notify).encode())
    except BaseException:
        # A failed multi-statement script leaves the session in an aborted transaction.
        conn.execute("ROLLBACK")
        raise


# --------------------------------------------------------------------------------------
# check
# --------------------------------------------------------------------------------------


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


# Compatible column types, by pg_catalog.format_type(<base type>, NULL).
_INT: Final = frozenset({"integer", "bigint"})
_TEXT: Final = frozenset({"text", "character varying"})
_CHAR: Final = frozenset({"character", "text", "character varying"})
_NAME: Final = frozenset({"name", "text", "character varying"})
_BOOL: Final = frozenset({"boolean"})
_TSTZ: Final = frozenset({"timestamp with time zone"})
_INTERVAL: Final = frozenset({"interval"})
_DATE: Final = frozenset({"date"})
_TIME: Final = frozenset({"time without time zone"})
_BOOLS: Final = frozenset({"boolean[]"})


@dataclass(frozen=True)
class _Column:
    name: str
    expected: str  # the type of the 4.2 schema, as shown in messages
    accepted: frozenset[str]
    default_needed_by: str | None = None  # who inserts rows without a value for it


_PGADMIN: Final = "pgAdmin inserts rows without a value for it"
_AGENT: Final = "the agent inserts rows without a value for it"

# Every table of the 4.2 schema with every column. pgAdmin reads all of them (its job,
# step and schedule dialogs select every column, including the unused jscnextrun); the
# agent reads and writes pga_jobagent, pga_job, pga_jobstep, pga_joblog, pga_jobsteplog.
_TABLES: Final[dict[str, tuple[_Column, ...]]] = {
    "pga_jobagent": (
        _Column("jagpid", "int4", _INT),
        _Column("jaglogintime", "timestamptz", _TSTZ, _AGENT),
        _Column("jagstation", "text", _TEXT),
    ),
    "pga_jobclass": (
        _Column("jclid", "int4", _INT),
        _Column("jclname", "text", _TEXT),
    ),
    "pga_job": (
        _Column("jobid", "int4", _INT, _PGADMIN),
        _Column("jobjclid", "int4", _INT),
        _Column("jobname", "text", _TEXT),
        _Column("jobdesc", "text", _TEXT),
        _Column("jobhostagent", "text", _TEXT),
        _Column("jobenabled", "bool", _BOOL),
        _Column("jobcreated", "timestamptz", _TSTZ, _PGADMIN),
        _Column("jobchanged", "timestamptz", _TSTZ, _PGADMIN),
        _Column("jobagentid", "int4", _INT),
        _Column("jobnextrun", "timestamptz", _TSTZ),
        _Column("joblastrun", "timestamptz", _TSTZ),
    ),
    "pga_jobstep": (
        _Column("jstid", "int4", _INT, _PGADMIN),
        _Column("jstjobid", "int4", _INT),
        _Column("jstname", "text", _TEXT),
        _Column("jstdesc", "text", _TEXT),
        _Column("jstenabled", "bool", _BOOL),
        _Column("jstkind", "char(1)", _CHAR),
        _Column("jstcode", "text", _TEXT),
        _Column("jstconnstr", "text", _TEXT),
        _Column("jstdbname", "name", _NAME),
        _Column("jstonerror", "char(1)", _CHAR),
        _Column("jscnextrun", "timestamptz", _TSTZ),
    ),
    "pga_schedule": (
        _Column("jscid", "int4", _INT, _PGADMIN),
        _Column("jscjobid", "int4", _INT),
        _Column("jscname", "text", _TEXT),
        _Column("jscdesc", "text", _TEXT),
        _Column("jscenabled", "bool", _BOOL),
        _Column("jscstart", "timestamptz", _TSTZ),
        _Column("jscend", "timestamptz", _TSTZ),
        _Column("jscminutes", "bool[]", _BOOLS),
        _Column("jschours", "bool[]", _BOOLS),
        _Column("jscweekdays", "bool[]", _BOOLS),
        _Column("jscmonthdays", "bool[]", _BOOLS),
        _Column("jscmonths", "bool[]", _BOOLS),
    ),
    "pga_exception": (
        _Column("jexid", "int4", _INT, _PGADMIN),
        _Column("jexscid", "int4", _INT),
        _Column("jexdate", "date", _DATE),
        _Column("jextime", "time", _TIME),
    ),
    "pga_joblog": (
        _Column("jlgid", "int4", _INT),
        _Column("jlgjobid", "int4", _INT),
        _Column("jlgstatus", "char(1)", _CHAR),
        _Column("jlgstart", "timestamptz", _TSTZ, _AGENT),
        _Column("jlgduration", "interval", _INTERVAL),
    ),
    "pga_jobsteplog": (
        _Column("jslid", "int4", _INT),
        _Column("jsljlgid", "int4", _INT),
        _Column("jsljstid", "int4", _INT),
        _Column("jslstatus", "char(1)", _CHAR),
        _Column("jslresult", "int4", _INT),
        _Column("jslstart", "timestamptz", _TSTZ, _AGENT),
        _Column("jslduration", "interval", _INTERVAL),
        _Column("jsloutput", "text", _TEXT),
    ),
}

# The agent calls nextval() on these by name.
_AGENT_SEQUENCES: Final = privileges.AGENT_SEQUENCES


@dataclass(frozen=True)
class _Function:
    name: str
    args: tuple[str, ...]  # format_type names
    returns: str
    display: str  # signature in pgAgent's own spelling, for messages


_NEXT_SCHEDULE: Final = _Function(
    "pga_next_schedule",
    ("integer", "timestamp with time zone", "timestamp with time zone", *(("boolean[]",) * 5)),
    "timestamp with time zone",
    "pga_next_schedule(int4, timestamptz, timestamptz, _bool, _bool, _bool, _bool, _bool)",
)
_LEAP_YEAR: Final = _Function(
    "pga_is_leap_year", ("smallint",), "boolean", "pga_is_leap_year(int2)"
)
_VERSION: Final = _Function("pgagent_schema_version", (), "smallint", "pgagent_schema_version()")


@dataclass(frozen=True)
class _Trigger:
    name: str
    table: str
    timing: str
    events: frozenset[str]


_ALL_EVENTS: Final = frozenset({"INSERT", "UPDATE", "DELETE"})
_TRIGGERS: Final = (
    _Trigger("pga_job_trigger", "pga_job", "BEFORE", frozenset({"UPDATE"})),
    _Trigger("pga_schedule_trigger", "pga_schedule", "AFTER", _ALL_EVENTS),
    _Trigger("pga_exception_trigger", "pga_exception", "AFTER", _ALL_EVENTS),
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
AGENT_FUNCTIONS: Final = (_VERSION, _NEXT_SCHEDULE, _LEAP_YEAR)


def _function_signature(spec: _Function) -> str:
    return f"{spec.name}({', '.join(spec.args)})"


def required_agent_privileges() -> tuple[MissingPrivilege, ...]:
    """Every privilege the agent's role needs (see pyagent.privileges)."""
    return privileges.required_agent_privileges()


_EVENT_BITS: Final = ((4, "INSERT"), (16, "UPDATE"), (8, "DELETE"), (32, "TRUNCATE"))


def _describe_trigger(tgtype: int) -> tuple[str, frozenset[str], bool]:
    if tgtype & 2:
        timing = "BEFORE"
    elif tgtype & 64:
        timing = "INSTEAD OF"
    else:
        timing = "AFTER"
    events = frozenset(name for bit, name in _EVENT_BITS if tgtype & bit)
    return timing, events, bool(tgtype & 1)


def _events_text(events: frozenset[str]) -> str:
    order = [name for _, name in _EVENT_BITS]
    return " OR ".join(sorted(events, key=order.index))


class _Checker:
    """One run of the check on one connection (inside a transaction that is rolled back)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.problems: list[Problem] = []
        self.notes: list[str] = []
        self.missing: list[MissingPrivilege] = []
        self.role = ""
        self.database = ""
        self.schema_oid: int | None = None
        self.schema_usage = False
        self.relations: dict[str, tuple[int, str]] = {}  # name -> (oid, relkind)
        self.functions: dict[str, list[tuple[int, tuple[str, ...], str, bool]]] = {}

    # -- helpers ----------------------------------------------------------------------

    def _rows(self, sql: LiteralString, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def _one(self, sql: LiteralString, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def _add(self, code: str, message: str) -> None:
        assert code in PROBLEM_CODES, code
        self.problems.append(Problem(code, message))

    def _qualified(self, name: str) -> str:
        return f"{SCHEMA_NAME}.{name}"

    # -- the checks -------------------------------------------------------------------

    def run(self) -> CheckReport:
        row = self._one("SELECT current_user, current_database()")
        assert row is not None
        self.role, self.database = str(row[0]), str(row[1])
        row = self._one(
            "SELECT oid, pg_catalog.has_schema_privilege(oid, 'USAGE')"
            "  FROM pg_catalog.pg_namespace WHERE nspname = %s",
            (SCHEMA_NAME,),
        )
        if row is None:
            self._add(
                "schema_missing",
                f"schema {SCHEMA_NAME} does not exist in database {self.database}"
                " (install it with `pyagent schema install` or CREATE EXTENSION pgagent)",
            )
            return self._report("absent")
        self.schema_oid, self.schema_usage = int(row[0]), bool(row[1])
        flavour = self._flavour()
        self._load_catalog()
        self._check_version(flavour)
        self._check_tables()
        self._check_sequences()
        self._check_functions()
        self._check_triggers()
        self._check_job_classes()
        self._check_privileges()
        return self._report(flavour)

    def _report(self, flavour: str) -> CheckReport:
        return CheckReport(
            flavour=flavour,
            problems=tuple(self.problems),
            database=self.database,
            role=self.role,
            notes=tuple(self.notes),
            missing_privileges=tuple(self.missing),
        )

    def _flavour(self) -> str:
        row = self._one(
            "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = %s", ("pgagent",)
        )
        if row is not None:
            return f"extension {row[0]}"
        # pyagent's schema script puts 'Schedule for a job' on pga_schedule and 'Job
        # schedule exceptions' on pga_exception; pgAgent's script (the source of the
        # extension) overwrites the first with the second and leaves pga_exception bare.
        rows = self._rows(
            "SELECT c.relname, pg_catalog.obj_description(c.oid, 'pg_class')"
            "  FROM pg_catalog.pg_class c"
            " WHERE c.relnamespace = %s AND c.relname IN ('pga_schedule', 'pga_exception')",
            (self.schema_oid,),
        )
        comments = {str(r[0]): r[1] for r in rows}
        if comments == {
            "pga_schedule": "Schedule for a job",
            "pga_exception": "Job schedule exceptions",
        }:
            return "pyagent"
        return "plain script"

    def _load_catalog(self) -> None:
        for oid, relname, relkind in self._rows(
            "SELECT oid, relname, relkind FROM pg_catalog.pg_class WHERE relnamespace = %s",
            (self.schema_oid,),
        ):
            self.relations[str(relname)] = (int(oid), str(relkind))
        for oid, proname, args, result, retset in self._rows(
            """
            SELECT p.oid, p.proname,
                   ARRAY(SELECT pg_catalog.format_type(t.oid, NULL)
                           FROM unnest(p.proargtypes::pg_catalog.oid[])
                                WITH ORDINALITY AS a(typ, n)
                           JOIN pg_catalog.pg_type t ON t.oid = a.typ
                          ORDER BY a.n),
                   pg_catalog.format_type(p.prorettype, NULL), p.proretset
              FROM pg_catalog.pg_proc p
             WHERE p.pronamespace = %s
            """,
            (self.schema_oid,),
        ):
            self.functions.setdefault(str(proname), []).append(
                (int(oid), tuple(args), str(result), bool(retset))
            )

    def _table_oid(self, name: str) -> int | None:
        found = self.relations.get(name)
        if found is None or found[1] not in ("r", "p"):
            return None
        return found[0]

    def _find_function(self, spec: _Function) -> int | None:
        """The function's oid if it exists with the right arguments; reports problems."""
        variants = self.functions.get(spec.name, [])
        for oid, args, result, retset in variants:
            if args != spec.args:
                continue
            if result != spec.returns or retset:
                returns = f"setof {result}" if retset else result
                code = "version_function_signature" if spec is _VERSION else "function_signature"
                self._add(
                    code,
                    f"function {self._qualified(spec.display)} returns {returns};"
                    f" it must return {spec.returns}",
                )
                return None
            return oid
        found = ", ".join(
            f"{self._qualified(spec.name)}({', '.join(args)})" for _, args, _, _ in variants
        )
        if spec is _VERSION:
            if variants:
                self._add(
                    "version_function_signature",
                    f"function {self._qualified(spec.display)} must take no arguments"
                    f" (found {found})",
                )
            else:
                self._add(
                    "version_function_missing",
                    f"function {self._qualified(spec.display)} is missing;"
                    " the agent refuses to start without it",
                )
        else:
            message = f"function {self._qualified(spec.display)} is missing"
            self._add("function_missing", message + (f" (found {found})" if found else ""))
        return None

    def _check_version(self, flavour: str) -> None:
        oid = self._find_function(_VERSION)
        if oid is None:
            return
        allowed = self._one("SELECT pg_catalog.has_function_privilege(%s, 'EXECUTE')", (oid,))
        if not (self.schema_usage and allowed and allowed[0]):
            # The privilege problems are reported by _check_privileges.
            self.notes.append(
                f"the schema version was not read: role {self.role} may not call"
                f" {self._qualified(_VERSION.display)}"
            )
            return
        try:
            with self.conn.transaction():
                row = self._one("SELECT pgagent.pgagent_schema_version()")
        except psycopg.Error as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self._add(
                "version_unreadable",
                f"SELECT {self._qualified(_VERSION.display)} failed: {text}",
            )
            return
        version = None if row is None else row[0]
        if version is None:
            self._add("version_unreadable", f"{self._qualified(_VERSION.display)} returns NULL")
            return
        if version != REQUIRED_SCHEMA_VERSION:
            if flavour.startswith("extension"):
                fix = "run ALTER EXTENSION pgagent UPDATE"
            elif version < REQUIRED_SCHEMA_VERSION:
                fix = (
                    "upgrade the schema to pgAgent 4 (from 3.4 only pgagent_schema_version()"
                    " and pga_next_schedule() change)"
                )
            else:
                fix = "this schema is newer than pyagent supports"
            self._add(
                "version_mismatch",
                f"{self._qualified(_VERSION.display)} returns {version};"
                f" version {REQUIRED_SCHEMA_VERSION} is required — {fix}",
            )

    def _check_tables(self) -> None:
        kinds = {"v": "a view", "m": "a materialized view", "f": "a foreign table"}
        for table, columns in _TABLES.items():
            found = self.relations.get(table)
            if found is None:
                self._add("table_missing", f"table {self._qualified(table)} is missing")
                continue
            oid, relkind = found
            if relkind not in ("r", "p"):
                what = kinds.get(relkind, f"a relation of kind {relkind!r}")
                self._add("not_a_table", f"{self._qualified(table)} is {what}, not a table")
                continue
            present = {
                str(r[0]): (str(r[1]), str(r[2]), bool(r[3]))
                for r in self._rows(
                    """
                    SELECT a.attname,
                           pg_catalog.format_type(
                               CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END,
                               NULL),
                           pg_catalog.format_type(a.atttypid, a.atttypmod),
                           a.atthasdef
                      FROM pg_catalog.pg_attribute a
                      JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
                     WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
                    """,
                    (oid,),
                )
            }
            for col in columns:
                where = f"{self._qualified(table)}.{col.name}"
                if col.name not in present:
                    self._add("column_missing", f"column {where} is missing")
                    continue
                base, shown, has_default = present[col.name]
                if base not in col.accepted:
                    self._add(
                        "column_type",
                        f"column {where} has type {shown}; expected {col.expected}",
                    )
                if col.default_needed_by and not has_default:
                    self._add(
                        "column_default_missing",
                        f"column {where} has no default; {col.default_needed_by}",
                    )

    def _check_sequences(self) -> None:
        for name in _AGENT_SEQUENCES:
            found = self.relations.get(name)
            if found is None or found[1] != "S":
                self._add("sequence_missing", f"sequence {self._qualified(name)} is missing")

    def _check_functions(self) -> None:
        for spec in (_NEXT_SCHEDULE, _LEAP_YEAR):
            self._find_function(spec)

    def _check_triggers(self) -> None:
        for spec in _TRIGGERS:
            table_oid = self._table_oid(spec.table)
            if table_oid is None:
                continue  # reported as a table problem
            where = f"trigger {spec.name} on {self._qualified(spec.table)}"
            row = self._one(
                "SELECT tgtype, tgenabled, tgattr::text, tgqual IS NOT NULL"
                "  FROM pg_catalog.pg_trigger"
                " WHERE tgrelid = %s AND tgname = %s AND NOT tgisinternal",
                (table_oid, spec.name),
            )
            if row is None:
                self._add("trigger_missing", f"{where} is missing")
                continue
            tgtype, enabled, columns, has_when = int(row[0]), str(row[1]), str(row[2]), row[3]
            if enabled == "D":
                self._add("trigger_disabled", f"{where} is disabled")
            elif enabled == "R":
                self._add("trigger_disabled", f"{where} fires only in replica mode")
            timing, events, row_level = _describe_trigger(tgtype)
            if (timing, events, row_level) != (spec.timing, spec.events, True):
                level = "ROW" if row_level else "STATEMENT"
                self._add(
                    "trigger_definition",
                    f"{where} is {timing} {_events_text(events)} FOR EACH {level};"
                    f" expected {spec.timing} {_events_text(spec.events)} FOR EACH ROW",
                )
            if columns.strip():
                self._add(
                    "trigger_definition",
                    f"{where} fires only on UPDATE OF some columns; expected any UPDATE",
                )
            if has_when:
                self._add("trigger_definition", f"{where} has a WHEN condition; expected none")

    def _check_job_classes(self) -> None:
        oid = self._table_oid("pga_jobclass")
        if oid is None:
            return
        row = self._one("SELECT pg_catalog.has_table_privilege(%s, 'SELECT')", (oid,))
        if not (self.schema_usage and row and row[0]):
            self.notes.append(
                f"the pga_jobclass seed rows were not checked: role {self.role}"
                f" cannot read {self._qualified('pga_jobclass')}"
            )
            return
        present = {
            int(r[0]): str(r[1])
            for r in self._rows(
                "SELECT jclid, jclname FROM pgagent.pga_jobclass WHERE jclid = ANY(%s)",
                ([jclid for jclid, _ in JOB_CLASSES],),
            )
        }
        for jclid, name in JOB_CLASSES:
            if jclid not in present:
                self._add(
                    "jobclass_missing",
                    f"row {jclid} ({name!r}) of {self._qualified('pga_jobclass')} is missing",
                )
            elif present[jclid] != name:
                self._add(
                    "jobclass_name",
                    f"row {jclid} of {self._qualified('pga_jobclass')} is named"
                    f" {present[jclid]!r}; expected {name!r}",
                )

    def _check_privileges(self) -> None:
        lacks = f"role {self.role} lacks"
        if not self.schema_usage:
            self._add("privilege_missing", f"{lacks} USAGE on schema {SCHEMA_NAME}")
            self.missing.append(MissingPrivilege("USAGE", "SCHEMA", SCHEMA_NAME))
        for table, needed in AGENT_TABLE_PRIVILEGES.items():
            oid = self._table_oid(table)
            if oid is None:
                continue
            for privilege in needed:
                row = self._one("SELECT pg_catalog.has_table_privilege(%s, %s)", (oid, privilege))
                if not (row and row[0]):
                    self._add(
                        "privilege_missing", f"{lacks} {privilege} on {self._qualified(table)}"
                    )
                    self.missing.append(MissingPrivilege(privilege, "TABLE", table))
        for name in _AGENT_SEQUENCES:
            found = self.relations.get(name)
            if found is None or found[1] != "S":
                continue
            row = self._one(
                "SELECT pg_catalog.has_sequence_privilege(%s, 'USAGE')"
                "    OR pg_catalog.has_sequence_privilege(%s, 'UPDATE')",
                (found[0], found[0]),
            )
            if not (row and row[0]):
                self._add(
                    "privilege_missing",
                    f"{lacks} USAGE (or UPDATE) on sequence {self._qualified(name)}",
                )
                self.missing.append(MissingPrivilege("USAGE", "SEQUENCE", name))
        for spec in AGENT_FUNCTIONS:
            for oid, args, _, _ in self.functions.get(spec.name, []):
                if args != spec.args:
                    continue
                row = self._one("SELECT pg_catalog.has_function_privilege(%s, 'EXECUTE')", (oid,))
                if not (row and row[0]):
                    self._add(
                        "privilege_missing",
                        f"{lacks} EXECUTE on function {self._qualified(spec.display)}",
                    )
                    self.missing.append(
                        MissingPrivilege("EXECUTE", "FUNCTION", _function_signature(spec))
                    )


def check_on(conn: psycopg.Connection[Any]) -> CheckReport:
    """Check the pgagent schema of the connection's database, as the connection's role.

    Only reads (catalogs, pga_jobclass, pgagent_schema_version()); everything runs in a
    transaction (or savepoint) that is rolled back, so the connection is left as found.
    """
    with conn.transaction(force_rollback=True):
        return _Checker(conn).run()


def check(conninfo: str) -> CheckReport:
    """Connect with `conninfo` and check the pgagent schema there (see check_on)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return check_on(conn)
