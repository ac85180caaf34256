"""Differential test: our schema (sql/pgagent.sql + sql/pga_next_schedule.sql, fixture `db`)
against the real pgagent 4.2 extension (fixture `ext_db`), read from the system catalogs
of both databases.

Every aspect that pgAdmin, the C pgAgent or pyagent could notice is compared: tables,
columns (type with typmod and array dimensions, NOT NULL, default expression, order),
CHECK constraints (normalized definitions), foreign keys with their rules, primary keys,
unique constraints and indexes, sequences (type, parameters, state, owning column),
triggers, function signatures and attributes, privileges, comments and the pga_jobclass
seed rows.

Deliberate differences are excluded explicitly below, each with the reason. Anything else
that differs is a defect in our schema: the failure message lists every difference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import psycopg
import pytest

SCHEMA = "pgagent"

Snapshot = dict[Any, Any]

# --- deliberate differences ------------------------------------------------------------

# The extension comments pga_schedule twice: the second COMMENT ON TABLE was meant for
# pga_exception ("Job schedule exceptions"), so pga_schedule ends up with the exception
# text and pga_exception has no comment. Our schema puts each text on its own table.
# Comments are shown by pgAdmin's schema browser only; nothing depends on them.
DELIBERATE_COMMENT_DIFFERENCES = frozenset(
    {"table pgagent.pga_schedule", "table pgagent.pga_exception"}
)

# Function bodies (pg_proc.prosrc) are not compared at all: ours are written from scratch
# (the trigger functions, pgagent_schema_version, pga_is_leap_year) or are the subject of
# their own behavioural tests (pga_next_schedule). Only signatures and attributes are
# compared here.

# Extension membership (pg_depend deptype 'e') and pg_extension_config_dump settings are
# properties of CREATE EXTENSION itself; our plain-script schema cannot have them.


# --- catalog readers -------------------------------------------------------------------


def _rows(conn: psycopg.Connection[Any], sql: str) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql, {"schema": SCHEMA})
        return list(cur.fetchall())


def read_tables(conn: psycopg.Connection[Any]) -> Snapshot:
    rows = _rows(
        conn,
        """
        SELECT c.relname, c.relkind, c.relpersistence, c.relrowsecurity,
               c.relforcerowsecurity, c.reloptions, c.relhasrules, c.relispartition
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
        """,
    )
    return {r[0]: r[1:] for r in rows}


def read_columns(conn: psycopg.Connection[Any]) -> Snapshot:
    rows = _rows(
        conn,
        """
        SELECT c.relname, a.attname,
               pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
               a.attndims, a.attnotnull,
               pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS default_expr,
               a.attidentity, a.attgenerated, coll.collname, a.attstorage
          FROM pg_catalog.pg_attribute a
          JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
          LEFT JOIN pg_catalog.pg_collation coll ON coll.oid = a.attcollation
         WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p')
           AND a.attnum > 0 AND NOT a.attisdropped
        """,
    )
    return {
        (r[0], r[1]): {
            "type": r[2],
            "ndims": r[3],
            "not_null": r[4],
            "default": r[5],
            "identity": r[6],
            "generated": r[7],
            "collation": r[8],
            "storage": r[9],
        }
        for r in rows
    }


def read_column_order(conn: psycopg.Connection[Any]) -> Snapshot:
    # `SELECT *` (the C agent reads pga_jobstep that way) and pgAdmin's grids depend on it.
    rows = _rows(
        conn,
        """
        SELECT c.relname, array_agg(a.attname::text ORDER BY a.attnum)
          FROM pg_catalog.pg_attribute a
          JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p')
           AND a.attnum > 0 AND NOT a.attisdropped
         GROUP BY c.relname
        """,
    )
    return {r[0]: tuple(r[1]) for r in rows}


_CONSTRAINTS_SQL = """
    SELECT c.relname, con.conname, con.contype,
           pg_catalog.pg_get_constraintdef(con.oid, true) AS def,
           ARRAY(SELECT a.attname::text
                   FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_catalog.pg_attribute a
                     ON a.attrelid = con.conrelid AND a.attnum = k.attnum
                  ORDER BY k.ord) AS cols,
           fc.relname AS ref_table,
           ARRAY(SELECT a.attname::text
                   FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_catalog.pg_attribute a
                     ON a.attrelid = con.confrelid AND a.attnum = k.attnum
                  ORDER BY k.ord) AS ref_cols,
           con.confupdtype, con.confdeltype, con.confmatchtype,
           con.condeferrable, con.condeferred, con.convalidated, con.connoinherit
      FROM pg_catalog.pg_constraint con
      JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_catalog.pg_class fc ON fc.oid = con.confrelid
     WHERE n.nspname = %(schema)s
"""

_FK_ACTIONS = {
    "a": "NO ACTION",
    "r": "RESTRICT",
    "c": "CASCADE",
    "n": "SET NULL",
    "d": "SET DEFAULT",
}

# The only CHECK constraints the extension names explicitly; all others get automatic
# names (pga_jobstep_check, pga_jobstep_check1, ...), so only their definitions count.
EXPLICIT_CHECK_NAMES = frozenset(
    {
        "pga_schedule_jscminutes_size",
        "pga_schedule_jschours_size",
        "pga_schedule_jscweekdays_size",
        "pga_schedule_jscmonthdays_size",
        "pga_schedule_jscmonths_size",
    }
)


def read_checks(conn: psycopg.Connection[Any]) -> Snapshot:
    found: Snapshot = {}
    for r in _rows(conn, _CONSTRAINTS_SQL):
        relname, conname, contype, definition = r[0], r[1], r[2], r[3]
        if contype != "c":
            continue
        key = (relname, definition)
        name = conname if conname in EXPLICIT_CHECK_NAMES else "(automatic name)"
        attrs = {"name": name, "deferrable": r[10], "validated": r[12], "noinherit": r[13]}
        found.setdefault(key, []).append(attrs)
    return {k: sorted(v, key=repr) for k, v in found.items()}


def read_foreign_keys(conn: psycopg.Connection[Any]) -> Snapshot:
    found: Snapshot = {}
    for r in _rows(conn, _CONSTRAINTS_SQL):
        if r[2] != "f":
            continue
        found[(r[0], tuple(r[4]))] = {
            "references": f"{r[5]}({', '.join(r[6])})",
            "on_update": _FK_ACTIONS[r[7]],
            "on_delete": _FK_ACTIONS[r[8]],
            "match": r[9],
            "deferrable": r[10],
            "deferred": r[11],
            "validated": r[12],
        }
    return found


def read_primary_and_unique_keys(conn: psycopg.Connection[Any]) -> Snapshot:
    # Names of PRIMARY KEY / UNIQUE constraints are automatic in the extension
    # (<table>_pkey), so they are keyed by table and columns.
    found: Snapshot = {}
    for r in _rows(conn, _CONSTRAINTS_SQL):
        if r[2] not in ("p", "u"):
            continue
        kind = "PRIMARY KEY" if r[2] == "p" else "UNIQUE"
        found[(r[0], kind, tuple(r[4]))] = {"deferrable": r[10], "deferred": r[11]}
    return found


def read_indexes(conn: psycopg.Connection[Any]) -> Snapshot:
    rows = _rows(
        conn,
        """
        SELECT ic.relname AS index_name, c.relname AS table_name,
               con.contype,
               ARRAY(SELECT pg_catalog.pg_get_indexdef(i.indexrelid, k.n, true)
                       FROM generate_series(1, i.indnkeyatts) AS k(n)
                      ORDER BY k.n) AS key_exprs,
               i.indisunique, i.indisprimary, i.indnullsnotdistinct,
               pg_catalog.pg_get_expr(i.indpred, i.indrelid, true) AS predicate,
               am.amname, i.indnatts - i.indnkeyatts AS include_count
          FROM pg_catalog.pg_index i
          JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
          JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_catalog.pg_am am ON am.oid = ic.relam
          LEFT JOIN pg_catalog.pg_constraint con ON con.conindid = i.indexrelid
               AND con.contype IN ('p', 'u', 'x')
         WHERE n.nspname = %(schema)s
        """,
    )
    found: Snapshot = {}
    for r in rows:
        attrs = {
            "unique": r[4],
            "primary": r[5],
            "nulls_not_distinct": r[6],
            "predicate": r[7],
            "method": r[8],
            "include_count": r[9],
        }
        if r[2] is None:
            # A plain CREATE [UNIQUE] INDEX: the extension names these explicitly.
            found[("index", r[0])] = {"table": r[1], "columns": tuple(r[3]), **attrs}
        else:
            # Backs a PRIMARY KEY/UNIQUE constraint: automatic name, keyed by columns.
            found[("constraint index", r[1], tuple(r[3]))] = attrs
    return found


def read_sequences(conn: psycopg.Connection[Any]) -> Snapshot:
    rows = _rows(
        conn,
        """
        SELECT c.relname, pg_catalog.format_type(s.seqtypid, NULL), s.seqstart,
               s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle,
               (SELECT tc.relname || '.' || a.attname
                  FROM pg_catalog.pg_depend dep
                  JOIN pg_catalog.pg_class tc ON tc.oid = dep.refobjid
                  JOIN pg_catalog.pg_attribute a
                    ON a.attrelid = dep.refobjid AND a.attnum = dep.refobjsubid
                 WHERE dep.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                   AND dep.objid = c.oid
                   AND dep.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                   AND dep.refobjsubid > 0 AND dep.deptype IN ('a', 'i')) AS owned_by,
               c.relpersistence
          FROM pg_catalog.pg_sequence s
          JOIN pg_catalog.pg_class c ON c.oid = s.seqrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = %(schema)s
        """,
    )
    found: Snapshot = {}
    for r in rows:
        # The sequence state decides the next id (pga_jobclass_jclid_seq is at 5 after the
        # seed rows); it is read from the sequence relation itself.
        with conn.cursor() as cur:
            cur.execute(
                psycopg.sql.SQL("SELECT last_value, is_called FROM {}.{}").format(
                    psycopg.sql.Identifier(SCHEMA), psycopg.sql.Identifier(r[0])
                )
            )
            state = cur.fetchone()
        found[r[0]] = {
            "type": r[1],
            "start": r[2],
            "increment": r[3],
            "min": r[4],
            "max": r[5],
            "cache": r[6],
            "cycle": r[7],
            "owned_by": r[8],
            "persistence": r[9],
            "state": state,
        }
    return found


def _decode_tgtype(tgtype: int) -> dict[str, str]:
    row_level = tgtype & 1
    if tgtype & 2:
        timing = "BEFORE"
    elif tgtype & 64:
        timing = "INSTEAD OF"
    else:
        timing = "AFTER"
    events = [
        name
        for bit, name in ((4, "INSERT"), (16, "UPDATE"), (8, "DELETE"), (32, "TRUNCATE"))
        if tgtype & bit
    ]
    return {
        "timing": timing,
        "events": " OR ".join(events),
        "level": "ROW" if row_level else "STATEMENT",
    }


def read_triggers(conn: psycopg.Connection[Any]) -> Snapshot:
    rows = _rows(
        conn,
        """
        SELECT t.tgname, c.relname, t.tgtype, t.tgfoid::pg_catalog.regprocedure::text,
               t.tgenabled, t.tgnargs, t.tgattr::text,
               pg_catalog.pg_get_triggerdef(t.oid, true), t.tgdeferrable, t.tginitdeferred
          FROM pg_catalog.pg_trigger t
          JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = %(schema)s AND NOT t.tgisinternal
        """,
    )
    return {
        (r[0], r[1]): {
            **_decode_tgtype(r[2]),
            "function": r[3],
            "enabled": r[4],
            "nargs": r[5],
            "columns": r[6],
            "definition": r[7],
            "deferrable": r[8],
            "initially_deferred": r[9],
        }
        for r in rows
    }


def read_functions(conn: psycopg.Connection[Any]) -> Snapshot:
    rows = _rows(
        conn,
        """
        SELECT p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid),
               pg_catalog.pg_get_function_result(p.oid),
               pg_catalog.pg_get_function_arguments(p.oid),
               l.lanname, p.provolatile, p.proisstrict, p.prosecdef, p.proretset,
               p.proparallel, p.proleakproof, p.procost, p.prorows, p.proconfig, p.prokind
          FROM pg_catalog.pg_proc p
          JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
          JOIN pg_catalog.pg_language l ON l.oid = p.prolang
         WHERE n.nspname = %(schema)s
        """,
    )
    return {
        f"{r[0]}({r[1]})": {
            "returns": r[2],
            "arguments": r[3],
            "language": r[4],
            "volatility": {"i": "IMMUTABLE", "s": "STABLE", "v": "VOLATILE"}[r[5]],
            "strict": r[6],
            "security_definer": r[7],
            "returns_set": r[8],
            "parallel": r[9],
            "leakproof": r[10],
            "cost": r[11],
            "rows": r[12],
            "config": r[13],
            "kind": r[14],
        }
        for r in rows
    }


def read_privileges(conn: psycopg.Connection[Any]) -> Snapshot:
    # Effective ACLs (acldefault when NULL), with the owner's name replaced, so that who
    # may do what by default (e.g. PUBLIC EXECUTE on the functions) is compared.
    rows = _rows(
        conn,
        """
        SELECT 'schema ' || n.nspname,
               ARRAY(SELECT pg_catalog.replace(a::text, pg_catalog.pg_get_userbyid(n.nspowner) || '=', 'OWNER=')
                       FROM unnest(COALESCE(n.nspacl, pg_catalog.acldefault('n', n.nspowner))) a
                      ORDER BY 1)
          FROM pg_catalog.pg_namespace n WHERE n.nspname = %(schema)s
        UNION ALL
        SELECT CASE c.relkind WHEN 'S' THEN 'sequence ' ELSE 'relation ' END || c.relname,
               ARRAY(SELECT pg_catalog.replace(a::text, pg_catalog.pg_get_userbyid(c.relowner) || '=', 'OWNER=')
                       FROM unnest(COALESCE(c.relacl, pg_catalog.acldefault(
                            CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char",
                            c.relowner))) a
                      ORDER BY 1)
          FROM pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = %(schema)s AND c.relkind IN ('r', 'p', 'S', 'v')
        UNION ALL
        SELECT 'function ' || p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ')',
               ARRAY(SELECT pg_catalog.replace(a::text, pg_catalog.pg_get_userbyid(p.proowner) || '=', 'OWNER=')
                       FROM unnest(COALESCE(p.proacl, pg_catalog.acldefault('f', p.proowner))) a
                      ORDER BY 1)
          FROM pg_catalog.pg_proc p
          JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = %(schema)s
        """,
    )
    return {r[0]: tuple(r[1]) for r in rows}


def read_comments(conn: psycopg.Connection[Any]) -> Snapshot:
    rows = _rows(
        conn,
        """
        SELECT pg_catalog.pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description
          FROM pg_catalog.pg_description d
         WHERE (d.classoid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
                AND d.objoid = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = %(schema)s))
            OR (d.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass
                AND d.objoid IN (SELECT c.oid FROM pg_catalog.pg_class c
                                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                                  WHERE n.nspname = %(schema)s))
            OR (d.classoid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                AND d.objoid IN (SELECT p.oid FROM pg_catalog.pg_proc p
                                   JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                                  WHERE n.nspname = %(schema)s))
            OR (d.classoid = 'pg_catalog.pg_trigger'::pg_catalog.regclass
                AND d.objoid IN (SELECT t.oid FROM pg_catalog.pg_trigger t
                                   JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
                                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                                  WHERE n.nspname = %(schema)s))
            OR (d.classoid = 'pg_catalog.pg_constraint'::pg_catalog.regclass
                AND d.objoid IN (SELECT con.oid FROM pg_catalog.pg_constraint con
                                   JOIN pg_catalog.pg_namespace n ON n.oid = con.connamespace
                                  WHERE n.nspname = %(schema)s))
        """,
    )
    return {r[0]: r[1] for r in rows if r[0] not in DELIBERATE_COMMENT_DIFFERENCES}


def read_seed_rows(conn: psycopg.Connection[Any]) -> Snapshot:
    rows = _rows(conn, "SELECT jclid, jclname FROM pgagent.pga_jobclass ORDER BY jclid")
    return {r[0]: r[1] for r in rows}


ASPECTS: dict[str, Callable[[psycopg.Connection[Any]], Snapshot]] = {
    "tables": read_tables,
    "columns": read_columns,
    "column order": read_column_order,
    "CHECK constraints": read_checks,
    "foreign keys": read_foreign_keys,
    "primary keys and unique constraints": read_primary_and_unique_keys,
    "indexes": read_indexes,
    "sequences": read_sequences,
    "triggers": read_triggers,
    "functions": read_functions,
    "privileges": read_privileges,
    "comments": read_comments,
    "pga_jobclass seed rows": read_seed_rows,
}


def _snapshot(dsn: str, aspect: str) -> Snapshot:
    with psycopg.connect(dsn, autocommit=True) as conn:
        # Expressions are deparsed relative to search_path; pin it so both sides qualify
        # names the same way.
        conn.execute("SET search_path = pg_catalog")
        conn.execute("SET TimeZone = 'UTC'")
        return ASPECTS[aspect](conn)


def diff_snapshots(ours: Snapshot, theirs: Snapshot) -> list[str]:
    """Human-readable differences, one per line, keyed like the snapshots."""
    lines: list[str] = []

    def show(key: object) -> str:
        return " / ".join(map(str, key)) if isinstance(key, tuple) else str(key)

    for key in sorted(set(ours) | set(theirs), key=repr):
        if key not in theirs:
            lines.append(f"only in ours:      {show(key)}: {ours[key]!r}")
        elif key not in ours:
            lines.append(f"only in extension: {show(key)}: {theirs[key]!r}")
        elif ours[key] != theirs[key]:
            a, b = ours[key], theirs[key]
            if isinstance(a, dict) and isinstance(b, dict):
                for field in sorted(set(a) | set(b)):
                    if a.get(field) != b.get(field):
                        lines.append(
                            f"differs:           {show(key)}: {field}: "
                            f"ours={a.get(field)!r} extension={b.get(field)!r}"
                        )
            else:
                lines.append(f"differs:           {show(key)}: ours={a!r} extension={b!r}")
    return lines


def _format(aspect: str, lines: Iterable[str]) -> str:
    body = "\n  ".join(lines)
    return f"our schema differs from the pgagent 4.2 extension in {aspect}:\n  {body}"


@pytest.mark.parametrize("aspect", list(ASPECTS))
def test_schema_matches_extension(db, ext_db, aspect):
    ours = _snapshot(db.dsn, aspect)
    theirs = _snapshot(ext_db.dsn, aspect)
    assert theirs, f"nothing read from the extension for {aspect}: the reader is broken"
    lines = diff_snapshots(ours, theirs)
    assert not lines, _format(aspect, lines)


def test_deliberate_comment_difference_is_what_we_think(db, ext_db):
    """The excluded comments differ exactly as documented (and nothing hides behind it)."""
    sql = """
        SELECT c.relname, pg_catalog.obj_description(c.oid, 'pg_class')
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'pgagent' AND c.relname IN ('pga_schedule', 'pga_exception')
         ORDER BY 1
    """
    with db.connect() as conn:
        ours = conn.execute(sql).fetchall()
    with ext_db.connect() as conn:
        theirs = conn.execute(sql).fetchall()
    assert theirs == [("pga_exception", None), ("pga_schedule", "Job schedule exceptions")]
    assert ours == [
        ("pga_exception", "Job schedule exceptions"),
        ("pga_schedule", "Schedule for a job"),
    ]


def test_diff_reports_a_planted_difference(db, ext_db):
    """The comparison really sees differences: drop a default and a trigger on our side."""

    def diff(aspect: str) -> set[str]:
        return set(diff_snapshots(_snapshot(db.dsn, aspect), _snapshot(ext_db.dsn, aspect)))

    before_columns, before_triggers = diff("columns"), diff("triggers")
    with db.connect() as conn:
        conn.execute("ALTER TABLE pgagent.pga_job ALTER COLUMN jobdesc DROP DEFAULT")
        conn.execute("DROP TRIGGER pga_job_trigger ON pgagent.pga_job")
    assert diff("columns") - before_columns == {
        "differs:           pga_job / jobdesc: default: ours=None extension=\"''::text\""
    }
    (new_trigger_line,) = diff("triggers") - before_triggers
    assert new_trigger_line.startswith("only in extension: pga_job_trigger / pga_job:")
