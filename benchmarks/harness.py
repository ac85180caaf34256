"""Plumbing shared by the benchmark workloads: agent processes, fresh databases, the way
pgAdmin writes jobs, connection sampling and /proc readings.

Every connection the benchmark itself opens carries an application_name starting with
"bench", so the connection sampler can tell the agent's backends from ours.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from pyagent import extras, schema  # noqa: E402
from pyagent.devcluster import Cluster, find_bindir  # noqa: E402

PGAGENT_BIN = Path(os.environ.get("PYAGENT_BENCH_PGAGENT", "/usr/bin/pgagent"))
# The checkout whose pyagent the agent processes run (default: this one). Set it to another
# checkout to compare two versions of the agent under the same harness and workloads.
AGENT_REPO = Path(os.environ.get("PYAGENT_BENCH_AGENT_REPO", str(REPO_ROOT)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

# Agent kinds: our schema with the notify trigger, the C daemon on the extension, and
# pyagent on the extension's schema with the notify trigger added.
PYAGENT = "pyagent"
PGAGENT = "pgagent"
PYAGENT_EXT = "pyagent-ext"
ALL_AGENTS = (PYAGENT, PGAGENT, PYAGENT_EXT)
# pyagent on its schema with --step-rights author (the jobs are the superuser's, so they run
# as the agent: what is measured is the author lookup). Only when asked for (--agents).
PYAGENT_AUTHOR = "pyagent-author"
AGENT_KINDS = (*ALL_AGENTS, PYAGENT_AUTHOR)
KIND_ARGS: dict[str, tuple[str, ...]] = {PYAGENT_AUTHOR: ("--step-rights", "author")}

TPL_OURS = "bench_tpl_ours"
TPL_EXT = "bench_tpl_ext"

# pyagent's defaults (pyagent/settings.py): the agent's own connections are the service
# session, the LISTEN session and the control pool; steps get at most this many per target.
PYAGENT_CONTROL_POOL = 4
PYAGENT_MAX_PER_TARGET = 8


def pyagent_connection_bound(agents: int = 1, targets: int = 1) -> int:
    """Most connections pyagent processes may hold with default settings."""
    return agents * (2 + PYAGENT_CONTROL_POOL + PYAGENT_MAX_PER_TARGET * targets)


def pgagent_available() -> bool:
    if not PGAGENT_BIN.exists():
        return False
    try:
        version = find_bindir().parent.name
    except RuntimeError:
        return False
    return Path(f"/usr/share/postgresql/{version}/extension/pgagent.control").exists()


# --------------------------------------------------------------------------------------
# the cluster and its databases
# --------------------------------------------------------------------------------------


def connect(dsn: str, name: str = "bench-driver") -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=True, application_name=name)


BENCH_TABLE = """
CREATE TABLE public.bench_hits (
    job int NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


PRELOAD_STATEMENTS = {"shared_preload_libraries": "'pg_stat_statements'"}


class BenchCluster:
    """The throwaway cluster with template databases for each kind of agent."""

    def __init__(self, cluster: Cluster, with_extension: bool) -> None:
        self.cluster = cluster
        self.with_extension = with_extension
        self._seq = 0
        self._lock = threading.Lock()

    @classmethod
    def create(cls) -> BenchCluster:
        # pg_stat_statements counts the statements each agent sends per job.
        cluster = Cluster.create(settings=PRELOAD_STATEMENTS)
        cluster.start()
        bench = cls(cluster, False)
        try:
            bench.prepare()
        except BaseException:
            cluster.destroy()
            raise
        return bench

    @classmethod
    def on(cls, cluster: Cluster) -> BenchCluster:
        """Use an already running cluster (the test suite's)."""
        bench = cls(cluster, False)
        bench.prepare()
        return bench

    def prepare(self) -> None:
        self.with_extension = pgagent_available()
        with connect(self.dsn("postgres")) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            existing = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
            if TPL_OURS not in existing:
                conn.execute(f"CREATE DATABASE {TPL_OURS}")
                schema.install(self.dsn(TPL_OURS), with_notify=True)
                with connect(self.dsn(TPL_OURS)) as tpl:
                    tpl.execute(BENCH_TABLE)
            if self.with_extension and TPL_EXT not in existing:
                conn.execute(f"CREATE DATABASE {TPL_EXT}")
                with connect(self.dsn(TPL_EXT)) as tpl:
                    tpl.execute("CREATE EXTENSION pgagent")
                    tpl.execute(BENCH_TABLE)

    def dsn(self, dbname: str) -> str:
        return self.cluster.dsn(dbname)

    def fresh_db(self, label: str, agent: str) -> str:
        """A new database holding the schema the given agent kind runs on."""
        with self._lock:
            self._seq += 1
            seq = self._seq
        safe = "".join(c if c.isalnum() else "_" for c in f"{label}_{agent}").lower()
        name = f"b{seq:03d}_{safe}"[:63]
        template = TPL_OURS if agent in (PYAGENT, PYAGENT_AUTHOR) else TPL_EXT
        with connect(self.dsn("postgres")) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        if agent == PYAGENT_EXT:
            extras.add_notify_trigger(self.dsn(name))
        return name

    def drop_db(self, name: str) -> None:
        with connect(self.dsn("postgres")) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def destroy(self) -> None:
        self.cluster.destroy()


# --------------------------------------------------------------------------------------
# agent processes
# --------------------------------------------------------------------------------------


@dataclass
class ProcSample:
    cpu_s: float
    rss_kb: int
    hwm_kb: int


def proc_sample(pid: int) -> ProcSample | None:
    """CPU seconds (utime + stime), current and peak resident set size of a process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    rss = hwm = 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    return ProcSample((utime + stime) / CLK_TCK, rss, hwm)


class Agent:
    """One agent process (pyagent or the C pgagent) in the foreground, logging to a file."""

    def __init__(self, kind: str, dsn: str, args: Sequence[str] = (), log_level: int = 0) -> None:
        self.kind = kind
        self.dsn = dsn
        self.workdir = Path(tempfile.mkdtemp(prefix=f"bench-{kind}-"))
        self.log_path = self.workdir / "agent.log"
        base = [str(PGAGENT_BIN)] if kind == PGAGENT else [sys.executable, "-m", "pyagent"]
        self.argv = [*base, "-f", "-l", str(log_level), *KIND_ARGS.get(kind, ()), *args, dsn]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(AGENT_REPO), env.get("PYTHONPATH", "")) if p
        )
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=self.workdir,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def sample(self) -> ProcSample | None:
        return proc_sample(self.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        code = self.proc.returncode
        shutil.rmtree(self.workdir, ignore_errors=True)
        return code


def wait_until(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def wait_registered(
    conn: psycopg.Connection[Any], agents: Sequence[Agent], timeout: float = 30.0
) -> None:
    """Wait until every agent has its pga_jobagent row (and is still alive)."""

    def ready() -> bool:
        for agent in agents:
            if not agent.alive():
                raise RuntimeError(
                    f"{agent.kind} exited with {agent.proc.returncode}:\n{agent.log_tail()}"
                )
        (count,) = conn.execute("SELECT count(*) FROM pgagent.pga_jobagent").fetchone()
        return count >= len(agents)

    wait_until(ready, timeout, what="agent registration")


@contextmanager
def running_agents(
    kind: str, dsn: str, count: int = 1, args: Sequence[str] = (), settle: float = 0.5
) -> Iterator[list[Agent]]:
    """Start `count` agents on one database, wait for them to register, stop them after."""
    agents: list[Agent] = []
    try:
        for _ in range(count):
            agents.append(Agent(kind, dsn, args))
        with connect(dsn) as conn:
            wait_registered(conn, agents)
        time.sleep(settle)
        yield agents
    finally:
        for agent in agents:
            agent.stop()


def wait_no_backends(bench: BenchCluster, dbname: str, timeout: float = 30.0) -> None:
    """Wait until no agent backend is left on a database (after stopping its agents)."""
    with connect(bench.dsn("postgres")) as conn:

        def gone() -> bool:
            (n,) = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                " AND coalesce(application_name, '') NOT LIKE 'bench%%'",
                (dbname,),
            ).fetchone()
            return n == 0

        with suppress(TimeoutError):
            wait_until(gone, timeout, interval=0.2, what="agent backends to go away")


# --------------------------------------------------------------------------------------
# jobs, the way pgAdmin writes them
# --------------------------------------------------------------------------------------


def hit_sql(job_marker: str) -> str:
    return f"INSERT INTO public.bench_hits(job, at) VALUES ({job_marker}, clock_timestamp())"


def create_jobs(
    conn: psycopg.Connection[Any],
    count: int,
    *,
    kind: str = "s",
    code: str = "SELECT 1",
    dbname: str | None = None,
    name: str = "bench",
) -> list[int]:
    """Insert `count` enabled one-step jobs with no schedule (so never due on their own).

    In `code`, the text {jobid} is replaced by the job's id (per job, in SQL).
    """
    if count <= 0:
        return []
    dbname = dbname if dbname is not None else conn.info.dbname
    with conn.transaction():
        ids = [
            r[0]
            for r in conn.execute(
                "INSERT INTO pgagent.pga_job (jobjclid, jobname, jobdesc, jobhostagent, jobenabled)"
                " SELECT 1, %s || '-' || g, '', '', true FROM generate_series(1, %s) g"
                " RETURNING jobid",
                (name, count),
            )
        ]
        conn.execute(
            "INSERT INTO pgagent.pga_jobstep"
            " (jstjobid, jstname, jstdesc, jstenabled, jstkind, jstcode, jstdbname, jstonerror)"
            " SELECT j, 'step1', '', true, %s, replace(%s, '{jobid}', j::text), %s, 'f'"
            " FROM unnest(%s::int[]) j",
            (kind, code, dbname if kind == "s" else "", ids),
        )
    return ids


def add_minute_schedules(
    conn: psycopg.Connection[Any], job_ids: Sequence[int], minute: int, start: str = "now()"
) -> None:
    """Give each job a schedule that fires at one minute of every hour (pgAdmin style:
    all other arrays all-false, meaning "any")."""
    minutes = [i == minute for i in range(60)]
    conn.execute(
        "INSERT INTO pgagent.pga_schedule (jscjobid, jscname, jscdesc, jscenabled, jscstart,"
        " jscend, jscminutes, jschours, jscweekdays, jscmonthdays, jscmonths)"
        f" SELECT j, 'at minute ' || %s, '', true, {start}, NULL, %s::bool[],"
        " array_fill(false, ARRAY[24]), array_fill(false, ARRAY[7]),"
        " array_fill(false, ARRAY[32]), array_fill(false, ARRAY[12])"
        " FROM unnest(%s::int[]) j",
        (minute, minutes, list(job_ids)),
    )


def run_now(conn: psycopg.Connection[Any], job_ids: Sequence[int]) -> Any:
    """pgAdmin's "Run now" for these jobs in one statement; returns clock_timestamp()
    read right after the commit, on the server."""
    conn.execute(
        "UPDATE pgagent.pga_job SET jobnextrun = now() WHERE jobid = ANY(%s)", (list(job_ids),)
    )
    return conn.execute("SELECT clock_timestamp()").fetchone()[0]


# --------------------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------------------


class ConnectionSampler:
    """Counts the agents' backends (everything not opened by the benchmark) every 50 ms."""

    QUERY = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        " AND coalesce(application_name, '') NOT LIKE 'bench%%'"
        " AND datname = ANY(%s)"
    )

    def __init__(self, dsn: str, dbnames: Sequence[str], interval: float = 0.05) -> None:
        # Opened now, so a flood of agent connections cannot lock the sampler out.
        self._conn = connect(dsn, "bench-sampler")
        self._dbnames = list(dbnames)
        self._interval = interval
        self._stop = threading.Event()
        self.samples: list[int] = []
        self.errors = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                (n,) = self._conn.execute(self.QUERY, (self._dbnames,)).fetchone()
                self.samples.append(int(n))
            except psycopg.Error:
                self.errors += 1
            self._stop.wait(self._interval)

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._conn.close()

    @property
    def peak(self) -> int:
        return max(self.samples, default=0)


class CpuWatch:
    """CPU seconds and peak RSS of a set of processes between start() and stop()."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self._start: dict[int, ProcSample] = {}
        self._last: dict[int, ProcSample] = {}
        self._wall = 0.0
        self.cpu_s = 0.0
        self.wall_s = 0.0
        self.hwm_kb = 0
        self.rss_kb = 0

    def start(self) -> None:
        self._wall = time.monotonic()
        self._last = {}
        for pid in self.pids:
            sample = proc_sample(pid)
            if sample:
                self._start[pid] = sample
                self._last[pid] = sample

    def poll(self) -> None:
        """Remember the latest readings, in case a process dies before stop()."""
        for pid in self.pids:
            sample = proc_sample(pid)
            if sample is None:
                continue
            last = self._last.get(pid)
            if sample.hwm_kb == 0 and last is not None:
                # A dead, unreaped process keeps its CPU times but loses its memory lines.
                sample = ProcSample(sample.cpu_s, last.rss_kb, last.hwm_kb)
            self._last[pid] = sample

    def stop(self) -> None:
        self.wall_s = time.monotonic() - self._wall
        self.poll()
        cpu = 0.0
        for pid in self.pids:
            sample = self._last.get(pid)
            if sample and pid in self._start:
                cpu += sample.cpu_s - self._start[pid].cpu_s
                self.hwm_kb += sample.hwm_kb
                self.rss_kb += sample.rss_kb
        self.cpu_s = cpu


# --------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (no interpolation); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, int(-(-pct * len(ordered) // 100)))  # ceil
    return ordered[min(rank, len(ordered)) - 1]


def summarize_ms(values_s: Sequence[float]) -> dict[str, Any]:
    ms = [v * 1000.0 for v in values_s]
    return {
        "samples": len(ms),
        "p50_ms": _r(percentile(ms, 50)),
        "p99_ms": _r(percentile(ms, 99)),
        "max_ms": _r(max(ms) if ms else None),
        "min_ms": _r(min(ms) if ms else None),
        "mean_ms": _r(statistics.fmean(ms) if ms else None),
    }


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class Outcome:
    """What one agent did in one workload (serialised to JSON)."""

    metrics: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
