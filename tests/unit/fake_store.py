"""A small in-memory stand-in for pyagent.store.AgentStore (with its job-control side),
for fast tests of the supervisor's decisions (the real store is tested against PostgreSQL
elsewhere)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pyagent.liveness import LeaseTerms, Sighting
from pyagent.store.jobcontrol import CancelMark, FailedRunRelease, JobHistory, RunReport
from pyagent.store.records import (
    Claim,
    DeadRun,
    FallbackRelease,
    PollResult,
    Renewal,
    RunStart,
    RunStatus,
    SchemaState,
    ServerFacts,
    SessionZoneFacts,
    StepDef,
)
from pyagent.store.session_check import Finding, NotASession, SessionFacts


def run_id(job_id: int) -> int:
    """The jlgid the fake store gives a job's run."""
    return 1000 + job_id


class FakeJobControl:
    """Job control's side: runs marked cancelled by `mark_cancelled`; calls recorded in
    the store's list."""

    def __init__(self, calls: list[tuple[Any, ...]]) -> None:
        self.calls = calls
        self.cancelled: dict[int, str | None] = {}  # job id -> the cancel message

    def mark_cancelled(self, job_id: int, message: str | None) -> None:
        """What `pyagent jobs cancel` does to the job's current run."""
        self.cancelled[job_id] = message

    async def cancelled_runs(self, job_ids: Sequence[int], pid: int) -> list[CancelMark]:
        self.calls.append(("cancelled_runs", tuple(job_ids), pid))
        return [
            CancelMark(job_id, run_id(job_id), self.cancelled[job_id])
            for job_id in job_ids
            if job_id in self.cancelled
        ]

    async def close_cancelled_steps(self, jlgid: int, output: str) -> int:
        self.calls.append(("close_cancelled_steps", jlgid, output))
        return 0

    async def run_report(self, jlgid: int, output_chars: int) -> RunReport | None:
        return None

    async def job_run_history(self) -> list[JobHistory]:
        return []

    async def release_failed_run(
        self,
        claim: Claim,
        jlgid: int,
        status: RunStatus,
        *,
        owner: Callable[[], int],
        retry_delay: Callable[[RunStatus | None, int], float | None],
        timezone: str | None = None,
    ) -> FailedRunRelease | None:
        self.calls.append(("release_failed_run", claim.job_id, status))
        return None


class FakeStore:
    """Records every call in order; claims come from a list of prepared job ids. Runs
    hold in start_run (`hold_runs`) or in their first step (`hold_steps`: each run then
    has one step) until `release_runs` is set."""

    def __init__(
        self, due: list[int] | None = None, *, hold_runs: bool = False, hold_steps: bool = False
    ) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.due = list(due or [])
        self.pid: int | None = None
        self.is_connected = False
        self.gave_up = asyncio.Event()
        self.hold_runs = hold_runs
        self.hold_steps = hold_steps
        # How many connections, from the first, fail the session check.
        self.pooled_connects = 0
        self.release_runs = asyncio.Event()
        self.runs_started = asyncio.Event()
        self.steps_started = asyncio.Event()
        self.job_control = FakeJobControl(self.calls)

    async def open_pool(self) -> None:
        self.calls.append(("open_pool",))

    async def connect(self, stop: asyncio.Event) -> bool:
        self.calls.append(("connect",))
        self.is_connected = True
        if self.pooled_connects > 0:  # this connection went through a transaction pooler
            self.pooled_connects -= 1
            raise NotASession(SessionFacts(Finding.BACKEND_CHANGED, 101, 102, 7))
        return True

    async def disconnect(self) -> None:
        self.calls.append(("disconnect",))
        self.is_connected = False

    async def close(self) -> None:
        self.calls.append(("close",))

    def give_up_waiting(self) -> None:
        self.gave_up.set()

    def pool_stats(self) -> dict[str, int]:
        return {}

    async def schema_state(self) -> SchemaState:
        return SchemaState(None, "4")

    async def missing_privileges(self) -> tuple[str, list[Any]]:
        return "agent", []

    async def failed_step(self, job_id: int, jlgid: int | None) -> None:
        return None

    async def server_facts(self) -> ServerFacts:
        return ServerFacts(False, "UTC", False)

    async def session_zone_facts(self) -> SessionZoneFacts | None:
        return SessionZoneFacts("UTC", "configuration file", None, "pgagent", "postgres")

    async def advertise(self, terms: LeaseTerms) -> None:
        self.calls.append(("advertise", terms.advert))

    async def register(self, station: str) -> tuple[int, datetime] | None:
        self.pid = 4242
        self.calls.append(("register", station))
        return self.pid, _now()

    async def renew_lease(self, pid: int) -> Renewal | None:
        self.calls.append(("renew_lease", pid))
        return Renewal(_now(), 0)

    async def unregister(self, pid: int) -> None:
        self.calls.append(("unregister", pid))

    async def adopt_claims(
        self, old_pid: int, renewed: datetime, job_ids: Sequence[int]
    ) -> list[int] | None:
        self.calls.append(("adopt_claims", old_pid, tuple(job_ids)))
        return list(job_ids)

    async def sightings(self, own_pids: Sequence[int]) -> list[Sighting]:
        return []

    async def dead_agent_runs(self, pid: int) -> list[DeadRun]:
        return []

    async def clear_dead_agent(
        self, pid: int, seen: datetime, outputs: dict[int, str]
    ) -> list[FallbackRelease] | None:
        return []

    async def claim(
        self, station: str, limit: int, *, full: bool
    ) -> PollResult:
        taken, self.due = self.due[:limit], self.due[limit:]
        self.calls.append(("claim", limit, full, tuple(taken)))
        claims = tuple(Claim(job_id, None, self.pid or 0) for job_id in taken)
        renewal = Renewal(_now(), 0) if full else None
        return PollResult(claims, 0.0 if self.due else None, renewal)

    async def start_run(self, job_id: int, owner: Callable[[], int]) -> RunStart | None:
        self.calls.append(("start_run", job_id))
        self.runs_started.set()
        if self.hold_runs:
            await self.release_runs.wait()
        steps = (StepDef(1, "held", "s", "SELECT 1", "", "", "f", ""),) if self.hold_steps else ()
        return RunStart(jlgid=run_id(job_id), jobdesc="", steps=steps)

    async def start_step(self, jlgid: int, step_id: int, owner: Callable[[], int]) -> int | None:
        self.calls.append(("start_step", jlgid, step_id))
        self.steps_started.set()
        await self.release_runs.wait()
        return None  # as for a step deleted meanwhile: nothing is executed

    async def finish_step(
        self, jslid: int, status: RunStatus, result: int | None, output: str
    ) -> bool:
        self.calls.append(("finish_step", jslid, status))
        return True

    async def abort_step(self, jslid: int, output: str) -> None:
        self.calls.append(("abort_step", jslid))

    async def finish_run(
        self,
        claim: Claim,
        owner: Callable[[], int],
        jlgid: int | None,
        status: RunStatus,
        *,
        timezone: str | None = None,
    ) -> FallbackRelease | None:
        self.calls.append(("finish_run", claim.job_id, status))
        return None

    def names(self) -> list[str]:
        return [call[0] for call in self.calls]


def _now() -> datetime:
    return datetime.now(UTC)
