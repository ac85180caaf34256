"""What overlapping `pyagent jobs apply` runs cost the agent: three applies of one 60-job
file started together (creating the jobs, then changing all of them), while a prober sends
the agent's claim statement and a release-shaped UPDATE of one of those jobs in a loop and
times each. Prints one JSON line per case: the applies' wall times and exit statuses, and
the probes' latencies (median, p99, max) during the applies and idle before them.

    python benchmarks/apply_overlap.py [--jobs 60] [--applies 3] [--repo PATH]

--repo runs `pyagent jobs apply` from another checkout (to compare with an older one).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import BenchCluster, connect
from pyagent.store.sqlfile import load_blocks

REPO = Path(__file__).resolve().parents[1]


def job_file(path: Path, jobs: int, dbname: str, comment: str) -> None:
    path.write_text(
        "---\n".join(
            f"name: job-{i:03d}\ncomment: {comment}\nsteps:\n"
            f"  - name: 10 select\n    database: {dbname}\n    code: SELECT {i}\n"
            f"  - name: 20 echo\n    kind: batch\n    code: echo {i}\n"
            f'schedules:\n  - name: nightly\n    cron: "{i % 60} 2 * * *"\n'
            for i in range(jobs)
        ),
        encoding="utf-8",
    )


class Prober(threading.Thread):
    """The agent's two statements on pga_job, timed in a loop on one connection each."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.stop = threading.Event()
        self.claims: list[float] = []
        self.releases: list[float] = []

    def run(self) -> None:
        claim = load_blocks("pyagent.store", "agent.sql")["claim_jobs"]
        with connect(self.dsn, "bench-claim") as conn:
            ids = [r[0] for r in conn.execute("SELECT jobid FROM pgagent.pga_job")]
            params = {"limit": 10, "station": "bench", "pid": 0, "own_pids": [0]}
            while not self.stop.is_set():
                started = time.perf_counter()
                conn.execute(claim, params).fetchall()
                self.claims.append(time.perf_counter() - started)
                if ids:
                    started = time.perf_counter()
                    conn.execute(
                        "UPDATE pgagent.pga_job SET jobagentid = NULL WHERE jobid = %s",
                        (random.choice(ids),),
                    )
                    self.releases.append(time.perf_counter() - started)
                time.sleep(0.002)


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "n": len(values),
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(p99 * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def probe(dsn: str, seconds: float) -> Prober:
    prober = Prober(dsn)
    prober.start()
    time.sleep(seconds)
    prober.stop.set()
    prober.join()
    return prober


def run_case(name: str, dsn: str, path: Path, applies: int, repo: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PYAGENT_"))}
    env |= {"PYTHONPATH": str(repo), "PYAGENT_CONNINFO": dsn}
    idle = probe(dsn, 1.0)
    prober = Prober(dsn)
    prober.start()
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pyagent", "jobs", "apply", str(path)],
            env=env,
            cwd=repo,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(applies)
    ]
    codes = [p.wait() for p in procs]
    wall = time.monotonic() - started
    prober.stop.set()
    prober.join()
    with connect(dsn) as conn:
        count = conn.execute("SELECT count(*) FROM pgagent.pga_job").fetchone()
    return {
        "case": name,
        "exit_statuses": codes,
        "jobs_after": count[0] if count else None,
        "applies_wall_s": round(wall, 2),
        "claim_during": summary(prober.claims),
        "release_during": summary(prober.releases),
        "claim_idle": summary(idle.claims),
        "release_idle": summary(idle.releases),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--applies", type=int, default=3)
    parser.add_argument("--repo", type=Path, default=REPO)
    args = parser.parse_args()
    bench = BenchCluster.create()
    try:
        dbname = bench.fresh_db("apply_overlap", "pyagent")
        dsn = bench.dsn(dbname)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "jobs.yaml"
            job_file(path, args.jobs, dbname, "first")
            results = [run_case("create", dsn, path, args.applies, args.repo)]
            job_file(path, args.jobs, dbname, "second")
            results.append(run_case("change all", dsn, path, args.applies, args.repo))
        for result in results:
            print(json.dumps(result))
    finally:
        bench.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
