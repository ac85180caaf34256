"""Inspect an existing pgagent schema, ours or the one made by `CREATE EXTENSION pgagent`,
and report whether an agent connecting as the current role can use it, and whether pgAdmin
will find everything it relies on."""

from __future__ import annotations

from typing import Any, LiteralString

import psycopg
from psycopg.rows import tuple_row

from pyagent.conninfo import connect_for_command
from pyagent.schema.expected import (
    AGENT_FUNCTIONS,
    AGENT_SEQUENCES,
    AGENT_TABLE_PRIVILEGES,
    JOB_CLASSES,
    LEAP_YEAR,
    NEXT_SCHEDULE,
    TABLES,
    TRIGGERS,
    VERSION_FUNCTION,
    Function,
    describe_trigger,
    events_text,
    function_signature,
)
from pyagent.schema.installer import REQUIRED_SCHEMA_VERSION, SCHEMA_NAME
from pyagent.schema.privileges import MissingPrivilege
from pyagent.schema.report import PROBLEM_CODES, CheckReport, Problem


class _CatalogReader:
    """Reads the schema's catalog entries once and collects problems; the checks build on it."""

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

    def _find_function(self, spec: Function) -> int | None:
        """The function's oid if it exists with the right arguments; reports problems."""
        variants = self.functions.get(spec.name, [])
        for oid, args, result, retset in variants:
            if args != spec.args:
                continue
            if result != spec.returns or retset:
                returns = f"setof {result}" if retset else result
                code = (
                    "version_function_signature"
                    if spec is VERSION_FUNCTION
                    else "function_signature"
                )
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
        if spec is VERSION_FUNCTION:
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


class _Checker(_CatalogReader):
    """One run of the check on one connection (inside a transaction that is rolled back)."""

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

    def _check_version(self, flavour: str) -> None:
        oid = self._find_function(VERSION_FUNCTION)
        if oid is None:
            return
        allowed = self._one("SELECT pg_catalog.has_function_privilege(%s, 'EXECUTE')", (oid,))
        if not (self.schema_usage and allowed and allowed[0]):
            # The privilege problems are reported by _check_privileges.
            self.notes.append(
                f"the schema version was not read: role {self.role} may not call"
                f" {self._qualified(VERSION_FUNCTION.display)}"
            )
            return
        try:
            with self.conn.transaction():
                row = self._one("SELECT pgagent.pgagent_schema_version()")
        except psycopg.Error as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self._add(
                "version_unreadable",
                f"SELECT {self._qualified(VERSION_FUNCTION.display)} failed: {text}",
            )
            return
        version = None if row is None else row[0]
        if version is None:
            self._add(
                "version_unreadable", f"{self._qualified(VERSION_FUNCTION.display)} returns NULL"
            )
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
                f"{self._qualified(VERSION_FUNCTION.display)} returns {version};"
                f" version {REQUIRED_SCHEMA_VERSION} is required — {fix}",
            )

    def _check_tables(self) -> None:
        kinds = {"v": "a view", "m": "a materialized view", "f": "a foreign table"}
        for table, columns in TABLES.items():
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
        for name in AGENT_SEQUENCES:
            found = self.relations.get(name)
            if found is None or found[1] != "S":
                self._add("sequence_missing", f"sequence {self._qualified(name)} is missing")

    def _check_functions(self) -> None:
        for spec in (NEXT_SCHEDULE, LEAP_YEAR):
            self._find_function(spec)

    def _check_triggers(self) -> None:
        for spec in TRIGGERS:
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
            timing, events, row_level = describe_trigger(tgtype)
            if (timing, events, row_level) != (spec.timing, spec.events, True):
                level = "ROW" if row_level else "STATEMENT"
                self._add(
                    "trigger_definition",
                    f"{where} is {timing} {events_text(events)} FOR EACH {level};"
                    f" expected {spec.timing} {events_text(spec.events)} FOR EACH ROW",
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
        for name in AGENT_SEQUENCES:
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
                        MissingPrivilege("EXECUTE", "FUNCTION", function_signature(spec))
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
    with connect_for_command(conninfo) as conn:
        return check_on(conn)
