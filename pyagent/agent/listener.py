"""LISTEN for "a job may be due" notifications from pyagent's optional trigger, and wake
the poll loop for each batch of them."""

from __future__ import annotations

import asyncio

import psycopg
from psycopg import pq

from pyagent.agent.state import AgentState, Wakeups
from pyagent.backoff import Backoff
from pyagent.logsetup import get_logger
from pyagent.settings import Settings
from pyagent.store import session_check
from pyagent.store.connections import TRANSIENT_ERRORS, Row, connection_kwargs

NOTIFY_CHANNEL = "pyagent_jobs"


class Listener:
    """A side task: one LISTEN connection while the agent is registered and the schema has
    the trigger; reconnects with backoff."""

    def __init__(self, settings: Settings, state: AgentState, wakeups: Wakeups) -> None:
        self.settings = settings
        self.state = state
        self.wakeups = wakeups
        # Set when the listening connection turned out not to be a session (a transaction
        # pooler): LISTEN cannot work there, so the agent relies on polling from then on.
        self.pooled = False

    async def run(self) -> None:
        s, stop = self.settings, self.wakeups.stop
        backoff = Backoff(initial=1.0, maximum=s.retry_interval)
        while not stop.is_set():
            wanted = s.listen and not self.pooled
            if not (wanted and self.state.registered and self.state.has_notify_trigger):
                await self.wakeups.wait(s.poll_interval, self.wakeups.wake)
                continue
            try:
                conn = await self._connect("listener")
            except TRANSIENT_ERRORS:
                await self.wakeups.sleep(backoff.next_delay())
                continue
            backoff.reset()
            try:
                async with conn:
                    if not await self._is_session(conn):
                        continue
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.wakeups.wake.set()  # anything sent while we were not listening
                    await self._relay(conn)
            except TRANSIENT_ERRORS:
                await self.wakeups.sleep(backoff.next_delay())

    async def _connect(self, purpose: str) -> psycopg.AsyncConnection[Row]:
        s = self.settings
        kwargs = connection_kwargs(s.conninfo, f"{s.application_name} {purpose}")
        return await psycopg.AsyncConnection.connect(s.conninfo, autocommit=True, **kwargs)

    async def _is_session(self, conn: psycopg.AsyncConnection[Row]) -> bool:
        """A notification reaches only the session that listens: through a transaction
        pooler nobody would hear it. Then say so once and leave the waking to polling."""
        facts = await session_check.examine(conn, lambda: self._connect("listener session check"))
        if facts.is_session:
            return True
        self.pooled = True
        get_logger().warning(
            f"LISTEN wake-ups are off: the listening connection is not a session of its own"
            f" ({facts.describe()}), as through a pooler in transaction mode; the agent"
            f" polls every {self.settings.poll_interval:g} s instead",
            always=True,
        )
        return False

    async def _relay(self, conn: psycopg.AsyncConnection[Row]) -> None:
        """The socket is watched by the event loop, so an idle agent does not wake up at
        all between notifications."""
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        fd = conn.pgconn.socket
        loop.add_reader(fd, readable.set)
        try:
            while not self.wakeups.stop.is_set():
                await self.wakeups.wait(3600.0, readable)
                if not readable.is_set():
                    continue
                readable.clear()
                conn.pgconn.consume_input()  # raises OperationalError when the link is gone
                got = False
                while conn.pgconn.notifies() is not None:
                    got = True
                if got:
                    self.wakeups.wake.set()
                if conn.pgconn.status != pq.ConnStatus.OK:
                    raise psycopg.OperationalError("the listening connection was lost")
        finally:
            loop.remove_reader(fd)
