"""The agent's side of the store: every statement the running agent sends to the pgagent
schema, as methods named after what the agent does, returning typed records."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg

from pyagent import runtag
from pyagent.annotations import job_timezone
from pyagent.conninfo import mask_conninfo
from pyagent.liveness import ADVERT_CLASS, LeaseTerms, Sighting
from pyagent.logsetup import scrub
from pyagent.schema.privileges import MissingPrivilege, required_agent_privileges
from pyagent.store.connections import (
    BookkeepingPool,
    Params,
    Row,
    ServiceConnection,
    is_transient,
)
from pyagent.store.jobcontrol import JobControlStore
from pyagent.store.records import (
    Author,
    AuthorshipFacts,
    Claim,
    DeadRun,
    FailedStep,
    FallbackRelease,
    PollResult,
    Renewal,
    RunStart,
    RunStatus,
    SchemaProblem,
    SchemaState,
    ServerFacts,
    SessionZoneFacts,
    StepAuthors,
    StepDef,
    sighting_from_row,
)
from pyagent.store.sqlfile import load_blocks

SUPPORTED_SCHEMA_VERSION = "4"
# Stopping a dead agent's step sessions: how long a cancelled statement may take to end,
# and how long a terminated session may take to go.
CANCEL_WAIT = 2.0
TERMINATE_WAIT = 5.0


class ClaimLost(Exception):
    """The job is no longer claimed by this agent (another agent cleared it meanwhile)."""


def statement(name: str) -> str:
    """One named statement of agent.sql."""
    return load_blocks("pyagent.store", "agent.sql")[name]


def _never_if_none(next_run: datetime | None) -> datetime | str:
    # NULL would make the trigger call the failing function again; 'infinity' means never.
    return next_run if next_run is not None else "infinity"


class AgentStore:
    """The service connection, the bookkeeping pool, and the agent's bookkeeping (and
    job control's, as `job_control`)."""

    def __init__(
        self, conninfo: str, *, pool_size: int, application_name: str, connect_timeout: float
    ) -> None:
        self.service = ServiceConnection(conninfo, application_name, connect_timeout)
        self.bookkeeping = BookkeepingPool(conninfo, pool_size, application_name)
        # Job control's reads and writes (retries, cancel, alerts), on the same pool.
        self.job_control = JobControlStore(self.bookkeeping)
        # The backend pid of the service session, once registered: the agent's identity.
        self.pid: int | None = None
        # --step-rights author: the trusted roles; start_run then also reads each step's
        # authors. None: the agent runs steps with its own rights (pgAgent's way).
        self.trusted_roles: tuple[str, ...] | None = None

    # ---- lifecycle ----------------------------------------------------------------------

    async def open_pool(self) -> None:
        await self.bookkeeping.open()

    async def connect(self, stop: asyncio.Event) -> bool:
        """Open the service connection, a server session of its own (NotASession through
        a transaction pooler); False when stopped while connecting."""
        return await self.service.open(stop)

    async def disconnect(self) -> None:
        await self.service.close()

    async def close(self) -> None:
        await self.service.close()
        await self.bookkeeping.close()

    def give_up_waiting(self) -> None:
        """Hard shutdown: bookkeeping stops waiting for an unreachable database."""
        self.bookkeeping.give_up.set()

    @property
    def is_connected(self) -> bool:
        """The service connection is open (the agent may be registered)."""
        return self.service.is_open

    def pool_stats(self) -> dict[str, int]:
        """The bookkeeping pool's psycopg_pool statistics (pool_size, pool_available,
        requests_waiting, ...), for /metrics."""
        return self.bookkeeping.stats()

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

    async def advertise(self, terms: LeaseTerms) -> None:
        """Hold the advisory lock that tells other agents this session's lease terms."""
        await self.service.rows(
            statement("advertise_lease"), {"advert_class": ADVERT_CLASS, "advert": terms.advert}
        )

    async def session_zone_facts(self) -> SessionZoneFacts | None:
        """This session's TimeZone, where it comes from, and what sessions get by default;
        None when the catalogs cannot be read (never a reason to stop the agent)."""
        try:
            ((tz, source, default, role, database),) = await self.service.rows(
                statement("session_timezone_facts")
            )
        except psycopg.Error as exc:
            if is_transient(exc):
                raise
            return None
        return SessionZoneFacts(
            str(tz),
            str(source),
            None if default is None else str(default),
            str(role),
            str(database),
        )


    async def register(self, station: str) -> tuple[int, datetime] | None:
        """Write this session's pga_jobagent row; returns (and remembers) the pid and the
        lease value written. None when a row with this session's pid is left over."""
        rows = await self.service.rows(statement("register_agent"), {"station": station})
        if not rows:
            return None
        pid, renewed = rows[0]
        self.pid = int(pid)
        return self.pid, renewed

    async def stale_row(self) -> tuple[int, float, datetime] | None:
        """The row left over with this session's pid: (pid, seconds since its last lease
        renewal, that renewal's value); None when it went meanwhile."""
        rows = await self.service.rows(statement("stale_row"))
        if not rows:
            return None
        return int(rows[0][0]), float(rows[0][1]), rows[0][2]

    def take_identity(self, pid: int) -> None:
        """This session's pid is the agent's identity from now on (an own row re-used)."""
        self.pid = pid

    async def renew_lease(self, pid: int) -> Renewal | None:
        """Renew the lease of identity `pid` through the bookkeeping pool (one try, no waiting
        for an outage). None: the row is gone (this agent was cleared)."""
        rows = await self.bookkeeping.rows(statement("renew_lease"), {"pid": pid})
        if not rows:
            return None
        return Renewal(rows[0][0], int(rows[0][1]))

    async def adopt_claims(
        self, old_pid: int, renewed: datetime, job_ids: Sequence[int]
    ) -> list[int] | None:
        """After a reconnect: the jobs still running in this process move to the new
        identity, and the old identity's row goes, in one transaction. None when the old
        row is gone or was renewed by someone else (another agent cleared this one): then
        nothing changed. The old service session is ended if the server still has it."""
        params = {
            "old_pid": old_pid,
            "new_pid": self.pid,
            "renewed": renewed,
            "job_ids": list(job_ids),
        }
        async with self.service.transaction():
            if not await self.service.rows(statement("lock_own_row"), params):
                return None
            rows = await self.service.rows(statement("adopt_claims"), params)
            await self.service.count(statement("unregister_agent"), {"pid": old_pid})
        with contextlib.suppress(psycopg.Error):
            await self.service.rows(
                statement("end_old_session"), {"old_pid": old_pid, "advert_class": ADVERT_CLASS}
            )
        return [int(r[0]) for r in rows]

    async def unregister(self, pid: int) -> None:
        await self.service.count(statement("unregister_agent"), {"pid": pid})

    def _own_pids(self) -> list[int]:
        return [self.pid] if self.pid is not None else []

    # ---- dead agents --------------------------------------------------------------------

    async def sightings(self, own_pids: Sequence[int]) -> list[Sighting]:
        """Every other agent's row, for pyagent.liveness.judge."""
        rows = await self.service.rows(
            statement("other_agents"),
            {"own_pids": list(own_pids), "advert_class": ADVERT_CLASS},
        )
        return [sighting_from_row(r) for r in rows]

    async def dead_agent_runs(self, pid: int) -> list[DeadRun]:
        rows = await self.service.rows(statement("dead_agent_runs"), {"pid": pid})
        return [
            DeadRun(int(r[0]), int(r[1]), None if r[2] is None else int(r[2]), str(r[3]), str(r[4]))
            for r in rows
        ]

    async def stop_run_sessions(self, agent_pid: int, jlgids: Sequence[int]) -> dict[int, str]:
        """Stop the sessions that still work for a dead agent's runs on this server (and
        its own service session, if the server still has it): cancel their statements,
        then terminate them, within a bound. Returns, per run, what was done."""
        params = {
            "patterns": [runtag.like_pattern(j) for j in jlgids],
            "agent_pid": agent_pid,
            "advert_class": ADVERT_CLASS,
        }
        found = await self.service.rows(statement("run_backends"), params)
        return await stop_sessions(self.service.rows, found)

    async def stop_remote_run_sessions(self, conninfo: str, jlgid: int) -> str:
        """A dead agent's run whose step connects with its own connection string: stop its
        session on that server, reached with the same connection string (so with the
        credentials this agent has for it). Returns what was done ("": nothing found)."""
        target = mask_conninfo(conninfo)
        try:
            conn = await psycopg.AsyncConnection.connect(
                conninfo, autocommit=True, connect_timeout=5, application_name="pyagent sweep"
            )
        except (psycopg.Error, OSError) as exc:
            reason = scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
            return f"could not reach {target} ({reason}): its statement may still run there"
        async with conn:

            async def query(sql: str, params: Params) -> list[Row]:
                cur = await conn.execute(sql, params, prepare=False)
                return [tuple(r) for r in await cur.fetchall()] if cur.description else []

            found = await query(
                statement("run_backends"),
                {
                    "patterns": [runtag.like_pattern(jlgid)],
                    "agent_pid": 0,
                    "advert_class": ADVERT_CLASS,
                },
            )
            if not found:
                return ""
            notes = await stop_sessions(query, found)
        return f"on {target}: {notes.get(jlgid, '')}".rstrip(": ")

    async def clear_dead_agent(
        self, pid: int, seen: datetime, outputs: dict[int, str]
    ) -> list[FallbackRelease] | None:
        """Abort a dead agent's running logs (each running step's output says why), release
        its jobs (a job whose run had not started stays due) and delete its row, in one
        transaction. None when its row changed since the verdict (it renewed: it is back)
        or someone else is clearing or adopting it: then nothing changed. Returns the
        releases that needed pyagent's own next-run computation."""
        fallbacks: list[FallbackRelease] = []
        session_zone: str | None = None
        async with self.service.transaction():
            if not await self.service.rows(
                statement("lock_dead_agent"), {"pid": pid, "seen": seen}
            ):
                return None
            await self.service.count(
                statement("abort_zombie_logs"),
                {"pid": pid, "jlgids": list(outputs), "outputs": list(outputs.values())},
            )
            for (job_id,) in await self.service.rows(statement("zombie_jobs"), {"pid": pid}):
                zone = await self._job_zone(int(job_id))
                if zone is not None and session_zone is None:
                    ((_now, session_zone),) = await self.service.rows(
                        statement("read_session_clock")
                    )

                async def release(
                    next_run: datetime | str | None,
                    job: int = int(job_id),
                    zone: str | None = zone,
                    session_zone: str | None = session_zone,
                ) -> None:
                    params = {"job_id": job, "pid": pid, "next_run": next_run}
                    in_zone = zone is not None and next_run is None
                    # A savepoint: a failing next-run function leaves the rest intact. A
                    # job's own zone is set for its release only (SET LOCAL lasts to the
                    # end of the whole transaction, so the session's is set back after).
                    async with self.service.transaction():
                        if in_zone:
                            await self.service.rows(
                                statement("set_local_timezone"), {"zone": zone}
                            )
                        await self.service.count(statement("release_zombie_job"), params)
                        if in_zone:
                            await self.service.rows(
                                statement("set_local_timezone"), {"zone": session_zone}
                            )

                fallback = await self._release_with_fallback(int(job_id), release, release, zone)
                if fallback is not None:
                    fallbacks.append(fallback)
            await self.service.count(statement("delete_agent"), {"pid": pid})
        return fallbacks

    # ---- claims -------------------------------------------------------------------------

    async def claim(
        self, station: str, limit: int, *, full: bool
    ) -> PollResult:
        """Claim up to `limit` due jobs. A full poll also renews the lease, learns when the
        next job is due and sees every other agent's row; a backlog poll only claims.
        Raises ClaimLost when this agent's row went while claiming (it was cleared)."""
        try:
            rows = await self.service.rows(
                statement("claim_jobs" if full else "claim_backlog"),
                {
                    "pid": self.pid,
                    "station": station,
                    "limit": limit,
                    "own_pids": self._own_pids(),
                    "advert_class": ADVERT_CLASS,
                },
            )
        except psycopg.errors.ForeignKeyViolation as exc:
            raise ClaimLost(str(exc)) from exc
        claims: list[Claim] = []
        next_due_in: float | None = None
        renewal: Renewal | None = None
        sightings: list[Sighting] = []
        for row in rows:
            kind, ident, ts, seconds, num = row[:5]
            if kind == "claim":
                lag = None if seconds is None else float(seconds)
                claims.append(Claim(int(ident), ts, int(self.pid or 0), lag))
            elif kind == "lease":
                renewal = Renewal(ts, int(num))
            elif kind == "next" and seconds is not None:
                next_due_in = float(seconds)
            elif kind == "agent":
                sightings.append(sighting_from_row(row))
        return PollResult(tuple(claims), next_due_in, renewal, tuple(sightings))

    # ---- one run (bookkeeping pool, retried through outages) -----------------------------

    async def start_run(self, job_id: int, owner: Callable[[], int]) -> RunStart | None:
        """Insert the run's log row ('r') and read the job's comment and enabled steps
        (with their authors when `trusted_roles` is set), while the identity `owner()`
        (asked at every attempt: a reconnect moves the claim) still holds the claim. None
        when the database stayed away until give-up; ClaimLost when the claim is no longer
        held."""
        trusted = self.trusted_roles
        name = "start_run" if trusted is None else "start_run_with_authors"

        def params() -> dict[str, Any]:
            values: dict[str, Any] = {"job_id": job_id, "owner": owner()}
            if trusted is not None:
                values["trusted_roles"] = list(trusted)
            return values

        rows = await self.bookkeeping.retrying(
            lambda: self.bookkeeping.rows(statement(name), params())
        )
        if rows is None:
            return None
        if not rows:
            raise ClaimLost(f"job {job_id} is no longer claimed by agent {owner()}")
        if trusted is None:
            steps = tuple(_step_from_row(r[2:]) for r in rows if r[2] is not None)
        else:
            steps = tuple(
                _step_from_row(r[2:], StepAuthors(_author(r[10:13]), _author(r[13:16])))
                for r in rows
                if r[2] is not None
            )
        return RunStart(int(rows[0][0]), str(rows[0][1] or ""), steps)

    async def start_step(self, jlgid: int, step_id: int, owner: Callable[[], int]) -> int | None:
        """Insert a step's log row ('r'); None when the step no longer exists. ClaimLost
        when the run is no longer running under the identity `owner()` (aborted, or
        cleared)."""

        def params() -> dict[str, Any]:
            return {"jlgid": jlgid, "step_id": step_id, "owner": owner()}

        rows = await self.bookkeeping.retrying(
            lambda: self.bookkeeping.rows(statement("start_step"), params())
        )
        if rows:
            return int(rows[0][0])
        held = await self.bookkeeping.retrying(
            lambda: self.bookkeeping.rows(statement("run_held"), params())
        )
        if held and not held[0][0]:
            raise ClaimLost(f"run {jlgid} is no longer running under agent {owner()}")
        return None

    async def authorship_facts(self, trusted_roles: Sequence[str]) -> AuthorshipFacts:
        """Whether --step-rights author can work here (one catalog query)."""
        ((installed, readable, always, unknown),) = await self.service.rows(
            statement("authorship_facts"), {"trusted_roles": list(trusted_roles)}
        )
        return AuthorshipFacts(
            bool(installed), bool(readable), int(always), tuple(str(r) for r in unknown or ())
        )

    async def finish_step(
        self, jslid: int, status: RunStatus, result: int | None, output: str
    ) -> bool:
        """Record a step's outcome; False when its row was no longer running (aborted by
        a sweep) or the database stayed away."""
        params = {"jslid": jslid, "status": status.value, "result": result, "output": output}
        updated = await self.bookkeeping.retrying(
            lambda: self.bookkeeping.count(statement("finish_step"), params)
        )
        return updated == 1

    async def abort_step(self, jslid: int, output: str) -> None:
        params = {"jslid": jslid, "result": -1, "output": output}
        await self.bookkeeping.retrying(
            lambda: self.bookkeeping.count(statement("abort_step"), params)
        )

    async def finish_run(
        self,
        claim: Claim,
        owner: Callable[[], int],
        jlgid: int | None,
        status: RunStatus,
        *,
        timezone: str | None = None,
    ) -> FallbackRelease | None:
        """Close the run's log and release the job so its next run is scheduled; never
        leave it claimed. A run that never started (no log row) and was interrupted stays
        due, so it is not lost. `owner()` is the identity holding the claim, asked at every
        attempt (a reconnect moves the claim to a new identity). With the job's own
        `timezone` its schedules are read in that zone. Returns the fallback used, if the
        schema's next-run function failed."""

        def params(next_run: datetime | str | None = None) -> dict[str, Any]:
            return {
                "job_id": claim.job_id,
                "pids": [owner()],
                "claimed_nextrun": claim.claimed_nextrun,
                "next_run": next_run,
            }

        if jlgid is None and status == RunStatus.ABORTED:
            await self.bookkeeping.retrying(
                lambda: self.bookkeeping.count(statement("release_unstarted_job"), params())
            )
            return None

        async def release(next_run: datetime | str | None) -> None:
            zone = timezone if next_run is None else None
            await self.bookkeeping.retrying(
                lambda: self._count_in_zone("release_job", params(next_run), zone),
                retry_timeouts=next_run is not None,
            )

        async def first_attempt(_none: None) -> None:
            if jlgid is None:
                await release(None)
                return
            await self.bookkeeping.retrying(
                lambda: self._count_in_zone(
                    "finish_run", {**params(), "jlgid": jlgid, "status": status.value}, timezone
                ),
                retry_timeouts=False,
            )

        async def close_log_then_release(next_run: datetime | str) -> None:
            if jlgid is not None:
                log_params = {"jlgid": jlgid, "status": status.value}
                await self.bookkeeping.retrying(
                    lambda: self.bookkeeping.count(statement("finish_joblog"), log_params)
                )
            await release(next_run)

        return await self._release_with_fallback(
            claim.job_id, first_attempt, close_log_then_release, timezone
        )

    async def _count_in_zone(self, name: str, params: Params, timezone: str | None) -> int:
        """One statement on the bookkeeping pool; with a job's own time zone, in a transaction
        that first reads local times in that zone (set_local_timezone)."""
        if timezone is None:
            return await self.bookkeeping.count(statement(name), params)
        return await self.bookkeeping.count_in_transaction(
            [(statement("set_local_timezone"), {"zone": timezone}), (statement(name), params)]
        )

    async def _job_zone(self, job_id: int) -> str | None:
        """A job's own time zone (@TIMEZONE), read on the service connection."""
        rows = await self.service.rows(statement("job_comment"), {"job_id": job_id})
        return job_timezone(str(rows[0][0] or "")).name if rows else None

    # ---- the next-run fallback ----------------------------------------------------------

    async def _release_with_fallback(
        self,
        job_id: int,
        first: Callable[[None], Awaitable[None]],
        fallback: Callable[[datetime | str], Awaitable[None]],
        timezone: str | None = None,
    ) -> FallbackRelease | None:
        """Release through the schema's next-run function; if that function raises or
        hangs (pgAgent's own does for some schedules), release with the next run that
        pyagent computes instead (in the job's own `timezone`, if it has one)."""
        try:
            await first(None)
            return None
        except psycopg.Error as exc:
            if is_transient(exc):
                raise
            failure = exc
        next_run, described = await self.next_run_by_pyagent(job_id, timezone)
        await fallback(_never_if_none(next_run))
        return FallbackRelease(job_id, str(failure).strip(), described, next_run)

    async def next_run_by_pyagent(
        self, job_id: int, timezone: str | None = None
    ) -> tuple[datetime | None, str]:
        """The job's next run computed by pyagent.schedule in the job's own `timezone`
        (else the session's), and its schedules in words."""
        from pyagent import schedule

        async with self.bookkeeping.connection() as conn:
            now, tzname = await _one(conn, statement("read_session_clock"))
            rows = await _all(conn, statement("job_schedules"), {"job_id": job_id})
            exc_rows = await _all(
                conn, statement("schedule_exceptions"), {"schedule_ids": [r[0] for r in rows]}
            )
        try:
            tz = ZoneInfo(timezone or tzname)
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
        One try on the bookkeeping pool, never waiting for an outage: None when unknown."""
        if jlgid is None:
            return None
        rows = await self.bookkeeping.rows(
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
            deleted = max(await self.bookkeeping.count(statement("purge_old_joblogs"), params), 0)
            total += deleted
            if deleted < batch:
                return total
            # Give other sessions (and this agent's own work) room between batches.
            await asyncio.sleep(pause)


Query = Callable[[str, Params], Awaitable[list[Row]]]


async def stop_sessions(query: Query, found: Sequence[Row]) -> dict[int, str]:
    """Cancel the statements of the sessions `found` (pid, application_name, state rows of
    run_backends), terminate those still there after CANCEL_WAIT, and wait up to
    TERMINATE_WAIT for them to go. `query` runs a statement on a connection to their server.
    Returns, per run (from the session's run tag; 0 for an agent's own session), a note."""
    notes: dict[int, list[str]] = {}
    pids = [int(r[0]) for r in found]
    run_of = {int(r[0]): runtag.run_of(str(r[1] or "")) for r in found}
    refused: dict[int, str] = {}

    async def signal(name: str, targets: Sequence[int]) -> None:
        for pid in targets:
            try:
                await query(statement(name), {"pid": pid})
            except psycopg.errors.InsufficientPrivilege as exc:
                refused[pid] = str(exc).strip().splitlines()[0]

    async def left(active_only: bool) -> list[int]:
        rows = await query(statement("backends_left"), {"pids": pids})
        return [int(r[0]) for r in rows if r[1] or not active_only]

    loop = asyncio.get_running_loop()
    await signal("cancel_backend", pids)
    deadline = loop.time() + CANCEL_WAIT
    while (busy := await left(active_only=True)) and loop.time() < deadline:
        await asyncio.sleep(0.1)
    remaining = [p for p in await left(active_only=False) if p not in refused]
    await signal("terminate_backend", remaining)
    deadline = loop.time() + TERMINATE_WAIT
    while (still := [p for p in await left(False) if p not in refused]) and loop.time() < deadline:
        await asyncio.sleep(0.1)
    for pid in pids:
        if pid in refused:
            note = f"could not stop session {pid} ({refused[pid]}): its statement may still run"
        elif pid in still:
            note = f"session {pid} did not end within {TERMINATE_WAIT:g} s of its termination"
        elif pid in remaining:
            note = f"session {pid} terminated"
            if pid in busy:
                note += " (its statement did not end when cancelled)"
        else:
            note = f"session {pid} ended when its statement was cancelled"
        notes.setdefault(run_of[pid], []).append(note)
    return {run: "; ".join(texts) for run, texts in notes.items()}


def _author(row: Row) -> Author:
    role, current, trusted = row
    return Author(None if role is None else str(role), bool(current), bool(trusted))


def _step_from_row(row: Row, authors: StepAuthors | None = None) -> StepDef:
    return StepDef(
        step_id=int(row[0]),
        name=str(row[1]),
        kind=str(row[2] or ""),
        code=str(row[3] or ""),
        connstr=str(row[4] or ""),
        dbname=str(row[5] or ""),
        onerror=str(row[6] or "f"),
        desc=str(row[7] or ""),
        authors=authors,
    )


async def _one(conn: psycopg.AsyncConnection[Row], sql: str, params: Params = None) -> Row:
    row = await (await conn.execute(sql, params)).fetchone()
    assert row is not None
    return tuple(row)


async def _all(conn: psycopg.AsyncConnection[Row], sql: str, params: Params = None) -> list[Row]:
    return [tuple(r) for r in await (await conn.execute(sql, params)).fetchall()]
