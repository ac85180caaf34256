"""`pyagent demo`: a throwaway PostgreSQL cluster, the schema, a job, and the agent running it."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import psycopg

from pyagent import logsetup as plog
from pyagent import schema
from pyagent.agent import Agent
from pyagent.devcluster import Cluster
from pyagent.settings import Settings

DEMO_STEPS = [
    ("1 count rows", "s", "SELECT generate_series(1, 7)"),
    ("2 say hello", "b", "echo \"hello from $(hostname)\"\necho 'a warning' >&2\n"),
    ("3 notice", "s", "DO $$ BEGIN RAISE NOTICE 'notices are kept'; END $$"),
]

# The batch step writes to stderr on purpose; pgAgent stores stderr after this marker.
SCRIPT_ERROR_NOTE = (
    "note: 'Script Error:' is followed by what the batch step wrote to stderr; that is "
    "pgAgent's format for stderr (pgAdmin shows it too) and not a failure: the step's "
    "status is s and its exit code (result) 0"
)


def _create_demo_job(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "INSERT INTO pgagent.pga_job (jobjclid, jobname, jobdesc)"
        " VALUES (5, 'pyagent demo', 'created by pyagent demo') RETURNING jobid"
    ).fetchone()
    assert row is not None
    job_id = int(row[0])
    for name, kind, code in DEMO_STEPS:
        conn.execute(
            "INSERT INTO pgagent.pga_jobstep (jstjobid, jstname, jstkind, jstcode, jstdbname)"
            " VALUES (%s, %s, %s, %s, %s)",
            (job_id, name, kind, code, "postgres" if kind == "s" else ""),
        )
    every_minute = [False] * 60
    conn.execute(
        "INSERT INTO pgagent.pga_schedule (jscjobid, jscname, jscminutes) VALUES (%s, %s, %s)",
        (job_id, "every minute", every_minute),
    )
    return job_id


async def _drive(settings: Settings, dsn: str, job_id: int, seconds: float) -> None:
    agent = Agent(settings)
    runner = asyncio.create_task(agent.run())
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        for _ in range(200):
            if agent.state.registered:
                break
            await asyncio.sleep(0.05)
        print("\n>>> pgAdmin's 'Run now': UPDATE pgagent.pga_job SET jobnextrun = now()\n")
        await conn.execute(
            "UPDATE pgagent.pga_job SET jobnextrun = now() WHERE jobid = %s", (job_id,)
        )
        await asyncio.sleep(seconds)
        agent.request_stop()
        await runner
        cur = await conn.execute(
            "SELECT l.jlgid, l.jlgstatus, s.jstname, sl.jslstatus, sl.jslresult, sl.jsloutput"
            "  FROM pgagent.pga_joblog l"
            "  JOIN pgagent.pga_jobsteplog sl ON sl.jsljlgid = l.jlgid"
            "  JOIN pgagent.pga_jobstep s ON s.jstid = sl.jsljstid"
            " ORDER BY sl.jslid"
        )
        print("\n>>> pga_joblog / pga_jobsteplog, as pgAdmin's Statistics tab shows them:")
        for jlgid, jst, name, st, res, out in await cur.fetchall():
            print(f"run {jlgid} job={jst} step {name!r}: status={st} result={res} output={out!r}")
            if out and "Script Error:" in out:
                print(f"    {SCRIPT_ERROR_NOTE}")
        row = await (
            await conn.execute("SELECT jobnextrun FROM pgagent.pga_job WHERE jobid = %s", (job_id,))
        ).fetchone()
        print(f"\n>>> next run scheduled by the schema's trigger: {row[0] if row else None}")


def run_demo(seconds: float = 8.0) -> None:
    """Start a throwaway cluster, install the schema, create a job and run it."""
    print(">>> starting a throwaway PostgreSQL cluster")
    cluster = Cluster.create()
    try:
        cluster.start()
        dsn = cluster.dsn("postgres")
        schema.install(dsn, with_notify=True)
        print(f">>> pgagent schema installed in {dsn}")
        with psycopg.connect(dsn, autocommit=True) as conn:
            job_id = _create_demo_job(conn)
        settings = Settings(conninfo=dsn, log_level=2, station="demo")
        plog.configure(settings.log_level, None, "text")
        asyncio.run(_drive(settings, dsn, job_id, seconds))
    finally:
        with contextlib.suppress(Exception):
            cluster.destroy()
        print(">>> cluster removed")
