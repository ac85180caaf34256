"""Jobs as code against pgAdmin 4's own templates (fetched at test time, see
tests/pgadmin_support.py), on our schema and on the real pgagent extension.

- Every job pgAdmin's templates create (its 19 regression scenarios, step by step, and the
  contract scenario's job with local/remote/batch/disabled steps and exceptions): `export`
  then `apply --dry-run` reports no change, and `apply` of the exported file into an empty
  schema gives the same rows, ids aside.
- A job made by `apply` reads back through pgAdmin's properties/steps/schedules/SQL-pane
  templates as the file says.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

import psycopg
from pgadmin_support import execute
from test_pgadmin_contract import (
    BATCH_STEP,
    DISABLED_STEP,
    LOCAL_STEP,
    NO_HOST,
    REMOTE_STEP,
    SCHEDULE_A,
    SCHEDULE_B,
    pgadmin_session,
    superuser,
)

from tests.jobscli import jobs, write


def snapshot(conn: psycopg.Connection[Any], jobid: int) -> dict[str, Any]:
    """Every catalogue value of a job except ids and creation/change times."""
    (job,) = conn.execute(
        "SELECT jobname, jobjclid, jobdesc, jobhostagent, jobenabled, jobnextrun"
        "  FROM pgagent.pga_job WHERE jobid = %s",
        (jobid,),
    ).fetchall()
    steps = conn.execute(
        "SELECT jstname, jstdesc, jstenabled, jstkind, jstcode, jstconnstr, jstdbname,"
        "       jstonerror FROM pgagent.pga_jobstep WHERE jstjobid = %s ORDER BY jstname, jstid",
        (jobid,),
    ).fetchall()
    schedules = conn.execute(
        "SELECT s.jscname, s.jscdesc, s.jscenabled, s.jscstart, s.jscend, s.jscminutes,"
        "       s.jschours, s.jscweekdays, s.jscmonthdays, s.jscmonths,"
        "       ARRAY(SELECT ROW(e.jexdate, e.jextime)::text FROM pgagent.pga_exception e"
        "              WHERE e.jexscid = s.jscid ORDER BY 1)"
        "  FROM pgagent.pga_schedule s WHERE s.jscjobid = %s ORDER BY s.jscname, s.jscid",
        (jobid,),
    ).fetchall()
    return {"job": job, "steps": steps, "schedules": schedules}


def assert_round_trip(source, destination, jobid: int, tmp_path, label: str) -> None:
    """export -> apply --dry-run: no change; apply into `destination`: the same rows."""
    exported = jobs(source.dsn, "export", str(jobid))
    assert exported.returncode == 0, exported.stderr
    path = write(tmp_path / f"{label}.yaml", exported.stdout)
    dry = jobs(source.dsn, "apply", str(path), "--dry-run")
    assert dry.returncode == 0, f"{label}: export then apply --dry-run changes:\n{dry.stdout}"
    assert "no changes" in dry.stdout
    applied = jobs(destination.dsn, "apply", str(path))
    assert applied.returncode == 0, f"{label}:\n{applied.stdout}\n{applied.stderr}"
    with source.connect() as src, destination.connect() as dst:
        original = snapshot(src, jobid)
        (copy_id,) = dst.execute(
            "SELECT jobid FROM pgagent.pga_job WHERE jobname = %s", (original["job"][0],)
        ).fetchone()
        assert snapshot(dst, copy_id) == original, label
        dst.execute("DELETE FROM pgagent.pga_job WHERE jobid = %s", (copy_id,))


def test_every_job_pgadmin_creates_round_trips(pgadmin, target, tmp_path):
    """pgAdmin's 19 regression scenarios, checked after every create and alter."""
    checked = 0
    with superuser(target) as admin, pgadmin_session(pgadmin, target.dsn) as session:
        jid: int | None = None
        for n, scenario in enumerate(pgadmin.regression_scenarios()):
            kind, data = scenario["type"], copy.deepcopy(scenario["data"])
            if kind == "delete":
                (found,) = admin.execute(
                    "SELECT jobid FROM pgagent.pga_job WHERE jobname = %s", (data["name"],)
                ).fetchall()
                session.job_delete(found[0])
                continue
            if kind == "create":
                jid, _ = session.job_create(data)
            else:
                assert jid is not None
                session.job_update(jid, dict(data, jobid=jid))
            assert jid is not None
            with _other_db(target) as other:
                assert_round_trip(target, other, jid, tmp_path, f"scenario{n}")
            checked += 1
    assert checked == 13  # 6 creates and 7 alters


class _other_db:
    """A second fresh database with our schema, for the copies."""

    def __init__(self, db) -> None:
        self.db = db

    def __enter__(self):
        self.other = type(self.db)(self.db.cluster, f"rt_{uuid.uuid4().hex[:12]}")
        with psycopg.connect(self.db.cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {self.other.name} TEMPLATE tpl_pyagent")
        return self.other

    def __exit__(self, *exc: object) -> None:
        with psycopg.connect(self.db.cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {self.other.name} WITH (FORCE)")


def test_the_contract_job_round_trips(pgadmin, target, tmp_path):
    """Local, remote, batch and disabled steps; two schedules with date+time, date-only
    and time-only exceptions; made by pgAdmin's job dialog templates."""
    data = {
        "jobname": "pgadmin_contract_job",
        "jobenabled": True,
        "jobhostagent": NO_HOST,
        "jobjclid": 3,
        "jobdesc": "created from pgAdmin's templates",
        "jsteps": copy.deepcopy([LOCAL_STEP, REMOTE_STEP, BATCH_STEP, DISABLED_STEP]),
        "jschedules": copy.deepcopy([SCHEDULE_A, SCHEDULE_B]),
    }
    with pgadmin_session(pgadmin, target.dsn) as session:
        jid, _ = session.job_create(data)
    assert jid is not None
    with _other_db(target) as other:
        assert_round_trip(target, other, jid, tmp_path, "contract")


JOB_FILE = """
name: applied job
class: Data Summarisation
host_agent: {host}
comment: made by pyagent jobs apply
timeout: 15 m
steps:
  - name: 10 sql
    database: {db}
    on_error: succeed
    timeout: 30 s
    code: SELECT 1
  - name: 20 batch
    kind: batch
    on_error: ignore
    description: a shell step
    code: |
      echo hello
  - name: 30 disabled
    database: {db}
    enabled: false
    code: SELECT 2
schedules:
  - name: mornings
    cron: "15 4 1 * mon"
    start: 2090-01-01 00:00:00+00:00
    end: 2095-01-01 00:00:00+00:00
    exceptions: ["2090-01-02"]
  - name: native
    minutes: 0,30
    hours: 2
    months: jan
    start: 2090-01-01 00:00:00+00:00
    exceptions: ["03:00"]
"""


def test_pgadmin_reads_back_a_job_made_by_apply(pgadmin, target, tmp_path):
    path = write(tmp_path / "job.yaml", JOB_FILE.format(db=target.name, host=NO_HOST))
    proc = jobs(target.dsn, "apply", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with superuser(target) as admin, pgadmin_session(pgadmin, target.dsn) as s:
        (jid,) = admin.execute(
            "SELECT jobid FROM pgagent.pga_job WHERE jobname = 'applied job'"
        ).fetchone()
        props = s.job_properties(jid)
        assert props["jobname"] == "applied job" and props["jobclass"] == "Data Summarisation"
        assert props["jobhostagent"] == NO_HOST and props["jobenabled"] is True
        assert props["jobdesc"] == (
            "made by pyagent jobs apply\n@JOB_TIMEOUT=15 m;\n@MANAGED_BY=pyagent;"
        )
        assert [
            (st["jstname"], st["jstkind"], st["jstconntype"], st["jstdbname"], st["jstonerror"])
            for st in props["jsteps"]
        ] == [
            ("10 sql", True, True, target.name, "s"),
            ("20 batch", False, True, "", "i"),
            ("30 disabled", True, True, target.name, "f"),
        ]
        assert props["jsteps"][0]["jstdesc"] == "@JOB_STEP_TIMEOUT=30 s;"
        schedules = {sc["jscname"]: sc for sc in props["jschedules"]}
        assert sorted(schedules) == ["mornings", "mornings (weekdays)", "native"]
        days = schedules["mornings"]
        assert days["jscmonthdays"] == [i == 0 for i in range(32)]
        assert days["jscweekdays"] == [False] * 7
        assert (
            days["jscstart"] == "2090-01-01 00:00:00+00"
            and days["jscend"] == "2095-01-01 00:00:00+00"
        )
        assert [(e["jexdate"], e["jextime"]) for e in days["jscexceptions"]] == [
            ("2090-01-02", None)
        ]
        weekdays = schedules["mornings (weekdays)"]
        assert weekdays["jscweekdays"] == [i == 1 for i in range(7)]
        assert weekdays["jscmonthdays"] == [False] * 32
        native = schedules["native"]
        assert native["jscminutes"] == [i in (0, 30) for i in range(60)]
        assert native["jschours"] == [i == 2 for i in range(24)]
        assert native["jscmonths"] == [i == 0 for i in range(12)]
        assert [(e["jexdate"], e["jextime"]) for e in native["jscexceptions"]] == [
            (None, "03:00:00")
        ]
        assert s.job_nodes(jid)[0]["jobname"] == "applied job"
        assert len(s.step_nodes(jid)) == 3 and len(s.schedule_nodes(jid)) == 3
        # The next run the schema computed: 2090-01-01 02:00 (native), a Sunday.
        assert props["jobnextrun"] == "2090-01-01 02:00:00+00"
        # pgAdmin's SQL pane for the job re-executes (in a transaction rolled back).
        pane = s.job_sql(jid)
        execute(s.conn, "BEGIN")
        try:
            execute(s.conn, pane)
        finally:
            execute(s.conn, "ROLLBACK")
        # A pgAdmin edit shows up as a change for the next apply, which puts it back.
        s.job_update(jid, {"jobid": jid, "jobdesc": "edited in pgAdmin"})
    plan = jobs(target.dsn, "apply", str(path), "--dry-run")
    assert plan.returncode == 3
    assert "comment: 'edited in pgAdmin' -> 'made by pyagent jobs apply'" in plan.stdout
    # The pgAdmin user removed the @MANAGED_BY line too: the job is no longer pruned,
    # and apply does not take it back unless the file says `managed: true`.
    assert "managed" not in plan.stdout
