"""pyagent vs pgAgent benchmark suite: one command, one throwaway cluster.

    python benchmarks/run.py [--quick] [--only NAME[,NAME...]] [--out benchmarks/results/latest.json]

Runs every workload against pyagent (our schema with the notify trigger), against the C
pgAgent (CREATE EXTENSION pgagent) when /usr/bin/pgagent is installed, and against pyagent
on the extension's schema with the notify trigger added. Prints a side-by-side table and
writes the results as JSON. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import workloads  # noqa: E402
from benchmarks.harness import (  # noqa: E402
    ALL_AGENTS,
    PGAGENT,
    PGAGENT_BIN,
    PYAGENT,
    PYAGENT_AUTHOR,
    BenchCluster,
    connect,
    pgagent_available,
)

WORKLOADS = ("run_now", "scheduled", "burst", "batch", "idle", "next_run", "scale_out")

# --------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------


def build_config(args: argparse.Namespace) -> dict[str, Any]:
    quick = bool(args.quick)
    cfg: dict[str, Any] = {
        "quick": quick,
        "run_now_samples": 10 if quick else 50,
        "scheduled_boundaries": 1 if quick else 3,
        "scheduled_jobs_per_boundary": 5 if quick else 10,
        "burst_sizes": [50] if quick else [100, 1000, 10000],
        "batch_jobs": 50 if quick else 200,
        "idle_jobs": 100,
        "idle_seconds": 30.0 if quick else 300.0,
        "idle_settle": 8.0,
        "scale_jobs": 200 if quick else 10000,
        "scale_agents": [1, 2, 4],
        "pgagent_time_limit": 180.0,
        "seed": args.seed,
    }
    if args.idle_seconds is not None:
        cfg["idle_seconds"] = args.idle_seconds
    if args.burst_sizes:
        cfg["burst_sizes"] = [int(x) for x in args.burst_sizes.split(",")]
    if args.scale_jobs is not None:
        cfg["scale_jobs"] = args.scale_jobs
    if args.samples is not None:
        cfg["run_now_samples"] = args.samples
    if args.pgagent_time_limit is not None:
        cfg["pgagent_time_limit"] = args.pgagent_time_limit
    return cfg


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes (a few minutes in all)")
    p.add_argument(
        "--only", default="", help=f"comma-separated workloads to run: {', '.join(WORKLOADS)}"
    )
    p.add_argument(
        "--agents",
        default=",".join(ALL_AGENTS),
        help="comma-separated agents: pyagent, pgagent, pyagent-ext, pyagent-author "
        "(--step-rights author; default: all available but pyagent-author)",
    )
    p.add_argument("--out", default=str(REPO_ROOT / "benchmarks/results/latest.json"))
    p.add_argument("--markdown", default="", help="also write the tables as Markdown here")
    p.add_argument("--idle-seconds", type=float, default=None)
    p.add_argument("--burst-sizes", default="", help="e.g. 100,1000,10000")
    p.add_argument("--scale-jobs", type=int, default=None)
    p.add_argument("--samples", type=int, default=None, help="run-now samples")
    p.add_argument(
        "--pgagent-time-limit", type=float, default=None, help="seconds per pgAgent burst"
    )
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


# --------------------------------------------------------------------------------------
# the suite
# --------------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


def _guard(fn: Callable[[], Any], per_agent: bool = False) -> Any:
    """Run one workload; an exception becomes {"error": ...}. Adds the machine's 1-minute
    load average before and after, since anything else running skews the timings."""
    before = round(os.getloadavg()[0], 2)
    digest = source_digest()
    try:
        result = fn()
    except Exception as exc:
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {exc}"}
    load = [before, round(os.getloadavg()[0], 2)]
    targets = result.values() if per_agent and isinstance(result, dict) else [result]
    for item in targets:
        if isinstance(item, dict) and "error" not in item:
            item["load_1m"] = load
            item["pyagent_source_digest"] = digest
    return result


def run_suite(
    bench: BenchCluster, cfg: dict[str, Any], only: set[str], agents: list[str]
) -> dict[str, Any]:
    """Run the selected workloads; returns {workload: {agent or variant: metrics}}."""
    res: dict[str, Any] = {}
    want = only or set(WORKLOADS)

    def for_each_agent(label: str, fn: Callable[[str], Any]) -> dict[str, Any]:
        out = {}
        for agent in agents:
            log(f"{label}: {agent}")
            out[agent] = _guard(lambda a=agent: fn(a))
        return out

    if "run_now" in want:
        res["run_now"] = for_each_agent(
            "run-now latency",
            lambda a: workloads.run_now_latency(bench, a, cfg["run_now_samples"], cfg["seed"]),
        )
    if "scheduled" in want:
        log(f"scheduled-start lag: {', '.join(agents)} side by side")
        got = _guard(
            lambda: workloads.scheduled_lag(
                bench, agents, cfg["scheduled_boundaries"], cfg["scheduled_jobs_per_boundary"]
            ),
            per_agent=True,
        )
        res["scheduled"] = got if "error" not in got else dict.fromkeys(agents, got)
    if "burst" in want:
        for n in cfg["burst_sizes"]:

            def one(a: str, n: int = n) -> Any:
                limit = cfg["pgagent_time_limit"] if a == PGAGENT else None
                return workloads.burst(bench, a, n, time_limit=limit, label=f"burst{n}")

            res[f"burst_{n}"] = for_each_agent(f"burst of {n} SQL jobs", one)
    if "batch" in want:
        n = cfg["batch_jobs"]
        res["batch_burst"] = for_each_agent(
            f"burst of {n} batch jobs",
            lambda a: workloads.burst(
                bench,
                a,
                n,
                kind="b",
                label="batch",
                time_limit=cfg["pgagent_time_limit"] if a == PGAGENT else None,
            ),
        )
    if "idle" in want:
        log(f"idle for {cfg['idle_seconds']:g} s: {', '.join(agents)} side by side")
        got = _guard(
            lambda: workloads.idle(
                bench,
                agents,
                cfg["idle_jobs"],
                cfg["idle_seconds"],
                settle=cfg.get("idle_settle", 8.0),
            ),
            per_agent=True,
        )
        res["idle"] = got if "error" not in got else dict.fromkeys(agents, got)
    if "next_run" in want:
        log("next-run function cost")
        res["next_run"] = _guard(lambda: workloads.next_schedule_cost(bench, cfg["quick"]))
    if "scale_out" in want and PYAGENT in agents:
        log(f"scale-out: {cfg['scale_jobs']} jobs with {cfg['scale_agents']} pyagent processes")
        res["scale_out"] = _guard(
            lambda: workloads.scale_out(bench, cfg["scale_jobs"], cfg["scale_agents"]),
            per_agent=True,
        )
    return res


# --------------------------------------------------------------------------------------
# targets
# --------------------------------------------------------------------------------------


def _get(d: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def evaluate_targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, judged on pyagent (our schema) results present in `res`."""
    out: list[dict[str, Any]] = []

    def add(name: str, target: str, value: Any, met: bool | None) -> None:
        out.append({"target": name, "wanted": target, "measured": value, "met": met})

    p99 = _get(res, "run_now", PYAGENT, "p99_ms")
    if "run_now" in res:
        add("run-now latency p99", "<= 100 ms", p99, None if p99 is None else p99 <= 100)
    p99 = _get(res, "scheduled", PYAGENT, "p99_ms")
    if "scheduled" in res:
        add("scheduled-start lag p99", "<= 100 ms", p99, None if p99 is None else p99 <= 100)
    for key in sorted(k for k in res if k.startswith("burst_")):
        r = _get(res, key, PYAGENT)
        if not isinstance(r, dict) or "error" in r:
            add(f"{key}", "runs", r, False)
            continue
        n = key.removeprefix("burst_")
        add(f"burst {n}: failures", "0", r.get("failures"), r.get("failures") == 0)
        add(
            f"burst {n}: peak connections",
            f"<= bound ({r.get('connection_bound')})",
            r.get("peak_connections"),
            r.get("within_bound"),
        )
        jps = r.get("jobs_per_s")
        # Tiny bursts (quick mode) are all ramp-up: no verdict on throughput.
        judged = jps is not None and int(n) >= 100
        add(f"burst {n}: throughput", ">= 400 jobs/s", jps, (jps >= 400) if judged else None)
    r = _get(res, "batch_burst", PYAGENT)
    if isinstance(r, dict) and "failures" in r:
        add("batch burst: failures", "0", r["failures"], r["failures"] == 0)
    r = _get(res, "idle", PYAGENT)
    if isinstance(r, dict) and "cpu_percent" in r:
        add("idle CPU", "<= 0.5 %", r["cpu_percent"], r["cpu_percent"] <= 0.5)
        add("idle RSS", "<= 40 MB", r["rss_mb"], r["rss_mb"] <= 40)
        ref = _get(res, "idle", PGAGENT, "statements_per_min")
        limit = ref if isinstance(ref, (int, float)) else 12.0
        add(
            "idle statements/min",
            f"<= pgAgent ({limit:g}/min)",
            r["statements_per_min"],
            r["statements_per_min"] <= limit + 0.5,
        )
    nr = res.get("next_run")
    if isinstance(nr, dict):
        per_call = nr.get("ours_max_ms")
        if per_call is None:
            per_call = _find_ms_per_call(nr.get("json"))
        if nr.get("status") == "skipped":
            add("next-run function", "<= 5 ms/call", "skipped (script absent)", None)
        else:
            add(
                "next-run function (slowest case)",
                "<= 5 ms/call",
                per_call if per_call is not None else "see output",
                None if per_call is None else per_call <= 5,
            )
    so = res.get("scale_out")
    if isinstance(so, dict) and "error" not in so:
        times = {k: _get(v, "all_finished_s") for k, v in so.items()}
        one, two = times.get(f"{PYAGENT} x1"), times.get(f"{PYAGENT} x2")
        add(
            "scale-out: 2 agents faster than 1",
            "t(2) < t(1)",
            f"{one} s vs {two} s",
            None if one is None or two is None else two < one,
        )
        once = all(_get(v, "each_job_ran_once") for v in so.values())
        add("scale-out: no double runs", "every job exactly 1 joblog row", once, once)
    return out


def _find_ms_per_call(data: Any) -> float | None:
    """Best effort: the largest 'per call in ms' figure in the next-run script's JSON."""
    found: list[float] = []

    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, str(k))
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            k = key.lower()
            if "ms" in k and ("call" in k or "per" in k or "mean" in k or "avg" in k):
                found.append(float(node))

    walk(data)
    return max(found) if found else None


# --------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------

ROWS: dict[str, list[tuple[str, str]]] = {
    "run_now": [
        ("samples", "samples"),
        ("p50_ms", "p50 ms"),
        ("p99_ms", "p99 ms"),
        ("max_ms", "max ms"),
        ("missing", "missing"),
        ("load_1m", "load avg 1m before/after"),
    ],
    "scheduled": [
        ("samples", "samples"),
        ("p50_ms", "p50 lag ms"),
        ("p99_ms", "p99 lag ms"),
        ("max_ms", "max lag ms"),
        ("missing", "missing"),
        ("load_1m", "load avg 1m before/after"),
    ],
    "burst": [
        ("finished_jobs", "finished jobs"),
        ("all_finished_s", "all finished (s)"),
        ("first_start_s", "first start (s)"),
        ("jobs_per_s", "jobs/s"),
        ("failures", "failures"),
        ("lost_claim_rows", "lost-claim 'i' rows"),
        ("double_runs", "double runs"),
        ("peak_connections", "peak connections"),
        ("connection_bound", "connection bound"),
        ("agent_cpu_s", "agent CPU s"),
        ("agent_peak_rss_mb", "agent peak RSS MB"),
        ("timed_out", "hit time limit"),
        ("agent_died", "agent died (exit code)"),
        ("load_1m", "load avg 1m before/after"),
    ],
    "idle": [
        ("seconds", "seconds"),
        ("cpu_percent", "CPU %"),
        ("rss_mb", "RSS MB"),
        ("statements_per_min", "statements/min"),
        ("load_1m", "load avg 1m before/after"),
    ],
}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return "/".join(_fmt(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}" if abs(value) < 1e6 else f"{value:.3g}"
    return str(value)


def tables(res: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for every workload in the results."""
    out = []
    for key, per_agent in res.items():
        if key == "next_run":
            continue
        if not isinstance(per_agent, dict):
            continue
        kind = "burst" if key.startswith(("burst_", "batch_", "scale_")) else key
        spec = ROWS.get(kind)
        if spec is None:
            continue
        if "error" in per_agent:
            out.append((key, ["", "error"], [["", str(per_agent["error"])]]))
            continue
        columns = list(per_agent)
        header = ["metric", *columns]
        rows = []
        for field, label in spec:
            rows.append([label, *(_fmt(_get(per_agent, c, field)) for c in columns)])
        errors = [c for c in columns if isinstance(per_agent[c], dict) and "error" in per_agent[c]]
        for c in errors:
            rows.append([f"error ({c})", *("" for _ in columns)])
        out.append((key, header, rows))
    return out


def render_text(res: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for title, header, rows in tables(res):
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines.append(f"\n== {title} ==")
        lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        for row in rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    nr = res.get("next_run")
    if isinstance(nr, dict):
        lines.append("\n== next_run ==")
        lines.append(f"status: {nr.get('status')} {nr.get('reason', '')}".rstrip())
        if nr.get("stdout"):
            lines.append(nr["stdout"].rstrip())
    if targets:
        lines.append("\n== targets (pyagent) ==")
        for t in targets:
            met = {True: "MET", False: "MISSED", None: "n/a"}[t["met"]]
            lines.append(
                f"{met:7} {t['target']}: wanted {t['wanted']}, measured {_fmt(t['measured'])}"
            )
    return "\n".join(lines)


def render_markdown(res: dict[str, Any], targets: list[dict[str, Any]]) -> str:
    parts: list[str] = []
    for title, header, rows in tables(res):
        parts.append(f"#### {title}\n")
        parts.append("| " + " | ".join(header) + " |")
        parts.append("|" + "|".join("---" for _ in header) + "|")
        parts.extend("| " + " | ".join(r) + " |" for r in rows)
        parts.append("")
    if targets:
        parts.append("#### targets (pyagent)\n")
        parts.append("| target | wanted | measured | met |")
        parts.append("|---|---|---|---|")
        for t in targets:
            met = {True: "met", False: "**missed**", None: "n/a"}[t["met"]]
            parts.append(f"| {t['target']} | {t['wanted']} | {_fmt(t['measured'])} | {met} |")
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------
# machine description
# --------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        models = [
            ln.split(":", 1)[1].strip()
            for ln in cpuinfo.splitlines()
            if ln.startswith("model name")
        ]
        info["cpu_model"] = models[0] if models else "unknown"
        info["cpus"] = os.cpu_count()
        for ln in Path("/proc/meminfo").read_text().splitlines():
            if ln.startswith("MemTotal:"):
                info["ram_gb"] = round(int(ln.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return info


def source_digest() -> str:
    """A digest of pyagent's code and SQL, to tell whether it changed during a run."""
    import hashlib

    digest = hashlib.sha256()
    files = sorted([*REPO_ROOT.glob("pyagent/**/*.py"), *REPO_ROOT.glob("pyagent/**/*.sql")])
    files += sorted(REPO_ROOT.glob("sql/*.sql"))
    for path in files:
        digest.update(str(path.relative_to(REPO_ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def versions(bench: BenchCluster) -> dict[str, Any]:
    import pyagent

    out: dict[str, Any] = {"pyagent": pyagent.__version__}
    with connect(bench.dsn("postgres")) as conn:
        out["postgres"] = conn.execute("SHOW server_version").fetchone()[0]
    if pgagent_available():
        proc = subprocess.run([str(PGAGENT_BIN), "-v"], capture_output=True, text=True, check=False)
        out["pgagent"] = " ".join(proc.stdout.split())
    try:
        out["git_commit"] = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "pyagent", "sql"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        out["working_tree_changes_in_pyagent"] = bool(dirty)
    except OSError:
        pass
    return out


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = build_config(args)
    only = {w.strip() for w in args.only.split(",") if w.strip()}
    unknown = only - set(WORKLOADS)
    if unknown:
        print(f"unknown workload(s): {', '.join(sorted(unknown))}; choose from {WORKLOADS}")
        return 2
    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    started = time.monotonic()
    log("creating a throwaway cluster")
    bench = BenchCluster.create()
    try:
        if not bench.with_extension:
            dropped = [a for a in agents if a not in (PYAGENT, PYAGENT_AUTHOR)]
            if dropped:
                log(f"pgagent binary or extension not installed: skipping {', '.join(dropped)}")
            agents = [a for a in agents if a in (PYAGENT, PYAGENT_AUTHOR)]
        meta = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
            "machine": machine(),
            "versions": versions(bench),
            "agents": agents,
            "config": cfg,
            "pyagent_source_digest": source_digest(),
        }
        results = run_suite(bench, cfg, only, agents)
    finally:
        bench.destroy()
    targets = evaluate_targets(results)
    meta["duration_s"] = round(time.monotonic() - started, 1)
    end_digest = source_digest()
    meta["pyagent_source_changed_during_run"] = end_digest != meta["pyagent_source_digest"]
    if meta["pyagent_source_changed_during_run"]:
        log("warning: pyagent's code changed while the suite ran (agents started later ran it)")
    report = {"meta": meta, "workloads": results, "targets": targets}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print(render_text(results, targets))
    if args.markdown:
        Path(args.markdown).write_text(render_markdown(results, targets), encoding="utf-8")
    log(f"done in {meta['duration_s']:g} s; JSON written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
