"""Job text is untrusted: escape sequences, bidirectional overrides, line breaks, invalid
UTF-8 and a 1 MB line in names, comments, step names, code and output reach neither the
terminal of `pyagent jobs ...` nor the agent's log raw; --json and the database keep the
exact text."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import unicodedata
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import yaml

from pyagent.safetext import safe_text
from tests.agentproc import AgentProcess, make_job, wait_until
from tests.jobscli import REPO

NAME = "Evil\x1b]52;c;cHduZWQ=\x07name\nsecond\t\u202eexe.txt\x9b2J \\x1b"
NAME_SHOWN = "Evil\\x1b]52;c;cHduZWQ=\\x07name\\nsecond\\t\\u202eexe.txt\\x9b2J \\\\x1b"
COMMENT = "comment\x1b]0;T\x07 \x9b31m \u202e\nsecond line\x1b[2J\u2066"
CLASS = "cls\x1b[5m\u202e"
SQL_STEP = "a sql\x1b[2J\u202e"
SQL_DESC = "desc\x1b[31m\u2028more"
SQL_CODE = (
    "-- title\x1b]0;code\x07 \u202e\x85\n"
    "DO $$ BEGIN RAISE EXCEPTION 'boom %', chr(27) || ']0;SQL' || chr(7) || chr(155); END $$"
)
BATCH_STEP = "b batch\x07\n"
HALF_MB = 500_000
BATCH_CODE = f"""\
printf 'out\\033]0;TITLE\\007\\033[31mred\\n'
printf '\\377\\376 bad utf8\\n'
printf 'nul\\000byte\\n'
printf '\\302\\233 c1 \\342\\200\\256 rlo \\342\\201\\246 lri\\n'
head -c {HALF_MB} /dev/zero | tr '\\0' A; printf '\\033[0m'
head -c {HALF_MB} /dev/zero | tr '\\0' A; echo
printf 'err\\033]52;c;eA==\\007\\n' >&2
exit 1
"""
STATION = "st\x1b]0;station\x07\u202e"
TIMESTAMP = re.compile(r"^\w{3} \w{3} \d{1,2} \d\d:\d\d:\d\d \d{4} (DEBUG|WARNING|ERROR): ")


@dataclass
class Shown:
    code: int
    out: str
    err: str


def raw_controls(text: str) -> list[str]:
    """Characters a terminal may act on (or that hide or reorder text) left raw; newline
    and tab are the layout of blocks."""
    return [
        f"U+{ord(c):04X}"
        for c in text
        if c not in "\n\t"
        and (
            unicodedata.category(c) in ("Cc", "Zl", "Zp", "Cs")
            or (unicodedata.category(c) == "Cf" and c not in "\u200c\u200d")
        )
    ]


def jobs_shown(dsn: str, *args: str, env: dict[str, str] | None = None) -> Shown:
    """`pyagent jobs ...` as bytes: valid UTF-8 and no raw control on stdout or stderr."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PYAGENT_"))}
    full_env |= {"PYTHONPATH": str(REPO), "PYAGENT_CONNINFO": dsn, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "pyagent", "jobs", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    out, err = proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")
    assert raw_controls(out) == [], (args, out[:2000])
    assert raw_controls(err) == [], (args, err)
    assert "Traceback" not in err
    return Shown(proc.returncode, out, err)


def make_hostile_job(conn: psycopg.Connection[Any]) -> int:
    (jclid,) = conn.execute(
        "INSERT INTO pgagent.pga_jobclass (jclname) VALUES (%s) RETURNING jclid", (CLASS,)
    ).fetchone()
    job = make_job(
        conn,
        NAME,
        [
            {
                "jstname": SQL_STEP,
                "jstdesc": SQL_DESC,
                "jstcode": SQL_CODE,
                "jstonerror": "i",
            },
            {"jstname": BATCH_STEP, "jstkind": "b", "jstcode": BATCH_CODE, "jstdbname": ""},
        ],
        desc=COMMENT,
    )
    conn.execute("UPDATE pgagent.pga_job SET jobjclid = %s WHERE jobid = %s", (jclid, job))
    make_job(conn, "plain neighbour", [{"jstcode": "SELECT 1"}])
    return job


def test_the_database_refuses_nul_in_job_text(db):
    with db.connect() as conn, pytest.raises(psycopg.DataError):
        make_job(conn, "nul\x00name")


def test_every_jobs_command_escapes_job_text_without_a_run(db, tmp_path):
    with db.connect() as conn:
        job = make_hostile_job(conn)
        conn.execute(
            "INSERT INTO pgagent.pga_jobagent (jagpid, jagstation) VALUES (999999, %s)",
            (STATION,),
        )
        pinned = make_job(conn, "pinned", [{"jstcode": "SELECT 1"}], hostagent=STATION)
    ident = str(job)

    listed = jobs_shown(db.dsn, "list")
    lines = listed.out.splitlines()
    assert len(lines) == 1 + 3 + 1, listed.out  # header, one row per job, the zone note
    row = next(ln for ln in lines if ln.startswith(f"{job} "))
    assert row.split()[1].startswith("Evil\\x1b")
    assert NAME_SHOWN in listed.out and safe_text(CLASS) in listed.out

    shown = jobs_shown(db.dsn, "show", ident)
    assert f"job {job}: {NAME_SHOWN}\n" in shown.out
    assert "    comment\\x1b]0;T\\x07 \\x9b31m \\u202e\n    second line\\x1b[2J\\u2066" in shown.out
    assert f"  1. {safe_text(SQL_STEP)}  (sql," in shown.out
    assert "description: desc\\x1b[31m more" in shown.out  # shortened: whitespace folded
    assert "       | -- title\\x1b]0;code\\x07 \\u202e\\x85\n       | DO $$" in shown.out
    assert f"  2. {safe_text(BATCH_STEP)}  (batch," in shown.out

    data = json.loads(jobs_shown(db.dsn, "show", ident, "--json").out)
    assert (data["name"], data["class"], data["comment"]) == (NAME, CLASS, COMMENT)
    assert [(s["name"], s["code"]) for s in data["steps"]] == [
        (SQL_STEP, SQL_CODE),
        (BATCH_STEP, BATCH_CODE),
    ]
    assert data["steps"][0]["description"] == SQL_DESC
    assert {j["name"] for j in json.loads(jobs_shown(db.dsn, "list", "--json").out)} == {
        NAME,
        "plain neighbour",
        "pinned",
    }

    assert jobs_shown(db.dsn, "history", ident).out.strip() == "(no runs)"
    not_yet = jobs_shown(db.dsn, "logs", ident, "--last")
    assert not_yet.code == 1 and f"job '{NAME_SHOWN}' (id {job}) has not run yet" in not_yet.err
    hint = jobs_shown(db.dsn, "show", NAME.lower())
    assert hint.code == 1 and f"(did you mean '{NAME_SHOWN}'?)" in hint.err

    for command, word in (("disable", "disabled"), ("enable", "enabled")):
        changed = jobs_shown(db.dsn, command, ident)
        assert changed.code == 0 and changed.out.startswith(f"job '{NAME_SHOWN}' ({job}) {word}")
    cancel = jobs_shown(db.dsn, "cancel", ident, "--wait", "0")
    assert cancel.code == 6 and f'job {job} "{NAME_SHOWN}" is not running' in cancel.out

    # YAML keeps the exact text, every control and format character written as an escape.
    exported = yaml.safe_load(jobs_shown(db.dsn, "export", ident).out)
    assert (exported["name"], exported["class"], exported["comment"]) == (NAME, CLASS, COMMENT)
    assert [(s["name"], s["code"]) for s in exported["steps"]] == [
        (SQL_STEP, SQL_CODE),
        (BATCH_STEP, BATCH_CODE),
    ]

    # No live agent: the dead agent's station and the host agent are named, escaped.
    station = safe_text(STATION)
    dead = jobs_shown(db.dsn, "run", ident, "--wait")
    assert dead.code == 5 and f"{station} (pid 999999)" in dead.err
    pinned_run = jobs_shown(db.dsn, "run", str(pinned), "--wait")
    assert pinned_run.code == 5 and f"host agent '{station}'" in pinned_run.err

    # apply --dry-run shows the database's hostile values in its plan.
    spec = tmp_path / "evil.yaml"
    spec.write_text(
        f"name: {json.dumps(NAME)}\n"
        f"class: {json.dumps(CLASS)}\n"
        "comment: plain now\n"
        "steps:\n"
        f"  - name: {json.dumps(SQL_STEP)}\n"
        f"    database: {db.name}\n"
        "    on_error: ignore\n"
        "    code: SELECT 2\n",
        encoding="utf-8",
    )
    plan = jobs_shown(db.dsn, "apply", str(spec), "--dry-run")
    assert plan.code == 3, plan.out + plan.err
    assert f"~ job '{NAME_SHOWN}' (id {job}): change" in plan.out
    assert f"- step '{safe_text(BATCH_STEP)}'" in plan.out
    assert "-comment\\x1b]0;T\\x07 \\x9b31m \\u202e" in plan.out
    assert "-DO $$ BEGIN RAISE" in plan.out and "--- title\\x1b]0;code\\x07" in plan.out


@pytest.fixture
def hostile_agent(db):
    proc = AgentProcess(
        db.dsn,
        ["-t", "1", "--station", STATION],
        cwd=str(REPO),
        env={"PYTHONPATH": str(REPO)},
    )
    try:
        proc.wait_registered()
        yield proc
    finally:
        proc.stop()


def test_a_hostile_run_through_run_wait_logs_history_and_the_agent_log(db, hostile_agent):
    with db.connect() as conn:
        job = make_hostile_job(conn)
    ident = str(job)

    run = jobs_shown(db.dsn, "run", ident, "--wait", "--timeout", "60")
    assert run.code == 1, run.out + run.err
    assert f"job '{NAME_SHOWN}' ({job}): run requested" in run.out
    assert f"step '{safe_text(SQL_STEP)}': ignored" in run.out
    assert "    | ERROR:  boom \\x1b]0;SQL\\x07\\x9b" in run.out
    assert f"step '{safe_text(BATCH_STEP)}': failed, result 1" in run.out
    for fragment in (
        "    | out\\x1b]0;TITLE\\x07\\x1b[31mred\n",
        "    | \ufffd\ufffd bad utf8\n",
        "    | nul\ufffdbyte\n",
        "    | \\x9b c1 \\u202e rlo \\u2066 lri\n",
        "    | " + "A" * HALF_MB + "\\x1b[0m" + "A" * HALF_MB + "\n",
        "    | err\\x1b]52;c;eA==\\x07\n",
    ):
        assert fragment in run.out, fragment[:80]
    assert f"job '{NAME_SHOWN}': failed in " in run.out

    with db.connect() as conn:
        (jlgid,) = conn.execute(
            "SELECT max(jlgid) FROM pgagent.pga_joblog WHERE jlgjobid = %s", (job,)
        ).fetchone()
        stored = dict(
            conn.execute(
                "SELECT s.jstname, l.jsloutput FROM pgagent.pga_jobsteplog l"
                " JOIN pgagent.pga_jobstep s ON s.jstid = l.jsljstid WHERE l.jsljlgid = %s",
                (jlgid,),
            ).fetchall()
        )
    # The rows keep what the step wrote (invalid UTF-8 and NUL replaced to be storable).
    assert "out\x1b]0;TITLE\x07\x1b[31mred\n" in stored[BATCH_STEP]
    assert "\x9b c1 \u202e rlo" in stored[BATCH_STEP]

    logs = jobs_shown(db.dsn, "logs", str(jlgid))
    assert logs.out.startswith(f"run {jlgid} of job '{NAME_SHOWN}' ({job}): failed")
    assert jobs_shown(db.dsn, "logs", ident, "--last").out == logs.out
    data = json.loads(jobs_shown(db.dsn, "logs", str(jlgid), "--json").out)
    assert data["job"] == NAME
    assert {s["step"]: s["output"] for s in data["steps"]} == stored

    for args in (("history",), ("history", ident), ("history", "--failed")):
        history = jobs_shown(db.dsn, *args).out.splitlines()
        assert len(history) == 2 and f"{NAME_SHOWN} ({job})" in history[1], history
    listed = jobs_shown(db.dsn, "list", "--failed").out.splitlines()
    assert len(listed) == 3 and NAME_SHOWN in listed[1]
    assert "recent runs (1):" in jobs_shown(db.dsn, "show", ident).out

    again = json.loads(jobs_shown(db.dsn, "run", ident, "--wait", "--json").out)
    assert again["job"] == NAME and again["status"] == "failed"
    assert [(s["step"], s["output"]) for s in again["steps"]] == list(stored.items())

    log = hostile_agent.log_path.read_bytes().decode("utf-8")
    assert raw_controls(log) == []
    assert all(TIMESTAMP.match(line) for line in log.splitlines()), log[-3000:]
    assert f'WARNING: Job {job} ("{NAME_SHOWN}") failed (run {jlgid}, status f): step ' in log
    assert f'"{safe_text(BATCH_STEP)}" ended f with result 1: err\\x1b]52;c;eA==\\x07' in log


def test_the_json_log_keeps_the_exact_text(db):
    agent = AgentProcess(
        db.dsn,
        ["-t", "1", "--log-format", "json"],
        cwd=str(REPO),
        env={"PYTHONPATH": str(REPO)},
    )
    agent.wait_registered()
    with db.connect() as conn:
        job = make_hostile_job(conn)
        conn.execute("UPDATE pgagent.pga_job SET jobnextrun = now() WHERE jobid = %s", (job,))

    def run_end() -> dict[str, Any] | None:
        text = agent.log_path.read_bytes().decode("utf-8")
        events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        ends = (e for e in events if e.get("event", "").startswith(f"Job {job} ("))
        return next(ends, None)

    event = wait_until(run_end, 60, what="the run's end in the JSON log")
    assert event["event"].startswith(f'Job {job} ("{NAME}") failed')
    assert f'step {event["step_id"]} "{BATCH_STEP}" ended f' in event["event"]
    agent.stop()
    log = agent.log_path.read_bytes().decode("utf-8")
    assert raw_controls(log) == [], "JSON writes them as \\u escapes"
    assert "\x1b" not in log and "\u202e" not in log
    assert "\\u001b]52;c;cHduZWQ=\\u0007name\\nsecond" in log
