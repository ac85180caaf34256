"""Profile pyagent during a burst: where its CPU goes (py-spy) and what it sends.

    pip install py-spy
    python benchmarks/profile_burst.py [--jobs 5000] [--kind s|b] [--agents 1] [--unix] [--explain-claim]

Starts a throwaway cluster, creates `--jobs` one-step jobs, starts pyagent (default
settings), attaches `py-spy record` to it, makes every job due with one Run-now UPDATE
and waits until all have finished. Prints:

* the top functions by on-CPU self time and by inclusive time (py-spy samples);
* the statements pyagent sent per job (pg_stat_statements on the burst's database);
* CPU seconds of the agent and of its PostgreSQL backends, per job.

Nothing of pyagent is changed; this only observes it.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.harness import (  # noqa: E402
    PYAGENT,
    BenchCluster,
    connect,
    create_jobs,
    proc_sample,
    run_now,
    running_agents,
)

COMPONENTS = (
    ("psycopg_pool/", "psycopg_pool"),
    ("psycopg/", "psycopg (incl. libpq calls)"),
    ("asyncio/", "asyncio event loop"),
    ("selectors.py", "asyncio event loop"),
    ("structlog/", "structlog"),
    ("pyagent/", "pyagent"),
)


def component(frame: str) -> str:
    for needle, name in COMPONENTS:
        if needle in frame:
            return name
    return "other"


def by_component(raw: Path) -> list[tuple[str, int]]:
    """On-CPU samples by the package of the innermost frame."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if stack and count_s.isdigit():
            counts[component(stack.split(";")[-1])] += int(count_s)
    return counts.most_common()


def aggregate(raw: Path, top: int) -> tuple[list[tuple[str, int]], list[tuple[str, int]], int]:
    """(self, inclusive, total samples) from py-spy's collapsed-stack output."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        total += count
        frames = [_short(f) for f in stack.split(";") if f and not f.startswith("process ")]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        own[frames[-1]] += count
        for frame in set(frames):
            incl[frame] += count
    return own.most_common(top), incl.most_common(top), total


def explain_claim(conn: Any, ids: list[int]) -> None:
    """EXPLAIN ANALYZE of pyagent's claim statement with every job due; rolled back."""
    from pyagent.store.agent_store import statement as query

    conn.execute("BEGIN")
    try:
        (pid,) = conn.execute(
            "INSERT INTO pgagent.pga_jobagent (jagpid, jagstation)"
            " VALUES (pg_backend_pid(), 'explain') RETURNING jagpid"
        ).fetchone()
        params = {"pid": pid, "station": "", "limit": 4, "own_pids": [pid]}
        conn.execute("UPDATE pgagent.pga_job SET jobnextrun = now() WHERE jobid = ANY(%s)", (ids,))
        rows = conn.execute(
            "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) " + query("claim_jobs"),
            params,
        ).fetchall()
    finally:
        conn.execute("ROLLBACK")
    print(f"\nEXPLAIN ANALYZE claim_due_jobs with {len(ids)} due jobs (limit 4):")
    for (line,) in rows:
        print("  " + line)


def _short(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py:123)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, line = where.rpartition(":")
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif "/pyagent/" in path:
        path = "pyagent/" + path.split("/pyagent/", 1)[1]
    else:
        path = Path(path).name if path else where
    return f"{name} ({path}:{line})" if line else f"{name} ({path})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--jobs", type=int, default=5000)
    p.add_argument("--kind", choices=("s", "b"), default="s")
    p.add_argument("--agents", type=int, default=1, help="pyagent processes (py-spy: first)")
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--agent-args", default="", help="extra pyagent arguments, space-separated")
    p.add_argument("--out", default="", help="keep py-spy's raw collapsed stacks here")
    p.add_argument(
        "--unix", action="store_true", help="agent connects over the Unix socket, not TCP"
    )
    p.add_argument(
        "--claim-index",
        action="store_true",
        help="experiment: add a partial index on pga_job(jobnextrun) for the claim statement",
    )
    p.add_argument(
        "--explain-claim",
        action="store_true",
        help="EXPLAIN ANALYZE pyagent's claim statement with every job due (rolled back)",
    )
    args = p.parse_args()
    pyspy = shutil.which("py-spy")
    if pyspy is None:
        print("py-spy is not installed: pip install py-spy")
        return 2
    bench = BenchCluster.create()
    tmp = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    raw = Path(args.out) if args.out else tmp / "pyspy.txt"
    try:
        db = bench.fresh_db("profile", PYAGENT)
        dsn = bench.dsn(db)
        agent_dsn = dsn
        if args.unix:
            c = bench.cluster
            agent_dsn = f"host={c.socketdir} port={c.port} user={c.superuser} dbname={db}"
        with connect(dsn) as conn, connect(bench.dsn("postgres")) as admin:
            code = "SELECT 1" if args.kind == "s" else "echo hi"
            ids = create_jobs(conn, args.jobs, kind=args.kind, code=code, name="profile")
            if args.claim_index:
                conn.execute(
                    "CREATE INDEX bench_pga_job_due ON pgagent.pga_job (jobnextrun)"
                    " WHERE jobenabled AND jobagentid IS NULL"
                )
                conn.execute("ANALYZE pgagent.pga_job")
            if args.explain_claim:
                explain_claim(conn, ids)
            extra = args.agent_args.split()
            with running_agents(PYAGENT, agent_dsn, count=args.agents, args=extra) as agents:
                agent = agents[0]
                spy = subprocess.Popen(
                    [
                        *(pyspy, "record", "--pid", str(agent.pid), "--rate", str(args.rate)),
                        *("--format", "raw", "--output", str(raw), "--nonblocking"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                time.sleep(1.0)
                admin.execute("SELECT pg_stat_statements_reset()")
                before = [proc_sample(a.pid) for a in agents]
                t0 = run_now(conn, ids)
                began = time.monotonic()
                while True:
                    (done,) = conn.execute(
                        "SELECT count(*) FROM pgagent.pga_joblog WHERE jlgduration IS NOT NULL"
                    ).fetchone()
                    if done >= args.jobs or time.monotonic() - began > 900:
                        break
                    time.sleep(0.25)
                wall = time.monotonic() - began
                after = [proc_sample(a.pid) for a in agents]
                backend_pids = [
                    r[0]
                    for r in admin.execute(
                        "SELECT pid FROM pg_stat_activity WHERE datname = %s"
                        " AND coalesce(application_name, '') NOT LIKE 'bench%%'",
                        (db,),
                    )
                ]
                backend_cpu = sum(
                    s.cpu_s for s in (proc_sample(pid) for pid in backend_pids) if s is not None
                )
                stmts = admin.execute(
                    "SELECT s.calls, s.total_exec_time,"
                    " left(regexp_replace(s.query, '\\s+', ' ', 'g'), 100)"
                    "  FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
                    " WHERE d.datname = %s ORDER BY s.calls DESC",
                    (db,),
                ).fetchall()
                spy.send_signal(2)  # SIGINT: py-spy writes its output and exits
                try:
                    spy.wait(60)
                except subprocess.TimeoutExpired:
                    spy.kill()
            (span,) = conn.execute(
                "SELECT extract(epoch FROM max(jlgstart + jlgduration) - min(jlgstart))"
                " FROM pgagent.pga_joblog"
            ).fetchone()
            (first,) = conn.execute(
                "SELECT extract(epoch FROM min(jlgstart) - %s) FROM pgagent.pga_joblog", (t0,)
            ).fetchone()
        jobs = args.jobs
        agent_cpu = sum(a.cpu_s - b.cpu_s for a, b in zip(after, before, strict=True) if a and b)
        print(
            f"\n{done}/{jobs} jobs finished in {wall:.1f} s (driver's view); first start "
            f"{float(first):.3f} s after Run now; {done / float(span):.0f} jobs/s "
            f"between first start and last end"
        )
        print(
            f"agent CPU ({args.agents} process(es)): {agent_cpu:.2f} s = {1000 * agent_cpu / jobs:.2f} ms/job; "
            f"its PostgreSQL backends: {backend_cpu:.2f} s = "
            f"{1000 * backend_cpu / jobs:.2f} ms/job (backend lifetime totals)"
        )
        total_calls = sum(c for c, _, _ in stmts)
        print(f"\nstatements sent to the database: {total_calls} = {total_calls / jobs:.2f}/job")
        for calls, ms, query in stmts[:15]:
            print(
                f"  {calls:8d} ({calls / jobs:5.2f}/job, {ms / max(calls, 1):6.3f} ms avg)  {query}"
            )
        if raw.exists():
            own, incl, total = aggregate(raw, args.top)
            print(f"\npy-spy: {total} on-CPU samples at {args.rate}/s")
            print("\nself time by component (innermost frame):")
            for name, n in by_component(raw):
                print(f"  {100 * n / total:5.1f}%  {name}")
            print("\ntop self time:")
            for frame, n in own:
                print(f"  {100 * n / total:5.1f}%  {frame}")
            print("\ntop inclusive time:")
            for frame, n in incl:
                print(f"  {100 * n / total:5.1f}%  {frame}")
        else:
            print("py-spy wrote no output:", spy.stderr.read().decode() if spy.stderr else "")
    finally:
        bench.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
