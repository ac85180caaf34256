"""`pyagent jobs ...` end to end: real processes, a real database, a real agent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.agentproc import AgentProcess, make_job
from tests.jobscli import REPO, jobs, no_traceback, write


@pytest.fixture
def agent(db) -> Iterator[AgentProcess]:
    proc = AgentProcess(db.dsn, ["-t", "1"], cwd=str(REPO), env={"PYTHONPATH": str(REPO)})
    try:
        proc.wait_registered()
        yield proc
    finally:
        proc.stop()
        proc.log_path.unlink(missing_ok=True)


def job_files(tmp_path: Path, dbname: str) -> Path:
    directory = tmp_path / "jobs"
    directory.mkdir()
    write(
        directory / "ok.yaml",
        f"""
        name: ok-job
        comment: runs fine
        steps:
          - name: 10 select
            database: {dbname}
            code: SELECT 1
          - name: 20 echo
            kind: batch
            code: echo hello from batch
        schedules:
          - name: nightly
            cron: "30 2 * * *"
            start: 2030-01-01 00:00:00+00:00
        """,
    )
    write(
        directory / "more.yaml",
        f"""
        name: failing-job
        steps:
          - name: a divide
            database: {dbname}
            code: SELECT 1/0
          - name: b never
            database: {dbname}
            code: SELECT 1
        ---
        name: slow-job
        steps:
          - name: sleep
            database: {dbname}
            code: SELECT pg_sleep(60)
        """,
    )
    return directory


# --- run --wait ------------------------------------------------------------------------------


def test_run_wait_without_an_agent_says_so_and_starts_nothing(db, tmp_path):
    assert jobs(db.dsn, "apply", str(job_files(tmp_path, db.name))).returncode == 0
    proc = jobs(db.dsn, "run", "ok-job", "--wait")
    assert proc.returncode == 5, proc.stderr
    assert "no agent is registered" in proc.stderr and "not started" in proc.stderr
    with db.connect() as conn:
        (nextrun,) = conn.execute(
            "SELECT jobnextrun FROM pgagent.pga_job WHERE jobname = 'ok-job'"
        ).fetchone()
        assert nextrun.year == 2030  # still the schedule's, not "now"
    no_traceback(proc)


def test_run_wait_with_a_dead_agent_or_another_station(db, tmp_path):
    assert jobs(db.dsn, "apply", str(job_files(tmp_path, db.name))).returncode == 0
    with db.connect() as conn:
        conn.execute(
            "INSERT INTO pgagent.pga_jobagent (jagpid, jagstation) VALUES (999999, 'gone')"
        )
        make_job(conn, "pinned", [{"jstcode": "SELECT 1"}], hostagent="elsewhere")
    proc = jobs(db.dsn, "run", "ok-job", "--wait")
    assert proc.returncode == 5 and "no longer connected" in proc.stderr
    proc = jobs(db.dsn, "run", "pinned", "--wait")
    assert proc.returncode == 5 and "'elsewhere'" in proc.stderr


def test_run_wait_exit_codes_with_a_live_agent(db, tmp_path, agent):
    assert jobs(db.dsn, "apply", str(job_files(tmp_path, db.name))).returncode == 0
    with db.connect() as conn:
        (jobid,) = conn.execute(
            "SELECT jobid FROM pgagent.pga_job WHERE jobname = 'ok-job'"
        ).fetchone()
        # An older, failed run must not be taken for the one this request starts.
        conn.execute(
            "INSERT INTO pgagent.pga_joblog (jlgjobid, jlgstatus, jlgstart, jlgduration)"
            " VALUES (%s, 'f', now() - interval '1 hour', interval '1 second')",
            (jobid,),
        )

    ok = jobs(db.dsn, "run", "ok-job", "--wait", "--timeout", "30")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "step '10 select': succeeded, result 1" in ok.stdout
    assert "step '20 echo': succeeded, result 0" in ok.stdout
    assert "hello from batch" in ok.stdout
    assert "job 'ok-job': succeeded" in ok.stdout

    failed = jobs(db.dsn, "run", "failing-job", "--wait", "--timeout", "30")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "step 'a divide': failed" in failed.stdout and "division by zero" in failed.stdout
    assert "b never" not in failed.stdout

    slow = jobs(db.dsn, "run", "slow-job", "--wait", "--timeout", "1")
    assert slow.returncode == 4, slow.stdout + slow.stderr
    assert "timed out after 1 s" in slow.stdout

    as_json = jobs(db.dsn, "run", str(jobid), "--wait", "--timeout", "30", "--json")
    assert as_json.returncode == 0
    data = json.loads(as_json.stdout)
    assert data["status"] == "succeeded" and [s["step"] for s in data["steps"]] == [
        "10 select",
        "20 echo",
    ]

    # Without --wait the request is just recorded.
    proc = jobs(db.dsn, "run", "ok-job")
    assert proc.returncode == 0 and "will run now" in proc.stdout

    # history / logs show what happened.
    hist = jobs(db.dsn, "history", "failing-job", "--json")
    assert [r["status"] for r in json.loads(hist.stdout)] == ["failed"]
    logs = jobs(db.dsn, "logs", "failing-job", "--last")
    assert logs.returncode == 0 and "division by zero" in logs.stdout
    run_id = json.loads(hist.stdout)[0]["run"]
    logs = jobs(db.dsn, "logs", str(run_id), "--json")
    assert json.loads(logs.stdout)["steps"][0]["status"] == "failed"
    listed = json.loads(jobs(db.dsn, "list", "--failed", "--json").stdout)
    assert {j["name"] for j in listed} == {"failing-job", "slow-job"} or {
        j["name"] for j in listed
    } == {"failing-job"}


def test_run_of_a_disabled_job_is_refused(db, tmp_path):
    assert jobs(db.dsn, "apply", str(job_files(tmp_path, db.name))).returncode == 0
    assert jobs(db.dsn, "disable", "ok-job").returncode == 0
    proc = jobs(db.dsn, "run", "ok-job")
    assert proc.returncode == 1 and "is disabled" in proc.stderr


# --- list / show / enable / disable ----------------------------------------------------------


def test_list_show_enable_disable_in_the_session_time_zone(db, tmp_path):
    berlin = db.dsn + " options='-c TimeZone=Europe/Berlin'"
    # Schedules are read in the TimeZone of the session that writes them (the schema's
    # triggers compute jobnextrun there): apply in the zone the agents use.
    assert jobs(berlin, "apply", str(job_files(tmp_path, db.name))).returncode == 0
    listed = jobs(berlin, "list")
    assert listed.returncode == 0
    assert "times in Europe/Berlin" in listed.stdout
    row = next(line for line in listed.stdout.splitlines() if "ok-job" in line)
    assert "30 2 * * *" in row and "2030-01-01 02:30 CET" in row

    data = json.loads(jobs(berlin, "show", "ok-job", "--json", "-n", "3").stdout)
    assert data["timezone"] == "Europe/Berlin"
    assert data["next_runs_computed"] == [
        "2030-01-01T02:30:00+01:00",
        "2030-01-02T02:30:00+01:00",
        "2030-01-03T02:30:00+01:00",
    ]
    assert data["next_run"] == data["next_runs_computed"][0]  # the schema agrees
    assert [s["name"] for s in data["steps"]] == ["10 select", "20 echo"]
    assert data["annotations"] == {"managed_by": "pyagent"}
    text = jobs(berlin, "show", "ok-job").stdout
    assert "steps (2 enabled of 2, in execution order)" in text
    assert "2030-01-01 02:30:00 CET" in text

    off = jobs(db.dsn, "disable", "ok-job", "failing-job")
    assert off.returncode == 0 and off.stdout.count("disabled") == 2
    disabled = json.loads(jobs(db.dsn, "list", "--disabled", "--json").stdout)
    assert {j["name"] for j in disabled} == {"ok-job", "failing-job"}
    assert all(j["next_run"] is None for j in disabled)
    on = jobs(db.dsn, "enable", "ok-job", "--json")
    assert json.loads(on.stdout)[0]["next_run"] is not None


def test_show_masks_passwords_of_connection_strings_and_export_keeps_them(db, tmp_path):
    secret = "s3cret-" + uuid.uuid4().hex[:8]
    write(
        tmp_path / "remote.yaml",
        f"""
        name: remote-job
        steps:
          - name: kv
            connection: host=db.example.org dbname=sales user=etl password={secret}
            code: SELECT 1
          - name: uri
            connection: postgresql://etl:{secret}@db.example.org/sales
            code: SELECT 2
        """,
    )
    assert jobs(db.dsn, "apply", str(tmp_path / "remote.yaml")).returncode == 0
    text = jobs(db.dsn, "show", "remote-job")
    data = jobs(db.dsn, "show", "remote-job", "--json")
    assert text.returncode == 0 and data.returncode == 0
    assert secret not in text.stdout + text.stderr + data.stdout + data.stderr
    steps = json.loads(data.stdout)["steps"]
    assert steps[0]["connection"] == "host=db.example.org dbname=sales user=etl password=*****"
    assert steps[1]["connection"] == "postgresql://etl:*****@db.example.org/sales"
    assert "password=*****" in text.stdout and "host=db.example.org" in text.stdout
    # export writes the job back as it is stored: a file meant for apply keeps the string.
    exported = jobs(db.dsn, "export", "remote-job")
    assert exported.returncode == 0 and secret in exported.stdout


def test_ambiguous_and_unknown_job_names(db):
    with db.connect() as conn:
        a = make_job(conn, "twin")
        b = make_job(conn, "twin")
    proc = jobs(db.dsn, "show", "twin")
    assert proc.returncode == 1
    assert f"2 jobs are named 'twin' (ids {a}, {b}); give the id instead" in proc.stderr
    assert jobs(db.dsn, "show", str(a)).returncode == 0
    proc = jobs(db.dsn, "show", "Twin")
    assert "no job named 'Twin' (did you mean 'twin'?)" in proc.stderr
    proc = jobs(db.dsn, "logs", "twin")
    assert proc.returncode == 2 and "--last" in proc.stderr
    for proc in (jobs(db.dsn, "show", "nope"), jobs(db.dsn, "logs", "424242")):
        assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
        no_traceback(proc)


def test_no_database_and_no_schema_are_one_line_errors(db, empty_db):
    bad = jobs("host=127.0.0.1 port=1 dbname=x password=sekret connect_timeout=2", "list")
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
    assert "cannot connect" in bad.stderr and "sekret" not in bad.stderr
    no_traceback(bad)
    invalid = jobs("not a conninfo", "list")
    assert invalid.returncode == 2 and "invalid connection string" in invalid.stderr
    noschema = jobs(empty_db.dsn, "list")
    assert noschema.returncode == 1 and "no usable pgagent schema" in noschema.stderr
    no_traceback(noschema)


# --- apply / export / validate ----------------------------------------------------------------

FILE = """
name: etl
class: Data Import
comment: loads the data
timeout: 10 m
steps:
  - name: 10 extract
    database: {db}
    code: SELECT 1
  - name: 20 load
    database: {db}
    code: SELECT 2
schedules:
  - name: nightly
    cron: "0 3 * * *"
    start: 2030-01-01 00:00
  - name: month start or monday
    cron: "15 4 1 * mon"
    start: 2030-01-01 00:00
    exceptions: ["2030-02-01"]
"""


def rows(conn: psycopg.Connection[Any], table: str, columns: str, where: str) -> list[tuple]:
    return conn.execute(
        sql.SQL("SELECT {} FROM pgagent.{} WHERE {} ORDER BY 1").format(
            sql.SQL(columns), sql.Identifier(table), sql.SQL(where)
        )
    ).fetchall()


def test_apply_updates_in_place_and_a_second_apply_changes_nothing(db, tmp_path):
    path = write(tmp_path / "etl.yaml", FILE.format(db=db.name))
    dry = jobs(db.dsn, "apply", str(path), "--dry-run")
    assert dry.returncode == 3 and "+ job 'etl': create" in dry.stdout
    with db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM pgagent.pga_job").fetchone() == (0,)
    first = jobs(db.dsn, "apply", str(path))
    assert first.returncode == 0, first.stderr
    with db.connect() as conn:
        (jobid, desc, jclid) = conn.execute(
            "SELECT jobid, jobdesc, jobjclid FROM pgagent.pga_job WHERE jobname = 'etl'"
        ).fetchone()
        assert desc == "loads the data\n@JOB_TIMEOUT=10 m;\n@MANAGED_BY=pyagent;" and jclid == 2
        steps_before = rows(conn, "pga_jobstep", "jstname, jstid", f"jstjobid = {jobid}")
        scheds = rows(
            conn, "pga_schedule", "jscname, jscid, jscmonthdays[1], jscweekdays[2]", "true"
        )
        assert [s[0] for s in scheds] == [
            "month start or monday",
            "month start or monday (weekdays)",
            "nightly",
        ]
        conn.execute(
            "INSERT INTO pgagent.pga_joblog (jlgjobid, jlgstatus, jlgduration)"
            " VALUES (%s, 's', interval '1 s')",
            (jobid,),
        )
    again = jobs(db.dsn, "apply", str(path), "--dry-run")
    assert again.returncode == 0 and "no changes" in again.stdout

    changed = (
        FILE.format(db=db.name)
        .replace("SELECT 2", "SELECT 22")
        .replace('"0 3 * * *"', '"30 3 * * *"')
        + "    enabled: false\n"
    )
    write(
        path,
        changed.replace(
            "  - name: 10 extract",
            "  - name: 05 first\n    database: "
            + db.name
            + "\n    code: SELECT 0\n  - name: 10 extract",
        ),
    )
    plan = jobs(db.dsn, "apply", str(path), "--dry-run")
    assert plan.returncode == 3
    assert "~ step '20 load':" in plan.stdout and "code: 'SELECT 2' -> 'SELECT 22'" in plan.stdout
    assert "+ step '05 first'" in plan.stdout
    assert "cron: '0 3 * * *' -> '30 3 * * *'" in plan.stdout
    assert "enabled: True -> False" in plan.stdout
    assert jobs(db.dsn, "apply", str(path)).returncode == 0
    with db.connect() as conn:
        assert conn.execute(
            "SELECT jobid FROM pgagent.pga_job WHERE jobname = 'etl'"
        ).fetchone() == (jobid,)
        after = dict(rows(conn, "pga_jobstep", "jstname, jstid", f"jstjobid = {jobid}"))
        assert after["10 extract"] == dict(steps_before)["10 extract"]  # untouched row
        assert after["20 load"] == dict(steps_before)["20 load"]  # updated in place
        assert conn.execute("SELECT count(*) FROM pgagent.pga_joblog").fetchone() == (1,)
        new_scheds = rows(conn, "pga_schedule", "jscname, jscid", "true")
        assert dict(new_scheds) == {name: jscid for name, jscid, *_ in scheds}
    final = jobs(db.dsn, "apply", str(path))
    assert final.returncode == 0 and "no changes" in final.stdout


def test_prune_deletes_only_managed_jobs(db, tmp_path):
    path = write(tmp_path / "etl.yaml", FILE.format(db=db.name))
    other = write(tmp_path / "other.yaml", "name: temporary\n")
    assert jobs(db.dsn, "apply", str(path), str(other)).returncode == 0
    with db.connect() as conn:
        make_job(conn, "hand made", [{"jstcode": "SELECT 1"}])
    proc = jobs(db.dsn, "apply", str(path), "--prune")
    assert proc.returncode == 0, proc.stderr
    assert "- job 'temporary'" in proc.stdout and "hand made" not in proc.stdout
    with db.connect() as conn:
        names = [r[0] for r in conn.execute("SELECT jobname FROM pgagent.pga_job ORDER BY 1")]
    assert names == ["etl", "hand made"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("Data Import", "No Such Class"), ":2: class: unknown job class"),
        (
            lambda t: t.replace(
                "database: {db}\n    code: SELECT 2", "database: nodb\n    code: SELECT 2"
            ),
            ":10: steps[2].database: no database 'nodb' on this server",
        ),
    ],
)
def test_errors_the_database_finds_change_nothing(db, tmp_path, edit, message):
    path = write(tmp_path / "etl.yaml", edit(FILE).format(db=db.name))
    proc = jobs(db.dsn, "apply", str(path))
    assert proc.returncode == 1
    assert message in proc.stderr, proc.stderr
    assert "nothing was changed" in proc.stderr
    no_traceback(proc)
    with db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM pgagent.pga_job").fetchone() == (0,)


def test_step_order_is_checked_in_the_database_collation(pg_cluster, tmp_path):
    """'B extract' sorts before 'a load' in code point order (what validate checks) but
    after it in an ICU collation: apply asks the database."""
    from pyagent import schema

    name = f"icu_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_cluster.dsn("postgres"), autocommit=True) as conn:
        conn.execute(
            f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
        )
    try:
        with psycopg.connect(pg_cluster.dsn(name), autocommit=True) as conn:
            schema.install_on(conn)
        path = write(
            tmp_path / "j.yaml",
            f"""
            name: j
            steps:
              - {{name: B extract, database: {name}, code: SELECT 1}}
              - {{name: a load, database: {name}, code: SELECT 2}}
            """,
        )
        assert jobs(None, "validate", str(path)).returncode == 0
        proc = jobs(pg_cluster.dsn(name), "apply", str(path))
        assert proc.returncode == 1
        assert "would run as 'a load', 'B extract'" in proc.stderr
        assert "in this database's collation" in proc.stderr
    finally:
        with psycopg.connect(pg_cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_a_database_error_during_apply_rolls_everything_back(db, tmp_path):
    with db.connect() as conn:
        jid = make_job(conn, "holder")
        (jscid,) = conn.execute(
            "INSERT INTO pgagent.pga_schedule (jscjobid, jscname) VALUES (%s, 's') RETURNING jscid",
            (jid,),
        ).fetchone()
        conn.execute(
            "INSERT INTO pgagent.pga_exception (jexscid, jexdate, jextime)"
            " VALUES (%s, '2031-01-01', '10:00')",
            (jscid,),
        )
    a = write(tmp_path / "a.yaml", "name: first\n")
    b = write(
        tmp_path / "b.yaml",
        "name: second\nschedules:\n  - cron: '* * * * *'\n    exceptions: ['2031-01-01 10:00']\n",
    )
    proc = jobs(db.dsn, "apply", str(a), str(b))
    assert proc.returncode == 1 and "nothing was changed" in proc.stderr
    assert "duplicate key" in proc.stderr
    with db.connect() as conn:
        assert [r[0] for r in conn.execute("SELECT jobname FROM pgagent.pga_job")] == ["holder"]


def test_validate_needs_no_database(tmp_path):
    good = write(tmp_path / "good.yaml", FILE.format(db="app"))
    bad = write(tmp_path / "bad.yaml", "name: x\nschedules:\n  - cron: '0 0 * * 5#2'\n")
    ok = jobs(None, "validate", str(good), env={"PGHOST": "/nonexistent"})
    assert ok.returncode == 0 and "ok: 1 jobs, 2 steps, 3 pgAgent schedules" in ok.stdout
    proc = jobs(None, "validate", str(good), str(bad))
    assert proc.returncode == 1
    assert f"error: {bad}:3: schedules[1].cron: '0 0 * * 5#2': '#'" in proc.stderr
    no_traceback(proc)


def test_export_dir_then_apply_changes_nothing(db, tmp_path):
    path = write(tmp_path / "etl.yaml", FILE.format(db=db.name))
    assert jobs(db.dsn, "apply", str(path)).returncode == 0
    with db.connect() as conn:
        make_job(
            conn,
            "Hand/Made: job",
            [{"jstcode": "echo x", "jstkind": "b", "jstdesc": "keep\n@STEP_TIMEOUT=5;"}],
            desc="by hand\n@JOB_TIMEOUT=1 h;\n@OTHER_TOOL=x;",
        )
    out = tmp_path / "exported"
    proc = jobs(db.dsn, "export", "--dir", str(out))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["etl.yaml", "hand-made-job.yaml"]
    hand = (out / "hand-made-job.yaml").read_text()
    assert "managed: false" in hand and "timeout: 1 h" in hand and "@OTHER_TOOL=x;" in hand
    dry = jobs(db.dsn, "apply", str(out), "--dry-run")
    assert dry.returncode == 0 and "no changes" in dry.stdout, dry.stdout
    stdout = jobs(db.dsn, "export", "etl")
    assert stdout.stdout.startswith("name: etl\n")


def test_missing_privileges_are_a_clear_error(db, tmp_path):
    path = write(tmp_path / "etl.yaml", FILE.format(db=db.name))
    role = f"ro_{uuid.uuid4().hex[:8]}"
    with db.connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'pw'").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA pgagent TO {}").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA pgagent TO {}").format(
                sql.Identifier(role)
            )
        )
    try:
        dsn = db.cluster.dsn(db.name, user=role, password="pw")
        assert jobs(dsn, "list").returncode == 0
        proc = jobs(dsn, "apply", str(path))
        assert proc.returncode == 1
        assert "permission denied" in proc.stderr and "nothing was changed" in proc.stderr
        assert "pw" not in proc.stderr.replace("pgagent", "")
        no_traceback(proc)
    finally:
        with db.connect() as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_the_agent_does_not_load_croniter_or_yaml():
    code = (
        "import sys, pyagent.cli, pyagent.agent;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('croniter', 'yaml')];"
        "assert not bad, bad"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


def test_help_texts():
    top = jobs(None, "--help")
    assert top.returncode == 0 and "Jobs as code" in top.stdout and "Exit status" in top.stdout
    for command in (
        "list",
        "show",
        "run",
        "history",
        "logs",
        "enable",
        "disable",
        "export",
        "apply",
        "validate",
    ):
        proc = jobs(None, command, "--help")
        assert proc.returncode == 0 and "Usage: pyagent jobs " + command in proc.stdout
