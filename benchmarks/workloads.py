"""The benchmark workloads. Each drives the pgagent tables the way pgAdmin does (insert
jobs, steps and schedules; "Run now" = UPDATE pga_job SET jobnextrun = now()) and returns
plain dicts that go into the JSON report.

Every function takes a BenchCluster and creates its own fresh database(s); nothing is
shared between agents or workloads.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    PGAGENT,
    PYAGENT,
    Agent,
    BenchCluster,
    ConnectionSampler,
    CpuWatch,
    add_minute_schedules,
    connect,
    create_jobs,
    hit_sql,
    pyagent_connection_bound,
    run_now,
    running_agents,
    summarize_ms,
    wait_no_backends,
    wait_until,
)

PGAGENT_POLL = 5.0  # pgAgent's real default poll interval (-t)

# --------------------------------------------------------------------------------------
# 1. run-now latency
# --------------------------------------------------------------------------------------


def run_now_latency(
    bench: BenchCluster, agent: str, samples: int = 50, seed: int = 1
) -> dict[str, Any]:
    """Run now on one job at a time at random 0-1 s gaps; latency = the step's
    clock_timestamp() minus clock_timestamp() read right after the UPDATE committed."""
    db = bench.fresh_db("runnow", agent)
    dsn = bench.dsn(db)
    try:
        with connect(dsn) as conn:
            ids = create_jobs(conn, samples, code=hit_sql("{jobid}"), name="runnow")
            with running_agents(agent, dsn, settle=1.0) as agents:
                watch = CpuWatch([a.pid for a in agents])
                watch.start()
                rng = random.Random(seed)
                issued: dict[int, dt.datetime] = {}
                for job_id in ids:
                    time.sleep(rng.uniform(0.0, 1.0))
                    issued[job_id] = run_now(conn, [job_id])

                def all_hit() -> bool:
                    (n,) = conn.execute("SELECT count(DISTINCT job) FROM bench_hits").fetchone()
                    return n >= samples

                with suppress(TimeoutError):
                    wait_until(all_hit, PGAGENT_POLL + 30, interval=0.1, what="run-now hits")
                watch.stop()
            rows = conn.execute("SELECT job, min(at) FROM bench_hits GROUP BY job").fetchall()
        latencies = [(at - issued[job]).total_seconds() for job, at in rows if job in issued]
        result = summarize_ms(latencies)
        result["missing"] = samples - len(latencies)
        result["agent_cpu_s"] = round(watch.cpu_s, 3)
        return result
    finally:
        wait_no_backends(bench, db)
        bench.drop_db(db)


# --------------------------------------------------------------------------------------
# 2. scheduled-start lag
# --------------------------------------------------------------------------------------


def scheduled_lag(
    bench: BenchCluster,
    agents: Sequence[str],
    boundaries: int = 4,
    per_boundary: int = 10,
    min_lead: float = 15.0,
) -> dict[str, dict[str, Any]]:
    """Jobs whose only schedule fires at the coming minute boundaries; lag = step start
    (the step's clock_timestamp()) minus the jobnextrun the schedule gave the job.

    All agents run at the same time, each on its own database, so the suite waits for
    the minute boundaries once. Agents that start jobs at the boundary itself (pyagent,
    on either schema) get boundaries of their own, so they never compete for the CPU at
    the same instant; pgAgent shares pyagent's boundaries because it only looks at its
    own 5 s poll ticks.
    """
    dbs = {agent: bench.fresh_db("sched", agent) for agent in agents}
    results: dict[str, dict[str, Any]] = {}
    try:
        with ExitStack() as stack:
            conns = {a: stack.enter_context(connect(bench.dsn(db))) for a, db in dbs.items()}
            any_conn = next(iter(conns.values()))
            first, now = any_conn.execute(
                "SELECT date_trunc('minute', now()) + interval '1 minute', now()"
            ).fetchone()
            if (first - now).total_seconds() < min_lead:
                first += dt.timedelta(minutes=1)
            slots = _boundary_slots(agents)
            nslots = max(slots.values()) + 1
            dues_of = {
                a: [first + dt.timedelta(minutes=slots[a] + i * nslots) for i in range(boundaries)]
                for a in agents
            }
            last_due = max(d[-1] for d in dues_of.values())
            due_of: dict[str, dict[int, dt.datetime]] = {a: {} for a in agents}
            for agent, conn in conns.items():
                for due in dues_of[agent]:
                    (minute,) = conn.execute(
                        "SELECT extract(minute FROM %s::timestamptz)::int", (due,)
                    ).fetchone()
                    ids = create_jobs(conn, per_boundary, code=hit_sql("{jobid}"), name="sched")
                    add_minute_schedules(conn, ids, minute)
                    got = conn.execute(
                        "SELECT jobid, jobnextrun FROM pgagent.pga_job WHERE jobid = ANY(%s)",
                        (ids,),
                    ).fetchall()
                    wrong = [j for j, nr in got if nr != due]
                    if wrong:
                        raise RuntimeError(
                            f"{agent}: schedule gave jobnextrun {got[0][1]} instead of {due}"
                        )
                    due_of[agent].update(dict.fromkeys(ids, due))
            started = {}
            for agent, db in dbs.items():
                started[agent] = stack.enter_context(running_agents(agent, bench.dsn(db)))
            watches = {a: CpuWatch([p.pid for p in ps]) for a, ps in started.items()}
            for watch in watches.values():
                watch.start()
            total = boundaries * per_boundary
            deadline_s = (last_due - now).total_seconds() + PGAGENT_POLL + 20

            def all_hit() -> bool:
                for conn in conns.values():
                    (n,) = conn.execute("SELECT count(DISTINCT job) FROM bench_hits").fetchone()
                    if n < total:
                        return False
                return True

            with suppress(TimeoutError):
                wait_until(all_hit, deadline_s, interval=0.5, what="scheduled hits")
            for agent, conn in conns.items():
                watches[agent].stop()
                rows = conn.execute("SELECT job, min(at) FROM bench_hits GROUP BY job").fetchall()
                lags = [
                    (at - due_of[agent][job]).total_seconds()
                    for job, at in rows
                    if job in due_of[agent]
                ]
                res = summarize_ms(lags)
                res["missing"] = total - len(lags)
                res["boundaries"] = boundaries
                res["jobs_per_boundary"] = per_boundary
                res["agent_cpu_s"] = round(watches[agent].cpu_s, 3)
                results[agent] = res
    finally:
        for db in dbs.values():
            wait_no_backends(bench, db)
            bench.drop_db(db)
    return results


def _boundary_slots(agents: Sequence[str]) -> dict[str, int]:
    slots: dict[str, int] = {}
    next_slot = 0
    for agent in agents:
        if agent == PGAGENT:
            continue
        slots[agent] = next_slot
        next_slot += 1
    for agent in agents:
        if agent == PGAGENT:
            slots[agent] = 0
    return slots


# --------------------------------------------------------------------------------------
# 3/4/7. bursts
# --------------------------------------------------------------------------------------


def burst(
    bench: BenchCluster,
    agent: str,
    jobs: int,
    *,
    kind: str = "s",
    agents: int = 1,
    time_limit: float | None = None,
    label: str = "burst",
    agent_args: Sequence[str] = (),
    code: str | None = None,
) -> dict[str, Any]:
    """`jobs` one-step jobs made due by one Run-now UPDATE; measure until all finished
    (or the time limit): throughput, failures, double runs, peak agent connections,
    agent CPU seconds and peak RSS."""
    if time_limit is None:
        time_limit = max(60.0, jobs / 25.0)
    if code is None:
        code = "SELECT 1" if kind == "s" else "echo hi"
    db = bench.fresh_db(label, agent)
    dsn = bench.dsn(db)
    notes: list[str] = []
    try:
        with connect(dsn) as conn:
            ids = create_jobs(conn, jobs, kind=kind, code=code, name=label)
            with running_agents(agent, dsn, count=agents, args=agent_args) as procs:
                watch = CpuWatch([p.pid for p in procs])
                with ConnectionSampler(bench.dsn("postgres"), [db]) as sampler:
                    watch.start()
                    t0 = run_now(conn, ids)
                    began = time.monotonic()
                    timed_out = False
                    exit_code = None
                    while True:
                        (finished,) = conn.execute(
                            "SELECT count(DISTINCT jlgjobid) FROM pgagent.pga_joblog"
                            " WHERE jlgduration IS NOT NULL"
                        ).fetchone()
                        if finished >= jobs:
                            break
                        if not all(p.alive() for p in procs):
                            dead = [p for p in procs if not p.alive()]
                            exit_code = dead[0].proc.returncode
                            notes.append(
                                f"agent exited with {dead[0].proc.returncode}: "
                                + dead[0].log_tail(5).replace("\n", " | ")
                            )
                            break
                        if time.monotonic() - began > time_limit:
                            timed_out = True
                            notes.append(
                                f"stopped at the {time_limit:g} s time limit with "
                                f"{finished}/{jobs} jobs finished"
                            )
                            break
                        watch.poll()
                        time.sleep(0.25)
                    watch.stop()
                    wall_observed = time.monotonic() - began
                log_tails = {p.pid: p.log_tail(8) for p in procs if p.kind == PGAGENT}
            stats = _joblog_stats(conn, jobs, t0)
    finally:
        wait_no_backends(bench, db)
        bench.drop_db(db)
    stats.update(
        {
            "jobs": jobs,
            "agents": agents,
            "timed_out": timed_out,
            "agent_died": exit_code,
            "time_limit_s": time_limit,
            "observed_wall_s": round(wall_observed, 2),
            "peak_connections": sampler.peak,
            "connection_bound": (
                pyagent_connection_bound(agents, 1 if kind == "s" else 0)
                if agent != PGAGENT
                else None
            ),
            "agent_cpu_s": round(watch.cpu_s, 2),
            "agent_peak_rss_mb": round(watch.hwm_kb / 1024, 1),
        }
    )
    if stats["connection_bound"] is not None:
        stats["within_bound"] = stats["peak_connections"] <= stats["connection_bound"]
    if agent == PGAGENT and timed_out:
        stats["log_tail"] = next(iter(log_tails.values()), "")
    if notes:
        stats["notes"] = notes
    return stats


def _joblog_stats(conn: Any, jobs: int, t0: dt.datetime) -> dict[str, Any]:
    row = conn.execute(
        """
        WITH per_job AS (
            SELECT jlgjobid,
                   count(*) AS rows_all,
                   count(*) FILTER (WHERE jlgduration IS NOT NULL) AS runs,
                   bool_or(jlgstatus = 's') AS ok
              FROM pgagent.pga_joblog GROUP BY jlgjobid
        )
        SELECT (SELECT count(*) FROM per_job WHERE runs >= 1),
               (SELECT count(*) FROM per_job WHERE ok),
               (SELECT count(*) FROM per_job WHERE runs > 1),
               (SELECT coalesce(max(rows_all), 0) FROM per_job),
               (SELECT min(jlgstart) FROM pgagent.pga_joblog),
               (SELECT max(jlgstart + jlgduration) FROM pgagent.pga_joblog),
               (SELECT count(*) FROM pgagent.pga_joblog)
        """
    ).fetchone()
    finished, ok, double, max_rows, first_start, last_end, total_rows = row
    statuses = dict(
        conn.execute(
            "SELECT jlgstatus, count(*) FROM pgagent.pga_joblog GROUP BY 1 ORDER BY 1"
        ).fetchall()
    )
    (lost_claims,) = conn.execute(
        "SELECT count(*) FROM pgagent.pga_joblog WHERE jlgstatus = 'i' AND jlgduration IS NULL"
    ).fetchone()
    span = (last_end - first_start).total_seconds() if first_start and last_end else None
    failed_steps = conn.execute(
        "SELECT jslstatus, left(coalesce(jsloutput, ''), 200), count(*)"
        "  FROM pgagent.pga_jobsteplog WHERE jslstatus <> 's'"
        " GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 3"
    ).fetchall()
    out: dict[str, Any] = {
        "finished_jobs": finished,
        "failures": jobs - ok,
        "joblog_rows": total_rows,
        "joblog_statuses": statuses,
        "lost_claim_rows": lost_claims,
        "double_runs": double,
        "max_rows_per_job": max_rows,
        "first_start_s": (round((first_start - t0).total_seconds(), 3) if first_start else None),
        "all_finished_s": (
            round((last_end - t0).total_seconds(), 2) if last_end and finished >= jobs else None
        ),
        "jobs_per_s": round(finished / span, 1) if span and span > 0 else None,
    }
    if failed_steps:
        out["failed_step_samples"] = [
            {"status": st, "output": text, "count": n} for st, text, n in failed_steps
        ]
    return out


def scale_out(
    bench: BenchCluster,
    jobs: int,
    counts: Sequence[int] = (1, 2, 4),
    time_limit: float | None = None,
) -> dict[str, dict[str, Any]]:
    """The same burst with 1, 2 and 4 pyagent processes on one database."""
    out: dict[str, dict[str, Any]] = {}
    for n in counts:
        res = burst(bench, PYAGENT, jobs, agents=n, time_limit=time_limit, label=f"scale{n}")
        res["each_job_ran_once"] = (
            res["double_runs"] == 0
            and res["max_rows_per_job"] == 1
            and res["finished_jobs"] == jobs
        )
        out[f"{PYAGENT} x{n}"] = res
    return out


# --------------------------------------------------------------------------------------
# 5. idle
# --------------------------------------------------------------------------------------


def idle(
    bench: BenchCluster,
    agents: Sequence[str],
    jobs: int = 100,
    seconds: float = 300.0,
    settle: float = 8.0,
) -> dict[str, dict[str, Any]]:
    """`jobs` enabled jobs whose schedules start in a year; every agent idles at the same
    time on its own database. Reports CPU %, RSS and statements per minute the agent sent
    (pg_stat_statements, filtered by the agent's database)."""
    dbs = {agent: bench.fresh_db("idle", agent) for agent in agents}
    results: dict[str, dict[str, Any]] = {}
    try:
        with ExitStack() as stack:
            for agent, db in dbs.items():
                with connect(bench.dsn(db)) as conn:
                    ids = create_jobs(conn, jobs, name="idle")
                    add_minute_schedules(conn, ids, 0, start="now() + interval '1 year'")
                    (soon,) = conn.execute(
                        "SELECT count(*) FROM pgagent.pga_job"
                        " WHERE jobnextrun IS NULL OR jobnextrun < now() + interval '300 days'"
                    ).fetchone()
                    if soon:
                        raise RuntimeError(f"{agent}: {soon} idle jobs are due too early")
            procs: dict[str, list[Agent]] = {}
            for agent, db in dbs.items():
                procs[agent] = stack.enter_context(running_agents(agent, bench.dsn(db), settle=0.0))
            time.sleep(settle)
            with connect(bench.dsn("postgres")) as admin:
                admin.execute("SELECT pg_stat_statements_reset()")
                watches = {a: CpuWatch([p.pid for p in ps]) for a, ps in procs.items()}
                for watch in watches.values():
                    watch.start()
                time.sleep(seconds)
                for watch in watches.values():
                    watch.stop()
                for agent, db in dbs.items():
                    stmts = admin.execute(
                        "SELECT s.calls, left(regexp_replace(s.query, '\\s+', ' ', 'g'), 90)"
                        "  FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
                        " WHERE d.datname = %s ORDER BY s.calls DESC",
                        (db,),
                    ).fetchall()
                    watch = watches[agent]
                    calls = sum(c for c, _ in stmts)
                    results[agent] = {
                        "seconds": round(watch.wall_s, 1),
                        "jobs": jobs,
                        "cpu_percent": round(100.0 * watch.cpu_s / watch.wall_s, 3),
                        "cpu_s": round(watch.cpu_s, 2),
                        "rss_mb": round(watch.rss_kb / 1024, 1),
                        "peak_rss_mb": round(watch.hwm_kb / 1024, 1),
                        "statements": calls,
                        "statements_per_min": round(calls * 60.0 / watch.wall_s, 1),
                        "top_statements": [{"calls": c, "query": q} for c, q in stmts[:6]],
                    }
    finally:
        for db in dbs.values():
            wait_no_backends(bench, db)
            bench.drop_db(db)
    return results


# --------------------------------------------------------------------------------------
# 6. next-run function cost (script owned by someone else)
# --------------------------------------------------------------------------------------

NEXT_SCHEDULE_SCRIPT = Path(__file__).resolve().parent / "next_schedule_cost.py"


def next_schedule_cost(bench: BenchCluster, quick: bool, timeout: float = 900.0) -> dict[str, Any]:
    """Run benchmarks/next_schedule_cost.py when it exists and keep its output."""
    if not NEXT_SCHEDULE_SCRIPT.exists():
        return {"status": "skipped", "reason": f"{NEXT_SCHEDULE_SCRIPT.name} does not exist"}
    db = bench.fresh_db("nextrun", PYAGENT)
    env = dict(os.environ)
    env["PYAGENT_BENCH_DSN"] = bench.dsn(db)
    env["PYAGENT_BENCH_DSN_EXT"] = bench.dsn("bench_tpl_ext") if bench.with_extension else ""
    if quick:
        env["PYAGENT_BENCH_QUICK"] = "1"
    source = NEXT_SCHEDULE_SCRIPT.read_text(encoding="utf-8", errors="replace")
    argv = [sys.executable, str(NEXT_SCHEDULE_SCRIPT)]
    if "--dsn" in source:
        argv += ["--dsn", bench.dsn(db)]
    if quick and "--quick" in source:
        argv.append("--quick")
    elif quick and "--calls" in source:
        argv += ["--calls", "50"]
    if "--json" in source:
        argv.append("--json")
    started = time.monotonic()
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "argv": argv[1:], "timeout_s": timeout}
    finally:
        bench.drop_db(db)
    out: dict[str, Any] = {
        "status": "ok" if proc.returncode == 0 else f"exit {proc.returncode}",
        "argv": argv[1:],
        "seconds": round(time.monotonic() - started, 1),
        "stdout": proc.stdout[-8000:],
    }
    if proc.returncode != 0:
        out["stderr"] = proc.stderr[-4000:]
    parsed = _last_json(proc.stdout)
    if parsed is not None:
        out["json"] = parsed
    cases = parse_cost_table(proc.stdout)
    if cases:
        out["cases"] = cases
        ours = [c["ours_ms"] for c in cases if isinstance(c["ours_ms"], float)]
        out["ours_max_ms"] = max(ours) if ours else None
    return out


_COST_ROW = re.compile(
    r"^(?P<case>\S.*?)\s{2,}(?P<ours>\S+)\s+(?P<ext>\S+)(?:\s{2,}(?P<rest>.*))?$"
)


def parse_cost_table(text: str) -> list[dict[str, Any]]:
    """Rows of next_schedule_cost.py's table (`case  ours ms  ext ms  results`)."""
    rows: list[dict[str, Any]] = []
    in_table = False
    for line in text.splitlines():
        if "ours ms" in line:
            in_table = True
            continue
        if not in_table or not line.strip() or set(line.strip()) == {"-"}:
            continue
        match = _COST_ROW.match(line.rstrip())
        if not match:
            continue
        rows.append(
            {
                "case": match["case"].strip(),
                "ours_ms": _num(match["ours"]),
                "ext_ms": _num(match["ext"]),
                "results": (match["rest"] or "").strip(),
            }
        )
    return rows


def _num(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _last_json(text: str) -> Any:
    text = text.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    for raw in reversed(text.splitlines()):
        line = raw.strip()
        if line.startswith(("{", "[")):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None
