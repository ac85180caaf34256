"""Cost of starting a run with and without the author lookup (`--step-rights author`).

Starts a throwaway cluster, installs pyagent's schema with its extras (the authorship records
included), makes a job of 1 and of 10 steps, and times agent.sql's `start_run` and
`start_run_with_authors` as the agent sends them (bound parameters, one round trip each),
each call in its own transaction that is rolled back so the log stays empty. Reports the
mean and p99 client-side time per call, and the server's mean execution time from
pg_stat_statements.

    python benchmarks/start_run_cost.py [--calls N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import psycopg

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from pyagent import schema  # noqa: E402
from pyagent.devcluster import Cluster  # noqa: E402
from pyagent.store.agent_store import statement  # noqa: E402

STATEMENTS = ("start_run", "start_run_with_authors")


def make_job(conn: psycopg.Connection[tuple[object, ...]], steps: int) -> int:
    row = conn.execute(
        "INSERT INTO pgagent.pga_job (jobjclid, jobname) VALUES (1, %s) RETURNING jobid",
        (f"{steps} steps",),
    ).fetchone()
    assert row is not None
    for n in range(steps):
        conn.execute(
            "INSERT INTO pgagent.pga_jobstep (jstjobid, jstname, jstkind, jstcode, jstdbname)"
            " VALUES (%s, %s, 's', 'SELECT 1', current_database())",
            (row[0], f"step {n:02d}"),
        )
    return int(row[0])


def time_calls(
    conn: psycopg.Connection[tuple[object, ...]], name: str, job: int, calls: int
) -> list[float]:
    sql = statement(name)
    params = {"job_id": job, "trusted_roles": ["ops"]}
    took: list[float] = []
    for _ in range(calls):
        started = time.perf_counter()
        with conn.transaction(force_rollback=True):
            conn.execute(sql, params).fetchall()
        took.append(time.perf_counter() - started)
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    cluster = Cluster.create(settings={"shared_preload_libraries": "'pg_stat_statements'"})
    cluster.start()
    try:
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench_start_run")
        dsn = cluster.dsn("bench_start_run")
        schema.install(dsn, with_notify=True)
        # Prepared after 3 executions, as on the agent's control pool.
        with psycopg.connect(dsn, autocommit=True, prepare_threshold=3) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
            conn.execute("SET pg_stat_statements.track_planning = on")
            jobs = {steps: make_job(conn, steps) for steps in (1, 10)}
            print(
                f"{'statement':<26} {'steps':>5} {'mean ms':>8} {'p99 ms':>8}"
                f" {'plan ms':>8} {'exec ms':>8}"
            )
            for steps, job in jobs.items():
                for name in STATEMENTS:
                    time_calls(conn, name, job, max(1, args.calls // 10))  # warm up
                    conn.execute("SELECT pg_stat_statements_reset()")
                    took = sorted(time_calls(conn, name, job, args.calls))
                    row = conn.execute(
                        "SELECT sum(total_plan_time) / sum(calls),"
                        "       sum(total_exec_time) / sum(calls)"
                        "  FROM pg_stat_statements WHERE query LIKE %s",
                        ("%INSERT INTO pgagent.pga_joblog (jlgid, jlgjobid, jlgstatus)%",),
                    ).fetchone()
                    plan, run = (float("nan"), float("nan")) if row is None else row
                    p99 = took[min(len(took) - 1, int(len(took) * 0.99))]
                    print(
                        f"{name:<26} {steps:>5} {statistics.mean(took) * 1000:>8.3f}"
                        f" {p99 * 1000:>8.3f} {plan or float('nan'):>8.3f}"
                        f" {run or float('nan'):>8.3f}"
                    )
    finally:
        cluster.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
