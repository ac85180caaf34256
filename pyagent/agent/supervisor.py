"""The supervisor: connect, check the schema, sweep zombies, register, claim due jobs and
start their runs, wake up on time, survive outages, and shut down cleanly.

What the agent says to the database is in pyagent.store; what a run does is in
pyagent.agent.jobrun; systemd, health and metrics are pyagent.agent.reporting; the poll
loop's decisions are the pure functions of pyagent.agent.polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from pyagent import diagnose
from pyagent.agent import polling, sidetasks
from pyagent.agent.jobrun import JobContext, JobRun, log_fallback_release
from pyagent.agent.lease import Lease, LeaseKeeper
from pyagent.agent.listener import Listener
from pyagent.agent.polling import Next
from pyagent.agent.reporting import Reporter
from pyagent.agent.sessionzone import session_zone_line
from pyagent.agent.signals import SignalHandler
from pyagent.agent.state import AgentState, Wakeups
from pyagent.backoff import Backoff
from pyagent.control.jobcontrol import JobControl
from pyagent.liveness import Sighting, Verdict
from pyagent.logsetup import get_logger
from pyagent.settings import Settings
from pyagent.steps import batch
from pyagent.steps.pools import StepPools
from pyagent.store.agent_store import AgentStore, ClaimLost
from pyagent.store.records import Claim, DeadRun, SchemaProblem

# pgAgent's own messages for an unusable schema, with the fix added.
SCHEMA_MESSAGES = {
    SchemaProblem.NO_JOB_TABLE: diagnose.MISSING_SCHEMA,
    SchemaProblem.NO_VERSION_FUNCTION: diagnose.MISSING_VERSION_FUNCTION,
    SchemaProblem.WRONG_VERSION: diagnose.UNSUPPORTED_VERSION,
}


# The first reconnection after a working service connection was lost comes this soon.
IMMEDIATE_RETRY = 0.1


class SchemaUnusable(Exception):
    """The database has no usable pgagent schema (logged with pgAgent's message)."""


class AgentCleared(Exception):
    """Another agent cleared this one (its lease ran out while it was out of contact):
    its runs were stopped; it registers again as a new agent."""


class PidInUse(Exception):
    """A row holding this session's pid is still within its lease: connect again."""


class Agent:
    """One pyagent process: the scheduling loop and its side tasks."""

    def __init__(
        self,
        settings: Settings,
        store: AgentStore | None = None,
        reporter: Reporter | None = None,
    ) -> None:
        self.settings = settings
        self.state = AgentState()
        self.wakeups = Wakeups()
        self.log = get_logger()
        self.store = store or AgentStore(
            settings.conninfo,
            pool_size=settings.bookkeeping_pool_size,
            application_name=settings.application_name,
            connect_timeout=settings.connect_timeout,
        )
        self.pools = StepPools(settings.max_connections_per_target, settings.connect_timeout)
        self.reporter = reporter or Reporter(settings, self.state, self.store, self.pools)
        self.wakeups.max_wait = self.reporter.watchdog_interval
        self.metrics = self.reporter.metrics
        self.ctx = JobContext(settings, self.store, self.pools, self.metrics)
        self.lease = Lease(settings.lease_terms)
        # Wakes the lease keeper, which sleeps while no job runs.
        self.jobs_started = asyncio.Event()
        # The runs in progress, by job id (their tasks are in state.running).
        self.runs: dict[int, JobRun] = {}
        # Job control: the cancel watcher, failure alerts, run-history metrics.
        self.control = JobControl(
            settings, self.store, self.metrics, self.wakeups.stop, lambda: self.state.registered
        )
        self._session_zone_checked = False  # the start-up line about the TimeZone is said once

    def request_stop(self) -> None:
        """Stop claiming and shut down gracefully."""
        self.wakeups.stop.set()
        self.wakeups.wake.set()

    async def run(self) -> int:
        """Run until stopped; returns the process exit code."""
        SignalHandler(self._on_stop_signal).install()
        self.reporter.heartbeat()
        await self._end_orphaned_steps()
        await self.reporter.start_health_server()
        await self.store.open_pool()
        keeper = LeaseKeeper(
            self.lease,
            self.store,
            self.wakeups.stop,
            running=lambda: sum(1 for t in self.state.running.values() if not t.done()),
            fence=self._fence,
            cleared=self._on_cleared,
            jobs_started=self.jobs_started,
        )
        side = [
            self._side_task("lease-keeper", keeper.run),
            self._side_task("listener", Listener(self.settings, self.state, self.wakeups).run),
            asyncio.create_task(self.reporter.ready_anyway_later(self.wakeups)),
        ]
        if self.settings.log_retention_days is not None:
            purge = functools.partial(
                sidetasks.purge_old_logs_forever,
                self.settings,
                self.store,
                self.state,
                self.wakeups,
            )
            side.append(self._side_task("retention", purge))
        side.extend(self.control.side_tasks(self._supervise))
        try:
            await self._connect_loop()
        finally:
            for task in side:
                task.cancel()
            await asyncio.gather(*side, return_exceptions=True)
            await self._shutdown()
            await self.reporter.stop_health_server()
        return 0

    # ---- connection and registration ----------------------------------------------------

    async def _connect_loop(self) -> None:
        attempt = 0
        backoff = Backoff(initial=1.0, maximum=self.settings.retry_interval)
        while not self.wakeups.stop.is_set():
            attempt += 1
            self.reporter.heartbeat()
            delay = backoff.next_delay()  # known before a failure, so its line can say it
            try:
                had_identity = self.state.pid is not None
                if await self._connect_and_register():
                    if attempt > 1 and not had_identity:  # say we got through
                        diagnose.log_connected_again(self.log, attempt - 1, self.state.pid or 0)
                    attempt = 0
                    backoff.reset()
                    await self._poll_loop()
                return  # stopping: keep the service connection for the shutdown
            except SchemaUnusable:
                pass  # already logged; wait and check again (the schema may appear)
            except AgentCleared:
                await self._disconnect()
                continue  # register again at once
            except PidInUse:
                # Another connection has a better chance of another pid; a session pooler
                # may hand back the same backend, so not in a tight loop.
                await self._disconnect()
                await self.wakeups.sleep(1.0)
                continue
            except diagnose.DIAGNOSED_ERRORS as exc:
                # Any database error (refused login, missing privilege, broken
                # schema, lost server) is one line with its cause and fix, then a retry.
                if attempt == 0:
                    # A working connection was lost (a blip, a terminated session): try
                    # again at once, so the lease is renewed under the new identity soon.
                    delay = IMMEDIATE_RETRY
                diagnose.log_agent_failure(
                    self.log,
                    exc,
                    attempt=attempt,
                    retry_in=delay,
                    was_registered=self.state.registered,
                )
            await self._disconnect()
            if self.wakeups.stop.is_set():
                break
            await self.wakeups.sleep(delay)

    async def _connect_and_register(self) -> bool:
        """Connect, check the schema, wait out a standby, register and sweep dead agents.
        False when a stop came first."""
        self.log.debug("Creating primary connection")
        self.log.debug(f"Creating DB connection: {self.settings.safe_conninfo}")
        if not await self.store.connect(self.wakeups.stop):
            return False
        self.state.connected = True
        # A role lacking privileges gets one line with the GRANTs (and a retry)
        # before anything fails on them (schema_version needs USAGE on the schema).
        role, missing = await self.store.missing_privileges()
        if missing:
            raise diagnose.MissingPrivileges(missing, role)
        await self._check_schema()
        await self._say_session_zone_once()
        if self.settings.step_rights == "author":
            await self._check_step_rights()
        await self._wait_while_standby()
        if self.wakeups.stop.is_set():
            return False
        await self._register()
        self.log.debug("Clearing zombies")
        await self.sweep_zombies(await self.store.sightings([self.lease.pid or 0]))
        self.wakeups.wake.set()
        return True

    async def _check_schema(self) -> None:
        self.log.debug("Database sanity check")
        found = await self.store.schema_state()
        self.state.schema_ok = found.problem is None
        if found.problem is not None:
            self.log.error(SCHEMA_MESSAGES[found.problem].format(version=found.version))
            raise SchemaUnusable

    async def _say_session_zone_once(self) -> None:
        """At the first connection: one line when this agent's session TimeZone is its
        own (PGTZ, connect string, role setting) rather than the database's default."""
        if self._session_zone_checked:
            return
        facts = await self.store.session_zone_facts()
        self._session_zone_checked = True
        if facts is None:
            return
        line = session_zone_line(facts, os.environ, self.settings.conninfo)
        if line is not None:
            self.log.warning(line, always=True, timezone=facts.timezone, source=facts.source)

    async def _check_step_rights(self) -> None:
        """--step-rights author: no job runs until the authorship records can be read."""
        facts = await self.store.authorship_facts(self.settings.trusted_roles)
        from pyagent.agent import steprights  # --step-rights author only

        problem = steprights.authorship_problem(facts)
        if problem is not None:
            self.state.schema_ok = False
            self.log.error(problem)
            raise SchemaUnusable
        for warning in steprights.authorship_warnings(facts):
            self.log.warning(warning, always=True)
        self.store.trusted_roles = self.settings.trusted_roles
        self.log.debug("Steps run with no more rights than their authors (--step-rights author)")

    async def _wait_while_standby(self) -> None:
        """On a standby, do nothing (not ready) and look again every poll interval: start
        working as soon as the server is promoted."""
        announced = False
        while True:
            facts = await self.store.server_facts()
            self.state.has_notify_trigger = facts.has_notify_trigger
            self.state.in_recovery = facts.in_recovery
            if not facts.in_recovery:
                if announced:
                    self.log.warning("The server was promoted: starting work", always=True)
                return
            if not announced:
                self.log.warning(
                    "Connected to a standby server (in recovery): not running jobs; "
                    f"checking again every {self.settings.poll_interval:g} s",
                    always=True,
                )
                announced = True
            await self.wakeups.sleep(self.settings.poll_interval)
            if self.wakeups.stop.is_set():
                return

    async def _register(self) -> None:
        """Register this session as the agent (its row and its lease advert). After a
        reconnect, the runs still in hand are adopted under the new identity, or stopped at
        once if another agent cleared the old one meanwhile."""
        lease = self.lease
        async with lease.lock:
            old_pid, old_value = lease.pid, lease.renewed_value
            await self.store.advertise(lease.terms)
            sent_at = time.monotonic()
            registered = await self.store.register(self.settings.station)
            if registered is None:
                registered = await self._reuse_or_clear_stale_row(old_pid, old_value)
            new_pid, renewed = registered
            adopted: list[int] | None = []
            if old_pid is not None and old_pid != new_pid and old_value is not None:
                running = [j for j, t in self.state.running.items() if not t.done()]
                adopted = await self.store.adopt_claims(old_pid, old_value, running)
            lease.start(new_pid, renewed, sent_at)
        self.state.pid = new_pid
        self.state.registered = True
        self.reporter.registered()
        if old_pid is None or old_pid == new_pid:
            self.log.debug(
                f"Agent registered as pid {new_pid} on station {self.settings.station!r}"
            )
            return
        # A reconnect: jobs still running in this process keep running under the new pid,
        # unless another agent cleared the old identity and took them over.
        self.state.reconnects += 1
        if self.metrics is not None:
            self.metrics.reconnected()
        kept = set(adopted or [])
        for job_id in kept & self.runs.keys():
            self.runs[job_id].owner = new_pid
        lost = self._stop_taken_over(lambda run: run.owner == old_pid)
        line = f"Reconnected to the database; agent registered again as pid {new_pid}"
        if kept:
            line += f"; {len(kept)} running job(s) kept"
        if lost:
            line += f"; {lost} running job(s) stopped: another agent had taken them over"
        self.log.warning(line, always=True)

    async def _reuse_or_clear_stale_row(
        self, old_pid: int | None, old_value: datetime | None
    ) -> tuple[int, datetime]:
        """A row already holds this session's pid. Our own old row (same pid again after a
        reconnect) is kept; a row whose lease ran out is cleared as a dead agent's; a row
        still within its lease may belong to an agent that renews through other
        connections: connect again for another pid."""
        stale = await self.store.stale_row()
        if stale is not None:
            pid, age, renewed = stale
            if pid == old_pid and renewed == old_value:
                self.store.take_identity(pid)
                return pid, renewed
            if age <= self.lease.terms.lease:
                self.log.debug(
                    f"The pid of this session ({pid}) is still registered by an agent that "
                    f"renewed its lease {age:.1f} s ago; connecting again"
                )
                raise PidInUse
            sighting = Sighting(pid, "", renewed, age, False, None, False)
            await self._clear_agent(
                sighting, Verdict(pid, f"its session is gone (its pid {pid} is ours now)")
            )
        registered = await self.store.register(self.settings.station)
        if registered is None:
            raise PidInUse
        return registered

    async def _disconnect(self) -> None:
        self.state.connected = False
        self.state.registered = False
        await self.store.disconnect()

    # ---- zombies -------------------------------------------------------------------------

    async def sweep_zombies(self, sightings: tuple[Sighting, ...] | list[Sighting]) -> int:
        """Judge the other agents by their leases (pyagent.liveness); for each dead one:
        stop the sessions still working for its runs, abort its running logs (saying why),
        release its jobs and delete its row."""
        dead = self.lease.judge(sightings)
        by_pid = {s.pid: s for s in sightings}
        for verdict in dead:
            await self._clear_agent(by_pid[verdict.pid], verdict)
        return len(dead)

    async def _clear_agent(self, seen: Sighting, verdict: Verdict) -> None:
        pid = verdict.pid
        station = f" on {seen.station!r}" if seen.station else ""
        self.log.warning(
            f"Clearing zombie agent {pid}{station}: {verdict.reason}; "
            "its running jobs are marked aborted",
            always=True,
            agent_pid=pid,
        )
        runs = await self.store.dead_agent_runs(pid)
        notes = await self._stop_dead_runs(pid, runs)
        me = f"agent {self.lease.pid} on {self.settings.station!r}"
        outputs = {}
        for run in runs:
            text = f"Aborted by {me}: agent {pid}{station} was judged dead ({verdict.reason})."
            if run.jlgid in notes:
                text += f" {notes[run.jlgid]}."
            elif run.step_kind == "b":
                text += (
                    f" Its batch step ran on the dead agent's host{station}: if it is still"
                    " running there, the next pyagent started there ends it."
                )
            outputs[run.jlgid] = text
        fallbacks = await self.store.clear_dead_agent(pid, seen.last_renewed, outputs)
        if fallbacks is None:
            self.log.debug(f"Agent {pid} renewed its lease or is being cleared by another agent")
            return
        if self.metrics is not None:
            self.metrics.cleared_agent()
        for fallback in fallbacks:
            log_fallback_release(fallback)

    async def _stop_dead_runs(self, pid: int, runs: list[DeadRun]) -> dict[int, str]:
        """Stop what a dead agent's runs still do on the database servers; per run, what
        was done (nothing found: no note)."""
        notes: dict[int, str] = {}
        try:
            notes = await self.store.stop_run_sessions(pid, [r.jlgid for r in runs])
        except Exception as exc:  # never let the clean-up keep the jobs claimed
            self.log.warning(f"Could not stop the sessions of agent {pid}: {exc!r}", always=True)
        for run in runs:
            if run.jlgid in notes or run.step_kind != "s" or not run.step_connstr:
                continue
            note = await self.store.stop_remote_run_sessions(run.step_connstr, run.jlgid)
            if note:
                notes[run.jlgid] = note
        for run_id, note in notes.items():
            if run_id:
                self.log.warning(f"Run {run_id} of dead agent {pid}: {note}", always=True)
        return notes

    # ---- the poll loop --------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        backlog = False
        while not self.wakeups.stop.is_set():
            plan = await self._poll_once(backlog)
            if plan is None:
                break
            backlog = plan.backlog
            if plan.next is Next.CLAIM_AGAIN:
                continue
            if plan.next is Next.WAIT_FOR_SLOTS:
                await self._wait_for_free_slots(polling.claim_batch(self.settings.max_jobs))
            elif plan.next is Next.RETRY_CONTENDED:
                await self.wakeups.wait(plan.seconds, self.wakeups.wake)
            else:
                self.log.debug("Sleeping...")
                await self.wakeups.wait(plan.seconds, self.wakeups.wake)

    async def _poll_once(self, backlog: bool) -> polling.Plan | None:
        """One claim and the plan that follows it; None when stopping."""
        s = self.settings
        self.wakeups.wake.clear()
        self.wakeups.job_done.clear()
        self._reap_finished()
        self.reporter.heartbeat()
        if self.metrics is not None:
            self.metrics.poll()
        if self.lease.pid is None:
            raise AgentCleared  # the lease keeper found this agent's row gone
        room = polling.capacity(s.max_jobs, len(self.state.running))
        backlog_poll = backlog and room > 0
        self.log.debug("Checking for jobs to run")
        sent_at = time.monotonic()
        try:
            result = await self.store.claim(s.station, room, full=not backlog_poll)
        except ClaimLost:
            self._on_cleared()
            raise AgentCleared from None
        if not backlog_poll:
            if result.renewal is None:
                self._on_cleared()
                raise AgentCleared
            async with self.lease.lock:
                self.lease.renewed(result.renewal, sent_at)
        for claim in result.claims:
            self._start_job(claim)
        if result.sightings:
            await self.sweep_zombies(result.sightings)
        if self.wakeups.stop.is_set():
            return None
        plan = polling.plan_after_claim(
            result,
            backlog_poll=backlog_poll,
            asked=room,
            running=len(self.state.running),
            max_jobs=s.max_jobs,
            poll_interval=s.poll_interval,
        )
        if plan.next is Next.SLEEP and not result.claims:
            await self.pools.close_idle()
        return plan

    async def _wait_for_free_slots(self, wanted: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.poll_interval
        while not self.wakeups.stop.is_set():
            self._reap_finished()
            if self.settings.max_jobs - len(self.state.running) >= wanted:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self.wakeups.job_done.clear()
            await self.wakeups.wait(remaining, self.wakeups.job_done)

    def _start_job(self, claim: Claim) -> None:
        self.log.debug(f"Creating job thread for job {claim.job_id}", job_id=claim.job_id)
        if self.metrics is not None:
            self.metrics.job_started(claim.pickup_lag)
        run = JobRun(self.ctx, claim)
        task = asyncio.create_task(run.run(), name=f"job-{claim.job_id}")
        run.task = task
        self.runs[claim.job_id] = run
        self.state.running[claim.job_id] = task
        task.add_done_callback(functools.partial(self._on_job_done, claim))
        self.control.track(claim, run, task)  # cancel requests, alerts
        self.jobs_started.set()

    def _on_job_done(self, claim: Claim, task: asyncio.Task[Any]) -> None:
        if self.state.running.get(claim.job_id) is task:
            del self.state.running[claim.job_id]
        run = self.runs.get(claim.job_id)
        if run is not None and run.task is task:
            del self.runs[claim.job_id]
        if not task.cancelled() and task.exception() is not None:
            # JobRun records every failure itself; anything else is a pyagent bug: say so.
            self.log.warning(
                f"Job {claim.job_id} ended unexpectedly: {task.exception()!r}",
                always=True,
                job_id=claim.job_id,
            )
        self.wakeups.job_done.set()

    def _reap_finished(self) -> None:
        for job_id, task in list(self.state.running.items()):
            if task.done():
                self.state.running.pop(job_id, None)

    # ---- the lease ----------------------------------------------------------------------

    def _fence(self, message: str) -> int:
        """Out of contact too long: stop every step that is executing before another agent
        may take its job (batch steps get half a second after SIGTERM instead of the usual
        grace). A run only waiting to record a finished step is left to record it: its
        writes check it still holds the job. Returns how many runs were stopped."""
        stopped = [run for run in self.runs.values() if run.executing]
        for run in stopped:
            run.stop(message)
        if stopped:
            asyncio.get_running_loop().call_later(0.5, batch.kill_all_groups)
        if self.metrics is not None:
            self.metrics.fenced()
        return len(stopped)

    def _stop_taken_over(self, which: Callable[[JobRun], bool]) -> int:
        """Stop the unfinished runs `which` picks: another agent cleared this one and took
        their jobs over, so they write nothing more. Returns how many were stopped."""
        stopped = [
            run
            for run in list(self.runs.values())
            if run.task is not None and not run.task.done() and which(run)
        ]
        for run in stopped:
            run.stop(
                "Stopped: another agent cleared this agent while it was out of contact "
                "and took the job over",
                lost=True,
            )
        return len(stopped)

    def _on_cleared(self) -> None:
        """This agent's row is gone: another agent cleared it and took its jobs over."""
        if self.lease.pid is None:
            return
        stopped = self._stop_taken_over(lambda run: True)
        self.lease.pid = None
        self.lease.renewed_value = None
        self.state.pid = None
        self.wakeups.wake.set()
        self.log.warning(
            "This agent was cleared by another agent (its lease ran out while it was out of "
            f"contact): {stopped} running job(s) stopped; registering again",
            always=True,
        )

    async def _end_orphaned_steps(self) -> None:
        """Batch steps a killed agent of this host and user left running are ended."""
        for orphan in await batch.end_orphaned_steps():
            if orphan.running:
                self.log.warning(
                    f"Ended a batch step left running by a killed agent: process group "
                    f"{orphan.pgid} ({orphan.tag or 'run unknown'})",
                    always=True,
                )

    # ---- side tasks ---------------------------------------------------------------------

    def _side_task(self, name: str, factory: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        return asyncio.create_task(self._supervise(name, factory), name=name)

    async def _supervise(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        await sidetasks.supervise(name, factory, self.wakeups)

    # ---- shutdown ---------------------------------------------------------------------------

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        self.reporter.stopping()
        self.log.warning(
            f"{sig.name} received: no new jobs will start; waiting up to "
            f"{self.settings.grace_period:g} s for {len(self.state.running)} running job(s)",
            always=True,
        )
        self.request_stop()

    async def _shutdown(self) -> None:
        """Let running jobs finish within the grace period, abort the rest (they record 'd'
        and release themselves), unregister, close everything."""
        running = [t for t in self.state.running.values() if not t.done()]
        if running:
            _done, pending = await asyncio.wait(running, timeout=self.settings.grace_period)
            for task in pending:
                task.cancel()
            if pending:
                self.log.warning(
                    f"Grace period over: {len(pending)} running job(s) aborted", always=True
                )
                # Bound the aborted jobs' bookkeeping too (and do not wait long for a
                # database that is not there).
                _done, still = await asyncio.wait(
                    pending, timeout=15 if self.state.connected else 3
                )
                if still:
                    self.store.give_up_waiting()
                    await asyncio.wait(still, timeout=5)
        with contextlib.suppress(Exception):
            await self.control.close()  # after-run work, queued alerts
        self.store.give_up_waiting()
        if self.store.is_connected and self.state.pid is not None:
            with contextlib.suppress(Exception):
                await self.store.unregister(self.state.pid)
        await self._disconnect()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.pools.close_all(), timeout=5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.store.close(), timeout=5)
        self.log.debug("pyagent stopped")


async def run_agent(settings: Settings) -> int:
    """Entry point used by the CLI."""
    return await Agent(settings).run()
