"""Bad input: odd step output, odd step code, odd connection strings, odd schedules and
names, localized errors, bad options. Each gets a clear error and a correct log row, and the
agent keeps running. docs/reliability.md lists them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pyagent.steps.sql import COPY_UNSUPPORTED, EMPTY_CODE, NO_CONNECTION
from tests.agentproc import (
    AgentProcess,
    job_logs,
    make_job,
    step_logs,
    wait_job_finished,
    wait_until,
)

MIB = 1024 * 1024


def vm_hwm_mib(pid: int) -> float:
    """Peak resident set size of a process (VmHWM), in MiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def running_rows(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM pgagent.pga_joblog WHERE jlgstatus = 'r'),"
        "       (SELECT count(*) FROM pgagent.pga_jobsteplog WHERE jslstatus = 'r')"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def steps_by_name(conn: psycopg.Connection[Any], job: int) -> dict[str, tuple[str, int, str]]:
    return {name: (status, result, output) for name, status, result, output in step_logs(conn, job)}


def assert_agent_still_works(conn: psycopg.Connection[Any], agent: AgentProcess) -> None:
    after = make_job(conn, "after", [{"jstcode": "SELECT 1"}], run_now=True)
    assert [r[1] for r in wait_job_finished(conn, after)] == ["s"]
    assert agent.proc.poll() is None
    # A run that started a moment ago may still be open; one left in 'r' would stay there.
    wait_until(lambda: running_rows(conn) == (0, 0), timeout=15, what="no run left in 'r'")


def ignoring_errors(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every step with jstonerror 'i', so one job tries them all."""
    return [{"jstonerror": "i", **s} for s in steps]


# ---- step output ----------------------------------------------------------------------------


def test_100_mb_of_batch_output_is_capped_and_memory_stays_bounded(db, conn, agents):
    job = make_job(
        conn,
        "firehose",
        [
            {
                "jstkind": "b",
                "jstcode": "head -c 100000000 /dev/zero | tr '\\0' x\n"
                "head -c 50000000 /dev/zero | tr '\\0' y >&2\n",
            }
        ],
        run_now=True,
    )
    agent = agents(db.dsn)
    agent.wait_registered()
    assert [r[1] for r in wait_job_finished(conn, job, timeout=60)] == ["s"]
    ((_n, status, result, output),) = step_logs(conn, job)
    assert (status, result) == ("s", 0)
    kept_out = output.split("\n[pyagent: output truncated", 1)[0]
    assert kept_out == "x" * MIB
    assert f"[pyagent: output truncated, {100_000_000 - MIB} more bytes not stored]" in output
    assert f"[pyagent: output truncated, {50_000_000 - MIB} more bytes not stored]" in output
    assert "\nScript Error: \n" + "y" * 100 in output
    assert len(output.encode()) < 2 * MIB + 1000
    peak = vm_hwm_mib(agent.pid)
    print(f"agent peak RSS after 150 MB of output: {peak:.0f} MiB")
    assert peak < 300, peak
    assert_agent_still_works(conn, agent)


def test_100_mb_of_notices_from_a_sql_step_keep_memory_bounded(db, conn, agents):
    """A step's notices are capped as they arrive, not collected whole and cut after."""
    job = make_job(
        conn,
        "notice flood",
        [
            {
                "jstcode": "DO $$BEGIN FOR i IN 1..100000 LOOP"
                " RAISE NOTICE '%', repeat('n', 1000); END LOOP; END$$"
            }
        ],
        run_now=True,
    )
    agent = agents(db.dsn)
    agent.wait_registered()
    assert [r[1] for r in wait_job_finished(conn, job, timeout=90)] == ["s"]
    ((_n, status, _result, output),) = step_logs(conn, job)
    assert status == "s"
    assert "[pyagent: output truncated," in output
    assert agent.proc.poll() is None
    peak = vm_hwm_mib(agent.pid)
    print(f"agent peak RSS after 100 MB of notices: {peak:.0f} MiB")
    assert peak < 300, peak


def test_invalid_utf8_nul_bytes_and_ansi_escapes_are_stored_as_valid_text(db, conn, agents):
    job = make_job(
        conn,
        "odd bytes",
        [
            {
                "jstkind": "b",
                "jstcode": "printf 'bad \\377\\376 end\\n'\n"
                "printf 'nul\\000byte\\n'\n"
                "printf '\\033[31mred\\033[0m\\n'\n"
                "printf 'half \\303' >&2\n",
            }
        ],
        run_now=True,
    )
    agent = agents(db.dsn)
    agent.wait_registered()
    assert [r[1] for r in wait_job_finished(conn, job)] == ["s"]
    ((_n, status, result, output),) = step_logs(conn, job)
    assert (status, result) == ("s", 0)
    assert output == (
        "bad \ufffd\ufffd end\nnul\ufffdbyte\n\x1b[31mred\x1b[0m\n\nScript Error: \nhalf \ufffd\n"
    )
    assert_agent_still_works(conn, agent)


# ---- SQL step code ----------------------------------------------------------------------------


def test_empty_comment_only_unbalanced_and_copy_stdin_sql_steps(db, conn, agents):
    job = make_job(
        conn,
        "odd sql",
        ignoring_errors(
            [
                {"jstname": "a empty", "jstcode": ""},
                {"jstname": "b blank", "jstcode": "  \n\t "},
                {"jstname": "c comments", "jstcode": "-- nothing here\n/* nor here */"},
                {"jstname": "d unbalanced", "jstcode": "SELECT 'it''s never closed"},
                {"jstname": "e unbalanced ident", "jstcode": 'SELECT "open'},
                {
                    "jstname": "f copy in",
                    "jstcode": "CREATE TEMP TABLE t(a int); COPY t FROM STDIN",
                },
                {"jstname": "g copy out", "jstcode": "COPY (SELECT 1) TO STDOUT"},
                {"jstname": "h after", "jstcode": "SELECT 1"},
            ]
        ),
        run_now=True,
    )
    agent = agents(db.dsn)
    agent.wait_registered()
    assert [r[1] for r in wait_job_finished(conn, job)] == ["s"]
    steps = steps_by_name(conn, job)
    for name in ("a empty", "b blank", "c comments"):
        assert steps[name] == ("i", -1, EMPTY_CODE), name
    assert steps["d unbalanced"][:2] == ("i", -1)
    assert steps["d unbalanced"][2].startswith("ERROR:  unterminated quoted string")
    assert steps["e unbalanced ident"][2].startswith("ERROR:  unterminated quoted identifier")
    assert steps["f copy in"] == ("i", -1, COPY_UNSUPPORTED)
    assert steps["g copy out"] == ("i", -1, COPY_UNSUPPORTED)
    assert steps["h after"] == ("s", 1, "")
    assert_agent_still_works(conn, agent)


# ---- batch steps that misbehave ---------------------------------------------------------------


def test_batch_steps_that_leave_a_daemon_ignore_sigterm_or_close_stdout(
    db, conn, agents, reaper, tmp_path
):
    held, detached, stubborn = (tmp_path / n for n in ("held.pid", "detached.pid", "stubborn.pid"))
    for pidfile in (held, detached, stubborn):
        reaper(pidfile)
    job = make_job(
        conn,
        "misbehaving scripts",
        ignoring_errors(
            [
                # A background process that keeps stdout open: the step ends anyway.
                {
                    "jstname": "a daemon",
                    "jstkind": "b",
                    "jstcode": f"sleep 60 & echo $! > {held}\necho started",
                },
                {
                    "jstname": "b detached",
                    "jstkind": "b",
                    "jstcode": f"nohup sleep 60 >/dev/null 2>&1 &\necho $! > {detached}\necho bye",
                },
                {
                    "jstname": "c never exits",
                    "jstkind": "b",
                    "jstdesc": "@JOB_STEP_TIMEOUT=1 s;",
                    "jstcode": f"trap '' TERM\necho $$ > {stubborn}\nwhile :; do sleep 0.1; done",
                },
                {
                    "jstname": "d closes stdout",
                    "jstkind": "b",
                    "jstcode": "echo first\nexec 1>&-\necho gone 2>/dev/null\necho on stderr >&2\nexit 0",
                },
                {"jstname": "e after", "jstkind": "b", "jstcode": "echo ok"},
            ]
        ),
        run_now=True,
    )
    agent = agents(db.dsn)
    agent.wait_registered()
    assert [r[1] for r in wait_job_finished(conn, job, timeout=40)] == ["s"]
    steps = steps_by_name(conn, job)
    assert steps["a daemon"] == ("s", 0, "started\n")
    assert steps["b detached"] == ("s", 0, "bye\n")
    status, result, output = steps["c never exits"]
    assert (status, result) == ("i", -1)
    assert "timed out after 1 s" in output
    assert steps["d closes stdout"] == ("s", 0, "first\n\nScript Error: \non stderr\n\n")
    assert steps["e after"] == ("s", 0, "ok\n")
    durations = dict(
        conn.execute(
            "SELECT s.jstname, extract(epoch FROM l.jslduration)::float8"
            "  FROM pgagent.pga_jobsteplog l JOIN pgagent.pga_jobstep s ON s.jstid = l.jsljstid"
            " WHERE s.jstjobid = %s",
            (job,),
        ).fetchall()
    )
    assert durations["a daemon"] < 10  # the leftover is not waited for
    assert durations["b detached"] < 5
    assert durations["c never exits"] < 15  # 1 s, then SIGTERM is ignored, then SIGKILL
    # The step that ignored SIGTERM was killed with its process group.
    pid = int(stubborn.read_text())
    wait_until(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), timeout=10)
    assert_agent_still_works(conn, agent)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


# ---- connection strings -----------------------------------------------------------------------

MALFORMED_CONNSTRS = {
    "a unterminated quote": "host='127.0.0.1 dbname=x",
    "b unknown keyword": "host=127.0.0.1 colour=blue",
    "c bad uri": "postgresql://[::1",
    "d no keyword": "=value",
    "e bad port": "host=127.0.0.1 port=notaport dbname=x connect_timeout=2",
    "f bad sslmode": "host=127.0.0.1 dbname=x sslmode=sometimes",
    "g password in a bad string": "host=127.0.0.1 password=Very-Secret-1 bogus=1",
}


def test_malformed_connection_strings_fail_their_step_clearly(db, conn, agents):
    job = make_job(
        conn,
        "malformed connstr",
        ignoring_errors(
            [
                {"jstname": name, "jstcode": "SELECT 1", "jstconnstr": cs}
                for name, cs in MALFORMED_CONNSTRS.items()
            ]
            + [{"jstname": "h after", "jstcode": "SELECT 1"}]
        ),
        run_now=True,
    )
    agent = agents(db.dsn)
    agent.wait_registered()
    assert [r[1] for r in wait_job_finished(conn, job)] == ["s"]
    steps = steps_by_name(conn, job)
    for name in MALFORMED_CONNSTRS:
        status, result, output = steps[name]
        assert (status, result) == ("i", -1), name
        first, _nl, reason = output.partition("\n")
        assert first == NO_CONNECTION, (name, output)
        assert reason.strip(), (name, output)
    assert "colour" in steps["b unknown keyword"][2]
    assert "notaport" in steps["e bad port"][2]
    assert "sslmode" in steps["f bad sslmode"][2]
    assert "Very-Secret-1" not in steps["g password in a bad string"][2]
    assert "Very-Secret-1" not in agent.log_text()
    assert steps["h after"] == ("s", 1, "")
    assert_agent_still_works(conn, agent)


# ---- schedules and jobnextrun behind pgAdmin's back -----------------------------------------

ALL_FALSE = {
    "jscminutes": 60,
    "jschours": 24,
    "jscweekdays": 7,
    "jscmonthdays": 32,
    "jscmonths": 12,
}


def _insert_raw_schedule(conn: psycopg.Connection[Any], job: int, **arrays: list[Any]) -> None:
    cols: dict[str, list[Any]] = {name: [False] * n for name, n in ALL_FALSE.items()}
    cols.update(arrays)
    names = ", ".join(cols)
    marks = ", ".join(["%s"] * len(cols))
    conn.execute(
        f"INSERT INTO pgagent.pga_schedule (jscjobid, jscname, jscstart, {names})"
        f" VALUES (%s, 'bad', now() - interval '1 day', {marks})",
        [job, *cols.values()],
    )


def _break_schedules(conn: psycopg.Connection[Any], job: int) -> None:
    """Schedules pgAdmin could never write: a 59-element minutes array (with the CHECK
    constraint dropped) and arrays with NULL elements (which pass the CHECK)."""
    conn.execute("ALTER TABLE pgagent.pga_schedule DROP CONSTRAINT pga_schedule_jscminutes_size")
    # The extension's schedule trigger would evaluate them at once: insert behind its back.
    conn.execute("ALTER TABLE pgagent.pga_schedule DISABLE TRIGGER pga_schedule_trigger")
    _insert_raw_schedule(conn, job, jscminutes=[False] * 59)
    _insert_raw_schedule(conn, job, jscminutes=[None] * 60, jschours=[None, True] + [False] * 22)
    conn.execute("ALTER TABLE pgagent.pga_schedule ENABLE TRIGGER pga_schedule_trigger")
    conn.execute(
        "UPDATE pgagent.pga_job SET jobnextrun = now() - interval '1 s' WHERE jobid = %s", (job,)
    )


def test_schedules_of_the_wrong_length_or_with_null_elements_still_release_the_job(
    db, conn, agents
):
    job = make_job(conn, "bad arrays", [{"jstcode": "SELECT 1"}])
    _break_schedules(conn, job)
    agent = agents(db.dsn)
    agent.wait_registered()
    assert [r[1] for r in wait_job_finished(conn, job, timeout=20)] == ["s"]
    (agent_id, next_run) = conn.execute(
        "SELECT jobagentid, jobnextrun FROM pgagent.pga_job WHERE jobid = %s", (job,)
    ).fetchone()
    assert agent_id is None
    # pyagent's schema reads NULL elements as false and ignores missing positions.
    (expected,) = conn.execute(
        "SELECT min(pgagent.pga_next_schedule(jscid, jscstart, jscend, jscminutes, jschours,"
        " jscweekdays, jscmonthdays, jscmonths)) FROM pgagent.pga_schedule WHERE jscjobid = %s",
        (job,),
    ).fetchone()
    assert next_run is not None and abs((next_run - expected).total_seconds()) <= 60
    # These schedules are due every minute: keep the job from starting again during the check.
    conn.execute("UPDATE pgagent.pga_job SET jobenabled = false WHERE jobid = %s", (job,))
    assert_agent_still_works(conn, agent)


def test_extension_schedule_function_that_never_returns_does_not_keep_the_job_claimed(
    ext_db, agents
):
    """The extension's pga_next_schedule loops forever on a wrong-length or NULL-element
    schedule array: the release's statement timeout ends it and the fallback releases."""
    with ext_db.connect() as conn:
        job = make_job(conn, "bad arrays (extension)", [{"jstcode": "SELECT 1"}])
        _break_schedules(conn, job)
        agent = agents(ext_db.dsn)
        agent.wait_registered()
        try:
            wait_until(lambda: job_logs(conn, job), timeout=10, what="the run")
            wait_until(
                lambda: conn.execute(
                    "SELECT jobagentid IS NULL FROM pgagent.pga_job WHERE jobid = %s", (job,)
                ).fetchone()[0],
                timeout=20,
                what="the release",
            )
        finally:
            agent.kill()
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


def test_jobnextrun_in_1970_runs_once_and_far_future_never(db, conn, agents):
    hours = [False] * 24
    hours[3] = True
    minutes = [False] * 60
    minutes[17] = True
    old = make_job(conn, "due since 1970", [{"jstcode": "SELECT 1"}])
    _insert_raw_schedule(conn, old, jschours=hours, jscminutes=minutes)  # daily 03:17
    conn.execute(
        "UPDATE pgagent.pga_job SET jobnextrun = '1970-01-01 00:00+00' WHERE jobid = %s", (old,)
    )
    future = make_job(conn, "due in 2200", [{"jstcode": "SELECT 1"}])
    never = make_job(conn, "due at infinity", [{"jstcode": "SELECT 1"}])
    conn.execute(
        "UPDATE pgagent.pga_job SET jobnextrun = '2200-01-01 00:00+00' WHERE jobid = %s", (future,)
    )
    conn.execute("UPDATE pgagent.pga_job SET jobnextrun = 'infinity' WHERE jobid = %s", (never,))
    agent = agents(db.dsn)
    agent.wait_registered()
    assert [r[1] for r in wait_job_finished(conn, old)] == ["s"]
    # No catch-up of fifty years of 03:17s: the next run is the next 03:17 from now.
    polls = agent.log_text().count("Checking for jobs to run")
    wait_until(
        lambda: agent.log_text().count("Checking for jobs to run") >= polls + 3, what="3 polls"
    )
    assert len(job_logs(conn, old)) == 1
    (next_run, expected) = conn.execute(
        "SELECT j.jobnextrun, pgagent.pga_next_schedule(s.jscid, s.jscstart, s.jscend,"
        " s.jscminutes, s.jschours, s.jscweekdays, s.jscmonthdays, s.jscmonths)"
        " FROM pgagent.pga_job j JOIN pgagent.pga_schedule s ON s.jscjobid = j.jobid"
        " WHERE j.jobid = %s",
        (old,),
    ).fetchone()
    assert next_run == expected
    assert job_logs(conn, future) == [] and job_logs(conn, never) == []
    assert_agent_still_works(conn, agent)


# ---- names and messages -----------------------------------------------------------------------

ODD = "O'Brien's \"job\" \\ back\\slash; -- täglich 日本 😀"


def test_quotes_backslashes_and_non_ascii_in_names_station_and_output(db, conn, agents):
    station = 'st\'ation\\ü "x"'
    job = make_job(
        conn,
        ODD,
        [
            {
                "jstname": ODD,
                "jstcode": "DO $$BEGIN RAISE NOTICE '%', E'back\\\\slash '' quote ü 日本'; END$$",
            },
            {
                "jstname": ODD + " b",
                "jstkind": "b",
                "jstcode": "printf '%s\\n' 'a\\b' \"it's\" 'ü'",
            },
        ],
        hostagent=station,
        run_now=True,
    )
    agent = agents(db.dsn, "--station", station)
    agent.wait_registered()
    assert [r[1] for r in wait_job_finished(conn, job)] == ["s"]
    assert step_logs(conn, job) == [
        (ODD, "s", 0, "NOTICE:  back\\slash ' quote ü 日本"),
        (ODD + " b", "s", 0, "a\\b\nit's\nü\n"),
    ]
    assert conn.execute("SELECT jagstation FROM pgagent.pga_jobagent").fetchone() == (station,)
    assert_agent_still_works(conn, agent)


def test_non_ascii_server_error_is_stored_and_the_step_ends(db, conn, agents):
    message = "Fehler: ungültig / ошибка / 日本語"
    job = make_job(
        conn,
        "localized error",
        [{"jstcode": f"DO $$BEGIN RAISE EXCEPTION '{message}'; END$$"}],
        run_now=True,
    )
    agent = agents(db.dsn)
    agent.wait_registered()
    assert [r[1] for r in wait_job_finished(conn, job)] == ["f"]
    ((_n, status, result, output),) = step_logs(conn, job)
    assert (status, result) == ("f", -1)
    assert output.startswith(f"ERROR:  {message}")
    german = _german_locale()
    if german:  # server messages translated through lc_messages (when the locale exists)
        conn.execute(f"ALTER DATABASE {db.name} SET lc_messages = '{german}'")
        job2 = make_job(conn, "german error", [{"jstcode": "SELECT 1/0"}], run_now=True)
        assert [r[1] for r in wait_job_finished(conn, job2)] == ["f"]
        ((_n, status, _r, output),) = step_logs(conn, job2)
        assert status == "f" and "Division durch null" in output
    assert_agent_still_works(conn, agent)


def _german_locale() -> str | None:
    out = subprocess.run(["locale", "-a"], capture_output=True, text=True, check=False).stdout
    for name in out.split():
        if name.lower().replace("-", "") in ("de_de.utf8",):
            return name
    return None


@pytest.fixture
def latin1_db(db, pg_cluster):
    """A LATIN1 database next to the test database (a common legacy set-up)."""
    name = f"{db.name}_latin1"
    with psycopg.connect(pg_cluster.dsn("postgres"), autocommit=True) as admin:
        admin.execute(
            f"CREATE DATABASE {name} ENCODING 'LATIN1' TEMPLATE template0"
            " LC_COLLATE 'C' LC_CTYPE 'C'"
        )
    try:
        yield name
    finally:
        with psycopg.connect(pg_cluster.dsn("postgres"), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_sql_step_text_reaches_a_latin1_database_unchanged(db, conn, agents, pg_cluster, latin1_db):
    """The step's code is sent in the connection's client encoding, not as UTF-8 bytes."""
    job = make_job(
        conn,
        "latin1 data",
        [
            {
                "jstcode": "CREATE TABLE city(v text); INSERT INTO city VALUES ('München')",
                "jstdbname": latin1_db,
            }
        ],
        run_now=True,
    )
    agent = agents(db.dsn)
    agent.wait_registered()
    assert [r[1] for r in wait_job_finished(conn, job)] == ["s"]
    with psycopg.connect(pg_cluster.dsn(latin1_db)) as other:
        assert other.execute("SELECT v FROM city").fetchone() == ("München",)


def test_error_text_from_a_latin1_database_is_stored_correctly(db, conn, agents, latin1_db):
    """The server's error text is decoded in the connection's client encoding."""
    # ASCII-only code (chr(252) is ü): only the way back is tested here.
    job = make_job(
        conn,
        "latin1 error",
        [
            {
                "jstcode": "DO $$BEGIN RAISE EXCEPTION 'Fehler: ung%ltig', chr(252); END$$",
                "jstdbname": latin1_db,
            }
        ],
        run_now=True,
    )
    agent = agents(db.dsn)
    agent.wait_registered()
    assert [r[1] for r in wait_job_finished(conn, job)] == ["f"]
    ((_n, status, result, output),) = step_logs(conn, job)
    assert (status, result) == ("f", -1)  # the row is not left 'r' either way
    assert output.startswith("ERROR:  Fehler: ungültig"), output


# ---- command line and environment -------------------------------------------------------------

BAD_INVOCATIONS = [
    ("PYAGENT_POLL=abc", {"PYAGENT_POLL": "abc"}, [], "--poll"),
    ("PYAGENT_LOG_LEVEL=9", {"PYAGENT_LOG_LEVEL": "9"}, [], "--log-level"),
    ("-t 0", {}, ["-t", "0"], "--poll"),
    ("PYAGENT_MAX_JOBS=0", {"PYAGENT_MAX_JOBS": "0"}, [], "--max-jobs"),
    ("PYAGENT_GRACE_PERIOD=-1", {"PYAGENT_GRACE_PERIOD": "-1"}, [], "--grace-period"),
    ("PYAGENT_LOG_FORMAT=xml", {"PYAGENT_LOG_FORMAT": "xml"}, [], "--log-format"),
    ("PYAGENT_BATCH_ENV=all", {"PYAGENT_BATCH_ENV": "all"}, [], "--batch-env"),
    ("PYAGENT_FOREGROUND=maybe", {"PYAGENT_FOREGROUND": "maybe"}, [], "--foreground"),
    ("PYAGENT_RETRY=5", {"PYAGENT_RETRY": "5"}, [], "--retry"),
    ("--connect-timeout abc", {}, ["--connect-timeout", "abc"], "--connect-timeout"),
    ("PGAGENT_LOG_LEVEL=9", {"PGAGENT_LOG_LEVEL": "9"}, [], "PGAGENT_LOG_LEVEL"),
]


@pytest.mark.parametrize(
    ("env", "args", "named"), [c[1:] for c in BAD_INVOCATIONS], ids=[c[0] for c in BAD_INVOCATIONS]
)
def test_bad_options_and_environment_exit_2_with_one_line(env, args, named):
    conninfo = "host=127.0.0.1 port=1 dbname=x"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYAGENT_", "PGAGENT_"))}
    full_env.update(env)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pyagent", *args, conninfo],
        capture_output=True,
        text=True,
        timeout=30,
        env=full_env,
    )
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert named in lines[0], lines[0]
    assert proc.stdout == ""
    assert time.monotonic() - started < 20


def test_the_agent_survives_sighup_and_a_log_file_it_cannot_write(db, conn, agents, tmp_path):
    locked = tmp_path / "no" / "such" / "dir" / "agent.log"
    agent = agents(db.dsn, "-s", str(locked))
    wait_until(lambda: "Can not open the logfile" in agent.log_text(), what="the complaint")
    agent.wait_registered()
    agent.send_signal(signal.SIGHUP)
    job = make_job(conn, "after sighup", [{"jstcode": "SELECT 1"}], run_now=True)
    assert [r[1] for r in wait_job_finished(conn, job)] == ["s"]
    assert agent.proc.poll() is None
    # Said once per failure streak, not once per line.
    assert agent.log_text().count("Can not open the logfile") == 1
    assert str(locked) in agent.log_text()
