"""The supervisor's ordering with a fake store: claims stop at a stop request, running
jobs finish (or are aborted after the grace period) before the agent unregisters, and the
connection closes last."""

from __future__ import annotations

import asyncio

from pyagent.agent.supervisor import Agent
from pyagent.settings import Settings
from pyagent.store.records import RunStatus
from tests.unit.fake_store import FakeStore, run_id


def _agent(store: FakeStore, **overrides: object) -> Agent:
    settings = Settings(conninfo="", poll_interval=0.05, listen=False, **overrides)  # type: ignore[arg-type]
    return Agent(settings, store=store)  # type: ignore[arg-type]


async def _until(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def test_claims_at_most_max_jobs_and_unregisters_after_the_runs_finish():
    async def scenario() -> FakeStore:
        store = FakeStore(due=list(range(1, 11)), hold_runs=True)
        agent = _agent(store, max_jobs=4, grace_period=5.0)
        main = asyncio.create_task(agent.run())
        await _until(lambda: len(agent.state.running) == 4)
        claimed = [job for call in store.calls if call[0] == "claim" for job in call[3]]
        assert len(claimed) == 4  # the bound holds while the runs are held
        agent.request_stop()
        store.release_runs.set()
        assert await main == 0
        return store

    store = asyncio.run(scenario())
    names = store.names()
    finished = [i for i, n in enumerate(names) if n == "finish_run"]
    assert len(finished) == 4
    assert max(finished) < names.index("unregister") < names.index("disconnect")
    assert names[-1] == "close"
    assert all(c[2] == RunStatus.SUCCEEDED for c in store.calls if c[0] == "finish_run")


def test_grace_period_over_aborts_runs_before_unregistering():
    async def scenario() -> FakeStore:
        store = FakeStore(due=[7], hold_runs=True)
        agent = _agent(store, grace_period=0.05)
        main = asyncio.create_task(agent.run())
        await asyncio.wait_for(store.runs_started.wait(), 5)
        agent.request_stop()
        assert await main == 0
        return store

    store = asyncio.run(scenario())
    names = store.names()
    assert ("finish_run", 7, RunStatus.ABORTED) in store.calls
    assert names.index("finish_run") < names.index("unregister")
    assert "claim" not in names[names.index("finish_run") :]


def test_a_backlog_is_claimed_in_claim_only_polls():
    async def scenario() -> FakeStore:
        store = FakeStore(due=list(range(1, 40)))
        agent = _agent(store, max_jobs=8)
        main = asyncio.create_task(agent.run())
        await _until(lambda: not store.due and not agent.state.running)
        agent.request_stop()
        await main
        return store

    store = asyncio.run(scenario())
    claims = [c for c in store.calls if c[0] == "claim"]
    assert sum(len(c[3]) for c in claims) == 39
    assert claims[0][2] is True  # the first poll is a full one
    assert any(c[2] is False for c in claims)  # then claim-only polls work off the backlog
    assert all(c[1] <= 8 for c in claims)


def test_a_connection_that_is_not_a_session_registers_and_claims_nothing_until_one_is():
    async def scenario() -> FakeStore:
        store = FakeStore(due=[1, 2])
        store.pooled_connects = 2  # through a transaction pooler twice, then a session
        agent = _agent(store, retry_interval=10.0)
        main = asyncio.create_task(agent.run())
        await _until(lambda: store.names().count("disconnect") == 1)
        assert not agent.state.ready and not agent.state.registered  # /readyz: not ready
        await _until(lambda: not store.due and not agent.state.running, timeout=10)
        agent.request_stop()
        assert await main == 0
        return store

    store = asyncio.run(scenario())
    names = store.names()
    connects = [i for i, n in enumerate(names) if n == "connect"]
    assert len(connects) == 3  # every connection is checked, reconnects included
    # Nothing registered or claimed on the two that failed; each was closed.
    assert names[connects[0] : connects[2]].count("disconnect") == 2
    assert "register" not in names[: connects[2]] and "claim" not in names[: connects[2]]
    assert "register" in names[connects[2] :]


def test_a_cancel_request_stops_the_run_and_closes_its_steps():
    message = "Cancelled by ops@host (pyagent jobs cancel) (database user ops) at now"

    async def scenario() -> FakeStore:
        store = FakeStore(due=[7], hold_steps=True)
        agent = _agent(store)
        main = asyncio.create_task(agent.run())
        await asyncio.wait_for(store.steps_started.wait(), 5)
        store.job_control.mark_cancelled(7, message)
        await _until(lambda: ("finish_run", 7, RunStatus.ABORTED) in store.calls)
        await _until(lambda: "close_cancelled_steps" in store.names())
        agent.request_stop()
        assert await main == 0
        return store

    store = asyncio.run(scenario())
    assert ("cancelled_runs", (7,), 4242) in store.calls  # the watcher asked for this run
    assert ("close_cancelled_steps", run_id(7), message) in store.calls
    assert "release_failed_run" not in store.names()  # a cancelled run is never retried
