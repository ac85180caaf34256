"""Prometheus metrics for the agent, kept in a private registry.

Events (job and step runs, polls, reconnects) are counted as they happen; point-in-time state
(running jobs, connection and pool state) is read from a callback at scrape time, so it is
never stale. `render()` calls that callback: call it on the thread that owns the agent's state
(the event loop), which is what `pyagent.ops.health.HealthServer` does.

Needs the optional `prometheus_client` dependency (`pip install pyagent-scheduler[metrics]`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from pyagent.logsetup import get_logger

StateProvider = Callable[[], Mapping[str, float]]

#: The classic text exposition format, understood by every Prometheus version.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: pgAgent's final job and step states: success, failure, internal error, aborted.
JOB_STATUSES = ("s", "f", "i", "d")

#: Why --step-rights author did not run a step (pyagent.steps.rights.Refusal).
STEP_REFUSALS = ("no_author", "batch_untrusted", "connstr_untrusted", "author_login_failed")

# Time from the scheduled start to the claim: milliseconds (NOTIFY wake-up) to about a minute.
PICKUP_LAG_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0,
)  # fmt: skip
# Jobs and steps: a trivial SQL statement up to a nightly batch of several hours.
DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0,
)  # fmt: skip


def _value(state: Mapping[str, float], key: str) -> float | None:
    """A finite number from the state, or None (the metric is then left out)."""
    raw = state.get(key)
    if raw is None or isinstance(raw, str):
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


class _StateCollector:
    """Gauges read from the agent's state callback at every scrape."""

    # (state key, metric name, help text)
    GAUGES = (
        ("running_jobs", "pyagent_running_jobs", "Jobs this agent is running now."),
        ("connected", "pyagent_connected", "1 when the service connection is up."),
        ("ready", "pyagent_ready", "1 when the agent is ready (what /readyz reports)."),
        ("registered", "pyagent_registered", "1 when the agent row is in pga_jobagent."),
        ("in_recovery", "pyagent_in_recovery", "1 when the database is a standby."),
        # The bookkeeping pool (runs' log rows and releases); the names are the ones
        # dashboards know.
        (
            "control_pool_size",
            "pyagent_control_pool_size",
            "Connections of the bookkeeping pool (run logs and releases).",
        ),
        (
            "control_pool_available",
            "pyagent_control_pool_available",
            "Idle connections of the bookkeeping pool.",
        ),
        (
            "requests_waiting",
            "pyagent_control_pool_requests_waiting",
            "Requests waiting for a bookkeeping pool connection.",
        ),
    )

    def __init__(self) -> None:
        self.provider: StateProvider | None = None

    def describe(self) -> Iterable[Metric]:
        # Names only, so that the registry can check for clashes without calling the provider.
        for _key, name, doc in self.GAUGES:
            yield GaugeMetricFamily(name, doc)
        yield GaugeMetricFamily("pyagent_step_pool_connections", "", labels=["state"])
        yield CounterMetricFamily("pyagent_step_pool_connections_opened", "")

    def collect(self) -> Iterable[Metric]:
        provider = self.provider
        if provider is None:
            return []
        try:
            state = provider()
            if not isinstance(state, Mapping):
                raise TypeError(f"state provider returned {type(state).__name__}, not a dict")
        except Exception as exc:
            # A scrape must never fail because of the agent's state; leave the gauges out.
            get_logger().debug(f"Metrics state provider failed: {exc}")
            return []
        return list(self._families(state))

    def _families(self, state: Mapping[str, float]) -> Iterable[Metric]:
        for key, name, doc in self.GAUGES:
            value = _value(state, key)
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=value)

        pool = GaugeMetricFamily(
            "pyagent_step_pool_connections",
            "Connections of the SQL-step pools, by state.",
            labels=["state"],
        )
        for key, label in (
            ("pool_connections_in_use", "in_use"),
            ("pool_connections_idle", "idle"),
        ):
            value = _value(state, key)
            if value is not None:
                pool.add_metric([label], value)
        if pool.samples:
            yield pool

        opened = _value(state, "pool_connections_opened_total")
        if opened is not None:
            yield CounterMetricFamily(
                "pyagent_step_pool_connections_opened",
                "Connections opened by the SQL-step pools since the agent started.",
                value=opened,
            )


class _WithoutCreated:
    """The registry's metrics without the `_created` timestamp series, which double the
    output and that Prometheus' classic text format does not use."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for family in self._registry.collect():
            created = family.name + "_created"
            if any(sample.name == created for sample in family.samples):
                trimmed = Metric(family.name, family.documentation, family.type, family.unit)
                trimmed.samples = [s for s in family.samples if s.name != created]
                yield trimmed
            else:
                yield family


class Metrics:
    """The agent's metrics. All methods are cheap and thread-safe; none raises on odd input."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._runs_started = Counter(
            "pyagent_job_runs_started", "Job runs started by this agent.", registry=r
        )
        self._pickup_lag = Histogram(
            "pyagent_job_pickup_lag_seconds",
            "Delay between a job's scheduled start (jobnextrun) and its start by this agent.",
            buckets=PICKUP_LAG_BUCKETS,
            registry=r,
        )
        self._runs_finished = Counter(
            "pyagent_job_runs_finished",
            "Job runs finished by this agent, by final status (s, f, i, d).",
            ["status"],
            registry=r,
        )
        for status in JOB_STATUSES:
            self._runs_finished.labels(status=status)  # present at 0 from the start
        self._job_duration = Histogram(
            "pyagent_job_duration_seconds",
            "Duration of job runs.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self._step_duration = Histogram(
            "pyagent_step_duration_seconds",
            "Duration of job steps, by kind (sql, batch) and final status.",
            ["kind", "status"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self._reconnects = Counter(
            "pyagent_database_reconnects",
            "Times the service connection was re-established after a loss.",
            registry=r,
        )
        self._polls = Counter("pyagent_polls", "Polls for jobs to run.", registry=r)
        self._fences = Counter(
            "pyagent_lease_fences",
            "Times this agent stopped its running jobs because it could not renew its lease.",
            registry=r,
        )
        self._agents_cleared = Counter(
            "pyagent_dead_agents_cleared",
            "Other agents this agent judged dead and cleared.",
            registry=r,
        )
        self._steps_refused = Counter(
            "pyagent_steps_refused",
            "Steps not run under --step-rights author, by reason (no_author, "
            "batch_untrusted, connstr_untrusted, author_login_failed).",
            ["reason"],
            registry=r,
        )
        for reason in STEP_REFUSALS:
            self._steps_refused.labels(reason=reason)  # present at 0 from the start
        self._steps_as_author = Counter(
            "pyagent_steps_run_as_author",
            "SQL steps run in a session logged in as their author (--step-rights author).",
            registry=r,
        )
        self._state = _StateCollector()
        r.register(self._state)
        self._exposed = _WithoutCreated(r)

    @property
    def content_type(self) -> str:
        """The Content-Type of `render()`'s output."""
        return CONTENT_TYPE

    def job_started(self, pickup_lag_seconds: float | None = None) -> None:
        """A job run started, `pickup_lag_seconds` after its scheduled time (None: unknown)."""
        self._runs_started.inc()
        if pickup_lag_seconds is not None and math.isfinite(pickup_lag_seconds):
            # Clock differences can make the lag slightly negative; count that as no lag.
            self._pickup_lag.observe(max(0.0, pickup_lag_seconds))

    def job_finished(self, status: str, duration_seconds: float) -> None:
        """A job run ended with pgAgent status `status` (s, f, i or d)."""
        self._runs_finished.labels(status=status).inc()
        if math.isfinite(duration_seconds):
            self._job_duration.observe(max(0.0, duration_seconds))

    def step_finished(self, kind: str, status: str, duration_seconds: float) -> None:
        """A step of kind `kind` (sql or batch) ended with status `status`."""
        if math.isfinite(duration_seconds):
            self._step_duration.labels(kind=kind, status=status).observe(max(0.0, duration_seconds))

    def step_refused(self, reason: str) -> None:
        """--step-rights author did not run a step, for `reason` (one of STEP_REFUSALS)."""
        self._steps_refused.labels(reason=reason).inc()

    def step_ran_as_author(self) -> None:
        """An SQL step ran in a session logged in as its author."""
        self._steps_as_author.inc()

    def reconnected(self) -> None:
        """The service connection was re-established."""
        self._reconnects.inc()

    def poll(self) -> None:
        """The agent polled for jobs to run."""
        self._polls.inc()

    def fenced(self) -> None:
        """The agent stopped its runs: no lease renewal got through for too long."""
        self._fences.inc()

    def cleared_agent(self) -> None:
        """The agent cleared another agent judged dead."""
        self._agents_cleared.inc()

    def set_state_provider(self, provider: StateProvider | None) -> None:
        """Set the callback read at scrape time (None: no state gauges).

        It returns a dict with any of the keys running_jobs, connected, ready, registered,
        in_recovery (0/1 flags), pool_connections_in_use, pool_connections_idle,
        pool_connections_opened_total, control_pool_size, control_pool_available,
        requests_waiting. Missing or non-numeric keys leave their metric out; a callback that
        raises leaves all of them out.
        """
        self._state.provider = provider

    def render(self) -> bytes:
        """The metrics in Prometheus text format (see `content_type`)."""
        return generate_latest(self._exposed)
