"""How the store talks to the database: the agent's service connection (its identity in
pga_jobagent), a small bookkeeping pool for runs' log rows and releases (and job control's
reads and writes), and retries that ride out an outage for the bookkeeping that must not
be lost."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg.errors import QueryCanceled
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from pyagent.backoff import Backoff
from pyagent.conninfo import parse
from pyagent.store import session_check

Row = tuple[Any, ...]
Params = Mapping[str, Any] | None
T = TypeVar("T")

# Bookkeeping statements are tiny; one that runs longer is stuck (a lock held for long, or
# a schema function that never returns, as pgAgent's does for some malformed schedules).
STATEMENT_TIMEOUT_MS = 10_000
# Time allowed to a statement on the service connection before it is presumed dead: the
# server's statement timeout, and a little more for the answer to arrive.
SERVICE_STATEMENT_TIMEOUT = STATEMENT_TIMEOUT_MS / 1000 + 5.0

# Errors that mean "the database is not reachable right now", as opposed to a statement
# the server rejected.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    PoolTimeout,
    OSError,
)
# A statement on the service connection that times out means the connection is dead too.
RECONNECT_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, *TRANSIENT_ERRORS)


def is_transient(exc: BaseException) -> bool:
    """The database is unreachable (worth waiting for), not a statement it refused; a
    statement cancelled by the statement timeout counts as refused."""
    return isinstance(exc, TRANSIENT_ERRORS) and not isinstance(exc, QueryCanceled)


def connection_kwargs(conninfo: str, application_name: str) -> dict[str, Any]:
    """Options added to the agent's own connections unless the conninfo sets them:
    a recognisable application_name and TCP keepalives, so a dead network is noticed."""
    given = parse(conninfo)
    defaults = {
        "application_name": application_name,
        "keepalives": "1",
        "keepalives_idle": "10",
        "keepalives_interval": "5",
        "keepalives_count": "3",
        "tcp_user_timeout": "30000",
    }
    return {key: value for key, value in defaults.items() if key not in given}


async def _configure_bookkeeping_connection(conn: psycopg.AsyncConnection[Row]) -> None:
    await conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")


class ServiceConnection:
    """The one long-lived session whose backend pid is the agent's identity."""

    def __init__(self, conninfo: str, application_name: str, connect_timeout: float) -> None:
        self._conninfo = conninfo
        self._application_name = application_name
        self._connect_timeout = connect_timeout
        self._conn: psycopg.AsyncConnection[Row] | None = None

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """A transaction (or, inside one, a savepoint) on the service connection."""
        if self._conn is None:
            raise psycopg.OperationalError("no service connection")
        async with self._conn.transaction():
            yield

    async def open(self, stop: asyncio.Event) -> bool:
        """Connect, and check that the connection is a server session of its own; False
        when `stop` was set first (a shutdown does not wait for a connection attempt to a
        dead server). Raises NotASession (through a transaction pooler), TimeoutError or
        psycopg errors; the caller closes the connection then."""
        connecting = asyncio.ensure_future(
            psycopg.AsyncConnection.connect(
                self._conninfo,
                autocommit=True,
                **connection_kwargs(self._conninfo, self._application_name),
            )
        )
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait(
                {connecting, stopping},
                timeout=self._connect_timeout + 5,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            stopping.cancel()
        if not connecting.done():
            connecting.cancel()
            with contextlib.suppress(BaseException):
                await connecting
            if stop.is_set():
                return False
            raise TimeoutError("timed out connecting to the database")
        self._conn = connecting.result()
        # Before anything is set in the session: through a transaction pooler a SET would
        # stay on a server connection that other clients get next.
        await session_check.require_session(self._conn, self._connect_witness)
        await self._conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
        return True

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=5)

    async def _connect_witness(self) -> psycopg.AsyncConnection[Row]:
        kwargs = connection_kwargs(self._conninfo, f"{self._application_name} session check")
        return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True, **kwargs)

    async def rows(self, sql: str, params: Params = None) -> list[Row]:
        cur = await self._execute(sql, params)
        return [tuple(r) for r in await cur.fetchall()] if cur.description else []

    async def count(self, sql: str, params: Params = None) -> int:
        cur = await self._execute(sql, params)
        return int(cur.rowcount)

    async def _execute(self, sql: str, params: Params) -> psycopg.AsyncCursor[Row]:
        if self._conn is None:
            raise psycopg.OperationalError("no service connection")
        statement = asyncio.ensure_future(self._conn.execute(sql, params))
        try:
            done, _pending = await asyncio.wait({statement}, timeout=SERVICE_STATEMENT_TIMEOUT)
        except asyncio.CancelledError:
            statement.cancel()
            raise
        if not done:
            # The connection is presumed dead. psycopg's cancellation of the statement
            # (a cancel request, then a wait for the server) is not waited for: closing
            # the connection ends it.
            statement.cancel()
            statement.add_done_callback(_retrieve)
            raise TimeoutError("no answer from the database on the service connection")
        return statement.result()


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def _run_all(
    conn: psycopg.AsyncConnection[Row], statements: Sequence[tuple[str, Params]]
) -> int:
    count = 0
    for sql, params in statements:
        count = int((await conn.execute(sql, params)).rowcount)
    return count


class BookkeepingPool:
    """Run bookkeeping (logs, releases) on a bounded pool of short statements."""

    def __init__(self, conninfo: str, size: int, application_name: str) -> None:
        # Server-side prepared statements are safe here: the pool is used only while the
        # agent is registered, after its service connection, made with the same conninfo,
        # proved a session of its own (direct, or a session-mode pool, whose reset query
        # drops them between clients). Through a transaction pooler they would break.
        # min_size=0: no connection (and no SET) before that proof.
        kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": 3}
        kwargs.update(connection_kwargs(conninfo, application_name))
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Row]] = AsyncConnectionPool(
            conninfo,
            min_size=0,
            max_size=size,
            kwargs=kwargs,
            open=False,
            timeout=10,
            reconnect_timeout=0,
            # The name shows in psycopg_pool's own log lines; kept as operators know it.
            name="pyagent-control",
            configure=_configure_bookkeeping_connection,
        )
        # Set when bookkeeping should stop waiting for the database (hard shutdown).
        self.give_up = asyncio.Event()

    async def open(self) -> None:
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close(timeout=5)

    def stats(self) -> dict[str, int]:
        return dict(self._pool.get_stats())

    def connection(self) -> contextlib.AbstractAsyncContextManager[psycopg.AsyncConnection[Row]]:
        """One of the pool's connections, for a transaction of several statements."""
        return self._pool.connection()

    async def rows(self, sql: str, params: Params = None) -> list[Row]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(sql, params)
            return [tuple(r) for r in await cur.fetchall()] if cur.description else []

    async def count(self, sql: str, params: Params = None) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(sql, params)
            return int(cur.rowcount)

    async def count_in_transaction(self, statements: Sequence[tuple[str, Params]]) -> int:
        """Run statements in one transaction on one connection; the last one's row count."""
        async with self._pool.connection() as conn, conn.transaction():
            return await _run_all(conn, statements)

    async def retrying(
        self, attempt: Callable[[], Awaitable[T]], *, retry_timeouts: bool = True
    ) -> T | None:
        """Run `attempt` until it succeeds, waiting out transient outages until give_up
        is set (then None). With retry_timeouts=False a statement cancelled by the
        statement timeout raises QueryCanceled instead of being tried again."""
        backoff: Backoff | None = None  # made on the first failure: most attempts succeed
        while True:
            try:
                return await attempt()
            except TRANSIENT_ERRORS as exc:
                if isinstance(exc, QueryCanceled) and not retry_timeouts:
                    raise
                if self.give_up.is_set():
                    return None
            backoff = backoff or Backoff(initial=0.2, maximum=5.0)
            waiter = asyncio.ensure_future(self.give_up.wait())
            try:
                await asyncio.wait({waiter}, timeout=backoff.next_delay())
            finally:
                waiter.cancel()
