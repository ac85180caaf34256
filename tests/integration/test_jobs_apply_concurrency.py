"""Overlapping `pyagent jobs apply` runs, pgAdmin-style edits and a running agent: real
processes against a real database.

To be sure that applies really overlap, most tests start them while the test itself holds the
apply lock (the documented advisory lock), wait until every one of them is queued on it, and
only then let go: from that moment they all compete for it at once."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pyagent.store.catalog import APPLY_LOCK_KEY
from tests.agentproc import AgentProcess, make_job, wait_until
from tests.jobscli import REPO, JobsProcess, jobs

_KEY = APPLY_LOCK_KEY & 0xFFFF_FFFF_FFFF_FFFF
HIGH, LOW = _KEY >> 32, _KEY & 0xFFFF_FFFF  # pg_locks.classid / objid of the apply lock

WAITING_FOR_APPLY = "waiting for another pyagent jobs apply (pid "
WAITING_FOR_ROWS = "waiting for another session"

_runs = itertools.count(1)


@pytest.fixture
def agent(db) -> Iterator[AgentProcess]:
    proc = AgentProcess(db.dsn, ["-t", "1"], cwd=str(REPO), env={"PYTHONPATH": str(REPO)})
    try:
        proc.wait_registered()
        yield proc
    finally:
        proc.stop()


def job_file(path: Path, names: Sequence[str], dbname: str, *, comment: str = "") -> Path:
    """One job per name: an SQL and a batch step, a schedule that is not due before 2030."""
    docs = [
        f"""name: {name}
comment: {comment or "job " + name}
steps:
  - name: 10 select
    database: {dbname}
    code: SELECT {i}
  - name: 20 echo
    kind: batch
    code: echo {name}
schedules:
  - name: nightly
    cron: "{i % 60} 2 * * *"
    start: 2030-01-01 00:00:00+00:00
"""
        for i, name in enumerate(names)
    ]
    path.write_text("---\n".join(docs), encoding="utf-8")
    return path


def counts(conn: psycopg.Connection[Any]) -> tuple[int, int, int, int]:
    """(jobs, distinct job names, steps, schedules)."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM pgagent.pga_job),"
        "       (SELECT count(DISTINCT jobname) FROM pgagent.pga_job),"
        "       (SELECT count(*) FROM pgagent.pga_jobstep),"
        "       (SELECT count(*) FROM pgagent.pga_schedule)"
    ).fetchone()
    assert row is not None
    return (int(row[0]), int(row[1]), int(row[2]), int(row[3]))


def job_names(conn: psycopg.Connection[Any]) -> list[str]:
    return [r[0] for r in conn.execute("SELECT jobname FROM pgagent.pga_job ORDER BY 1")]


def queued_on_apply_lock(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_catalog.pg_locks"
        " WHERE locktype = 'advisory' AND NOT granted AND objsubid = 1"
        "   AND classid = %s::int8::oid AND objid = %s::int8::oid",
        (HIGH, LOW),
    ).fetchone()
    assert row is not None
    return int(row[0])


@contextmanager
def apply_lock_held(db) -> Iterator[psycopg.Connection[Any]]:
    """The apply lock, held by the test as a running apply holds it."""
    with db.connect() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s::int8)", (APPLY_LOCK_KEY,))
        yield conn


def start(db, tmp_path: Path, tag: str, *args: str, dsn: str | None = None) -> JobsProcess:
    return JobsProcess(dsn or db.dsn, *args, outdir=tmp_path / tag)


def finish(procs: Sequence[JobsProcess]) -> list[int]:
    try:
        codes = [p.wait() for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p in procs:
        assert "Traceback" not in p.stdout + p.stderr, p.stderr
    return codes


def run_together(
    db, tmp_path: Path, argvs: Sequence[Sequence[str]], *, dsn: str | None = None
) -> list[JobsProcess]:
    """Start one `pyagent jobs` per argv while the apply lock is held; once all of them
    wait for it, let go, and wait for them all to end."""
    procs: list[JobsProcess] = []
    try:
        with apply_lock_held(db), db.connect() as watcher:
            procs = [start(db, tmp_path, f"run{next(_runs)}", *argv, dsn=dsn) for argv in argvs]
            wait_until(
                lambda: queued_on_apply_lock(watcher) == len(argvs),
                timeout=60,
                what=f"{len(argvs)} applies queued on the apply lock",
            )
        finish(procs)
    finally:
        for p in procs:
            p.kill()
    return procs


def outcome(proc: JobsProcess) -> str:
    """The plan's last line: 'plan: …' or 'no changes: …'."""
    lines = proc.stdout.strip().splitlines()
    return lines[-2] if lines and lines[-1] == "applied" else (lines[-1] if lines else "")


# --- applies against applies --------------------------------------------------------------------


@pytest.mark.parametrize("isolation", [None, "serializable"])
def test_three_concurrent_applies_of_sixty_jobs_create_each_job_once(db, tmp_path, isolation):
    """The issue's case: every job once, the first apply reports the plan, the others wait
    and find nothing to do; all exit 0. Also when the server's default isolation would
    otherwise give the waiting applies a snapshot from before the first one committed."""
    dsn = db.dsn
    if isolation is not None:
        dsn += f" options='-c default_transaction_isolation={isolation}'"
    path = job_file(tmp_path / "jobs.yaml", [f"job-{i:02d}" for i in range(60)], db.name)
    procs = run_together(db, tmp_path, [["apply", str(path)]] * 3, dsn=dsn)

    assert [p.proc.returncode for p in procs] == [0, 0, 0], [p.stderr for p in procs]
    results = sorted(outcome(p) for p in procs)
    assert results == [
        "no changes: the database matches the files (60 jobs)",
        "no changes: the database matches the files (60 jobs)",
        "plan: 60 to create, 0 to change, 0 to delete, 0 unchanged",
    ]
    for p in procs:  # each said once that it waited (for the test, then for each other)
        assert p.stderr.count(WAITING_FOR_APPLY) == 1, p.stderr
    with db.connect() as conn:
        assert counts(conn) == (60, 60, 120, 60)
        before = conn.execute(
            "SELECT jobid, jobname, jobchanged FROM pgagent.pga_job ORDER BY jobid"
        ).fetchall()

    # A second round, simply started together: nothing changes, nothing is rewritten.
    again = [start(db, tmp_path, f"again{i}", "apply", str(path), dsn=dsn) for i in range(3)]
    assert finish(again) == [0, 0, 0]
    assert [outcome(p) for p in again] == [
        "no changes: the database matches the files (60 jobs)"
    ] * 3
    with db.connect() as conn:
        after = conn.execute(
            "SELECT jobid, jobname, jobchanged FROM pgagent.pga_job ORDER BY jobid"
        ).fetchall()
    assert after == before


def test_concurrent_prune_applies_delete_once_and_change_once(db, tmp_path):
    names = [f"keep-{i}" for i in range(5)]
    path = job_file(tmp_path / "keep.yaml", names, db.name)
    old = job_file(tmp_path / "old.yaml", ["old-1", "old-2", "old-3"], db.name)
    assert jobs(db.dsn, "apply", str(path), str(old)).returncode == 0
    with db.connect() as conn:
        make_job(conn, "hand made", [{"jstcode": "SELECT 1"}])
    job_file(path, names, db.name, comment="changed")

    procs = run_together(db, tmp_path, [["apply", "--prune", str(path)]] * 4)

    assert [p.proc.returncode for p in procs] == [0, 0, 0, 0], [p.stderr for p in procs]
    assert sorted(outcome(p) for p in procs) == [
        *["no changes: the database matches the files (5 jobs)"] * 3,
        "plan: 0 to create, 5 to change, 3 to delete, 0 unchanged",
    ]
    with db.connect() as conn:
        assert job_names(conn) == ["hand made", *names]
        descs = {r[0] for r in conn.execute("SELECT jobdesc FROM pgagent.pga_job")}
        assert "changed\n@MANAGED_BY=pyagent;" in descs


def test_concurrent_applies_of_different_files(db, tmp_path):
    """Without --prune the jobs of all files end up there once, and a job in several files
    is exactly one file's version; with --prune exactly one file's set is left (the last
    apply's), never a mix."""
    sets = {tag: [f"{tag}-{i}" for i in range(4)] for tag in ("x", "y", "z")}
    files = {
        tag: job_file(tmp_path / f"{tag}.yaml", [*names, "shared"], db.name, comment=tag)
        for tag, names in sets.items()
    }
    procs = run_together(db, tmp_path, [["apply", str(f)] for f in files.values()])
    assert [p.proc.returncode for p in procs] == [0, 0, 0], [p.stderr for p in procs]
    with db.connect() as conn:
        assert job_names(conn) == sorted([*sets["x"], *sets["y"], *sets["z"], "shared"])
        (shared,) = [
            r[0]
            for r in conn.execute("SELECT jobdesc FROM pgagent.pga_job WHERE jobname = 'shared'")
        ]
        assert shared in {f"{tag}\n@MANAGED_BY=pyagent;" for tag in sets}
        assert counts(conn) == (13, 13, 26, 13)

    pruning = run_together(db, tmp_path, [["apply", "--prune", str(f)] for f in files.values()])
    assert [p.proc.returncode for p in pruning] == [0, 0, 0], [p.stderr for p in pruning]
    with db.connect() as conn:
        left = job_names(conn)
        assert left in [sorted([*names, "shared"]) for names in sets.values()]
        assert counts(conn) == (5, 5, 10, 5)


# --- applies against edits in pgAdmin -------------------------------------------------------------

EDITS = {
    "step code": "UPDATE pgagent.pga_jobstep SET jstcode = 'SELECT 42 -- edited'"
    " WHERE jstjobid = %(jobid)s AND jstname = '10 select'",
    "job comment": "UPDATE pgagent.pga_job SET jobdesc = 'edited in pgAdmin' WHERE jobid = %(jobid)s",
    "schedule deleted": "DELETE FROM pgagent.pga_schedule WHERE jscjobid = %(jobid)s",
}


@pytest.mark.parametrize("edit", EDITS)
def test_an_edit_made_while_apply_runs_is_not_written_over(db, tmp_path, edit):
    """pgAdmin saves a job while apply is between reading it and writing it: apply waits for
    the save to commit, sees that the job is no longer what it planned from, and stops with
    nothing written (its other changes included)."""
    path = job_file(tmp_path / "jobs.yaml", ["edited", "other"], db.name)
    assert jobs(db.dsn, "apply", str(path)).returncode == 0
    job_file(path, ["edited", "other", "new"], db.name, comment="from the file")
    with db.connect() as conn:
        jobid = conn.execute(
            "SELECT jobid FROM pgagent.pga_job WHERE jobname = 'edited'"
        ).fetchone()[0]
        before = conn.execute(
            "SELECT jobdesc FROM pgagent.pga_job WHERE jobname = 'other'"
        ).fetchone()[0]

    proc: JobsProcess | None = None
    try:
        with db.connect() as editor, editor.transaction():
            editor.execute(EDITS[edit], {"jobid": jobid})  # the dialog's save, not committed
            proc = start(db, tmp_path, "apply", "apply", str(path))
            wait_until(lambda: WAITING_FOR_ROWS in proc.stderr, timeout=60, what="apply to wait")
        # The save commits; the apply now finds the job changed.
        assert finish([proc]) == [8], proc.stderr
    finally:
        if proc is not None:
            proc.kill()
    assert "+ job 'new': create" in proc.stdout  # the plan it had made
    assert f"error: job 'edited' (id {jobid}) was changed by someone else" in proc.stderr
    assert proc.stderr.count(WAITING_FOR_ROWS) == 1
    assert proc.stderr.strip().endswith(
        "pyagent: the database changed after apply read it: nothing was changed; "
        "run apply again to see the new plan"
    )
    with db.connect() as conn:
        assert job_names(conn) == ["edited", "other"]  # 'new' was not created
        assert (
            conn.execute("SELECT jobdesc FROM pgagent.pga_job WHERE jobname = 'other'").fetchone()[
                0
            ]
            == before
        )
        if edit == "step code":
            assert (
                conn.execute(
                    "SELECT jstcode FROM pgagent.pga_jobstep WHERE jstjobid = %s"
                    " AND jstname = '10 select'",
                    (jobid,),
                ).fetchone()[0]
                == "SELECT 42 -- edited"
            )
    # Applied again, the file wins, after showing what it overwrites.
    again = jobs(db.dsn, "apply", str(path))
    assert again.returncode == 0 and "~ job 'edited'" in again.stdout


def test_rows_held_meanwhile_only_delay_apply_and_the_agent_runs_on(db, tmp_path, agent):
    """A session keeps rows of a job apply changes locked (a pgAdmin dialog in the middle of
    a save): apply waits, holding nothing the agent needs between its short attempts, so the
    agent claims, runs and releases that very job meanwhile. When the rows are let go unchanged,
    the apply goes through."""
    path = job_file(tmp_path / "jobs.yaml", ["busy"], db.name)
    assert jobs(db.dsn, "apply", str(path)).returncode == 0
    job_file(path, ["busy"], db.name, comment="changed by the file")
    with db.connect() as conn:
        jobid = conn.execute("SELECT jobid FROM pgagent.pga_job").fetchone()[0]

    proc: JobsProcess | None = None
    try:
        with db.connect() as holder, holder.transaction():
            holder.execute(
                "SELECT 1 FROM pgagent.pga_jobstep WHERE jstjobid = %s FOR NO KEY UPDATE",
                (jobid,),
            )
            proc = start(db, tmp_path, "apply", "apply", str(path))
            wait_until(lambda: WAITING_FOR_ROWS in proc.stderr, timeout=60, what="apply to wait")
            run = jobs(db.dsn, "run", "busy", "--wait", "--timeout", "60", timeout=90)
            assert run.returncode == 0, run.stdout + run.stderr
            assert proc.proc.poll() is None  # the run went through while apply waited
        assert finish([proc]) == [0], proc.stderr
    finally:
        if proc is not None:
            proc.kill()
    assert proc.stdout.strip().endswith("applied")
    with db.connect() as conn:
        assert conn.execute(
            "SELECT jobdesc, jobagentid FROM pgagent.pga_job WHERE jobid = %s", (jobid,)
        ).fetchone() == ("changed by the file\n@MANAGED_BY=pyagent;", None)
        assert [
            r[0]
            for r in conn.execute(
                "SELECT jlgstatus FROM pgagent.pga_joblog WHERE jlgjobid = %s", (jobid,)
            )
        ] == ["s"]


def test_applies_racing_a_busy_agent(db, tmp_path, agent):
    """Three applies change twenty jobs while the agent is running them: every apply exits 0,
    the changes are made once, and every run ends normally and is released."""
    path = tmp_path / "jobs.yaml"

    def write_jobs(comment: str) -> None:
        path.write_text(
            "---\n".join(
                f"name: busy-{i:02d}\ncomment: {comment}\nsteps:\n  - name: sleep\n"
                f"    database: {db.name}\n    code: SELECT pg_sleep(0.3)\n"
                for i in range(20)
            ),
            encoding="utf-8",
        )

    write_jobs("first")
    assert jobs(db.dsn, "apply", str(path)).returncode == 0
    write_jobs("changed")
    with db.connect() as conn:
        conn.execute("UPDATE pgagent.pga_job SET jobnextrun = now()")
        wait_until(
            lambda: (
                conn.execute(
                    "SELECT count(*) FROM pgagent.pga_joblog WHERE jlgstatus = 'r'"
                ).fetchone()[0]
                > 0
            ),
            what="runs to start",
        )
    procs = run_together(db, tmp_path, [["apply", str(path)]] * 3)
    assert [p.proc.returncode for p in procs] == [0, 0, 0], [p.stderr for p in procs]
    assert sorted(outcome(p) for p in procs)[-1] == (
        "plan: 0 to create, 20 to change, 0 to delete, 0 unchanged"
    )
    with db.connect() as conn:

        def all_done() -> bool:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE jobagentid IS NOT NULL),"
                "       (SELECT count(*) FROM pgagent.pga_joblog WHERE jlgstatus <> 's'),"
                "       (SELECT count(*) FROM pgagent.pga_joblog)"
                "  FROM pgagent.pga_job"
            ).fetchone()
            return row == (0, 0, 20)

        wait_until(all_done, timeout=60, what="every job run once, ended 's' and released")
        assert counts(conn) == (20, 20, 20, 0)
        assert {r[0] for r in conn.execute("SELECT jobdesc FROM pgagent.pga_job")} == {
            "changed\n@MANAGED_BY=pyagent;"
        }
    assert "deadlock" not in agent.log_text().lower()


# --- timeouts and dry runs -------------------------------------------------------------------------


def test_lock_timeout_gives_up_with_its_own_exit_status(db, tmp_path):
    path = job_file(tmp_path / "jobs.yaml", ["a"], db.name)
    with apply_lock_held(db) as holder:
        pid = holder.info.backend_pid
        proc = jobs(db.dsn, "apply", str(path), "--lock-timeout", "0.5")
        assert proc.returncode == 7, proc.stderr
        waiting, gave_up = proc.stderr.splitlines()
        assert re.fullmatch(
            rf"waiting for another pyagent jobs apply \(pid {pid}\) to finish "
            r"\(up to 0\.\d s\) …",
            waiting,
        )
        assert gave_up == (
            f"pyagent: gave up after 0.5 s: another pyagent jobs apply (pid {pid}) is still "
            "running; nothing was changed (try again, or raise --lock-timeout)"
        )
        now = jobs(db.dsn, "apply", str(path), env={"PYAGENT_APPLY_LOCK_TIMEOUT": "0"})
        assert now.returncode == 7
        assert "--lock-timeout is 0: nothing was changed" in now.stderr
        assert "waiting" not in now.stderr
    with db.connect() as conn:
        assert job_names(conn) == []


def test_rows_locked_longer_than_the_timeout(db, tmp_path):
    path = job_file(tmp_path / "jobs.yaml", ["a"], db.name)
    assert jobs(db.dsn, "apply", str(path)).returncode == 0
    job_file(path, ["a", "b"], db.name, comment="changed")
    with db.connect() as holder, holder.transaction():
        holder.execute("SELECT 1 FROM pgagent.pga_job FOR UPDATE")
        proc = jobs(db.dsn, "apply", str(path), "--lock-timeout", "1")
    assert proc.returncode == 7, proc.stderr
    assert proc.stderr.count(WAITING_FOR_ROWS) == 1
    assert "gave up after 1 s: another session kept rows of the jobs to change locked" in (
        proc.stderr
    )
    with db.connect() as conn:
        assert job_names(conn) == ["a"]


def test_a_dry_run_waits_for_nothing(db, tmp_path):
    """With an apply under way (the apply lock held and its rows locked), a dry run still
    answers at once, from what is committed."""
    path = job_file(tmp_path / "jobs.yaml", ["a"], db.name)
    assert jobs(db.dsn, "apply", str(path)).returncode == 0
    job_file(path, ["a", "b"], db.name, comment="changed")
    with apply_lock_held(db) as holder:
        holder.execute("UPDATE pgagent.pga_job SET jobdesc = 'uncommitted'")
        proc = jobs(db.dsn, "apply", str(path), "--dry-run", "--lock-timeout", "0")
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr == ""
    assert "+ job 'b': create" in proc.stdout and "comment: 'job a' -> 'changed'" in proc.stdout


def test_the_documented_lock_key_is_the_one_used():
    text = (REPO / "docs" / "jobs.md").read_text(encoding="utf-8")
    assert f"`{APPLY_LOCK_KEY}`" in text
    assert f"classid = {HIGH}" in text and f"objid = {LOW}" in text
