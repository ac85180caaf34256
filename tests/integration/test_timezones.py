"""Per-job time zones (`@TIMEZONE=Europe/Berlin;`) with real sessions in different zones:
`jobs apply` in UTC, agents with PGTZ, pgAdmin's own templates in an Asia/Tokyo session,
plain SQL; on our schema and on the real pgagent extension (with `schema add-extras`, whose
trigger never changes the extension's objects). Jobs without the annotation keep pgAgent's
behaviour (tests/conformance, and the session-zone tests of tests/reliability).
"""

from __future__ import annotations

import json
import zoneinfo
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from test_pgadmin_contract import pgadmin_session

from pyagent import schedule
from pyagent.annotations import AnnotationError, parse_timezone
from pyagent.extras import add_notify_trigger
from tests.agentproc import AgentProcess, job_logs, make_job, wait_job_finished, wait_until
from tests.jobscli import jobs, no_traceback, write

BERLIN = ZoneInfo("Europe/Berlin")
NIGHTLY = """\
name: nightly
timezone: Europe/Berlin
steps:
  - name: 10 work
    database: {db}
    code: SELECT 1
schedules:
  - name: three
    cron: 0 3 * * *
"""


@contextmanager
def session_in(dsn: str, zone: str):
    """A plain session (as a psql user would have) whose TimeZone is `zone`."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT set_config('TimeZone', %s, false)", (zone,))
        yield conn


def agent(dsn: str, **env: str) -> AgentProcess:
    return AgentProcess(dsn, ["-t", "1"], env=env)


def job_row(conn, job_id: int) -> tuple[Any, ...]:
    return conn.execute(
        "SELECT jobnextrun, now(), jobagentid FROM pgagent.pga_job WHERE jobid = %s", (job_id,)
    ).fetchone()


def schedules_give(conn, job_id: int, zone: str) -> datetime | None:
    """The job's next run from now by the schema's own function, schedules read in `zone`."""
    with conn.transaction(force_rollback=True):
        conn.execute("SELECT set_config('TimeZone', %s, true)", (zone,))
        (value,) = conn.execute(
            "SELECT min(pgagent.pga_next_schedule(jscid, jscstart, jscend, jscminutes,"
            " jschours, jscweekdays, jscmonthdays, jscmonths))"
            "  FROM pgagent.pga_schedule WHERE jscenabled AND jscjobid = %s",
            (job_id,),
        ).fetchone()
    return value


def assert_three_in_berlin(conn, job_id: int, step: str) -> datetime:
    next_run, now, _ = job_row(conn, job_id)
    assert next_run is not None, step
    local = next_run.astimezone(BERLIN)
    assert (local.hour, local.minute) == (3, 0), f"{step}: {local}"
    assert now < next_run <= now + timedelta(hours=25), step
    assert next_run == schedules_give(conn, job_id, "Europe/Berlin"), step
    return next_run


def run_once(conn, job_id: int, dsn: str, **env: str) -> AgentProcess:
    runs = len(job_logs(conn, job_id))
    conn.execute("UPDATE pgagent.pga_job SET jobnextrun = now() WHERE jobid = %s", (job_id,))
    started = agent(dsn, **env)
    wait_job_finished(conn, job_id, runs=runs + 1)
    return started


# ---- the scenario ------------------------------------------------------------------


def test_the_job_runs_at_three_in_berlin_whoever_writes_its_next_run(target, pgadmin, tmp_path):
    add_notify_trigger(target.dsn)  # `pyagent schema add-extras`
    path = write(tmp_path / "nightly.yaml", NIGHTLY.format(db=target.name))
    # 1. created by `jobs apply` in a UTC session
    applied = jobs(target.dsn + " options='-c TimeZone=UTC'", "apply", str(path))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    with target.connect() as conn:
        (job_id,) = conn.execute(
            "SELECT jobid FROM pgagent.pga_job WHERE jobname = 'nightly'"
        ).fetchone()
        assert_three_in_berlin(conn, job_id, "created in UTC")
        # 2. run by an agent whose environment has PGTZ=America/New_York
        ny = run_once(conn, job_id, target.dsn, PGTZ="America/New_York")
        assert [r[1] for r in job_logs(conn, job_id)] == ["s"]
        assert_three_in_berlin(conn, job_id, "run by an agent in New York")
        # That agent said once, at start, that its zone is its own.
        log = ny.log_text()
        assert log.count("session TimeZone is America/New_York") == 1, log
        assert "set by PGTZ=America/New_York in the agent's environment" in log
        ny.stop()
    # 3. edited with pgAdmin's own templates from a session in Asia/Tokyo
    with pgadmin_session(pgadmin, target.dsn) as s:
        s.conn.execute("SET TimeZone = 'Asia/Tokyo'")
        with target.connect() as conn:
            (jscid,) = conn.execute(
                "SELECT jscid FROM pgagent.pga_schedule WHERE jscjobid = %s", (job_id,)
            ).fetchone()
        s.job_update(
            job_id,
            {
                "jobid": job_id,
                "jobdesc": "edited in Tokyo\n@TIMEZONE=Europe/Berlin;",
                "jschedules": {"changed": [{"jscid": jscid, "jscdesc": "nightly, Berlin time"}]},
            },
        )
        with target.connect() as conn:
            assert_three_in_berlin(conn, job_id, "edited by pgAdmin in Tokyo")
        # The schedule itself moved to 04:30, still in Berlin time.
        s.schedule_update(
            job_id,
            jscid,
            {"jschours": [h == 4 for h in range(24)], "jscminutes": [m == 30 for m in range(60)]},
        )
        with target.connect() as conn:
            next_run = job_row(conn, job_id)[0].astimezone(BERLIN)
            assert (next_run.hour, next_run.minute) == (4, 30)
        # "Run now" from pgAdmin is kept as it is, not recomputed.
        s.job_run_now(job_id)
        with target.connect() as conn:
            next_run, now, _ = job_row(conn, job_id)
            assert next_run <= now


def test_a_job_pgadmin_creates_in_tokyo_with_a_zone_runs_in_that_zone(target, pgadmin):
    add_notify_trigger(target.dsn)
    schedule_row = {
        "jscid": "",
        "jscjobid": "",
        "jscname": "three",
        "jscdesc": "",
        "jscenabled": True,
        "jscstart": "2020-01-01 00:00:00+00",
        "jscend": "",
        "jscminutes": [m == 0 for m in range(60)],
        "jschours": [h == 3 for h in range(24)],
        "jscweekdays": [False] * 7,
        "jscmonthdays": [False] * 32,
        "jscmonths": [False] * 12,
        "jscexceptions": [],
    }
    with pgadmin_session(pgadmin, target.dsn) as s:
        s.conn.execute("SET TimeZone = 'Asia/Tokyo'")
        jid, _ = s.job_create(
            {
                "jobname": "made in pgAdmin",
                "jobenabled": True,
                "jobhostagent": "",
                "jobjclid": 1,
                "jobdesc": "nightly\n@TIMEZONE=Europe/Berlin;",
                "jsteps": [],
                "jschedules": [schedule_row],
            }
        )
    # pgAdmin finds the new job by xmin: the trigger's EXCEPTION blocks write nothing, so
    # the row still carries the top transaction's id.
    assert jid is not None
    with target.connect() as conn:
        assert_three_in_berlin(conn, jid, "created by pgAdmin in Tokyo")


def test_without_the_extras_the_agent_and_apply_still_honour_the_zone(target, tmp_path):
    path = write(tmp_path / "nightly.yaml", NIGHTLY.format(db=target.name))
    applied = jobs(target.dsn + " options='-c TimeZone=Asia/Tokyo'", "apply", str(path))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    with target.connect() as conn:
        (job_id,) = conn.execute(
            "SELECT jobid FROM pgagent.pga_job WHERE jobname = 'nightly'"
        ).fetchone()
        assert_three_in_berlin(conn, job_id, "created in Tokyo")
        run_once(conn, job_id, target.dsn, PGTZ="America/New_York").stop()
        assert_three_in_berlin(conn, job_id, "run by an agent in New York")
        # `jobs disable` then `jobs enable` from a UTC session: the enable recomputes it.
        utc = target.dsn + " options='-c TimeZone=UTC'"
        assert jobs(utc, "disable", "nightly").returncode == 0
        assert jobs(utc, "enable", "nightly").returncode == 0
        assert_three_in_berlin(conn, job_id, "enabled in UTC")


def test_a_job_without_the_annotation_keeps_pgagents_session_zone(target):
    add_notify_trigger(target.dsn)
    with session_in(target.dsn, "Asia/Tokyo") as tokyo:
        job_id = make_job(tokyo, "no zone", [{"jstcode": "SELECT 1"}])
        tokyo.execute(
            "INSERT INTO pgagent.pga_schedule (jscjobid, jscname, jscminutes, jschours)"
            " VALUES (%s, 's', %s, %s)",
            (job_id, [m == 0 for m in range(60)], [h == 3 for h in range(24)]),
        )
        assert job_row(tokyo, job_id)[0] == schedules_give(tokyo, job_id, "Asia/Tokyo")
        run_once(tokyo, job_id, target.dsn, PGTZ="America/New_York").stop()
        assert job_row(tokyo, job_id)[0] == schedules_give(tokyo, job_id, "America/New_York")


# ---- retries, zombies, unknown zones -------------------------------------------------------


def test_a_retried_jobs_return_to_its_schedule_is_in_its_zone(db, conn):
    job_id = make_job(
        conn,
        "flaky",
        [{"jstcode": "SELECT 1/0"}],
        desc="@RETRIES=1;\n@RETRY_DELAY=0;\n@TIMEZONE=Europe/Berlin;",
    )
    conn.execute(
        "INSERT INTO pgagent.pga_schedule (jscjobid, jscname, jscminutes, jschours)"
        " VALUES (%s, 's', %s, %s)",
        (job_id, [m == 0 for m in range(60)], [h == 3 for h in range(24)]),
    )
    conn.execute("UPDATE pgagent.pga_job SET jobnextrun = now() WHERE jobid = %s", (job_id,))
    ny = agent(db.dsn, PGTZ="America/New_York")
    # The failed run is retried at once; the retry fails too and the job goes back to its
    # schedule: 03:00 in Berlin, computed in the retry's release.
    wait_job_finished(conn, job_id, runs=2)
    assert [r[1] for r in job_logs(conn, job_id)] == ["f", "f"]
    assert_three_in_berlin(conn, job_id, "after the retries")
    assert "retries are used up" in ny.log_text()


def test_a_dead_agents_job_is_released_in_its_zone(db, conn):
    job_id = make_job(conn, "orphan", [{"jstcode": "SELECT 1"}], desc="@TIMEZONE=Europe/Berlin;")
    conn.execute(
        "INSERT INTO pgagent.pga_schedule (jscjobid, jscname, jscminutes, jschours)"
        " VALUES (%s, 's', %s, %s)",
        (job_id, [m == 0 for m in range(60)], [h == 3 for h in range(24)]),
    )
    # An agent that died in the middle of a run: its row, its claim, its running log.
    conn.execute("INSERT INTO pgagent.pga_jobagent (jagpid, jagstation) VALUES (9999999, 'gone')")
    conn.execute(
        "UPDATE pgagent.pga_job SET jobagentid = 9999999, joblastrun = now() WHERE jobid = %s",
        (job_id,),
    )
    conn.execute("INSERT INTO pgagent.pga_joblog (jlgjobid, jlgstatus) VALUES (%s, 'r')", (job_id,))
    agent(db.dsn, PGTZ="America/New_York")
    wait_until(lambda: job_row(conn, job_id)[2] is None, what="the zombie's job released")
    assert [r[1] for r in job_logs(conn, job_id)] == ["d"]
    assert_three_in_berlin(conn, job_id, "released by the zombie sweep")


def test_an_unknown_zone_is_one_line_and_pgagents_behaviour(db, conn):
    job_id = make_job(conn, "typo", [{"jstcode": "SELECT 1"}], desc="@TIMEZONE=Europe/Berln;")
    conn.execute(
        "INSERT INTO pgagent.pga_schedule (jscjobid, jscname, jscminutes, jschours)"
        " VALUES (%s, 's', %s, %s)",
        (job_id, [m == 0 for m in range(60)], [h == 3 for h in range(24)]),
    )
    ny = run_once(conn, job_id, db.dsn, PGTZ="America/New_York")
    lines = [line for line in ny.log_text().splitlines() if "Europe/Berln" in line]
    assert len(lines) == 1, lines
    assert "ignoring @TIMEZONE: 'Europe/Berln' is not a known time zone name" in lines[0]
    assert job_row(conn, job_id)[0] == schedules_give(conn, job_id, "America/New_York")


def test_an_agent_in_the_databases_zone_says_nothing_about_it(db, conn):
    job_id = make_job(conn, "plain", [{"jstcode": "SELECT 1"}], run_now=True)
    quiet = agent(db.dsn)
    wait_job_finished(conn, job_id)
    assert "session TimeZone" not in quiet.log_text()
    tokyo = agent(db.cluster.dsn(db.name, options="-c TimeZone=Asia/Tokyo"))
    tokyo.wait_registered(count=2)
    wait_until(lambda: "session TimeZone" in tokyo.log_text(), what="the start-up line")
    assert "options=-c TimeZone=... in the agent's connection string" in tokyo.log_text()


# ---- daylight-saving time in the job's zone ---------------------------------------------------

# Berlin springs forward on 2027-03-28 (02:00 -> 03:00): 02:30 does not exist that day.
DST_CASES = [
    ("the day before", "2027-03-27 00:00", "2027-03-27 01:30"),
    ("spring-forward day", "2027-03-28 00:00", "2027-03-29 00:30"),
    ("the day after", "2027-03-29 00:00", "2027-03-29 00:30"),
]


@pytest.mark.parametrize(
    ("case", "start", "expected_utc"), DST_CASES, ids=[c[0] for c in DST_CASES]
)
def test_daily_0230_in_berlin_across_its_spring_forward(target, case, start, expected_utc):
    add_notify_trigger(target.dsn)
    expected = datetime.fromisoformat(expected_utc).replace(tzinfo=ZoneInfo("UTC"))
    # Created pgAdmin-style (plain SQL) in a New York session, whose own DST change is
    # two weeks earlier: the trigger reads the schedule in Berlin.
    with session_in(target.dsn, "America/New_York") as ny:
        job_id = make_job(ny, f"dst {case}", desc="@TIMEZONE=Europe/Berlin;")
        jscid = ny.execute(
            "INSERT INTO pgagent.pga_schedule (jscjobid, jscname, jscstart, jscminutes,"
            " jschours) VALUES (%s, 's', %s, %s, %s) RETURNING jscid",
            (
                job_id,
                datetime.fromisoformat(start).replace(tzinfo=BERLIN),
                [m == 30 for m in range(60)],
                [h == 2 for h in range(24)],
            ),
        ).fetchone()[0]
        assert job_row(ny, job_id)[0] == expected
        # pyagent's own computation (the agent's fallback) agrees.
        row = ny.execute(
            "SELECT jscid, jscstart, jscend, jscminutes, jschours, jscweekdays, jscmonthdays,"
            " jscmonths FROM pgagent.pga_schedule WHERE jscid = %s",
            (jscid,),
        ).fetchone()
        spec = schedule.ScheduleSpec.from_row(row)
        assert schedule.next_run_for_schedules([spec], datetime.now(BERLIN), BERLIN) == expected


# ---- the management commands ----------------------------------------------------------------


def test_show_list_and_export_say_the_zone_and_flag_a_drifted_next_run(db, conn, tmp_path):
    path = write(tmp_path / "nightly.yaml", NIGHTLY.format(db=db.name))
    assert jobs(db.dsn, "apply", str(path)).returncode == 0
    (job_id,) = conn.execute(
        "SELECT jobid FROM pgagent.pga_job WHERE jobname = 'nightly'"
    ).fetchone()
    shown = jobs(db.dsn, "show", "nightly")
    assert shown.returncode == 0, shown.stderr
    assert "timezone:    Europe/Berlin   (annotation)" in shown.stdout
    assert "schedules read in Europe/Berlin" in shown.stdout
    assert "!" not in shown.stdout
    listed = jobs(db.dsn, "list")
    assert "0 3 * * * (Europe/Berlin)" in listed.stdout
    assert json.loads(jobs(db.dsn, "list", "--json").stdout)[0]["timezone"] == "Europe/Berlin"
    exported = jobs(db.dsn, "export", "nightly").stdout
    assert "timezone: Europe/Berlin\n" in exported
    # Written without pyagent: a next run computed in Tokyo (pgAgent's trigger, no extras).
    with session_in(db.dsn, "Asia/Tokyo") as tokyo:
        tokyo.execute("UPDATE pgagent.pga_job SET jobnextrun = NULL WHERE jobid = %s", (job_id,))
    shown = jobs(db.dsn, "show", "nightly")
    flag = [line for line in shown.stdout.splitlines() if line.strip().startswith("!")]
    assert len(flag) == 1 and "is not what the schedules give now in Europe/Berlin" in flag[0]
    data = json.loads(jobs(db.dsn, "show", "nightly", "--json").stdout)
    assert data["job_timezone"] == "Europe/Berlin"
    assert data["next_run_drift"]["zone"] == "Europe/Berlin"
    # Seen from a Tokyo session, the drift has a cause it can name.
    tokyo_dsn = db.dsn + " options='-c TimeZone=Asia/Tokyo'"
    assert "it was computed in Asia/Tokyo" in jobs(tokyo_dsn, "show", "nightly").stdout
    # A job without a zone is judged in the session's zone.
    plain = make_job(conn, "plain", [{"jstcode": "SELECT 1"}])
    conn.execute(
        "INSERT INTO pgagent.pga_schedule (jscjobid, jscname, jscminutes, jschours)"
        " VALUES (%s, 's', %s, %s)",
        (plain, [m == 0 for m in range(60)], [h == 3 for h in range(24)]),
    )
    assert "!" not in jobs(db.dsn, "show", "plain").stdout
    assert (
        "is not what the schedules give now in Asia/Tokyo"
        in jobs(tokyo_dsn, "show", "plain").stdout
    )


def test_apply_reads_a_zoned_jobs_start_in_its_zone_and_round_trips(db, conn, tmp_path):
    path = write(
        tmp_path / "j.yaml",
        """\
        name: zoned
        timezone: America/New_York
        schedules:
          - name: s
            cron: 0 9 * * *
            start: 2090-01-01 00:00
        """,
    )
    assert jobs(db.dsn, "apply", str(path)).returncode == 0
    (start,) = conn.execute(
        "SELECT jscstart FROM pgagent.pga_schedule s JOIN pgagent.pga_job j"
        " ON j.jobid = s.jscjobid WHERE j.jobname = 'zoned'"
    ).fetchone()
    assert start == datetime(2090, 1, 1, tzinfo=ZoneInfo("America/New_York"))
    exported = write(tmp_path / "out.yaml", jobs(db.dsn, "export", "zoned").stdout)
    assert "start: '2090-01-01 00:00:00-05:00'" in exported.read_text()
    dry = jobs(db.dsn, "apply", str(exported), "--dry-run")
    assert dry.returncode == 0 and "no changes" in dry.stdout
    # Changing the zone reschedules the job in the new one.
    text = exported.read_text().replace("America/New_York", "Asia/Tokyo")
    changed = jobs(db.dsn, "apply", str(write(tmp_path / "tokyo.yaml", text)))
    assert "timezone: 'America/New_York' -> 'Asia/Tokyo'" in changed.stdout
    (next_run,) = conn.execute(
        "SELECT jobnextrun FROM pgagent.pga_job WHERE jobname = 'zoned'"
    ).fetchone()
    assert next_run.astimezone(ZoneInfo("Asia/Tokyo")).hour == 9


def test_an_unknown_zone_in_a_file_is_one_clear_line(db, tmp_path):
    path = write(
        tmp_path / "j.yaml",
        "name: typo\ntimezone: Europe/Berln\nschedules:\n  - cron: 0 3 * * *\n",
    )
    for args in (("validate", str(path)), ("apply", str(path))):
        proc = jobs(db.dsn, *args)
        no_traceback(proc)
        assert proc.returncode != 0
        assert f"{path}:2: timezone: 'Europe/Berln' is not a known time zone name" in (
            proc.stdout + proc.stderr
        )
    with db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM pgagent.pga_job").fetchone()[0] == 0


# ---- one rule for zone names ------------------------------------------------------------------


def test_the_agent_and_the_schemas_trigger_agree_on_every_zone_name(db):
    add_notify_trigger(db.dsn)
    names = [
        *sorted(zoneinfo.available_timezones()),
        "europe/berlin",
        "UTC+3",
        "EST5",
        "<+03>-3",
        "-8",
        "localtime",
        "posixrules",
        "posix/Europe/Berlin",
        "right/Europe/Berlin",
        "Mars/Olympus",
        "",
    ]

    def python_says(name: str) -> bool:
        try:
            parse_timezone(name)
        except AnnotationError:
            return False
        return True

    with db.connect() as conn:
        rows = conn.execute(
            "SELECT n, pgagent.pyagent_known_timezone(n) FROM unnest(%s::text[]) AS n",
            (names,),
        ).fetchall()
    disagree = [name for name, sql_says in rows if sql_says != python_says(name)]
    assert disagree == []
    assert sum(1 for _, ok in rows if ok) > 500
