"""The agent's own database access: named statements on a small control pool, with
retries that ride out an outage for the bookkeeping that must not be lost."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import psycopg
from psycopg.errors import QueryCanceled
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from pyagent.resources import query

Row = tuple[Any, ...]
Params = Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None

# Bookkeeping statements are tiny; one that runs longer is stuck (a lock held for long, or
# a schema function that never returns, as pgAgent's does for some malformed schedules).
STATEMENT_TIMEOUT_MS = 10_000

# Errors that mean "the database is not reachable right now", as opposed to a statement
# the server rejected.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    PoolTimeout,
    OSError,
)


def connection_kwargs(conninfo: str, application_name: str) -> dict[str, Any]:
    """Options added to the agent's own connections unless the conninfo sets them:
    a recognisable application_name and TCP keepalives, so a dead network is noticed."""
    from pyagent.conninfo import parse

    given = parse(conninfo)
    extra: dict[str, Any] = {}
    defaults = {
        "application_name": application_name,
        "keepalives": "1",
        "keepalives_idle": "10",
        "keepalives_interval": "5",
        "keepalives_count": "3",
        "tcp_user_timeout": "30000",
    }
    for key, value in defaults.items():
        if key not in given:
            extra[key] = value
    return extra


async def _configure_control_connection(conn: psycopg.AsyncConnection[Row]) -> None:
    await conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")


class ControlDB:
    """Bookkeeping statements (claims, logs, releases) on a bounded pool."""

    def __init__(self, conninfo: str, size: int, application_name: str) -> None:
        kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": 3}
        kwargs.update(connection_kwargs(conninfo, application_name))
        self.pool: AsyncConnectionPool[psycopg.AsyncConnection[Row]] = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=size,
            kwargs=kwargs,
            open=False,
            timeout=10,
            reconnect_timeout=0,
            name="pyagent-control",
            configure=_configure_control_connection,
        )
        # Set while the agent believes the database is reachable.
        self.up = asyncio.Event()

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close(timeout=5)

    async def fetch(self, name: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        """Run a named statement once and return its rows."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(query(name), params)
            return await cur.fetchall() if cur.description else []

    async def execute(self, name: str, params: Mapping[str, Any] | None = None) -> int:
        """Run a named statement once and return its row count."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(query(name), params)
            return cur.rowcount

    async def fetch_retrying(
        self, name: str, params: Params, give_up: asyncio.Event
    ) -> list[Row] | None:
        """Like fetch, but waits out transient outages until give_up is set (then None)."""
        rows: list[Row] | None = await self._retrying(self.fetch, name, params, give_up)
        return rows

    async def execute_retrying(
        self, name: str, params: Params, give_up: asyncio.Event, *, retry_timeouts: bool = True
    ) -> int | None:
        """Like execute, but waits out transient outages until give_up is set (then None).

        Params may be a callable, evaluated for every attempt (values that change across a
        reconnect, such as the agent's pid). With retry_timeouts=False a statement cancelled
        by the statement timeout raises QueryCanceled instead of being tried again."""
        count: int | None = await self._retrying(
            self.execute, name, params, give_up, retry_timeouts
        )
        return count

    async def _retrying(
        self,
        fn: Any,
        name: str,
        params: Params,
        give_up: asyncio.Event,
        retry_timeouts: bool = True,
    ) -> Any:
        delay = 0.2
        while True:
            try:
                return await fn(name, params() if callable(params) else params)
            except TRANSIENT_ERRORS as exc:
                if isinstance(exc, QueryCanceled) and not retry_timeouts:
                    raise
                if give_up.is_set():
                    return None
            waiter = asyncio.ensure_future(give_up.wait())
            try:
                await asyncio.wait({waiter}, timeout=delay)
            finally:
                waiter.cancel()
            delay = min(delay * 2, 5.0)
