"""LISTEN for "a job may be due" notifications from pyagent's optional trigger, and wake
the poll loop for each batch of them."""

from __future__ import annotations

import asyncio

import psycopg
from psycopg import pq

from pyagent.agent.state import AgentState, Wakeups
from pyagent.backoff import Backoff
from pyagent.settings import Settings
from pyagent.store.connections import TRANSIENT_ERRORS, Row, connection_kwargs

NOTIFY_CHANNEL = "pyagent_jobs"


class Listener:
    """A side task: one LISTEN connection while the agent is registered and the schema has
    the trigger; reconnects with backoff."""

    def __init__(self, settings: Settings, state: AgentState, wakeups: Wakeups) -> None:
        self.settings = settings
        self.state = state
        self.wakeups = wakeups

    async def run(self) -> None:
        s, stop = self.settings, self.wakeups.stop
        backoff = Backoff(initial=1.0, maximum=s.retry_interval)
        while not stop.is_set():
            if not (s.listen and self.state.registered and self.state.has_notify_trigger):
                await self.wakeups.wait(s.poll_interval, self.wakeups.wake)
                continue
            try:
                conn = await psycopg.AsyncConnection.connect(
                    s.conninfo,
                    autocommit=True,
                    **connection_kwargs(s.conninfo, s.application_name + " listener"),
                )
            except TRANSIENT_ERRORS:
                await self.wakeups.sleep(backoff.next_delay())
                continue
            backoff.reset()
            try:
                async with conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self.wakeups.wake.set()  # anything sent while we were not listening
                    await self._relay(conn)
            except TRANSIENT_ERRORS:
                await self.wakeups.sleep(backoff.next_delay())

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
