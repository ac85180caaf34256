"""pgAdmin 4's own pgAgent SQL works on our schema exactly as on the real extension.

The SQL is rendered from pgAdmin 4's templates (fetched at test time, see
tests/pgadmin_support.py) and sent the way pgAdmin's views send it. Every scenario runs
against our schema (`db`) and the pgagent 4.2 extension (`ext_db`); each run checks the
outcomes it can know in advance, and a comparison test runs both and compares the
transcripts row by row (ids and timestamps included where both are deterministic; only
creation/change times and "now" are normalised).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pgadmin_support import (
    MARKERS,
    PGADMIN_VERSION,
    PgAdmin,
    PgAdminUnavailable,
    Session,
    default_cache_dir,
    execute,
    extract_wheel,
    locate_pgadmin,
    pgadmin_connect,
)
from psycopg import sql

DOCS = Path(__file__).resolve().parents[2] / "docs" / "schema.md"

NO_HOST = "pgadmin_contract_no_such_host"  # no agent will ever pick these jobs up
JOB_NAME = "pgadmin_contract_job"
JOB_CLASSES = [
    {"value": 1, "label": "Routine Maintenance"},
    {"value": 2, "label": "Data Import"},
    {"value": 3, "label": "Data Export"},
    {"value": 4, "label": "Data Summarisation"},
    {"value": 5, "label": "Miscellaneous"},
]

# Hand-computed next runs (UTC sessions) for the schedules below. They avoid the days
# 29-31 and weekday combinations, where the extension's pga_next_schedule has bugs.
FIRST_RUN_WITH_EXCEPTION = "2090-01-01 02:30:00+00"  # 02:00 is an exception
FIRST_RUN_WITHOUT_EXCEPTION = "2090-01-01 02:00:00+00"


# --- fixtures ---------------------------------------------------------------------------


@contextmanager
def pgadmin_session(pgadmin: PgAdmin, dsn: str) -> Iterator[Session]:
    conn = pgadmin_connect(dsn)
    try:
        session = Session(pgadmin, conn)
        shown, has_connstr = session.detect()
        assert shown is True and has_connstr is True
        yield session
    finally:
        conn.close()


@contextmanager
def superuser(testdb) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(testdb.dsn, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        yield conn


def bools(size: int, *true_indexes: int) -> list[bool]:
    return [i in true_indexes for i in range(size)]


# --- pgAdmin's own regression scenarios (PGA/tests/default/test_pgagent.json) -------------


def _mark_timestamps(text: str, schedules: list[dict[str, Any]], columns: list[str]) -> str:
    """Replace timestamps read back from the DB by <TIMESTAMPTZ_n>, as pgAdmin's tests do."""
    n = 0
    for schedule in schedules:
        for column in columns:
            value = schedule.get(column)
            if value is None:
                continue
            n += 1
            text = text.replace(f"'{value}'", f"'<TIMESTAMPTZ_{n}>'", 1)
    return text


def run_regression_scenarios(session: Session, pgadmin: PgAdmin, admin) -> list[str]:
    """Runs all of pgAdmin's scenarios in order; returns the names of those checked."""
    checked: list[str] = []
    jid: int | None = None
    for scenario in pgadmin.regression_scenarios():
        name, kind, data = scenario["name"], scenario["type"], scenario["data"]
        if kind == "delete":
            found = admin.execute(
                "SELECT jobid FROM pgagent.pga_job WHERE jobname = %s", (data["name"],)
            ).fetchall()
            assert len(found) == 1, name
            session.job_delete(found[0][0])
            assert not admin.execute(
                "SELECT 1 FROM pgagent.pga_job WHERE jobid = %s", (found[0][0],)
            ).fetchall()
            checked.append(name)
            continue
        if kind == "create":
            msql = session.job_msql(data)
            jid, fetched = session.job_create(data)
            assert len(fetched) == 1, f"{name}: the xmin id fetch returned {fetched}"
        else:
            assert kind == "alter" and jid is not None
            msql = session.job_msql(data, jid)
            session.job_update(jid, dict(data, jobid=jid))
        # Compared as pgAdmin's tests compare them: trailing newlines do not count.
        expected_msql = pgadmin.expected_file(scenario["expected_msql_file"])
        expected_msql = expected_msql.replace("<PGA_JOB_ID>", str(jid))
        assert msql.rstrip("\n") == expected_msql.rstrip("\n"), f"{name}: msql"
        pane = session.job_sql(jid)
        convert = scenario.get("convert_timestamp_columns", {}).get("jschedules")
        if convert:
            schedules = session.run("pga_job/sql/pre3.4/schedules.sql", jid=jid)
            pane = _mark_timestamps(pane, schedules, convert)
        expected_pane = pgadmin.expected_file(scenario["expected_sql_file"])
        assert pane.rstrip("\n") == expected_pane.rstrip("\n"), f"{name}: SQL pane"
        checked.append(name)
    return checked


def test_pgadmin_regression_scenarios(pgadmin, target):
    """pgAdmin's 19 reverse-engineered-SQL scenarios: the msql text and the SQL pane are
    byte-identical to pgAdmin's expected files (recorded against the extension)."""
    with superuser(target) as admin, pgadmin_session(pgadmin, target.dsn) as session:
        checked = run_regression_scenarios(session, pgadmin, admin)
        assert len(checked) == 19
        assert admin.execute("SELECT count(*) FROM pgagent.pga_job").fetchone() == (0,)


# --- our scenario -----------------------------------------------------------------------

LOCAL_STEP = {
    "jstid": "",
    "jstjobid": "",
    "jstname": "1 local sql",
    "jstdesc": "runs in a database of this server",
    "jstenabled": True,
    "jstkind": True,
    "jstconntype": True,
    "jstcode": "SELECT 1;",
    "jstconnstr": "",
    "jstdbname": "postgres",
    "jstonerror": "f",
    "jstnextrun": "",
}
REMOTE_STEP = dict(
    LOCAL_STEP,
    jstname="2 remote sql",
    jstdesc="runs through a connection string",
    jstconntype=False,
    jstconnstr="host=127.0.0.1 port=5432 dbname=postgres connect_timeout=5",
    jstdbname="",
    jstonerror="s",
)
BATCH_STEP = dict(
    LOCAL_STEP,
    jstname="3 batch",
    jstdesc="a shell script",
    jstkind=False,
    jstcode="echo hello\nexit 0",
    jstdbname="",
    jstonerror="i",
)
DISABLED_STEP = dict(LOCAL_STEP, jstname="4 disabled", jstenabled=False, jstcode="SELECT 2;")

SCHEDULE_A = {
    "jscid": "",
    "jscjobid": "",
    "jscname": "a monthly",
    "jscdesc": "1st of the month at 02:00 and 02:30",
    "jscenabled": True,
    "jscstart": "2090-01-01 00:00:00+00",
    "jscend": "",
    "jscminutes": bools(60, 0, 30),
    "jschours": bools(24, 2),
    "jscweekdays": bools(7),
    "jscmonthdays": bools(32, 0),
    "jscmonths": bools(12),
    "jscexceptions": [
        {"jexdate": "2090-01-01", "jextime": "02:00"},  # date and time
        {"jexdate": "2090-03-01", "jextime": None},  # date only
    ],
}
SCHEDULE_B = {
    "jscid": "",
    "jscjobid": "",
    "jscname": "b yearly",
    "jscdesc": "10th of June at 04:15",
    "jscenabled": True,
    "jscstart": "2090-06-01 00:00:00+00",
    "jscend": "2095-01-01 00:00:00+00",
    "jscminutes": bools(60, 15),
    "jschours": bools(24, 4),
    "jscweekdays": bools(7),
    "jscmonthdays": bools(32, 9),
    "jscmonths": bools(12, 5),
    "jscexceptions": [
        {"jexdate": None, "jextime": "05:00:00"},  # time only
        {"jexdate": "2090-06-10", "jextime": None},
    ],
}
SCHEDULE_C = {
    "jscid": "",
    "jscjobid": "",
    "jscname": "c added later",
    "jscdesc": "",
    "jscenabled": True,
    "jscstart": "2095-01-01 00:00:00+00",
    "jscend": "2096-01-01 00:00:00+00",
    "jscminutes": bools(60, 45),
    "jschours": bools(24, 23),
    "jscweekdays": bools(7),
    "jscmonthdays": bools(32, 13),
    "jscmonths": bools(12),
}

SCHEDULE_D = {
    "jscid": "",
    "jscjobid": "",
    "jscname": "d job dialog",
    "jscdesc": "added and removed through the job dialog",
    "jscenabled": True,
    "jscstart": "2096-01-01 00:00:00+00",
    "jscend": "",
    "jscminutes": bools(60, 5),
    "jschours": bools(24, 6),
    "jscweekdays": bools(7),
    "jscmonthdays": bools(32, 1),
    "jscmonths": bools(12),
    "jscexceptions": [{"jexdate": "2096-01-03", "jextime": "06:05:00"}],
}


class Transcript:
    """What a scenario saw, step by step, normalised where values legitimately vary."""

    def __init__(self, session: Session, admin) -> None:
        self.session, self.admin = session, admin
        self.entries: list[tuple[str, Any]] = []

    def add(self, label: str, value: Any) -> Any:
        self.entries.append((label, self._normalise(value)))
        return value

    def next_run_marker(self, jid: int) -> str | None:
        """jobnextrun as NULL, 'min(pga_next_schedule)' or 'now', checked in this DB."""
        nextrun, expected, now = self.admin.execute(
            "SELECT j.jobnextrun,"
            "       (SELECT min(pgagent.pga_next_schedule(s.jscid, s.jscstart, s.jscend,"
            "                   s.jscminutes, s.jschours, s.jscweekdays, s.jscmonthdays,"
            "                   s.jscmonths))"
            "          FROM pgagent.pga_schedule s WHERE s.jscenabled AND s.jscjobid = j.jobid),"
            "       now()"
            "  FROM pgagent.pga_job j WHERE j.jobid = %s",
            (jid,),
        ).fetchone()
        if nextrun is None:
            return None
        if nextrun == expected:
            return "min(pga_next_schedule)"
        if abs(nextrun - now) < dt.timedelta(seconds=30):
            return "now"
        return f"unexpected {nextrun} (pga_next_schedule gives {expected})"

    @staticmethod
    def _normalise(value: Any) -> Any:
        if isinstance(value, list):
            return [Transcript._normalise(v) for v in value]
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                if key in ("jobcreated", "jobchanged", "joblastrun") and item is not None:
                    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?\+00", item), item
                    out[key] = "<timestamp>"
                elif key == "jobnextrun":
                    # Checked separately (next_run_marker, test_next_runs_match_the_extension).
                    out[key] = "<see next run>" if item is not None else None
                else:
                    out[key] = Transcript._normalise(item)
            return out
        return value


def job_row(tr: Transcript, jid: int) -> dict[str, Any]:
    (row,) = tr.admin.execute(
        "SELECT jobname, jobjclid, jobhostagent, jobdesc, jobenabled"
        "  FROM pgagent.pga_job WHERE jobid = %s",
        (jid,),
    ).fetchall()
    return dict(
        zip(["jobname", "jobjclid", "jobhostagent", "jobdesc", "jobenabled"], row, strict=True)
    )


def step_rows(tr: Transcript, jid: int) -> list[tuple[Any, ...]]:
    return tr.admin.execute(
        "SELECT jstname, jstenabled, jstkind, jstcode, jstconnstr, jstdbname, jstonerror,"
        "       jstdesc FROM pgagent.pga_jobstep WHERE jstjobid = %s ORDER BY jstname",
        (jid,),
    ).fetchall()


def run_scenario(session: Session, admin) -> list[tuple[str, Any]]:
    """Everything pgAdmin does with a job, in the order a user would do it."""
    tr = Transcript(session, admin)
    s = session

    # Detection (verbatim from pgAdmin's __init__.py) and the job class dropdown.
    tr.add("detect", s.detect())
    assert s.detect() == (True, True)
    tr.add("job classes", s.job_classes())
    assert s.job_classes() == JOB_CLASSES

    # Create: a local SQL step, a remote SQL step, a batch step and a disabled step; two
    # schedules with arrays and exceptions (date+time, date-only, time-only).
    data = {
        "jobname": JOB_NAME,
        "jobenabled": True,
        "jobhostagent": NO_HOST,
        "jobjclid": 1,
        "jobdesc": "created from pgAdmin's templates",
        "jsteps": [LOCAL_STEP, REMOTE_STEP, BATCH_STEP, DISABLED_STEP],
        "jschedules": [SCHEDULE_A, SCHEDULE_B],
    }
    jid, fetched = s.job_create(data)
    tr.add("create: xmin id fetch", fetched)
    assert len(fetched) == 1 and jid is not None, "the xmin id fetch must find exactly one row"
    assert s.job_nodes(jid)[0]["jobname"] == JOB_NAME
    assert step_rows(tr, jid) == [
        ("1 local sql", True, "s", "SELECT 1;", "", "postgres", "f", LOCAL_STEP["jstdesc"]),
        (
            "2 remote sql",
            True,
            "s",
            "SELECT 1;",
            REMOTE_STEP["jstconnstr"],
            "",
            "s",
            REMOTE_STEP["jstdesc"],
        ),
        ("3 batch", True, "b", "echo hello\nexit 0", "", "", "i", BATCH_STEP["jstdesc"]),
        ("4 disabled", False, "s", "SELECT 2;", "", "postgres", "f", LOCAL_STEP["jstdesc"]),
    ]
    exceptions = admin.execute(
        "SELECT s.jscname, e.jexdate::text, e.jextime::text FROM pgagent.pga_exception e"
        " JOIN pgagent.pga_schedule s ON s.jscid = e.jexscid ORDER BY e.jexid"
    ).fetchall()
    assert exceptions == [
        ("a monthly", "2090-01-01", "02:00:00"),
        ("a monthly", "2090-03-01", None),
        ("b yearly", None, "05:00:00"),
        ("b yearly", "2090-06-10", None),
    ]
    tr.add("create: next run", tr.next_run_marker(jid))
    assert tr.next_run_marker(jid) == "min(pga_next_schedule)"

    # Reads: tree nodes, collection grid, properties dialog, step and schedule nodes.
    tr.add("job nodes", s.job_nodes())
    tr.add("job node", s.job_nodes(jid))
    tr.add("collection grid", s.job_properties())
    props = tr.add("properties", s.job_properties(jid))
    assert [st["jstname"] for st in props["jsteps"]] == [
        "1 local sql",
        "2 remote sql",
        "3 batch",
        "4 disabled",
    ]
    assert [(st["jstkind"], st["jstconntype"]) for st in props["jsteps"]] == [
        (True, True),
        (True, False),
        (False, True),
        (True, True),
    ]
    sched_a, sched_b = props["jschedules"]
    assert sched_a["jscminutes"] == SCHEDULE_A["jscminutes"]
    assert sched_a["jscstart"] == "2090-01-01 00:00:00+00" and sched_a["jscend"] is None
    assert sched_b["jscend"] == "2095-01-01 00:00:00+00"
    assert [(e["jexdate"], e["jextime"]) for e in sched_a["jscexceptions"]] == [
        ("2090-01-01", "02:00:00"),
        ("2090-03-01", None),
    ]
    assert [(e["jexdate"], e["jextime"]) for e in sched_b["jscexceptions"]] == [
        (None, "05:00:00"),
        ("2090-06-10", None),
    ]
    assert props["jlgstatus"] is None and props["jobclass"] == "Routine Maintenance"
    steps = {st["jstname"]: st["jstid"] for st in props["jsteps"]}
    tr.add("step nodes", s.step_nodes(jid))
    tr.add("step properties", s.step_properties(jid, steps["2 remote sql"]))
    tr.add("schedule nodes", s.schedule_nodes(jid))
    tr.add("schedule properties", s.schedule_properties(jid, sched_b["jscid"]))
    pane = tr.add("SQL pane", s.job_sql(jid))
    # The SQL pane re-creates the job; with the original still there, pgAdmin's script
    # collides with the global unique (jexdate, jextime) index of pga_exception.
    execute(s.conn, "BEGIN")
    try:
        execute(s.conn, pane)
        outcome = "ran"
    except psycopg.Error as exc:
        outcome = type(exc).__name__
    finally:
        execute(s.conn, "ROLLBACK")
    tr.add("SQL pane re-executed", outcome)
    assert outcome == "UniqueViolation"

    # Job update: name, class, host, comment; disable and enable.
    tr.add(
        "update job",
        s.job_update(
            jid,
            {
                "jobid": jid,
                "jobname": JOB_NAME + " renamed",
                "jobjclid": 4,
                "jobhostagent": NO_HOST + "_2",
                "jobdesc": "edited",
            },
        ),
    )
    assert job_row(tr, jid) == {
        "jobname": JOB_NAME + " renamed",
        "jobjclid": 4,
        "jobhostagent": NO_HOST + "_2",
        "jobdesc": "edited",
        "jobenabled": True,
    }
    s.job_update(jid, {"jobid": jid, "jobenabled": False})
    tr.add("disabled: next run", tr.next_run_marker(jid))
    assert tr.next_run_marker(jid) is None
    s.job_update(jid, {"jobid": jid, "jobenabled": True})
    tr.add("enabled: next run", tr.next_run_marker(jid))
    assert tr.next_run_marker(jid) == "min(pga_next_schedule)"

    # Steps and schedules changed through the job dialog, in one update.
    new_step = dict(LOCAL_STEP, jstname="5 added", jstcode="SELECT 5;")
    s.job_update(
        jid,
        {
            "jobid": jid,
            "jsteps": {
                "added": [new_step],
                # No jstconntype: pgAdmin looks the step up (it is a remote step).
                "changed": [{"jstid": steps["2 remote sql"], "jstconnstr": "host=10.0.0.1"}],
                "deleted": [{"jstid": steps["4 disabled"]}],
            },
            "jschedules": {
                "changed": [
                    {
                        "jscid": sched_b["jscid"],
                        "jscdesc": "changed",
                        "jschours": "[" + ",".join(["false"] * 4 + ["true"] + ["false"] * 19) + "]",
                    }
                ],
                "added": [SCHEDULE_D],
            },
        },
    )
    schedules_now = s.schedule_nodes(jid)
    tr.add("schedules after job update", schedules_now)
    assert [n["jscname"] for n in schedules_now] == ["a monthly", "b yearly", "d job dialog"]
    assert s.schedule_properties(jid, sched_b["jscid"])[0]["jschours"] == bools(24, 4)
    (sched_d,) = [n["jscid"] for n in schedules_now if n["jscname"] == "d job dialog"]
    assert admin.execute(
        "SELECT jexdate::text, jextime::text FROM pgagent.pga_exception WHERE jexscid = %s",
        (sched_d,),
    ).fetchall() == [("2096-01-03", "06:05:00")]
    tr.add("schedule added by the job dialog: next run", tr.next_run_marker(jid))
    s.job_update(jid, {"jobid": jid, "jschedules": {"deleted": [{"jscid": sched_d}]}})
    assert [n["jscname"] for n in s.schedule_nodes(jid)] == ["a monthly", "b yearly"]
    assert not admin.execute(
        "SELECT 1 FROM pgagent.pga_exception WHERE jexscid = %s", (sched_d,)
    ).fetchall()
    tr.add("schedule deleted by the job dialog: next run", tr.next_run_marker(jid))
    tr.add("steps after job update", step_rows(tr, jid))
    assert [r[0] for r in step_rows(tr, jid)] == [
        "1 local sql",
        "2 remote sql",
        "3 batch",
        "5 added",
    ]
    assert step_rows(tr, jid)[1][4] == "host=10.0.0.1"

    # The step node: create, switch local -> remote -> local, SQL -> batch -> SQL, and the
    # dbname-only / connstr-only edits that go through the lookup.
    jstid = s.step_create(jid, dict(LOCAL_STEP, jstname="6 step node", jstcode="SELECT 6;"))
    kinds = []
    for change in (
        {"jstconntype": False, "jstconnstr": "host=127.0.0.1 dbname=postgres"},
        {"jstconntype": True, "jstdbname": "template1"},
        {"jstkind": False},
        {"jstkind": True, "jstdbname": "postgres", "jstname": "6 step node renamed"},
        {"jstdbname": "template1"},
        {"jstconntype": False, "jstconnstr": "host=127.0.0.1"},
        {"jstconnstr": "host=127.0.0.2", "jstonerror": "i", "jstcode": "SELECT 7;"},
        {"jstenabled": False, "jstdesc": "off"},
    ):
        node = s.step_update(jid, jstid, dict(change))
        row = admin.execute(
            "SELECT jstkind, jstconnstr, jstdbname, jstenabled FROM pgagent.pga_jobstep"
            " WHERE jstid = %s",
            (jstid,),
        ).fetchone()
        kinds.append((node, row))
    tr.add("step node edits", kinds)
    assert [k[1] for k in kinds] == [
        ("s", "host=127.0.0.1 dbname=postgres", "", True),
        ("s", "", "template1", True),
        ("b", "", "", True),
        ("s", "", "postgres", True),
        ("s", "", "template1", True),
        ("s", "host=127.0.0.1", "", True),
        ("s", "host=127.0.0.2", "", True),
        ("s", "host=127.0.0.2", "", False),
    ]
    tr.add("step node properties", s.step_properties(jid, jstid))
    s.step_delete(jid, jstid)
    assert s.step_nodes(jid, jstid) == []

    # The schedule node: create (xmin id fetch), edits with list and with text arrays,
    # clearing jscend, exceptions added/changed/deleted, delete.
    jscid, fetched = s.schedule_create(jid, dict(SCHEDULE_C))
    tr.add("schedule create: xmin id fetch", fetched)
    assert len(fetched) == 1 and jscid is not None
    tr.add("schedule created: next run", tr.next_run_marker(jid))
    s.schedule_update(jid, jscid, {"jscminutes": bools(60, 40, 50), "jscname": "c renamed"})
    s.schedule_update(
        jid, jscid, {"jscmonths": "[" + ",".join(["true"] + ["false"] * 11) + "]", "jscend": ""}
    )
    s.schedule_update(
        jid,
        jscid,
        {"jscexceptions": {"added": [{"jexdate": "2095-01-14", "jextime": "23:40"}]}},
    )
    (exc_row,) = admin.execute(
        "SELECT jexid FROM pgagent.pga_exception WHERE jexscid = %s", (jscid,)
    ).fetchall()
    s.schedule_update(
        jid,
        jscid,
        {
            "jscexceptions": {
                "changed": [{"jexid": exc_row[0], "jexdate": "2095-01-15", "jextime": ""}]
            }
        },
    )
    props_c = tr.add("schedule node properties", s.schedule_properties(jid, jscid))
    assert props_c[0]["jscname"] == "c renamed" and props_c[0]["jscend"] is None
    assert props_c[0]["jscminutes"] == bools(60, 40, 50)
    assert props_c[0]["jscmonths"] == bools(12, 0)
    assert (props_c[0]["jexdate"], props_c[0]["jextime"]) == (["2095-01-15"], [None])
    s.schedule_update(jid, jscid, {"jscexceptions": {"deleted": [{"jexid": exc_row[0]}]}})
    s.schedule_delete(jid, jscid)
    assert s.schedule_nodes(jid, jscid) == []
    tr.add("schedule deleted: next run", tr.next_run_marker(jid))

    # Deleting an exception through the job dialog moves the next run.
    (a_exc,) = admin.execute(
        "SELECT jexid FROM pgagent.pga_exception WHERE jexdate = '2090-01-01'"
    ).fetchall()
    before = admin.execute(
        "SELECT jobnextrun FROM pgagent.pga_job WHERE jobid = %s", (jid,)
    ).fetchone()
    s.job_update(
        jid,
        {
            "jobid": jid,
            "jschedules": {
                "changed": [
                    {"jscid": sched_a["jscid"], "jscexceptions": {"deleted": [{"jexid": a_exc[0]}]}}
                ]
            },
        },
    )
    after = admin.execute(
        "SELECT jobnextrun FROM pgagent.pga_job WHERE jobid = %s", (jid,)
    ).fetchone()
    tr.add("exception deleted: next run", tr.next_run_marker(jid))
    assert tr.next_run_marker(jid) == "min(pga_next_schedule)"
    assert after < before, "deleting the 02:00 exception must move the next run earlier"

    # Run now, then run now on a disabled job (the trigger keeps it NULL).
    s.job_run_now(jid)
    tr.add("run now: next run", tr.next_run_marker(jid))
    assert tr.next_run_marker(jid) == "now"
    s.job_update(jid, {"jobid": jid, "jobenabled": False})
    s.job_run_now(jid)
    tr.add("run now while disabled: next run", tr.next_run_marker(jid))
    assert tr.next_run_marker(jid) is None
    s.job_update(jid, {"jobid": jid, "jobenabled": True})

    # Statistics and "last result", with all five status codes; newest first, LIMIT.
    step_id = steps["1 local sql"]
    for i, status in enumerate("sfidr"):
        jlgid = admin.execute(
            "INSERT INTO pgagent.pga_joblog (jlgjobid, jlgstatus, jlgstart, jlgduration)"
            " VALUES (%s, %s, %s, %s) RETURNING jlgid",
            (
                jid,
                status,
                dt.datetime(2030, 1, 1, 0, i, tzinfo=dt.UTC),
                None if status == "r" else dt.timedelta(seconds=i + 1),
            ),
        ).fetchone()[0]
        admin.execute(
            "INSERT INTO pgagent.pga_jobsteplog (jsljlgid, jsljstid, jslstatus, jslresult,"
            " jslstart, jslduration, jsloutput) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                jlgid,
                step_id,
                status,
                None if status == "r" else (1 if status == "s" else -1),
                dt.datetime(2030, 1, 1, 0, i, tzinfo=dt.UTC),
                None if status == "r" else dt.timedelta(seconds=i + 1),
                "" if status in "sr" else "ERROR:  division by zero",
            ),
        )
    stats = tr.add("job statistics", s.job_statistics(jid))
    assert [r["Status"] for r in stats] == ["r", "d", "i", "f", "s"]
    assert stats[0]["End time"] is None and stats[1]["End time"] == "2030-01-01 00:03:04+00"
    s.rows_threshold = 2
    assert [r["Status"] for r in s.job_statistics(jid)] == ["r", "d"]
    tr.add("step statistics", s.step_statistics(jid, step_id))
    s.rows_threshold = 250
    last = tr.add("last result", s.job_properties(jid)["jlgstatus"])
    assert last == "r"

    # Delete: everything of the job goes by cascade.
    s.job_delete(jid)
    left = admin.execute(
        "SELECT (SELECT count(*) FROM pgagent.pga_job), (SELECT count(*) FROM pgagent.pga_jobstep),"
        " (SELECT count(*) FROM pgagent.pga_schedule), (SELECT count(*) FROM pgagent.pga_exception),"
        " (SELECT count(*) FROM pgagent.pga_joblog), (SELECT count(*) FROM pgagent.pga_jobsteplog)"
    ).fetchone()
    tr.add("left after delete", left)
    assert left == (0, 0, 0, 0, 0, 0)
    assert s.job_nodes() == []
    return tr.entries


def test_pgadmin_scenario(pgadmin, target):
    with superuser(target) as admin, pgadmin_session(pgadmin, target.dsn) as session:
        run_scenario(session, admin)


def _compare(
    ours: list[tuple[str, Any]],
    theirs: list[tuple[str, Any]],
    names: tuple[str, str] = ("ours", "extension"),
) -> list[str]:
    """Row-by-row differences between two transcripts."""
    a_name, b_name = names
    a_labels, b_labels = [label for label, _ in ours], [label for label, _ in theirs]
    if a_labels != b_labels:
        return [f"different steps: {a_name}={a_labels} {b_name}={b_labels}"]
    lines = []
    for (label, a), (_, b) in zip(ours, theirs, strict=True):
        if a == b:
            continue
        if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (ra, rb) in enumerate(zip(a, b, strict=True)):
                if ra != rb:
                    lines.append(f"{label}, row {i}:\n    {a_name}: {ra!r}\n    {b_name}: {rb!r}")
        else:
            lines.append(f"{label}:\n    {a_name}: {a!r}\n    {b_name}: {b!r}")
    return lines


def test_pgadmin_outcomes_are_the_same_on_both(pgadmin, db, ext_db):
    transcripts = []
    for testdb in (db, ext_db):
        with superuser(testdb) as admin, pgadmin_session(pgadmin, testdb.dsn) as session:
            transcripts.append(run_scenario(session, admin))
    differences = _compare(*transcripts)
    assert not differences, "pgAdmin sees a difference:\n" + "\n".join(differences)


def test_next_runs_match_the_extension(pgadmin, db, ext_db):
    """jobnextrun as set by the triggers, ours vs the extension, for schedules where the
    extension's pga_next_schedule is right (and the hand-computed values)."""
    results = {}
    for label, testdb in (("ours", db), ("extension", ext_db)):
        with superuser(testdb) as admin, pgadmin_session(pgadmin, testdb.dsn) as s:
            jid, _ = s.job_create(
                {
                    "jobname": JOB_NAME,
                    "jobenabled": True,
                    "jobhostagent": NO_HOST,
                    "jobjclid": 1,
                    "jobdesc": "",
                    "jsteps": [LOCAL_STEP],
                    "jschedules": [SCHEDULE_A, SCHEDULE_B],
                }
            )
            values = [s.job_properties(jid)["jobnextrun"]]
            (exc,) = admin.execute(
                "SELECT jexid FROM pgagent.pga_exception WHERE jexdate = '2090-01-01'"
            ).fetchall()
            schedule_a = s.schedule_nodes(jid)[0]["jscid"]
            s.schedule_update(jid, schedule_a, {"jscexceptions": {"deleted": [{"jexid": exc[0]}]}})
            values.append(s.job_properties(jid)["jobnextrun"])
            s.schedule_update(jid, schedule_a, {"jscenabled": False})
            values.append(s.job_properties(jid)["jobnextrun"])  # only B is left
            results[label] = values
    assert results["extension"] == [
        FIRST_RUN_WITH_EXCEPTION,
        FIRST_RUN_WITHOUT_EXCEPTION,
        "2091-06-10 04:15:00+00",  # 2090-06-10 is an exception
    ]
    assert results["ours"] == results["extension"]


# --- a non-superuser pgAdmin role with the documented grants ----------------------------


def pgadmin_grants_from_docs(role: str) -> list[str]:
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(
        r"<!-- BEGIN pgadmin grants -->\s*```sql\n(.*?)```\s*<!-- END pgadmin grants -->",
        text,
        re.DOTALL,
    )
    assert match, "docs/schema.md lost its pgAdmin grants block"
    statements = [s.strip() for s in match.group(1).split(";") if s.strip()]
    return [s.replace("pgadmin_user", role) for s in statements]


@contextmanager
def login_role(testdb, grants: Callable[[str], list[str]]) -> Iterator[str]:
    name = f"pgadmin_{uuid.uuid4().hex[:10]}"
    password = uuid.uuid4().hex
    with testdb.connect() as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(password)
            )
        )
        for statement in grants(name):
            conn.execute(statement)
    try:
        yield testdb.cluster.dsn(testdb.name, user=name, password=password)
    finally:
        with testdb.connect() as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_pgadmin_role_with_documented_grants(pgadmin, target):
    """The whole scenario works for a non-superuser with exactly the documented grants,
    and pgAdmin sees what a superuser sees."""
    with superuser(target) as admin, login_role(target, pgadmin_grants_from_docs) as dsn:
        with pgadmin_session(pgadmin, dsn) as session:
            restricted = run_scenario(session, admin)
        with pgadmin_session(pgadmin, target.dsn) as session:
            full = run_scenario(session, admin)
    differences = _compare(
        [(label, _strip_ids(value)) for label, value in restricted],
        [(label, _strip_ids(value)) for label, value in full],
        ("restricted role", "superuser"),
    )
    assert not differences, "\n".join(differences)


_ID_KEYS = {"jobid", "jstid", "jstjobid", "jscid", "jscjobid", "jexid", "jexscid", "Run"}


def _strip_ids(value: Any) -> Any:
    """For a second run in the same database, where the serial ids have moved on."""
    if isinstance(value, list | tuple):
        return type(value)(_strip_ids(v) for v in value)
    if isinstance(value, dict):
        return {k: "<id>" if k in _ID_KEYS else _strip_ids(v) for k, v in value.items()}
    return value


def test_pgadmin_hides_the_node_without_privileges(pgadmin, target):
    """Detection as pgAdmin does it: no USAGE -> the query fails (node hidden); USAGE but
    no table privilege -> false (node hidden); SELECT on pga_job alone -> shown."""
    presence, _ = pgadmin.detection_queries()

    def nothing(_: str) -> list[str]:
        return []

    with login_role(target, nothing) as dsn:
        conn = pgadmin_connect(dsn)
        try:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                execute(conn, presence)
        finally:
            conn.close()

    def usage_only(role: str) -> list[str]:
        return [f"GRANT USAGE ON SCHEMA pgagent TO {role}"]

    with login_role(target, usage_only) as dsn:
        conn = pgadmin_connect(dsn)
        try:
            assert execute(conn, presence) == [{"has_priviledge": False}]
        finally:
            conn.close()

    def select_job(role: str) -> list[str]:
        return [*usage_only(role), f"GRANT SELECT ON pgagent.pga_job TO {role}"]

    with login_role(target, select_job) as dsn:
        conn = pgadmin_connect(dsn)
        try:
            assert execute(conn, presence) == [{"has_priviledge": True}]
        finally:
            conn.close()


def test_detection_on_a_database_without_the_schema(pgadmin, empty_db):
    presence, _ = pgadmin.detection_queries()
    conn = pgadmin_connect(empty_db.dsn)
    try:
        assert execute(conn, presence) == []  # no row: pgAdmin hides the node
    finally:
        conn.close()


# --- obtaining the templates --------------------------------------------------------------


def test_extract_wheel_takes_only_what_is_needed(tmp_path, monkeypatch):
    """Only the pgAgent templates, its __init__.py, its expected test outputs and the
    keyword table come out of the wheel; the cache is then found without pip."""
    wheel = tmp_path / f"pgadmin4-{PGADMIN_VERSION}-py3-none-any.whl"
    wanted = [f"pgadmin4/{m}" for m in MARKERS]
    unwanted = [
        "pgadmin4/pgadmin/browser/server_groups/servers/pgagent/utils.py",
        "pgadmin4/pgadmin/browser/server_groups/servers/pgagent/static/js/pga_job.js",
        "pgadmin4/pgadmin/browser/server_groups/servers/pgagent/tests/test_x.py",
        "pgadmin4/pgadmin/utils/driver/psycopg3/__init__.py",
        "pgadmin4/config.py",
    ]
    with zipfile.ZipFile(wheel, "w") as archive:
        for name in wanted + unwanted:
            archive.writestr(name, f"-- {name}\n")
    cache = tmp_path / "home" / ".cache" / "pyagent" / f"pgadmin4-{PGADMIN_VERSION}"
    extract_wheel(wheel, cache)
    extracted = sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())
    assert extracted == sorted(str(m) for m in MARKERS)
    assert not list(cache.parent.glob(".*partial*"))

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PYAGENT_PGADMIN_DIR", raising=False)
    assert default_cache_dir() == cache
    assert locate_pgadmin(tmp_path / "no-download") == cache  # no pip run
    assert not (tmp_path / "no-download").exists()


def test_extract_wheel_refuses_paths_outside_the_cache(tmp_path):
    wheel = tmp_path / "evil.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for marker in MARKERS:
            archive.writestr(f"pgadmin4/{marker}", "")
        archive.writestr(
            "pgadmin4/pgadmin/browser/server_groups/servers/pgagent/templates/../../../../../../../../x",
            "",
        )
    with pytest.raises(PgAdminUnavailable, match="refusing to extract"):
        extract_wheel(wheel, tmp_path / "cache")
    assert list(tmp_path.iterdir()) == [wheel]  # no cache, no leftovers
