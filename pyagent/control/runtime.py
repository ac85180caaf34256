"""The agent's side of job control: what the supervisor calls.

- `track(claim, run, task)`: every job run started; when it ends, its alert is evaluated
  (if alerts are configured) and a cancelled run's leftovers are closed.
- `side_tasks(supervise)`: the cancel watcher, and the run-history refresher for /metrics.
- `close()`: give queued alerts a few seconds at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pyagent.logsetup import get_logger
from pyagent.settings import Settings
from pyagent.store.agent_store import AgentStore
from pyagent.store.connections import TRANSIENT_ERRORS

if TYPE_CHECKING:
    from pyagent.control.alerts import AlertDispatcher
    from pyagent.control.metrics import ControlMetrics
    from pyagent.control.options import JobControlOptions
    from pyagent.control.retry import RetryOutcome
    from pyagent.ops.metrics import Metrics
    from pyagent.store.records import Claim, RunStatus

# How often an agent running jobs looks for cancel requests.
CANCEL_CHECK_INTERVAL = 1.0
# How often the per-job run-history gauges are refreshed (only with --http).
HISTORY_REFRESH = 30.0

class TrackedRun(Protocol):
    """What job control reads and sets on a running job (pyagent.agent.jobrun.JobRun)."""

    jlgid: int | None
    abort_message: str
    status: RunStatus
    control: JobControlOptions | None
    retry: RetryOutcome | None


Supervise = Callable[[str, Callable[[], Awaitable[None]]], Coroutine[Any, Any, None]]


@dataclass
class _Tracked:
    claim: Claim
    run: TrackedRun
    task: asyncio.Task[Any]
    cancel_message: str | None = None


class JobControl:
    """Cancel watcher, alert reporting and history metrics of one agent."""

    def __init__(
        self,
        settings: Settings,
        store: AgentStore,
        metrics: Metrics | None,
        stop: asyncio.Event,
        registered: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self.store = store
        self.stop = stop
        self.registered = registered
        self.log = get_logger()
        self.metrics: ControlMetrics | None = None
        if metrics is not None:
            from pyagent.control.metrics import control_metrics

            self.metrics = control_metrics(metrics)
        self._tracked: dict[int, _Tracked] = {}
        self._started = asyncio.Event()
        self._history_stale = asyncio.Event()
        self._after_run: set[asyncio.Task[None]] = set()
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

    def _pid(self) -> int:
        return self.store.pid or 0

    # ---- hooks ---------------------------------------------------------------------------

    def side_tasks(self, supervise: Supervise) -> list[asyncio.Task[None]]:
        """Start the side tasks; the supervisor cancels them when it stops."""
        tasks = [asyncio.create_task(supervise("cancel-watcher", self._watch_cancels))]
        if self.metrics is not None:
            tasks.append(asyncio.create_task(supervise("run-history", self._refresh_history)))
        if self.alerts is not None:
            self.alerts.start()
            self.log.debug(f"Alerts go to {self.alerts.target}")
        return tasks

    def track(self, claim: Claim, run: TrackedRun, task: asyncio.Task[Any]) -> None:
        """A job run started."""
        tracked = _Tracked(claim, run, task)
        self._tracked[claim.job_id] = tracked
        task.add_done_callback(functools.partial(self._on_done, tracked))
        self._started.set()

    async def close(self) -> None:
        """After the last job ended: finish after-run work, then give alerts a moment."""
        if self._after_run:
            await asyncio.wait(set(self._after_run), timeout=5)
        if self.alerts is not None:
            await self.alerts.close()

    # ---- cancel --------------------------------------------------------------------------

    async def _watch_cancels(self) -> None:
        while not self.stop.is_set():
            running = [j for j, t in self._tracked.items() if not t.task.done()]
            if not running or not self.registered():
                # Idle: no statement at all until a job starts.
                self._started.clear()
                await _wait_any(CANCEL_CHECK_INTERVAL * 5, self._started, self.stop)
                continue
            try:
                found = await self.store.job_control.cancelled_runs(running, self._pid())
            except TRANSIENT_ERRORS:
                found = []
            for mark in found:
                self._cancel(mark.job_id, mark.jlgid, mark.message)
            await _wait_any(CANCEL_CHECK_INTERVAL, self.stop)

    def _cancel(self, job_id: int, jlgid: int, message: str | None) -> None:
        tracked = self._tracked.get(job_id)
        if tracked is None or tracked.task.done() or tracked.cancel_message is not None:
            return
        if tracked.run.jlgid not in (None, jlgid):
            return
        text = message or (
            f"Cancelled: run {jlgid} was marked aborted by another session; stopped by "
            f"agent pid {self._pid()} on {self.settings.station}"
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

    # ---- after a run ---------------------------------------------------------------------

    def _on_done(self, tracked: _Tracked, _task: asyncio.Task[Any]) -> None:
        if self._tracked.get(tracked.claim.job_id) is tracked:
            del self._tracked[tracked.claim.job_id]
        self._history_stale.set()
        if tracked.cancel_message is None and self.alerts is None:
            return
        task = asyncio.create_task(self._after(tracked), name=f"after-job-{tracked.claim.job_id}")
        self._after_run.add(task)
        task.add_done_callback(self._after_run.discard)

    async def _after(self, tracked: _Tracked) -> None:
        run, job_id = tracked.run, tracked.claim.job_id
        jlgid = run.jlgid
        if jlgid is None:
            return
        try:
            if tracked.cancel_message is not None:
                await self.store.job_control.close_cancelled_steps(jlgid, tracked.cancel_message)
            if self.alerts is not None:
                await self._report(tracked, jlgid)
        except Exception as exc:  # never let after-run work disturb the agent
            self.log.warning(
                f"Job {job_id}: could not finish the after-run work of run {jlgid}: {exc!r}",
                job_id=job_id,
                jlgid=jlgid,
            )

    async def _report(self, tracked: _Tracked, jlgid: int) -> None:
        from pyagent.control.alerts import OUTPUT_CHARS, RetryNote, alert_event, build_alert

        assert self.alerts is not None
        run = tracked.run
        policy = run.control.alert if run.control is not None else "failure"
        if policy == "never":
            return
        report = await self.store.job_control.run_report(jlgid, OUTPUT_CHARS)
        if report is None or report.status == "r":
            return
        event = alert_event(report.status, report.previous_status, policy)
        if event is None:
            return
        note = None
        retry = run.retry
        if retry is not None and retry.decision is not None:
            d = retry.decision
            note = RetryNote(d.attempt, d.retries, retry.next_run, retry.retried)
        doc = build_alert(
            event,
            job_id=tracked.claim.job_id,
            run_id=jlgid,
            report=report,
            station=self.settings.station,
            agent_pid=self._pid() or None,
            retry=note,
        )
        self.alerts.submit(doc)

    def _count_alert(self, sink: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.alerts.labels(sink=sink, outcome=outcome).inc()

    # ---- metrics -------------------------------------------------------------------------

    async def _refresh_history(self) -> None:
        """Refresh the per-job gauges every HISTORY_REFRESH seconds, and soon after a run of
        this agent ends (at most once a second)."""
        assert self.metrics is not None
        while not self.stop.is_set():
            if not self.registered():
                await _wait_any(CANCEL_CHECK_INTERVAL, self.stop)
                continue
            self._history_stale.clear()
            with contextlib.suppress(*TRANSIENT_ERRORS):
                self.metrics.history.snapshot = await self.store.job_control.job_run_history()
            await _wait_any(CANCEL_CHECK_INTERVAL, self.stop)
            await _wait_any(HISTORY_REFRESH, self._history_stale, self.stop)


async def _wait_any(timeout: float, *events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*waiters, return_exceptions=True)
