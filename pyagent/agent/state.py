"""What the supervisor shares with its components: its state, and the events it waits on."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any


@dataclass
class AgentState:
    """What the rest of the process (health, metrics, systemd) may read about the agent."""

    connected: bool = False
    registered: bool = False
    schema_ok: bool = False
    in_recovery: bool = False
    has_notify_trigger: bool = False
    pid: int | None = None
    reconnects: int = 0
    running: dict[int, asyncio.Task[Any]] = field(default_factory=dict)
    # time.monotonic() of the last turn of the supervisor's loop (liveness).
    last_loop: float = 0.0

    @property
    def ready(self) -> bool:
        return self.connected and self.registered and self.schema_ok and not self.in_recovery


class Wakeups:
    """The events the agent's loops wait on, and the one way to wait for them."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()  # stop claiming and shut down
        self.wake = asyncio.Event()  # look for due jobs now
        self.job_done = asyncio.Event()  # a job finished: a slot is free
        # The longest a wait may last (systemd's watchdog must hear from the loop).
        self.max_wait: float | None = None

    async def wait(self, timeout: float, *events: asyncio.Event) -> None:
        """Wait until one of `events` (or stop) is set, or `timeout` seconds pass."""
        if self.max_wait is not None and timeout > self.max_wait:
            timeout = self.max_wait
        waiters = [asyncio.ensure_future(e.wait()) for e in (*events, self.stop)]
        try:
            await asyncio.wait(
                waiters, timeout=max(0.0, timeout), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake at once on stop."""
        await self.wait(seconds)
