"""Long-lived side tasks of the agent, kept alive by `supervise`: a crash is logged and the
task restarted, so nothing fails silently."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from pyagent.agent.state import AgentState, Wakeups
from pyagent.backoff import Backoff
from pyagent.logsetup import get_logger
from pyagent.settings import Settings
from pyagent.store.agent_store import AgentStore
from pyagent.store.connections import RECONNECT_ERRORS


async def supervise(name: str, factory: Callable[[], Awaitable[None]], wakeups: Wakeups) -> None:
    """Run `factory()` until it returns or the agent stops; restart it after a crash."""
    backoff = Backoff(initial=1.0, maximum=30.0)
    while not wakeups.stop.is_set():
        try:
            await factory()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            get_logger().warning(f"Side task {name} failed: {exc!r}; restarting it", always=True)
            await wakeups.sleep(backoff.next_delay())


async def purge_old_logs_forever(
    settings: Settings, store: AgentStore, state: AgentState, wakeups: Wakeups
) -> None:
    """Delete job history older than --log-retention, now and then, while registered."""
    days = settings.log_retention_days
    assert days is not None
    while not wakeups.stop.is_set():
        if not state.registered:
            await wakeups.sleep(settings.poll_interval)
            continue
        try:
            deleted = await store.purge_old_logs(days, settings.retention_batch)
        except RECONNECT_ERRORS:
            deleted = 0
        if deleted:
            get_logger().debug(
                f"Deleted {deleted} job runs older than {days:g} days", deleted=deleted
            )
        await wakeups.sleep(settings.retention_interval)
