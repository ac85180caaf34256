"""After a run ends: a cancelled run's step rows still 'r' are closed with the cancel
message, and the run's alert (when its @ALERT policy and its outcome call for one) is built
and handed to the alert dispatcher. None of it may disturb the agent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from pyagent.logsetup import get_logger
from pyagent.store.jobcontrol import JobControlStore
from pyagent.store.records import RunStatus

if TYPE_CHECKING:
    from pyagent.control.alerts import AlertDispatcher
    from pyagent.control.jobcontrol import Tracked

# How long shutdown waits for after-run work still under way.
CLOSE_WAIT = 5.0


class AfterRun:
    """The after-run work of the agent's runs, each in a task of its own."""

    def __init__(
        self,
        store: JobControlStore,
        alerts: AlertDispatcher | None,
        *,
        pid: Callable[[], int],
        station: str,
    ) -> None:
        self.store = store
        self.alerts = alerts
        self.pid = pid
        self.station = station
        self.log = get_logger()
        self._pending: set[asyncio.Task[None]] = set()

    def start(self, tracked: Tracked) -> None:
        """A tracked run ended: do its after-run work, if it has any."""
        if tracked.cancel_message is None and self.alerts is None:
            return
        name = f"after-job-{tracked.claim.job_id}"
        task = asyncio.create_task(self._after(tracked), name=name)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def close(self) -> None:
        """At shutdown: give the work under way a few seconds."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=CLOSE_WAIT)

    async def _after(self, tracked: Tracked) -> None:
        run, job_id = tracked.run, tracked.claim.job_id
        jlgid = run.jlgid
        if jlgid is None:
            return
        try:
            if tracked.cancel_message is not None:
                await self.store.close_cancelled_steps(jlgid, tracked.cancel_message)
            if self.alerts is not None:
                await self._report(self.alerts, tracked, jlgid)
        except Exception as exc:  # never let after-run work disturb the agent
            self.log.warning(
                f"Job {job_id}: could not finish the after-run work of run {jlgid}: {exc!r}",
                job_id=job_id,
                jlgid=jlgid,
            )

    async def _report(self, alerts: AlertDispatcher, tracked: Tracked, jlgid: int) -> None:
        from pyagent.control.alerts import OUTPUT_CHARS, RetryNote, alert_event, build_alert

        run = tracked.run
        policy = run.control.alert if run.control is not None else "failure"
        if policy == "never":
            return
        report = await self.store.run_report(jlgid, OUTPUT_CHARS)
        if report is None or report.status == RunStatus.RUNNING:
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
            station=self.station,
            agent_pid=self.pid() or None,
            retry=note,
        )
        alerts.submit(doc)
