"""The LISTEN session for pyagent's optional notify trigger ("a job may be due"): a
connection of its own, apart from the service session and the bookkeeping pool, read
without a statement in flight (pyagent.agent.listener relays what it hears)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from types import TracebackType

import psycopg
from psycopg import pq

from pyagent.store import session_check
from pyagent.store.connections import Row, connection_kwargs

NOTIFY_CHANNEL = "pyagent_jobs"


class NotifySession:
    """One connection that listens on NOTIFY_CHANNEL; use it in an `async with` block."""

    def __init__(self, conninfo: str, application_name: str) -> None:
        self._conninfo = conninfo
        self._application_name = application_name
        self._conn: psycopg.AsyncConnection[Row] | None = None

    async def open(self) -> None:
        """Connect (psycopg's errors, or OSError, when the server cannot be reached)."""
        self._conn = await self._connect(self._application_name)

    async def __aenter__(self) -> NotifySession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def session_facts(self) -> session_check.SessionFacts:
        """Whether the connection is a server session of its own: a notification reaches
        only the session that listens, so through a transaction pooler nobody would hear
        it."""
        witness = f"{self._application_name} session check"
        return await session_check.examine(self._open(), lambda: self._connect(witness))

    async def listen(self) -> None:
        await self._open().execute(f"LISTEN {NOTIFY_CHANNEL}")

    @contextlib.contextmanager
    def watch(self, on_readable: Callable[[], None]) -> Iterator[None]:
        """Call `on_readable` whenever the connection's socket has something to read: the
        event loop watches it, so an idle agent does not wake up between notifications."""
        loop = asyncio.get_running_loop()
        fd = self._open().pgconn.socket
        loop.add_reader(fd, on_readable)
        try:
            yield
        finally:
            loop.remove_reader(fd)

    def received(self) -> bool:
        """Read what arrived; whether it held a notification (OperationalError when the
        link is gone)."""
        pgconn = self._open().pgconn
        pgconn.consume_input()
        got = False
        while pgconn.notifies() is not None:
            got = True
        return got

    def ensure_open(self) -> None:
        """OperationalError when the connection was lost."""
        if self._open().pgconn.status != pq.ConnStatus.OK:
            raise psycopg.OperationalError("the listening connection was lost")

    def _open(self) -> psycopg.AsyncConnection[Row]:
        if self._conn is None:
            raise psycopg.OperationalError("the listening connection is not open")
        return self._conn

    async def _connect(self, application_name: str) -> psycopg.AsyncConnection[Row]:
        kwargs = connection_kwargs(self._conninfo, application_name)
        return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True, **kwargs)
