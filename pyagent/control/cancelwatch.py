"""The cancel watcher: about once a second while this agent runs jobs, it asks the store
which of its runs someone marked aborted (`pyagent jobs cancel`, or the README's SQL
statement) and cancels their tasks. An idle agent sends no statement for it at all."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from pyagent.control.waits import wait_any
from pyagent.logsetup import get_logger
from pyagent.store.connections import TRANSIENT_ERRORS
from pyagent.store.jobcontrol import JobControlStore

if TYPE_CHECKING:
    from pyagent.control.jobcontrol import Tracked
    from pyagent.control.metrics import ControlMetrics

# How often an agent running jobs looks for cancel requests.
CANCEL_CHECK_INTERVAL = 1.0


class CancelWatcher:
    """Stops the tracked runs a cancel request marked aborted."""

    def __init__(
        self,
        store: JobControlStore,
        tracked: Mapping[int, Tracked],
        *,
        pid: Callable[[], int],
        station: str,
        registered: Callable[[], bool],
        stop: asyncio.Event,
        metrics: ControlMetrics | None,
    ) -> None:
        self.store = store
        self.tracked = tracked  # by job id, kept by JobControl
        self.pid = pid
        self.station = station
        self.registered = registered
        self.stop = stop
        self.metrics = metrics
        self.log = get_logger()
        self._started = asyncio.Event()

    def run_started(self) -> None:
        """A run is tracked now: an idle watcher starts looking."""
        self._started.set()

    async def watch(self) -> None:
        """The side task: until the agent stops."""
        while not self.stop.is_set():
            running = [j for j, t in self.tracked.items() if not t.task.done()]
            if not running or not self.registered():
                # Idle: no statement at all until a job starts.
                self._started.clear()
                await wait_any(CANCEL_CHECK_INTERVAL * 5, self._started, self.stop)
                continue
            try:
                found = await self.store.cancelled_runs(running, self.pid())
            except TRANSIENT_ERRORS:
                found = []
            for mark in found:
                self._cancel(mark.job_id, mark.jlgid, mark.message)
            await wait_any(CANCEL_CHECK_INTERVAL, self.stop)

    def _cancel(self, job_id: int, jlgid: int, message: str | None) -> None:
        tracked = self.tracked.get(job_id)
        if tracked is None or tracked.task.done() or tracked.cancel_message is not None:
            return
        if tracked.run.jlgid not in (None, jlgid):
            return
        text = message or (
            f"Cancelled: run {jlgid} was marked aborted by another session; stopped by "
            f"agent pid {self.pid()} on {self.station}"
        )
        tracked.cancel_message = text
        # The step running now (if its row is still 'r') is closed with this output.
        tracked.run.abort_message = text
        tracked.task.cancel()
        self.log.warning(
            f"Job {job_id}: run {jlgid} cancelled ({text}); stopping it",
            job_id=job_id,
            jlgid=jlgid,
        )
        if self.metrics is not None:
            self.metrics.cancels.inc()
