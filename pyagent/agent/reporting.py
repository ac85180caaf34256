"""Operations reporting: what systemd (sd_notify status and watchdog), the health endpoint
and the Prometheus metrics see of the agent. Reads the agent's state; changes nothing."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from pyagent.agent.state import AgentState, Wakeups
from pyagent.logsetup import get_logger
from pyagent.ops.sdnotify import Notifier
from pyagent.settings import Settings
from pyagent.steps.pools import StepPools
from pyagent.store.agent_store import AgentStore

if TYPE_CHECKING:
    from pyagent.ops.health import HealthServer, HealthSnapshot
    from pyagent.ops.metrics import Metrics

# Without a registration by then, tell systemd we are up anyway (waiting for the database),
# so a database that is down at boot does not make the unit fail and restart in a loop.
READY_ANYWAY_AFTER = 30.0


class Reporter:
    """sd_notify, /livez, /readyz and /metrics for one agent."""

    def __init__(
        self,
        settings: Settings,
        state: AgentState,
        store: AgentStore,
        pools: StepPools,
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        self.state = state
        self.store = store
        self.pools = pools
        self.notifier = notifier if notifier is not None else Notifier.from_environ()
        self.metrics: Metrics | None = None
        self.health: HealthServer | None = None
        self._last_watchdog = 0.0
        self._status_text = ""
        if settings.http_listen is not None:
            from pyagent.ops.metrics import Metrics

            self.metrics = Metrics()
            self.metrics.set_state_provider(self.metric_state)

    @property
    def watchdog_interval(self) -> float | None:
        return self.notifier.watchdog_interval

    # ---- systemd ------------------------------------------------------------------------

    def heartbeat(self) -> None:
        """The supervisor's loop is alive: liveness, watchdog and status."""
        now = time.monotonic()
        self.state.last_loop = now
        interval = self.notifier.watchdog_interval
        if interval is not None and now - self._last_watchdog >= interval * 0.9:
            self.notifier.watchdog()
            self._last_watchdog = now
        status = self.status_line()
        if status != self._status_text:
            self._status_text = status
            self.notifier.status(status)

    def status_line(self) -> str:
        st = self.state
        if st.in_recovery:
            return "standby server: waiting for promotion"
        if not st.connected:
            return "waiting for the database"
        if not st.schema_ok:
            return "waiting for a usable pgagent schema"
        return f"primary; agent pid {st.pid}; {len(st.running)} job(s) running"

    def registered(self) -> None:
        self.notifier.ready(f"primary; agent pid {self.state.pid}; station {self.settings.station}")

    def stopping(self) -> None:
        self.notifier.stopping("stopping: waiting for running jobs")

    async def ready_anyway_later(self, wakeups: Wakeups) -> None:
        """A side task: READY=1 after a while even without a database."""
        await wakeups.wait(READY_ANYWAY_AFTER, wakeups.stop)
        if not self.state.registered and not wakeups.stop.is_set():
            self.notifier.ready("waiting for the database")

    # ---- health and metrics -------------------------------------------------------------

    def health_snapshot(self) -> HealthSnapshot:
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

    def metric_state(self) -> dict[str, float]:
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
            # The bookkeeping pool; its metrics keep their first name (control_pool_*).
            bookkeeping = self.store.pool_stats()
            state["control_pool_size"] = bookkeeping.get("pool_size", 0)
            state["control_pool_available"] = bookkeeping.get("pool_available", 0)
            state["requests_waiting"] = bookkeeping.get("requests_waiting", 0)
        return state

    async def start_health_server(self) -> None:
        if self.settings.http_listen is None:
            return
        from pyagent.ops.health import HealthServer

        host, port = self.settings.http_listen
        self.health = HealthServer(host, port, self.health_snapshot, self.metrics)
        try:
            await self.health.start()
        except OSError as exc:
            get_logger().error(f"Cannot serve health checks on {host}:{port}: {exc}")
            self.health = None
            return
        get_logger().warning(
            f"Health and metrics on http://{host}:{self.health.port}/", always=True
        )

    async def stop_health_server(self) -> None:
        if self.health is not None:
            with contextlib.suppress(Exception):
                await self.health.stop()
