"""This agent's lease: its identity, when it last renewed, what it knows of other agents,
and the keeper that renews late and fences the runs before another agent may take them.

The rule itself (when another agent counts as dead, when this one must stop) is
pyagent.liveness; this module holds the state and the side task.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pyagent import liveness
from pyagent.control.waits import wait_any
from pyagent.liveness import LeaseTerms, Sighting, Verdict
from pyagent.logsetup import get_logger
from pyagent.store.agent_store import AgentStore
from pyagent.store.connections import TRANSIENT_ERRORS
from pyagent.store.records import Renewal

RENEWAL_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, *TRANSIENT_ERRORS)
# How often the keeper looks at the clock while the agent holds claims.
KEEPER_TICK = 0.25
# While no job runs, the keeper looks at the clock this rarely (a job start wakes it).
IDLE_WAIT = 30.0
# After a renewal that did not get through, the next try waits this long.
RETRY_AFTER_FAILURE = 1.0


@dataclass
class Lease:
    """The agent's identity (its row's pid) and the state of its lease."""

    terms: LeaseTerms
    pid: int | None = None
    # The jaglogintime this agent last wrote (adoption checks the row is still its own).
    renewed_value: datetime | None = None
    # time.monotonic() when the last successful renewal was sent.
    renewed_at: float | None = None
    # Other agents were registered at the last renewal (one may judge us by the grace).
    others_known: bool = False
    # Other agents' terms, remembered from their adverts (for when their session is gone).
    known_terms: dict[int, LeaseTerms] = field(default_factory=dict)
    # Serialises renewals with the adoption of an old identity after a reconnect.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    fenced: bool = False

    def start(self, pid: int, renewed: datetime, sent_at: float) -> None:
        """A registration: a new row, or an own row kept across a reconnect."""
        self.pid = pid
        self.renewed_value = renewed
        self.renewed_at = sent_at

    def renewed(self, renewal: Renewal, sent_at: float) -> None:
        # A poll and the keeper may both renew; the row keeps the later value.
        if self.renewed_value is None or renewal.renewed > self.renewed_value:
            self.renewed_value = renewal.renewed
        self.renewed_at = max(self.renewed_at or sent_at, sent_at)
        self.others_known = renewal.others > 0

    def silence(self, now: float | None = None) -> float:
        """Seconds since the last successful renewal was sent."""
        if self.renewed_at is None:
            return 0.0
        return (time.monotonic() if now is None else now) - self.renewed_at

    @property
    def fence_after(self) -> float:
        return liveness.fence_after(self.terms, self.others_known)

    def judge(self, sightings: Sequence[Sighting]) -> list[Verdict]:
        """Dead agents among `sightings`; remembers the terms of those seen alive."""
        seen = {s.pid for s in sightings}
        for pid in list(self.known_terms):
            if pid not in seen:
                del self.known_terms[pid]
        verdicts = []
        for s in sightings:
            if s.advert is not None:
                self.known_terms[s.pid] = liveness.terms_from_advert(s.advert)
            verdict = liveness.judge(s, self.known_terms.get(s.pid), self.terms)
            if verdict is not None:
                verdicts.append(verdict)
        return verdicts


class LeaseKeeper:
    """A side task: renews the lease through the bookkeeping pool when the poll is late, and
    fences (stops every running job) when no renewal got through for too long."""

    def __init__(
        self,
        lease: Lease,
        store: AgentStore,
        stop: asyncio.Event,
        *,
        running: Callable[[], int],
        fence: Callable[[str], int],
        cleared: Callable[[], None],
        jobs_started: asyncio.Event,
    ) -> None:
        self.lease = lease
        self.store = store
        self.stop = stop
        self.running = running
        self.fence = fence
        self.cleared = cleared
        # Set by the supervisor when a job starts: the keeper then watches the clock.
        self.jobs_started = jobs_started
        self.log = get_logger()
        # Renewals given up on while they still ran (kept referenced until they end).
        self._abandoned: set[asyncio.Future[Renewal | None]] = set()

    async def run(self) -> None:
        lease = self.lease
        retry_at = 0.0
        while not self.stop.is_set():
            jobs = self.running()
            if lease.pid is None or lease.renewed_at is None or not jobs:
                # Nothing at stake: the poll renews (or registers again after an outage).
                if lease.fenced and lease.silence() < lease.fence_after:
                    lease.fenced = False
                # Asleep until a job starts (an idle agent's event loop stays quiet).
                self.jobs_started.clear()
                if not self.running():
                    await wait_any(IDLE_WAIT, self.jobs_started, self.stop)
                continue
            silence = lease.silence()
            now = time.monotonic()
            late = silence >= lease.terms.renew + liveness.RENEW_SLACK
            if late and not lease.fenced and now >= retry_at:
                if not await self._renew(lease.fence_after - silence):
                    retry_at = now + RETRY_AFTER_FAILURE
                silence = lease.silence()
            if silence >= lease.fence_after and not lease.fenced:
                lease.fenced = True
                stopped = self.fence(
                    f"Fenced: this agent could not renew its lease for {silence:.1f} s"
                    f" (lease {lease.terms.lease:g} s); it stopped the run before another"
                    " agent could take the job over"
                )
                self.log.warning(
                    f"No contact with the database for {silence:.1f} s: {stopped} running"
                    " step(s) stopped before another agent may take their jobs over",
                    always=True,
                )
            elif lease.fenced and silence < lease.fence_after:
                lease.fenced = False
                self.log.warning("Contact with the database is back: lease renewed", always=True)
            await wait_any(KEEPER_TICK, self.stop)

    async def _renew(self, budget: float) -> bool:
        """One renewal through the bookkeeping pool; False when it did not get through in
        time. A renewal that hangs (a stalled network) is left to end in the background:
        waiting for its cancellation (psycopg cancels the query on the server first) could
        outlast the fence."""
        lease = self.lease
        async with lease.lock:
            pid = lease.pid
            if pid is None:
                return True
            sent_at = time.monotonic()
            attempt = asyncio.ensure_future(self.store.renew_lease(pid))
            done, _pending = await asyncio.wait({attempt}, timeout=max(0.5, min(budget, 5.0)))
            if not done:
                attempt.cancel()
                self._abandoned.add(attempt)
                attempt.add_done_callback(_forget(self._abandoned))
                return False
            try:
                renewal = attempt.result()
            except RENEWAL_ERRORS:
                return False
            if lease.pid != pid:
                return True
            if renewal is None:
                self.cleared()
                return True
            lease.renewed(renewal, sent_at)
            return True


def _forget(
    tasks: set[asyncio.Future[Renewal | None]],
) -> Callable[[asyncio.Future[Renewal | None]], None]:
    def done(task: asyncio.Future[Renewal | None]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: an abandoned renewal's error is not news

    return done
