"""Job control inside the agent, as the supervisor sees it:

- `track(claim, run, task)`: every job run started; the cancel watcher
  (pyagent.control.cancelwatch) stops it when someone cancels it, and when it ends its
  after-run work (pyagent.control.afterrun: a cancelled run's leftovers, its alert) runs.
- `side_tasks(supervise)`: the cancel watcher, and the run-history refresher for /metrics
  (pyagent.control.history).
- `close()`: give after-run work and queued alerts a few seconds at shutdown.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pyagent.control.afterrun import AfterRun
from pyagent.control.cancelwatch import CancelWatcher
from pyagent.logsetup import get_logger
from pyagent.settings import Settings
from pyagent.store.agent_store import AgentStore

if TYPE_CHECKING:
    from pyagent.control.alerts import AlertDispatcher
    from pyagent.control.history import HistoryRefresher
    from pyagent.control.metrics import ControlMetrics
    from pyagent.control.options import JobControlOptions
    from pyagent.control.retry import RetryOutcome
    from pyagent.ops.metrics import Metrics
    from pyagent.store.records import Claim, RunStatus


class TrackedRun(Protocol):
    """What job control reads and sets on a running job (pyagent.agent.jobrun.JobRun)."""

    jlgid: int | None
    abort_message: str
    status: RunStatus
    control: JobControlOptions | None
    retry: RetryOutcome | None


@dataclass
class Tracked:
    """A run job control follows: its claim, the run, its task, and the cancel that
    stopped it (if one did)."""

    claim: Claim
    run: TrackedRun
    task: asyncio.Task[Any]
    cancel_message: str | None = None


Supervise = Callable[[str, Callable[[], Awaitable[None]]], Coroutine[Any, Any, None]]


class JobControl:
    """The cancel watcher, after-run work and history metrics of one agent."""

    def __init__(
        self,
        settings: Settings,
        store: AgentStore,
        metrics: Metrics | None,
        stop: asyncio.Event,
        registered: Callable[[], bool],
    ) -> None:
        self.log = get_logger()
        self.metrics: ControlMetrics | None = None
        if metrics is not None:
            from pyagent.control.metrics import control_metrics

            self.metrics = control_metrics(metrics)
        self.alerts: AlertDispatcher | None = None
        control = settings.control
        if control.alerts_enabled:
            from pyagent.control.alerts import AlertDispatcher

            self.alerts = AlertDispatcher(
                webhook=control.alert_webhook,
                command=control.alert_command,
                count=self._count_alert,
                timeout=control.alert_timeout,
            )

        def pid() -> int:
            return store.pid or 0

        self._tracked: dict[int, Tracked] = {}
        self.watcher = CancelWatcher(
            store.job_control,
            self._tracked,
            pid=pid,
            station=settings.station,
            registered=registered,
            stop=stop,
            metrics=self.metrics,
        )
        self.after_run = AfterRun(store.job_control, self.alerts, pid=pid, station=settings.station)
        self.history: HistoryRefresher | None = None
        if self.metrics is not None:
            from pyagent.control.history import HistoryRefresher

            self.history = HistoryRefresher(
                store.job_control, self.metrics, registered=registered, stop=stop
            )

    def side_tasks(self, supervise: Supervise) -> list[asyncio.Task[None]]:
        """Start the side tasks; the supervisor cancels them when it stops."""
        tasks = [asyncio.create_task(supervise("cancel-watcher", self.watcher.watch))]
        if self.history is not None:
            tasks.append(asyncio.create_task(supervise("run-history", self.history.refresh)))
        if self.alerts is not None:
            self.alerts.start()
            self.log.debug(f"Alerts go to {self.alerts.target}")
        return tasks

    def track(self, claim: Claim, run: TrackedRun, task: asyncio.Task[Any]) -> None:
        """A job run started."""
        tracked = Tracked(claim, run, task)
        self._tracked[claim.job_id] = tracked
        task.add_done_callback(functools.partial(self._on_done, tracked))
        self.watcher.run_started()

    async def close(self) -> None:
        """After the last job ended: finish after-run work, then give alerts a moment."""
        await self.after_run.close()
        if self.alerts is not None:
            await self.alerts.close()

    def _on_done(self, tracked: Tracked, _task: asyncio.Task[Any]) -> None:
        if self._tracked.get(tracked.claim.job_id) is tracked:
            del self._tracked[tracked.claim.job_id]
        if self.history is not None:
            self.history.run_ended()
        self.after_run.start(tracked)

    def _count_alert(self, sink: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.alerts.labels(sink=sink, outcome=outcome).inc()
