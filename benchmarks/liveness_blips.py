"""The liveness scenario, as production would see it: two agents with default settings, 12
jobs due every minute, each of three steps (stamp the start; `pg_sleep(N)` that stamps its
own interval when it completes; stamp the end), half with N = 25 s and half with N = 70 s
(longer than their minute). A few seconds into each of three minutes, one agent's service
session is terminated on the server (pg_terminate_backend: an idle-connection firewall, a
pooler, a failover proxy would do the same). Then the runs are counted.

    python benchmarks/liveness_blips.py [--minutes 4] [--poll 5] [--repo PATH]

--repo runs the agents from another checkout (e.g. one of an older commit) for a
before/after comparison. Prints one JSON line and a small table:
- aborted: runs marked 'd';
- cut short: finished runs whose last step did not complete (no 'end' stamp);
- overlaps: moments when two runs of one job were executing their sleep at once
  (from the stamped intervals);
- missed minutes: a 25-s job without a run starting in a minute of the window, a 70-s job
  with more than 2 minutes between two starts;
- left: runs still 'r', or jobs still claimed, once everything settled.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyagent import schema
from pyagent.devcluster import Cluster

STEPS = """
CREATE TABLE stamps (job int, what text, run int, at timestamptz DEFAULT clock_timestamp());
CREATE TABLE spans (job int, run int, started timestamptz, ended timestamptz);
"""


def make_jobs(conn: psycopg.Connection[Any], db: str) -> dict[int, int]:
    """12 every-minute jobs; returns {job id: sleep seconds}."""
    jobs: dict[int, int] = {}
    for i in range(12):
        seconds = 25 if i % 2 == 0 else 70
        (job,) = conn.execute(
            "INSERT INTO pgagent.pga_job (jobjclid, jobname) VALUES (1, %s) RETURNING jobid",
            (f"job {i} ({seconds} s)",),
        ).fetchone()
        run = f"(SELECT max(jlgid) FROM pgagent.pga_joblog WHERE jlgjobid = {job})"
        codes = [
            ("1 start", f"INSERT INTO stamps (job, what, run) SELECT {job}, 'start', {run}"),
            (
                "2 work",
                "DO $$ DECLARE t0 timestamptz := clock_timestamp(); BEGIN"
                f" PERFORM pg_sleep({seconds});"
                f" INSERT INTO spans SELECT {job}, {run}, t0, clock_timestamp(); END $$",
            ),
            ("3 end", f"INSERT INTO stamps (job, what, run) SELECT {job}, 'end', {run}"),
        ]
        for name, code in codes:
            conn.execute(
                "INSERT INTO pgagent.pga_jobstep (jstjobid, jstname, jstkind, jstcode, jstdbname)"
                " VALUES (%s, %s, 's', %s, %s)",
                (job, name, code, db),
            )
        conn.execute(
            "INSERT INTO pgagent.pga_schedule (jscjobid, jscname, jscstart, jscminutes,"
            " jschours, jscweekdays, jscmonthdays, jscmonths)"
            " VALUES (%s, 'every minute', now() - interval '1 day', %s, %s, %s, %s, %s)",
            (job, [False] * 60, [False] * 24, [False] * 7, [False] * 32, [False] * 12),
        )
        jobs[int(job)] = seconds
    return jobs


def start_agent(
    dsn: str, station: str, repo: Path, workdir: Path, poll: int
) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(repo))
    log = open(workdir / f"{station}.log", "wb")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pyagent",
            "-f",
            "-l",
            "1",
            "-t",
            str(poll),
            "--station",
            station,
            # 12 SQL steps at once on one agent must not wait for a connection (the default
            # bound is 8 per target): a late start would show as a missed minute.
            "--max-connections-per-target",
            "16",
            dsn,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=workdir,
    )


def measure(minutes: int, repo: Path, poll: int) -> dict[str, Any]:
    cluster = Cluster.create()
    cluster.start()
    workdir = Path(tempfile.mkdtemp(prefix="liveness-"))
    agents: list[subprocess.Popen[bytes]] = []
    try:
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE blips")
        dsn = cluster.dsn("blips")
        with psycopg.connect(dsn, autocommit=True) as conn:
            schema.install_on(conn)
            conn.execute(STEPS)
            jobs = make_jobs(conn, "blips")
            agents = [start_agent(dsn, s, repo, workdir, poll) for s in ("one", "two")]
            # The window starts at the next whole minute.
            (start,) = conn.execute(
                "SELECT date_trunc('minute', now()) + interval '1 minute'"
            ).fetchone()
            blips = []
            for minute in range(1, 4):
                at = start + timedelta(minutes=minute, seconds=5)
                while conn.execute("SELECT now() < %s", (at,)).fetchone()[0]:
                    time.sleep(0.2)
                row = conn.execute(
                    "SELECT jagpid FROM pgagent.pga_jobagent WHERE jagstation = 'one'"
                ).fetchone()
                if row is not None:
                    conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                    blips.append(int(row[0]))
            end = start + timedelta(minutes=minutes)
            while conn.execute("SELECT now() < %s", (end,)).fetchone()[0]:
                time.sleep(0.5)
            # No new runs after the window: let the running ones finish (up to 90 s).
            conn.execute("UPDATE pgagent.pga_job SET jobenabled = false")
            deadline = time.monotonic() + 100
            while (
                time.monotonic() < deadline
                and conn.execute(
                    "SELECT count(*) FROM pgagent.pga_joblog WHERE jlgstatus = 'r'"
                ).fetchone()[0]
            ):
                time.sleep(1)
            return report(conn, jobs, start, end, blips)
    finally:
        for agent in agents:
            agent.terminate()
            try:
                agent.wait(40)
            except subprocess.TimeoutExpired:
                agent.kill()
        cluster.destroy()
        print(f"agent logs: {workdir}", file=sys.stderr)


def report(
    conn: psycopg.Connection[Any], jobs: dict[int, int], start: Any, end: Any, blips: list[int]
) -> dict[str, Any]:
    runs = conn.execute(
        "SELECT jlgjobid, jlgid, jlgstatus, jlgstart FROM pgagent.pga_joblog"
        " WHERE jlgstart >= %s ORDER BY jlgstart",
        (start,),
    ).fetchall()
    ended = {r[0] for r in conn.execute("SELECT run FROM stamps WHERE what = 'end'")}
    aborted = sum(1 for r in runs if r[2] == "d")
    cut_short = sum(1 for r in runs if r[2] != "r" and r[1] not in ended)
    spans = conn.execute("SELECT job, started, ended FROM spans ORDER BY job, started").fetchall()
    overlaps = 0
    for a, b in itertools.pairwise(spans):
        if a[0] == b[0] and b[1] < a[2]:
            overlaps += 1
    # Sessions seen running a job's sleep at once would also show in the spans of runs that
    # were cut; the 'd' rows and the cut-short count cover those.
    missed = 0
    for job, seconds in jobs.items():
        starts = [r[3] for r in runs if r[0] == job and r[3] < end]
        if seconds < 60:
            minutes = {(s - start) // timedelta(minutes=1) for s in starts}
            missed += sum(
                1 for m in range(int((end - start) / timedelta(minutes=1))) if m not in minutes
            )
        else:
            marks = [start, *starts]
            missed += sum(
                1 for x, y in itertools.pairwise(marks) if y - x > timedelta(minutes=2, seconds=5)
            )
    (left,) = conn.execute(
        "SELECT (SELECT count(*) FROM pgagent.pga_joblog WHERE jlgstatus = 'r')"
        " + (SELECT count(*) FROM pgagent.pga_job WHERE jobagentid IS NOT NULL)"
    ).fetchone()
    detail = {
        str(job): [round((r[3] - start).total_seconds(), 1) for r in runs if r[0] == job]
        for job in jobs
    }
    return {
        "starts": detail,
        "runs": len(runs),
        "blips": len(blips),
        "aborted": aborted,
        "cut_short": cut_short,
        "overlaps": overlaps,
        "missed_minutes": missed,
        "left": int(left),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=4)
    parser.add_argument("--poll", type=int, default=5, help="the agents' -t")
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args()
    result = measure(args.minutes, args.repo.resolve(), args.poll)
    result["poll"] = args.poll
    result["repo"] = str(args.repo)
    print(json.dumps(result))
    print("| runs | blips | aborted (d) | cut short | overlaps | missed minutes | left r/claimed |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {result['runs']} | {result['blips']} | {result['aborted']} | {result['cut_short']}"
        f" | {result['overlaps']} | {result['missed_minutes']} | {result['left']} |"
    )


if __name__ == "__main__":
    main()
