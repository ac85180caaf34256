"""The agent's side of the store: every statement the running agent sends to the pgagent
schema, as methods named after what the agent does, returning typed records."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg

from pyagent.schema.privileges import MissingPrivilege, required_agent_privileges
from pyagent.store.connections import ControlPool, Params, Row, ServiceConnection, is_transient
from pyagent.store.records import (
    Claim,
    FailedStep,
    FallbackRelease,
    PollResult,
    RunStart,
    RunStatus,
    SchemaProblem,
    SchemaState,
    ServerFacts,
    StepDef,
)
from pyagent.store.sqlfile import load_blocks

SUPPORTED_SCHEMA_VERSION = "4"


def statement(name: str) -> str:
    """One named statement of agent.sql."""
    return load_blocks("pyagent.store", "agent.sql")[name]


def _never_if_none(next_run: datetime | None) -> datetime | str:
    # NULL would make the trigger call the failing function again; 'infinity' means never.
    return next_run if next_run is not None else "infinity"


class AgentStore:
    """The service connection, the control pool, and the agent's bookkeeping."""

    def __init__(
        self, conninfo: str, *, pool_size: int, application_name: str, connect_timeout: float
    ) -> None:
        self.service = ServiceConnection(conninfo, application_name, connect_timeout)
        self.control = ControlPool(conninfo, pool_size, application_name)
        # The backend pid of the service session, once registered: the agent's identity.
        self.pid: int | None = None

    # ---- lifecycle ----------------------------------------------------------------------

    async def open_pool(self) -> None:
        await self.control.open()

    async def connect(self, stop: asyncio.Event) -> bool:
        """Open the service connection, a server session of its own (NotASession through
        a transaction pooler); False when stopped while connecting."""
        return await self.service.open(stop)

    async def disconnect(self) -> None:
        await self.service.close()

    async def close(self) -> None:
        await self.service.close()
        await self.control.close()

    def give_up_waiting(self) -> None:
        """Hard shutdown: bookkeeping stops waiting for an unreachable database."""
        self.control.give_up.set()

    # ---- start-up and identity ----------------------------------------------------------

    async def schema_state(self) -> SchemaState:
        """Whether the schema is there, with the version this agent supports."""
        ((has_table, has_function),) = await self.service.rows(statement("schema_facts"))
        if not has_table:
            return SchemaState(SchemaProblem.NO_JOB_TABLE)
        if not has_function:
            return SchemaState(SchemaProblem.NO_VERSION_FUNCTION)
        ((version,),) = await self.service.rows(statement("schema_version"))
        if str(version) != SUPPORTED_SCHEMA_VERSION:
            return SchemaState(SchemaProblem.WRONG_VERSION, str(version))
        return SchemaState(None, str(version))

    async def missing_privileges(self) -> tuple[str, list[MissingPrivilege]]:
        """The current role and the privileges it lacks among those the agent needs (one
        catalog query on the service connection; nothing is changed)."""
        required = required_agent_privileges()
        rows = await self.service.rows(
            statement("missing_privileges"),
            {
                "kinds": [r.kind for r in required],
                "names": [r.name.split("(")[0] for r in required],
                "privileges": [r.privilege for r in required],
            },
        )
        missing = [MissingPrivilege(str(r[2]), r[0], str(r[1])) for r in rows]
        return (str(rows[0][3]) if rows else ""), missing

    async def server_facts(self) -> ServerFacts:
        ((in_recovery, tz, has_trigger),) = await self.service.rows(statement("server_facts"))
        return ServerFacts(bool(in_recovery), str(tz), bool(has_trigger))

    async def register(self, station: str) -> int:
        """Write this session's pga_jobagent row; returns (and remembers) the new pid."""
        await self.service.count(statement("remove_stale_self"))
        ((pid,),) = await self.service.rows(statement("register_agent"), {"station": station})
        self.pid = int(pid)
        return self.pid

    async def adopt_claims(self, old_pid: int, job_ids: Sequence[int]) -> None:
        """After a reconnect: jobs still running here move to the new identity, and the
        old identity's row goes."""
        if job_ids:
            await self.service.count(
                statement("adopt_claims"),
                {"new_pid": self.pid, "old_pid": old_pid, "job_ids": list(job_ids)},
            )
        await self.unregister(old_pid)

    async def unregister(self, pid: int) -> None:
        await self.service.count(statement("unregister_agent"), {"pid": pid})

    def _own_pids(self) -> list[int]:
        return [self.pid] if self.pid is not None else []

    # ---- dead agents --------------------------------------------------------------------

    async def find_dead_agents(self) -> list[int]:
        rows = await self.service.rows(
            statement("find_zombie_agents"), {"own_pids": self._own_pids()}
        )
        return [int(pid) for (pid,) in rows]

    async def clear_dead_agent(self, pid: int) -> list[FallbackRelease]:
        """Abort a dead agent's running logs, release its jobs (a job whose run had not
        started stays due) and delete its row. Returns the releases that needed pyagent's
        own next-run computation."""
        await self.service.count(statement("abort_zombie_logs"), {"pid": pid})
        fallbacks: list[FallbackRelease] = []
        for (job_id,) in await self.service.rows(statement("zombie_jobs"), {"pid": pid}):

            async def release(next_run: datetime | str | None, job: int = int(job_id)) -> None:
                await self.service.count(
                    statement("release_zombie_job"),
                    {"job_id": job, "pid": pid, "next_run": next_run},
                )

            fallback = await self._release_with_fallback(int(job_id), release, release)
            if fallback is not None:
                fallbacks.append(fallback)
        await self.service.count(statement("delete_agent"), {"pid": pid})
        return fallbacks

    # ---- claims -------------------------------------------------------------------------

    async def claim(self, station: str, limit: int, *, full: bool) -> PollResult:
        """Claim up to `limit` due jobs. A full poll also learns when the next job is due
        and whether any agent looks dead; a backlog poll only claims."""
        rows = await self.service.rows(
            statement("claim_jobs" if full else "claim_backlog"),
            {
                "pid": self.pid,
                "station": station,
                "limit": limit,
                "own_pids": self._own_pids(),
            },
        )
        claims: list[Claim] = []
        next_due_in: float | None = None
        dead = 0
        for kind, job_id, nextrun, seconds in rows:
            if kind == "claim":
                lag = None if seconds is None else float(seconds)
                claims.append(Claim(int(job_id), nextrun, int(self.pid or 0), lag))
            elif kind == "next" and seconds is not None:
                next_due_in = float(seconds)
            elif kind == "zombies":
                dead = int(seconds or 0)
        return PollResult(tuple(claims), next_due_in, dead)

    # ---- one run (control pool, retried through outages) ---------------------------------

    async def start_run(self, job_id: int) -> RunStart | None:
        """Insert the run's log row ('r') and read the job's comment and enabled steps.
        None when the database stayed away until give-up."""
        rows = await self._pool_rows_retrying("start_run", {"job_id": job_id})
        if not rows:
            return None
        steps = tuple(_step_from_row(r[2:]) for r in rows if r[2] is not None)
        return RunStart(int(rows[0][0]), str(rows[0][1] or ""), steps)

    async def start_step(self, jlgid: int, step_id: int) -> int | None:
        """Insert a step's log row ('r'); None when the step no longer exists."""
        rows = await self._pool_rows_retrying("start_step", {"jlgid": jlgid, "step_id": step_id})
        return int(rows[0][0]) if rows else None

    async def finish_step(
        self, jslid: int, status: RunStatus, result: int | None, output: str
    ) -> bool:
        """Record a step's outcome; False when its row was no longer running (aborted by
        a sweep) or the database stayed away."""
        params = {"jslid": jslid, "status": status.value, "result": result, "output": output}
        updated = await self.control.retrying(
            lambda: self.control.count(statement("finish_step"), params)
        )
        return updated == 1

    async def abort_step(self, jslid: int, output: str) -> None:
        params = {"jslid": jslid, "result": -1, "output": output}
        await self.control.retrying(lambda: self.control.count(statement("abort_step"), params))

    async def finish_run(
        self, claim: Claim, jlgid: int | None, status: RunStatus
    ) -> FallbackRelease | None:
        """Close the run's log and release the job so its next run is scheduled; never
        leave it claimed. A run that never started (no log row) and was interrupted stays
        due, so it is not lost. Returns the fallback used, if the schema's next-run
        function failed."""

        def params(next_run: datetime | str | None = None) -> dict[str, Any]:
            # Built at every attempt: after a reconnect the claim belongs to the new pid.
            pids = sorted({self.pid or 0, claim.agent_pid})
            return {
                "job_id": claim.job_id,
                "pids": pids,
                "claimed_nextrun": claim.claimed_nextrun,
                "next_run": next_run,
            }

        if jlgid is None and status == RunStatus.ABORTED:
            await self.control.retrying(
                lambda: self.control.count(statement("release_unstarted_job"), params())
            )
            return None

        async def release(next_run: datetime | str | None) -> None:
            await self.control.retrying(
                lambda: self.control.count(statement("release_job"), params(next_run)),
                retry_timeouts=next_run is not None,
            )

        async def first_attempt(_none: None) -> None:
            if jlgid is None:
                await release(None)
                return
            await self.control.retrying(
                lambda: self.control.count(
                    statement("finish_run"), {**params(), "jlgid": jlgid, "status": status.value}
                ),
                retry_timeouts=False,
            )

        async def close_log_then_release(next_run: datetime | str) -> None:
            if jlgid is not None:
                log_params = {"jlgid": jlgid, "status": status.value}
                await self.control.retrying(
                    lambda: self.control.count(statement("finish_joblog"), log_params)
                )
            await release(next_run)

        return await self._release_with_fallback(
            claim.job_id, first_attempt, close_log_then_release
        )

    # ---- the next-run fallback ----------------------------------------------------------

    async def _release_with_fallback(
        self,
        job_id: int,
        first: Callable[[None], Awaitable[None]],
        fallback: Callable[[datetime | str], Awaitable[None]],
    ) -> FallbackRelease | None:
        """Release through the schema's next-run function; if that function raises or
        hangs (pgAgent's own does for some schedules), release with the next run that
        pyagent computes instead."""
        try:
            await first(None)
            return None
        except psycopg.Error as exc:
            if is_transient(exc):
                raise
            failure = exc
        next_run, described = await self.next_run_by_pyagent(job_id)
        await fallback(_never_if_none(next_run))
        return FallbackRelease(job_id, str(failure).strip(), described, next_run)

    async def next_run_by_pyagent(self, job_id: int) -> tuple[datetime | None, str]:
        """The job's next run computed by pyagent.schedule in the session's time zone,
        and its schedules in words."""
        from pyagent import schedule

        async with self.control.pool.connection() as conn:
            now, tzname = await _one(conn, statement("session_clock"))
            rows = await _all(conn, statement("job_schedules"), {"job_id": job_id})
            exc_rows = await _all(
                conn, statement("schedule_exceptions"), {"schedule_ids": [r[0] for r in rows]}
            )
        try:
            tz = ZoneInfo(tzname)
        except (ZoneInfoNotFoundError, ValueError):
            tz = ZoneInfo("UTC")
        by_schedule: dict[int, list[tuple[Any, ...]]] = {}
        for jexscid, jexdate, jextime in exc_rows:
            by_schedule.setdefault(int(jexscid), []).append((jexdate, jextime))
        specs = [schedule.ScheduleSpec.from_row(r, by_schedule.get(int(r[0]), [])) for r in rows]
        described = "; ".join(schedule.describe(s) for s in specs) or "none"
        return schedule.next_run_for_schedules(specs, now, tz), described

    # ---- housekeeping -------------------------------------------------------------------

    async def failed_step(self, job_id: int, jlgid: int | None) -> FailedStep | None:
        """The job's name and its run's last unsuccessful step, for the failed-run warning.
        One try on the control pool, never waiting for an outage: None when unknown."""
        if jlgid is None:
            return None
        rows = await self.control.rows(
            statement("failed_step"), {"job_id": job_id, "jlgid": jlgid}
        )
        if not rows:
            return None
        name, step_id, step_name, status, result, output = rows[0]
        return FailedStep(
            None if name is None else str(name),
            None if step_id is None else int(step_id),
            None if step_name is None else str(step_name),
            None if status is None else str(status),
            None if result is None else int(result),
            str(output or ""),
        )

    async def purge_old_logs(self, days: float, batch: int = 1000, pause: float = 0.01) -> int:
        """Delete finished runs older than `days` in batches; returns how many."""
        total = 0
        params = {"seconds": days * 86400.0, "batch": batch}
        while True:
            deleted = max(await self.control.count(statement("purge_old_joblogs"), params), 0)
            total += deleted
            if deleted < batch:
                return total
            # Give other sessions (and this agent's own work) room between batches.
            await asyncio.sleep(pause)

    async def _pool_rows_retrying(self, name: str, params: Params) -> list[Row] | None:
        return await self.control.retrying(lambda: self.control.rows(statement(name), params))


def _step_from_row(row: Row) -> StepDef:
    return StepDef(
        step_id=int(row[0]),
        name=str(row[1]),
        kind=str(row[2] or ""),
        code=str(row[3] or ""),
        connstr=str(row[4] or ""),
        dbname=str(row[5] or ""),
        onerror=str(row[6] or "f"),
        desc=str(row[7] or ""),
    )


async def _one(conn: psycopg.AsyncConnection[Row], sql: str, params: Params = None) -> Row:
    row = await (await conn.execute(sql, params)).fetchone()
    assert row is not None
    return tuple(row)


async def _all(conn: psycopg.AsyncConnection[Row], sql: str, params: Params = None) -> list[Row]:
    return [tuple(r) for r in await (await conn.execute(sql, params)).fetchall()]
