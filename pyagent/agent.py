"""The supervisor: connect, check the schema, sweep zombies, register, claim and run due
jobs, wake up on time, survive outages, and shut down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import pq
from psycopg.errors import QueryCanceled

from pyagent.db import (
    STATEMENT_TIMEOUT_MS,
    TRANSIENT_ERRORS,
    ControlDB,
    Row,
    connection_kwargs,
)
from pyagent.job import Claim, JobContext, JobRun, compute_next_run, next_run_or_never
from pyagent.logging import get_logger
from pyagent.ops.sdnotify import Notifier
from pyagent.pools import StepPools
from pyagent.resources import query
from pyagent.retention import purge_old_logs
from pyagent.settings import Settings

if TYPE_CHECKING:
    from pyagent.ops.health import HealthServer, HealthSnapshot
    from pyagent.ops.metrics import Metrics

NOTIFY_CHANNEL = "pyagent_jobs"
# Time allowed to a statement on the service connection before it is presumed dead.
SERVICE_STATEMENT_TIMEOUT = 30.0
# When due jobs are locked by another agent's claim in progress, look again this soon.
CONTENTION_RETRY = 0.05
# Without a registration by then, tell systemd we are up anyway (waiting for the database),
# so a database that is down at boot does not make the unit fail and restart in a loop.
READY_ANYWAY_AFTER = 30.0
# A statement on the service connection that times out means the connection is dead too.
RECONNECT_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, *TRANSIENT_ERRORS)


class FatalSchemaError(Exception):
    """The database has no usable pgagent schema (logged with pgAgent's message)."""


@dataclass
class AgentState:
    """What the rest of the process (health, metrics) may read about the agent."""

    connected: bool = False
    registered: bool = False
    schema_ok: bool = False
    in_recovery: bool = False
    pid: int | None = None
    reconnects: int = 0
    running: dict[int, asyncio.Task[Any]] = field(default_factory=dict)
    # time.monotonic() of the last turn of the supervisor's loop (liveness).
    last_loop: float = 0.0

    @property
    def ready(self) -> bool:
        return self.connected and self.registered and self.schema_ok and not self.in_recovery


class Agent:
    """One pyagent process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = AgentState()
        self.log = get_logger()
        self.db = ControlDB(
            settings.conninfo, settings.control_pool_size, settings.application_name
        )
        self.pools = StepPools(settings.max_connections_per_target, settings.connect_timeout)
        self._service: psycopg.AsyncConnection[Row] | None = None
        self._stop = asyncio.Event()
        self._give_up = asyncio.Event()
        self._wake = asyncio.Event()
        self._job_done = asyncio.Event()
        self._has_notify_trigger = False
        self._signals = 0
        self.notifier = Notifier.from_environ()
        self._last_watchdog = 0.0
        self._status_text = ""
        self.metrics: Metrics | None = None
        self.health: HealthServer | None = None
        if settings.http_listen is not None:
            from pyagent.ops.metrics import Metrics

            self.metrics = Metrics()
            self.metrics.set_state_provider(self._metric_state)
        self.ctx = JobContext(
            settings, self.db, self.pools, self._give_up, self._current_pid, self.metrics
        )

    # ---- public ------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop claiming and shut down gracefully."""
        self._stop.set()
        self._wake.set()

    async def run(self) -> int:
        """Run until stopped; returns the process exit code."""
        self._install_signal_handlers()
        self._heartbeat()
        await self._start_health_server()
        await self.db.open()
        side = [
            asyncio.create_task(self._supervise("listener", self._listen_forever)),
            asyncio.create_task(self._ready_anyway_later()),
        ]
        if self.settings.log_retention_days is not None:
            side.append(asyncio.create_task(self._supervise("retention", self._retain_forever)))
        try:
            await self._connect_loop()
        finally:
            for task in side:
                task.cancel()
            await asyncio.gather(*side, return_exceptions=True)
            await self._shutdown()
            if self.health is not None:
                with contextlib.suppress(Exception):
                    await self.health.stop()
        return 0

    # ---- connection and registration ----------------------------------------------------

    def _current_pid(self) -> int:
        return self.state.pid or 0

    async def _connect_loop(self) -> None:
        attempt = 0
        delay = 1.0
        while not self._stop.is_set():
            attempt += 1
            self._heartbeat()
            try:
                await self._connect_and_register()
                attempt = 0
                delay = 1.0
                await self._poll_loop()
                return  # stopping: keep the service connection for the shutdown
            except FatalSchemaError:
                pass  # already logged; wait and check again (the schema may appear)
            except RECONNECT_ERRORS as exc:
                if self.state.connected:
                    self.log.warning(
                        "Lost the connection to the database; reconnecting",
                        always=True,
                        error=str(exc).strip(),
                    )
                else:
                    self.log.warning(f"Failed to create primary connection: {str(exc).strip()}")
                    self.log.warning(
                        f"Couldn't create the primary connection [Attempt #{attempt}]",
                        always=True,
                    )
            await self._drop_service()
            if self._stop.is_set():
                break
            await self._sleep(delay)
            delay = min(delay * 2, self.settings.retry_interval)

    async def _connect_and_register(self) -> None:
        s = self.settings
        self.log.debug("Creating primary connection")
        self.log.debug(f"Creating DB connection: {s.safe_conninfo}")
        connecting = asyncio.ensure_future(
            psycopg.AsyncConnection.connect(
                s.conninfo,
                autocommit=True,
                **connection_kwargs(s.conninfo, s.application_name),
            )
        )
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait(
                {connecting, stopping},
                timeout=s.connect_timeout + 5,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            stopping.cancel()
        if not connecting.done():
            # A shutdown does not wait for a connection attempt to a dead server.
            connecting.cancel()
            with contextlib.suppress(BaseException):
                await connecting
            if self._stop.is_set():
                return
            raise TimeoutError("timed out connecting to the database")
        conn = connecting.result()
        self._service = conn
        await conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
        self.state.connected = True
        self.log.debug("Database sanity check")
        count, _pid = await self._service_fetchone("sanity_check")
        if int(count) == 0:
            self.state.schema_ok = False
            self.log.error(
                "Could not find the table 'pgagent.pga_job'. "
                "Have you run pgagent.sql on this database?"
            )
            raise FatalSchemaError
        (fn_count,) = await self._service_fetchone("version_function_exists")
        if int(fn_count) != 1:
            self.state.schema_ok = False
            self.log.error(
                "Couldn't find the function 'pgagent_schema_version' - please run "
                'ALTER EXTENSION "pgagent" UPDATE;.'
            )
            raise FatalSchemaError
        (version,) = await self._service_fetchone("schema_version")
        if str(version) != "4":
            self.state.schema_ok = False
            self.log.error(
                f"Unsupported schema version: {version}. Version 4 is required - please run "
                'ALTER EXTENSION "pgagent" UPDATE;.'
            )
            raise FatalSchemaError
        self.state.schema_ok = True
        await self._wait_while_standby()
        if self._stop.is_set():
            return
        old_pid = self.state.pid
        await self._service_exec("remove_stale_self")
        (new_pid,) = await self._service_fetchone("register_agent", {"station": s.station})
        self.state.pid = int(new_pid)
        self.state.registered = True
        self.notifier.ready(f"primary; agent pid {new_pid}; station {s.station}")
        if old_pid is not None and old_pid != self.state.pid:
            self.state.reconnects += 1
            if self.metrics is not None:
                self.metrics.reconnected()
            await self._adopt_claims(old_pid)
            self.log.warning(
                f"Reconnected to the database; agent registered again as pid {new_pid}",
                always=True,
            )
        else:
            self.log.debug(f"Agent registered as pid {new_pid} on station {s.station!r}")
        self.log.debug("Clearing zombies")
        await self.sweep_zombies()
        self._wake.set()

    async def _wait_while_standby(self) -> None:
        """On a standby, do nothing (not ready) and look again every poll interval: start
        working as soon as the server is promoted."""
        announced = False
        while True:
            in_recovery, _tz, has_trigger = await self._service_fetchone("server_facts")
            self._has_notify_trigger = bool(has_trigger)
            self.state.in_recovery = bool(in_recovery)
            if not in_recovery:
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
            await self._sleep(self.settings.poll_interval)
            if self._stop.is_set():
                return

    async def _adopt_claims(self, old_pid: int) -> None:
        """Jobs still running in this process keep running under the new identity."""
        running = [jid for jid, t in self.state.running.items() if not t.done()]
        if running:
            await self._service_exec(
                "adopt_claims",
                {"new_pid": self.state.pid, "old_pid": old_pid, "job_ids": running},
            )
        await self._service_exec("unregister_agent", {"pid": old_pid})

    async def _drop_service(self) -> None:
        self.state.connected = False
        self.state.registered = False
        conn, self._service = self._service, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=5)

    async def _service_cursor(self, name: str, params: dict[str, Any] | None) -> Any:
        if self._service is None:
            raise psycopg.OperationalError("no service connection")
        return await asyncio.wait_for(
            self._service.execute(query(name), params), timeout=SERVICE_STATEMENT_TIMEOUT
        )

    async def _service_fetchone(self, name: str, params: dict[str, Any] | None = None) -> Row:
        cur = await self._service_cursor(name, params)
        row = await cur.fetchone()
        assert row is not None
        return tuple(row)

    async def _service_fetchall(self, name: str, params: dict[str, Any] | None = None) -> list[Row]:
        cur = await self._service_cursor(name, params)
        return [tuple(r) for r in await cur.fetchall()]

    async def _service_exec(self, name: str, params: dict[str, Any] | None = None) -> int:
        cur = await self._service_cursor(name, params)
        return int(cur.rowcount)

    def _own_pids(self) -> list[int]:
        return [self.state.pid] if self.state.pid is not None else []

    # ---- zombies -------------------------------------------------------------------------

    async def sweep_zombies(self) -> int:
        """Abort the logs of dead agents, release their jobs and delete their rows."""
        zombies = await self._service_fetchall("find_zombie_agents", {"own_pids": self._own_pids()})
        for (pid,) in zombies:
            await self._clear_zombie(int(pid))
        return len(zombies)

    async def _clear_zombie(self, pid: int) -> None:
        self.log.warning(
            f"Clearing zombie agent {pid}: its running jobs are marked aborted",
            always=True,
            agent_pid=pid,
        )
        await self._service_exec("abort_zombie_logs", {"pid": pid})
        for (job_id,) in await self._service_fetchall("zombie_jobs", {"pid": pid}):
            params = {"job_id": job_id, "pid": pid}
            try:
                await self._service_exec("release_zombie_job", params)
            except psycopg.Error as exc:
                if isinstance(exc, TRANSIENT_ERRORS) and not isinstance(exc, QueryCanceled):
                    raise
                next_run, described = await compute_next_run(self.db, int(job_id))
                self.log.warning(
                    f"The schema could not compute the next run of job {job_id} "
                    f"({str(exc).strip()}); schedules: {described}; "
                    f"released with the next run computed by pyagent: {next_run}",
                    job_id=job_id,
                )
                await self._service_exec(
                    "release_zombie_job_at", {**params, "next_run": next_run_or_never(next_run)}
                )
        await self._service_exec("delete_agent", {"pid": pid})

    # ---- the poll loop --------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        s = self.settings
        # True while due jobs are known to be waiting: claims then skip the parts of the
        # poll (next due time, dead agents) that only matter once the backlog is gone.
        backlog = False
        while not self._stop.is_set():
            self._wake.clear()
            self._job_done.clear()
            self._reap_finished()
            self._heartbeat()
            if self.metrics is not None:
                self.metrics.poll()
            capacity = max(0, s.max_jobs - len(self.state.running))
            self.log.debug("Checking for jobs to run")
            rows = await self._service_fetchall(
                "claim_backlog" if backlog and capacity else "claim_due_jobs",
                {
                    "pid": self.state.pid,
                    "station": s.station,
                    "limit": capacity,
                    "own_pids": self._own_pids(),
                },
            )
            claimed = 0
            next_in: float | None = None
            zombies = 0
            for kind, job_id, nextrun, seconds in rows:
                if kind == "claim":
                    self._start_job(Claim(int(job_id), nextrun, int(self.state.pid or 0)))
                    if self.metrics is not None:
                        self.metrics.job_started(None if seconds is None else float(seconds))
                    claimed += 1
                elif kind == "next":
                    next_in = None if seconds is None else float(seconds)
                elif kind == "zombies":
                    zombies = int(seconds or 0)
            if zombies:
                await self.sweep_zombies()
            if self._stop.is_set():
                break
            if backlog and capacity:
                # A full batch: more may be waiting; otherwise poll fully next time.
                backlog = claimed == capacity
                if backlog and len(self.state.running) >= s.max_jobs:
                    await self._wait_for_free_slots(self._claim_batch())
                continue
            more_due = next_in is not None and next_in <= 0
            backlog = more_due
            if more_due and claimed and len(self.state.running) < s.max_jobs:
                continue
            if more_due and claimed == 0 and len(self.state.running) < s.max_jobs:
                # Locked by another agent's claim in progress: look again shortly.
                await self._wait_for(CONTENTION_RETRY, self._wake)
                continue
            if more_due:
                # At the bound: due jobs wait their turn. Claim again once a few slots are
                # free, so a backlog is claimed in batches rather than one job per poll.
                await self._wait_for_free_slots(self._claim_batch())
                continue
            timeout = s.poll_interval
            if next_in is not None:
                timeout = min(timeout, next_in + 0.002)
            if not claimed:
                await self.pools.close_idle()
            self.log.debug("Sleeping...")
            await self._wait_for(timeout, self._wake)

    def _claim_batch(self) -> int:
        return max(1, min(8, self.settings.max_jobs // 4))

    async def _wait_for_free_slots(self, wanted: int) -> None:
        deadline = asyncio.get_running_loop().time() + self.settings.poll_interval
        while not self._stop.is_set():
            self._reap_finished()
            if self.settings.max_jobs - len(self.state.running) >= wanted:
                return
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            self._job_done.clear()
            await self._wait_for(remaining, self._job_done)

    def _start_job(self, claim: Claim) -> None:
        self.log.debug(f"Creating job thread for job {claim.job_id}", job_id=claim.job_id)
        run = JobRun(self.ctx, claim)
        task = asyncio.create_task(run.run(), name=f"job-{claim.job_id}")
        self.state.running[claim.job_id] = task
        task.add_done_callback(functools.partial(self._on_job_done, claim))

    def _on_job_done(self, claim: Claim, task: asyncio.Task[Any]) -> None:
        if self.state.running.get(claim.job_id) is task:
            del self.state.running[claim.job_id]
        if not task.cancelled() and task.exception() is not None:
            # JobRun records every failure itself; anything else is a pyagent bug: say so.
            self.log.warning(
                f"Job {claim.job_id} ended unexpectedly: {task.exception()!r}",
                always=True,
                job_id=claim.job_id,
            )
        self._job_done.set()

    def _reap_finished(self) -> None:
        for job_id, task in list(self.state.running.items()):
            if task.done():
                self.state.running.pop(job_id, None)

    async def _wait_for(self, timeout: float, *events: asyncio.Event) -> None:
        interval = self.notifier.watchdog_interval
        if interval is not None and timeout > interval:
            # Wake in time to tell systemd's watchdog the loop is alive.
            timeout = interval
        waiters = [asyncio.ensure_future(e.wait()) for e in (*events, self._stop)]
        try:
            await asyncio.wait(
                waiters, timeout=max(0.0, timeout), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for w in waiters:
                w.cancel()

    async def _sleep(self, seconds: float) -> None:
        await self._wait_for(seconds)

    # ---- health, metrics, systemd --------------------------------------------------------

    def _heartbeat(self) -> None:
        """The supervisor's loop is alive: liveness, watchdog and status."""
        now = time.monotonic()
        self.state.last_loop = now
        interval = self.notifier.watchdog_interval
        if interval is not None and now - self._last_watchdog >= interval * 0.9:
            self.notifier.watchdog()
            self._last_watchdog = now
        status = self._status_line()
        if status != self._status_text:
            self._status_text = status
            self.notifier.status(status)

    def _status_line(self) -> str:
        st = self.state
        if st.in_recovery:
            return "standby server: waiting for promotion"
        if not st.connected:
            return "waiting for the database"
        if not st.schema_ok:
            return "waiting for a usable pgagent schema"
        return f"primary; agent pid {st.pid}; {len(st.running)} job(s) running"

    async def _ready_anyway_later(self) -> None:
        await self._wait_for(READY_ANYWAY_AFTER, self._stop)
        if not self.state.registered and not self._stop.is_set():
            self.notifier.ready("waiting for the database")

    def _health(self) -> HealthSnapshot:
        from pyagent import __version__
        from pyagent.ops.health import HealthSnapshot

        st = self.state
        age = time.monotonic() - st.last_loop
        limit = 2 * max(self.settings.poll_interval, self.settings.retry_interval) + 30
        role = "standby" if st.in_recovery else ("primary" if st.connected else "unknown")
        return HealthSnapshot(
            live=age < limit,
            ready=st.ready,
            detail={
                "role": role,
                "connected": st.connected,
                "registered": st.registered,
                "schema_ok": st.schema_ok,
                "agent_pid": st.pid,
                "station": self.settings.station,
                "running_jobs": len(st.running),
                "last_loop_age_seconds": round(age, 3),
                "reconnects": st.reconnects,
                "version": __version__,
            },
        )

    def _metric_state(self) -> dict[str, float]:
        st = self.state
        pools = self.pools.stats()
        state: dict[str, float] = {
            "running_jobs": len(st.running),
            "connected": float(st.connected),
            "ready": float(st.ready),
            "registered": float(st.registered),
            "in_recovery": float(st.in_recovery),
            "pool_connections_in_use": pools["in_use"],
            "pool_connections_idle": pools["idle"],
            "pool_connections_opened_total": pools["opened"],
        }
        with contextlib.suppress(Exception):
            control = self.db.pool.get_stats()
            state["control_pool_size"] = control.get("pool_size", 0)
            state["control_pool_available"] = control.get("pool_available", 0)
            state["requests_waiting"] = control.get("requests_waiting", 0)
        return state

    async def _start_health_server(self) -> None:
        if self.settings.http_listen is None:
            return
        from pyagent.ops.health import HealthServer

        host, port = self.settings.http_listen
        self.health = HealthServer(host, port, self._health, self.metrics)
        try:
            await self.health.start()
        except OSError as exc:
            self.log.error(f"Cannot serve health checks on {host}:{port}: {exc}")
            self.health = None
            return
        self.log.warning(f"Health and metrics on http://{host}:{self.health.port}/", always=True)

    # ---- side tasks ---------------------------------------------------------------------

    async def _supervise(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        """Keep a side task alive: a crash is logged and the task restarted."""
        delay = 1.0
        while not self._stop.is_set():
            try:
                await factory()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.warning(f"Side task {name} failed: {exc!r}; restarting it", always=True)
                await self._sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _listen_forever(self) -> None:
        """LISTEN for "job may be due" notifications when the schema has pyagent's trigger."""
        s = self.settings
        delay = 1.0
        while not self._stop.is_set():
            if not (s.listen and self.state.registered and self._has_notify_trigger):
                await self._wait_for(s.poll_interval, self._wake)
                continue
            try:
                conn = await psycopg.AsyncConnection.connect(
                    s.conninfo,
                    autocommit=True,
                    **connection_kwargs(s.conninfo, s.application_name + " listener"),
                )
            except TRANSIENT_ERRORS:
                await self._sleep(delay)
                delay = min(delay * 2, s.retry_interval)
                continue
            delay = 1.0
            try:
                async with conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._wake.set()  # anything sent while we were not listening
                    await self._relay_notifications(conn)
            except TRANSIENT_ERRORS:
                await self._sleep(delay)

    async def _retain_forever(self) -> None:
        """Delete job history older than --log-retention, now and then."""
        days = self.settings.log_retention_days
        assert days is not None
        while not self._stop.is_set():
            if self.state.registered:
                try:
                    deleted = await purge_old_logs(self.db, days, self.settings.retention_batch)
                except TRANSIENT_ERRORS:
                    deleted = 0
                if deleted:
                    self.log.debug(
                        f"Deleted {deleted} job runs older than {days:g} days", deleted=deleted
                    )
                await self._sleep(self.settings.retention_interval)
            else:
                await self._sleep(self.settings.poll_interval)

    async def _relay_notifications(self, conn: psycopg.AsyncConnection[Row]) -> None:
        """Wake the poll loop for each batch of notifications. The socket is watched by the
        event loop, so an idle agent does not wake up at all in between."""
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        fd = conn.pgconn.socket
        loop.add_reader(fd, readable.set)
        try:
            while not self._stop.is_set():
                await self._wait_for(3600.0, readable)
                if not readable.is_set():
                    continue
                readable.clear()
                conn.pgconn.consume_input()  # raises OperationalError when the link is gone
                got = False
                while conn.pgconn.notifies() is not None:
                    got = True
                if got:
                    self._wake.set()
                if conn.pgconn.status != pq.ConnStatus.OK:
                    raise psycopg.OperationalError("the listening connection was lost")
        finally:
            loop.remove_reader(fd)

    # ---- signals and shutdown -------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal, sig)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)

    def _on_sighup(self) -> None:
        self.log.warning(
            "SIGHUP received: nothing to reload (the log file is reopened for every line)",
            always=True,
        )

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals == 1:
            self.notifier.stopping("stopping: waiting for running jobs")
            self.log.warning(
                f"{sig.name} received: no new jobs will start; waiting up to "
                f"{self.settings.grace_period:g} s for {len(self.state.running)} running job(s)",
                always=True,
            )
            self.request_stop()
            return
        self.log.warning(f"{sig.name} received again: stopping at once", always=True)
        from pyagent.steps import batch

        batch.kill_all_groups()
        import os

        os._exit(1)

    async def _shutdown(self) -> None:
        running = [t for t in self.state.running.values() if not t.done()]
        if running:
            _done, pending = await asyncio.wait(running, timeout=self.settings.grace_period)
            for task in pending:
                task.cancel()
            if pending:
                self.log.warning(
                    f"Grace period over: {len(pending)} running job(s) aborted", always=True
                )
                # Cancelled jobs record 'd' and release themselves; bound that too (and
                # do not wait long for a database that is not there).
                _done, still = await asyncio.wait(
                    pending, timeout=15 if self.state.connected else 3
                )
                if still:
                    self._give_up.set()
                    await asyncio.wait(still, timeout=5)
        self._give_up.set()
        if self._service is not None and self.state.pid is not None:
            with contextlib.suppress(Exception):
                await self._service_exec("unregister_agent", {"pid": self.state.pid})
        await self._drop_service()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.pools.close_all(), timeout=5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.db.close(), timeout=5)
        self.log.debug("pyagent stopped")


async def run_agent(settings: Settings) -> int:
    """Entry point used by the CLI."""
    return await Agent(settings).run()
