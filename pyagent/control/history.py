"""The per-job run-history gauges of /metrics (last success, last failure, failure
streak), read from pga_joblog every HISTORY_REFRESH seconds and soon after a run of this
agent ends, so every agent reports the same values whichever ran the job."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from pyagent.control.waits import wait_any
from pyagent.store.connections import TRANSIENT_ERRORS
from pyagent.store.jobcontrol import JobControlStore

if TYPE_CHECKING:
    from pyagent.control.metrics import ControlMetrics  # (prometheus_client: --http only)

# How often the gauges are refreshed (only with --http), and the shortest gap between two
# refreshes (runs ending one after another cause one refresh a second).
HISTORY_REFRESH = 30.0
MIN_GAP = 1.0


class HistoryRefresher:
    """Keeps ControlMetrics' history snapshot fresh while the agent is registered."""

    def __init__(
        self,
        store: JobControlStore,
        metrics: ControlMetrics,
        *,
        registered: Callable[[], bool],
        stop: asyncio.Event,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.registered = registered
        self.stop = stop
        self._stale = asyncio.Event()

    def run_ended(self) -> None:
        """A run of this agent ended: refresh soon."""
        self._stale.set()

    async def refresh(self) -> None:
        """The side task: until the agent stops."""
        while not self.stop.is_set():
            if not self.registered():
                await wait_any(MIN_GAP, self.stop)
                continue
            self._stale.clear()
            with contextlib.suppress(*TRANSIENT_ERRORS):
                self.metrics.history.snapshot = await self.store.job_run_history()
            await wait_any(MIN_GAP, self.stop)
            await wait_any(HISTORY_REFRESH, self._stale, self.stop)
