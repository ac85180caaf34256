"""Prometheus metrics: names, labels and values as a scraper parses them."""

from __future__ import annotations

import math

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from pyagent.ops.metrics import DURATION_BUCKETS, PICKUP_LAG_BUCKETS, Metrics

Key = tuple[str, frozenset[tuple[str, str]]]


def scrape(metrics: Metrics) -> dict[Key, float]:
    """Every sample of the rendered text, keyed by (sample name, labels)."""
    samples: dict[Key, float] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = sample.value
    return samples


def types(metrics: Metrics) -> dict[str, str]:
    return {
        family.name: family.type
        for family in text_string_to_metric_families(metrics.render().decode())
    }


def value(samples: dict[Key, float], name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def names(samples: dict[Key, float]) -> set[str]:
    return {name for name, _labels in samples}


FULL_STATE: dict[str, float] = {
    "running_jobs": 3,
    "connected": 1,
    "ready": 1,
    "registered": 1,
    "in_recovery": 0,
    "pool_connections_in_use": 2,
    "pool_connections_idle": 5,
    "pool_connections_opened_total": 17,
    "control_pool_size": 4,
    "control_pool_available": 1,
    "requests_waiting": 6,
}

STATE_SAMPLES = {
    "pyagent_running_jobs",
    "pyagent_connected",
    "pyagent_ready",
    "pyagent_registered",
    "pyagent_in_recovery",
    "pyagent_step_pool_connections",
    "pyagent_step_pool_connections_opened_total",
    "pyagent_control_pool_size",
    "pyagent_control_pool_available",
    "pyagent_control_pool_requests_waiting",
}


def test_fresh_metrics() -> None:
    metrics = Metrics()
    samples = scrape(metrics)
    assert value(samples, "pyagent_job_runs_started_total") == 0
    for status in "sfid":
        assert value(samples, "pyagent_job_runs_finished_total", status=status) == 0
    assert value(samples, "pyagent_database_reconnects_total") == 0
    assert value(samples, "pyagent_polls_total") == 0
    assert value(samples, "pyagent_job_pickup_lag_seconds_count") == 0
    assert value(samples, "pyagent_job_duration_seconds_count") == 0
    # No state gauges without a provider; no step series before the first step.
    assert not names(samples) & STATE_SAMPLES
    assert not any(name.startswith("pyagent_step_duration") for name in names(samples))
    # Only pyagent's own metrics (private registry, no process/platform collectors), and no
    # _created timestamps.
    assert all(name.startswith("pyagent_") for name in names(samples))
    assert not any(name.endswith("_created") for name in names(samples))


def test_metric_types() -> None:
    metrics = Metrics()
    metrics.step_finished("sql", "s", 0.1)
    metrics.set_state_provider(lambda: FULL_STATE)
    found = types(metrics)
    assert found["pyagent_job_runs_started"] == "counter"
    assert found["pyagent_job_runs_finished"] == "counter"
    assert found["pyagent_database_reconnects"] == "counter"
    assert found["pyagent_polls"] == "counter"
    assert found["pyagent_step_pool_connections_opened"] == "counter"
    assert found["pyagent_job_pickup_lag_seconds"] == "histogram"
    assert found["pyagent_job_duration_seconds"] == "histogram"
    assert found["pyagent_step_duration_seconds"] == "histogram"
    for gauge in (
        "pyagent_running_jobs",
        "pyagent_connected",
        "pyagent_ready",
        "pyagent_registered",
        "pyagent_in_recovery",
        "pyagent_step_pool_connections",
        "pyagent_control_pool_size",
        "pyagent_control_pool_available",
        "pyagent_control_pool_requests_waiting",
    ):
        assert found[gauge] == "gauge", gauge


def test_job_started_and_pickup_lag() -> None:
    metrics = Metrics()
    metrics.job_started(0.002)
    metrics.job_started(None)
    metrics.job_started(-0.5)  # clock skew: counted as no lag
    metrics.job_started(math.nan)  # ignored for the histogram
    metrics.job_started(120.0)
    samples = scrape(metrics)
    assert value(samples, "pyagent_job_runs_started_total") == 5
    assert value(samples, "pyagent_job_pickup_lag_seconds_count") == 3
    assert value(samples, "pyagent_job_pickup_lag_seconds_sum") == pytest.approx(120.002)
    bucket = "pyagent_job_pickup_lag_seconds_bucket"
    assert value(samples, bucket, le="0.001") == 1
    assert value(samples, bucket, le="0.0025") == 2
    assert value(samples, bucket, le="60.0") == 2
    assert value(samples, bucket, le="+Inf") == 3


def test_pickup_lag_buckets_cover_1ms_to_60s() -> None:
    assert PICKUP_LAG_BUCKETS[0] == 0.001
    assert PICKUP_LAG_BUCKETS[-1] == 60.0
    assert list(PICKUP_LAG_BUCKETS) == sorted(PICKUP_LAG_BUCKETS)
    assert list(DURATION_BUCKETS) == sorted(DURATION_BUCKETS)


def test_job_finished() -> None:
    metrics = Metrics()
    metrics.job_finished("s", 1.5)
    metrics.job_finished("s", 0.5)
    metrics.job_finished("f", 12.0)
    metrics.job_finished("d", 30.0)
    samples = scrape(metrics)
    finished = "pyagent_job_runs_finished_total"
    assert value(samples, finished, status="s") == 2
    assert value(samples, finished, status="f") == 1
    assert value(samples, finished, status="i") == 0
    assert value(samples, finished, status="d") == 1
    assert value(samples, "pyagent_job_duration_seconds_count") == 4
    assert value(samples, "pyagent_job_duration_seconds_sum") == pytest.approx(44.0)
    assert value(samples, "pyagent_job_duration_seconds_bucket", le="1.0") == 1


def test_step_finished() -> None:
    metrics = Metrics()
    metrics.step_finished("sql", "s", 0.2)
    metrics.step_finished("sql", "s", 0.3)
    metrics.step_finished("sql", "f", 0.01)
    metrics.step_finished("batch", "s", 42.0)
    metrics.step_finished("batch", "i", math.inf)  # ignored
    samples = scrape(metrics)
    count = "pyagent_step_duration_seconds_count"
    assert value(samples, count, kind="sql", status="s") == 2
    assert value(samples, count, kind="sql", status="f") == 1
    assert value(samples, count, kind="batch", status="s") == 1
    assert (count, frozenset({("kind", "batch"), ("status", "i")})) not in samples
    assert value(
        samples, "pyagent_step_duration_seconds_sum", kind="sql", status="s"
    ) == pytest.approx(0.5)
    assert (
        value(samples, "pyagent_step_duration_seconds_bucket", kind="batch", status="s", le="60.0")
        == 1
    )


def test_reconnects_and_polls() -> None:
    metrics = Metrics()
    metrics.reconnected()
    for _ in range(7):
        metrics.poll()
    samples = scrape(metrics)
    assert value(samples, "pyagent_database_reconnects_total") == 1
    assert value(samples, "pyagent_polls_total") == 7


def test_state_gauges() -> None:
    metrics = Metrics()
    metrics.set_state_provider(lambda: FULL_STATE)
    samples = scrape(metrics)
    assert names(samples) >= STATE_SAMPLES
    assert value(samples, "pyagent_running_jobs") == 3
    assert value(samples, "pyagent_connected") == 1
    assert value(samples, "pyagent_ready") == 1
    assert value(samples, "pyagent_registered") == 1
    assert value(samples, "pyagent_in_recovery") == 0
    assert value(samples, "pyagent_step_pool_connections", state="in_use") == 2
    assert value(samples, "pyagent_step_pool_connections", state="idle") == 5
    assert value(samples, "pyagent_step_pool_connections_opened_total") == 17
    assert value(samples, "pyagent_control_pool_size") == 4
    assert value(samples, "pyagent_control_pool_available") == 1
    assert value(samples, "pyagent_control_pool_requests_waiting") == 6


def test_state_is_read_at_each_scrape() -> None:
    metrics = Metrics()
    state = {"running_jobs": 0.0}
    metrics.set_state_provider(lambda: state)
    assert value(scrape(metrics), "pyagent_running_jobs") == 0
    state["running_jobs"] = 4
    assert value(scrape(metrics), "pyagent_running_jobs") == 4
    metrics.set_state_provider(None)
    assert "pyagent_running_jobs" not in names(scrape(metrics))


def test_missing_and_odd_state_values_are_left_out() -> None:
    metrics = Metrics()
    odd: dict[str, object] = {
        "running_jobs": 2,
        "connected": True,  # bools are 0/1
        "ready": False,
        "registered": "yes",  # not a number: left out
        "in_recovery": None,
        "pool_connections_idle": 1,
        "control_pool_size": math.nan,
        "unrelated": 99,
    }
    metrics.set_state_provider(lambda: odd)  # type: ignore[arg-type,return-value]
    samples = scrape(metrics)
    assert value(samples, "pyagent_running_jobs") == 2
    assert value(samples, "pyagent_connected") == 1
    assert value(samples, "pyagent_ready") == 0
    assert value(samples, "pyagent_step_pool_connections", state="idle") == 1
    assert ("pyagent_step_pool_connections", frozenset({("state", "in_use")})) not in samples
    for absent in (
        "pyagent_registered",
        "pyagent_in_recovery",
        "pyagent_control_pool_size",
        "pyagent_control_pool_available",
        "pyagent_control_pool_requests_waiting",
        "pyagent_step_pool_connections_opened_total",
    ):
        assert absent not in names(samples), absent
    assert not any("unrelated" in name for name in names(samples))


def test_empty_state() -> None:
    metrics = Metrics()
    metrics.set_state_provider(dict)
    samples = scrape(metrics)
    assert not names(samples) & STATE_SAMPLES
    assert value(samples, "pyagent_polls_total") == 0


def test_failing_provider_does_not_break_the_scrape() -> None:
    metrics = Metrics()

    def broken() -> dict[str, float]:
        raise RuntimeError("agent state unavailable")

    metrics.set_state_provider(broken)
    metrics.poll()
    samples = scrape(metrics)
    assert not names(samples) & STATE_SAMPLES
    assert value(samples, "pyagent_polls_total") == 1

    metrics.set_state_provider(lambda: [1, 2, 3])  # type: ignore[arg-type,return-value]
    assert not names(scrape(metrics)) & STATE_SAMPLES


def test_render_and_content_type() -> None:
    metrics = Metrics()
    body = metrics.render()
    assert isinstance(body, bytes)
    assert b"# TYPE pyagent_polls_total counter" in body
    assert metrics.content_type.startswith("text/plain; version=0.0.4")


def test_registries_are_private() -> None:
    first, second = Metrics(), Metrics()  # no "Duplicated timeseries" error
    first.poll()
    assert value(scrape(first), "pyagent_polls_total") == 1
    assert value(scrape(second), "pyagent_polls_total") == 0
    assert REGISTRY.get_sample_value("pyagent_polls_total") is None
