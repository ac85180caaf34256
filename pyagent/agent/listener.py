"""LISTEN for "a job may be due" notifications from pyagent's optional trigger, and wake
the poll loop for each batch of them (the connection is pyagent.store.notifications')."""

from __future__ import annotations

import asyncio

from pyagent.agent.state import AgentState, Wakeups
from pyagent.backoff import Backoff
from pyagent.logsetup import get_logger
from pyagent.settings import Settings
from pyagent.store.connections import TRANSIENT_ERRORS
from pyagent.store.notifications import NotifySession


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
            session = NotifySession(s.conninfo, f"{s.application_name} listener")
            try:
                await session.open()
            except TRANSIENT_ERRORS:
                await self.wakeups.sleep(backoff.next_delay())
                continue
            backoff.reset()
            try:
                async with session:
                    if not await self._is_session(session):
                        continue
                    await session.listen()
                    self.wakeups.wake.set()  # anything sent while we were not listening
                    await self._relay(session)
            except TRANSIENT_ERRORS:
                await self.wakeups.sleep(backoff.next_delay())

    async def _is_session(self, session: NotifySession) -> bool:
        """Through a transaction pooler nobody would hear a notification: then say so once
        and leave the waking to polling."""
        facts = await session.session_facts()
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

    async def _relay(self, session: NotifySession) -> None:
        readable = asyncio.Event()
        with session.watch(readable.set):
            while not self.wakeups.stop.is_set():
                await self.wakeups.wait(3600.0, readable)
                if not readable.is_set():
                    continue
                readable.clear()
                if session.received():
                    self.wakeups.wake.set()
                session.ensure_open()
