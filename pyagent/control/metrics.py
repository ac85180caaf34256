"""Job-control metrics, added to the agent's registry when `--http` is on.

Counters for retries, cancels and alert deliveries, and per-job gauges read from the run
history (last success, last failure, failure streak) refreshed by the agent now and then,
so that Prometheus can alert on "no success for 25 h" whichever agent ran the job.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily, Metric

from pyagent.ops.metrics import Metrics
from pyagent.store.jobcontrol import JobHistory


class _HistoryCollector:
    """Per-job gauges from the last history snapshot (no database access at scrape time)."""

    def __init__(self) -> None:
        self.snapshot: Sequence[JobHistory] = ()

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        labels = ["job_id", "job_name"]
        success = GaugeMetricFamily(
            "pyagent_job_last_success_timestamp_seconds",
            "When the job's last successful run ended (from pga_joblog, any agent).",
            labels=labels,
        )
        failure = GaugeMetricFamily(
            "pyagent_job_last_failure_timestamp_seconds",
            "When the job's last failed, internal-error or aborted run ended (pga_joblog).",
            labels=labels,
        )
        streak = GaugeMetricFamily(
            "pyagent_job_failure_streak",
            "Consecutive failed runs of the job up to now (the retry attempt reached).",
            labels=labels,
        )
        for job in self.snapshot:
            values = [str(job.job_id), job.job_name]
            if job.last_success is not None:
                success.add_metric(values, job.last_success)
            if job.last_failure is not None:
                failure.add_metric(values, job.last_failure)
            streak.add_metric(values, job.failure_streak)
        return [success, failure, streak]


class ControlMetrics:
    """Counters and gauges of retries, cancels and alerts."""

    def __init__(self, metrics: Metrics) -> None:
        r = metrics.registry
        self.retries_scheduled = Counter(
            "pyagent_job_retries_scheduled",
            "Failed runs whose job was given an earlier next run (a retry).",
            registry=r,
        )
        self.retries_exhausted = Counter(
            "pyagent_job_retries_exhausted",
            "Failed runs after which the job's retries were used up.",
            registry=r,
        )
        self.cancels = Counter(
            "pyagent_job_runs_cancelled",
            "Runs this agent stopped because someone cancelled them.",
            registry=r,
        )
        self.alerts = Counter(
            "pyagent_alerts",
            "Alert deliveries by sink (webhook, command) and outcome "
            "(sent, failed: given up after retries, dropped: the queue was full).",
            ["sink", "outcome"],
            registry=r,
        )
        for sink in ("webhook", "command"):
            for outcome in ("sent", "failed", "dropped"):
                self.alerts.labels(sink=sink, outcome=outcome)
        self.history = _HistoryCollector()
        r.register(self.history)


_BY_METRICS: weakref.WeakKeyDictionary[Metrics, ControlMetrics] = weakref.WeakKeyDictionary()


def control_metrics(metrics: Metrics | None) -> ControlMetrics | None:
    """The job-control metrics of an agent's Metrics (made once), or None without metrics."""
    if metrics is None:
        return None
    found = _BY_METRICS.get(metrics)
    if found is None:
        found = _BY_METRICS[metrics] = ControlMetrics(metrics)
    return found
