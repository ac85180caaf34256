"""The release fallback: when the schema's next-run function fails, the job is released
with pyagent's own next run (or 'infinity' when there is none); an outage is not a
reason to fall back."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import psycopg
import pytest

from pyagent.store.agent_store import AgentStore


def _store(next_run: datetime | None, zones: list | None = None) -> AgentStore:
    store = AgentStore("", pool_size=1, application_name="t", connect_timeout=1)

    async def fake_next_run(job_id: int, timezone: str | None = None) -> tuple[datetime | None, str]:
        if zones is not None:
            zones.append(timezone)
        return next_run, "every day at 03:00"

    store.next_run_by_pyagent = fake_next_run  # type: ignore[method-assign]
    return store


def _run(
    store: AgentStore, first_error: Exception | None, timezone: str | None = None
) -> tuple[list, object]:
    seen: list = []

    async def first(_none: None) -> None:
        seen.append(("first",))
        if first_error is not None:
            raise first_error

    async def fallback(next_run: object) -> None:
        seen.append(("fallback", next_run))

    result = asyncio.run(store._release_with_fallback(42, first, fallback, timezone))
    return seen, result


def test_no_fallback_when_the_schema_computes_the_next_run():
    seen, result = _run(_store(None), None)
    assert seen == [("first",)] and result is None


def test_schema_error_releases_with_pyagents_next_run():
    when = datetime(2027, 1, 1, 3, 0, tzinfo=UTC)
    seen, result = _run(_store(when), psycopg.errors.DatetimeFieldOverflow("date out of range"))
    assert seen == [("first",), ("fallback", when)]
    assert result.job_id == 42 and result.next_run == when
    assert "date out of range" in result.error and result.schedules == "every day at 03:00"


def test_the_fallback_reads_the_schedules_in_the_jobs_own_zone():
    zones: list = []
    when = datetime(2027, 1, 1, 2, 0, tzinfo=UTC)
    _run(_store(when, zones), psycopg.errors.RaiseException("boom"), "Europe/Berlin")
    _run(_store(when, zones), psycopg.errors.RaiseException("boom"))
    assert zones == ["Europe/Berlin", None]


def test_a_schedule_that_never_runs_again_is_released_to_infinity():
    seen, _ = _run(_store(None), psycopg.errors.RaiseException("boom"))
    assert seen[-1] == ("fallback", "infinity")


def test_statement_timeout_falls_back_like_a_schema_error():
    seen, _ = _run(_store(None), psycopg.errors.QueryCanceled("statement timeout"))
    assert seen[-1][0] == "fallback"


def test_an_outage_is_raised_not_worked_around():
    with pytest.raises(psycopg.OperationalError):
        _run(_store(None), psycopg.OperationalError("server closed the connection"))
