"""Smoke run of the benchmark suite (benchmarks/run.py) with tiny sizes on the session
cluster: checks the shape of the results and that nothing failed. No timing asserts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import run as bench_run  # noqa: E402
from benchmarks.harness import PGAGENT, PYAGENT, BenchCluster, pgagent_available  # noqa: E402

BURST_KEYS = {
    "jobs",
    "finished_jobs",
    "failures",
    "double_runs",
    "jobs_per_s",
    "all_finished_s",
    "peak_connections",
    "connection_bound",
    "agent_cpu_s",
    "agent_peak_rss_mb",
    "timed_out",
}
LATENCY_KEYS = {"samples", "p50_ms", "p99_ms", "max_ms", "missing"}
IDLE_KEYS = {"cpu_percent", "rss_mb", "statements_per_min", "top_statements"}


@pytest.fixture(scope="module")
def bench(pg_cluster):
    return BenchCluster.on(pg_cluster)


def test_benchmark_suite_smoke(bench, tmp_path):
    args = bench_run.parse_args(["--quick", "--burst-sizes", "5", "--samples", "2"])
    cfg = bench_run.build_config(args)
    cfg.update({"idle_seconds": 1.0, "idle_settle": 0.5, "idle_jobs": 3})
    with_pgagent = pgagent_available()

    # pyagent everywhere; the C pgAgent (5 s poll) only in the burst, to stay fast.
    results = bench_run.run_suite(bench, cfg, {"run_now", "burst", "idle"}, [PYAGENT])
    if with_pgagent:
        results.update(bench_run.run_suite(bench, cfg, {"burst"}, [PYAGENT, PGAGENT]))
    targets = bench_run.evaluate_targets(results)
    report = {"meta": {"config": cfg}, "workloads": results, "targets": targets}
    out = tmp_path / "smoke.json"
    out.write_text(json.dumps(report, default=str))
    data = json.loads(out.read_text())

    workloads = data["workloads"]
    assert set(workloads) == {"run_now", "burst_5", "idle"}
    run_now = workloads["run_now"][PYAGENT]
    assert set(run_now) >= LATENCY_KEYS, run_now
    assert run_now["samples"] == 2 and run_now["missing"] == 0

    agents = [PYAGENT, PGAGENT] if with_pgagent else [PYAGENT]
    assert set(workloads["burst_5"]) == set(agents)
    for agent in agents:
        burst = workloads["burst_5"][agent]
        assert set(burst) >= BURST_KEYS, burst
        assert burst["failures"] == 0, burst
        assert burst["finished_jobs"] == 5 and burst["double_runs"] == 0, burst
        assert not burst["timed_out"]
    assert workloads["burst_5"][PYAGENT]["within_bound"] is True

    idle = workloads["idle"][PYAGENT]
    assert set(idle) >= IDLE_KEYS, idle

    names = {t["target"] for t in data["targets"]}
    assert {"run-now latency p99", "burst 5: failures", "idle CPU"} <= names
    assert bench_run.render_text(results, targets)
    assert "| metric |" in bench_run.render_markdown(results, targets)
