"""Bounded connection pools for SQL steps, one per target connection string.

A target is the agent's own options (or --step-conninfo) with `dbname = jstdbname`, or a
step's `jstconnstr`.
Each target allows at most `max_size` connections; a step that finds them all in use waits
for one (it never fails because of the bound). Connection errors surface immediately with
libpq's message, so an unreachable database fails its step clearly instead of timing out
in a queue. Connections are handed out clean: after a step, a connection that is idle
and healthy is reset with DISCARD ALL; anything else is closed. Nothing relies on the
session surviving between statements (no server-side prepared statements), so a target may
be a pooler in transaction mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import pq

from pyagent.conninfo import parse

StepConnection = psycopg.AsyncConnection[tuple[object, ...]]


@dataclass
class _Idle:
    conn: StepConnection
    since: float


class TargetPool:
    """Connections to one target, at most max_size at a time."""

    def __init__(
        self, conninfo: str, max_size: int, connect_timeout: float, max_idle: float
    ) -> None:
        self.conninfo = conninfo
        self.max_size = max_size
        self._slots = asyncio.Semaphore(max_size)
        self._idle: deque[_Idle] = deque()
        self._connect_timeout = connect_timeout
        self._max_idle = max_idle
        self.opened = 0
        self.in_use = 0

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[StepConnection]:
        """Borrow a connection; waits while the target's bound is reached."""
        async with self._slots:
            conn = await self._take()
            self.in_use += 1
            reusable = False
            try:
                yield conn
                reusable = True
            finally:
                self.in_use -= 1
                if reusable:
                    reusable = await self._reset(conn)
                if reusable:
                    self._idle.append(_Idle(conn, time.monotonic()))
                else:
                    await _close(conn)

    async def _take(self) -> StepConnection:
        while self._idle:
            idle = self._idle.pop()
            if not idle.conn.closed and idle.conn.pgconn.status == pq.ConnStatus.OK:
                return idle.conn
            await _close(idle.conn)
        extra: dict[str, Any] = {}
        given = parse(self.conninfo)
        if "connect_timeout" not in given:
            extra["connect_timeout"] = str(max(1, round(self._connect_timeout)))
        if "client_encoding" not in given:
            # The server converts to and from the database's encoding (LATIN1, ...).
            extra["client_encoding"] = "UTF8"
        conn = await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=True, prepare_threshold=None, **extra
        )
        self.opened += 1
        return conn

    async def _reset(self, conn: StepConnection) -> bool:
        if conn.closed or conn.pgconn.status != pq.ConnStatus.OK:
            return False
        if conn.pgconn.transaction_status != pq.TransactionStatus.IDLE:
            return False
        try:
            await conn.execute("DISCARD ALL")
        except psycopg.Error:
            return False
        return True

    async def close_idle(self, older_than: float | None = None) -> int:
        """Close idle connections (all, or those idle longer than older_than seconds)."""
        limit = self._max_idle if older_than is None else older_than
        now = time.monotonic()
        keep: deque[_Idle] = deque()
        closed = 0
        while self._idle:
            idle = self._idle.popleft()
            if now - idle.since >= limit:
                await _close(idle.conn)
                closed += 1
            else:
                keep.append(idle)
        self._idle = keep
        return closed

    @property
    def idle_count(self) -> int:
        return len(self._idle)


class StepPools:
    """All step pools of the agent, keyed by target connection string."""

    def __init__(self, max_per_target: int, connect_timeout: float, max_idle: float = 60.0) -> None:
        self._pools: dict[str, TargetPool] = {}
        self._max = max_per_target
        self._connect_timeout = connect_timeout
        self._max_idle = max_idle

    def for_target(self, conninfo: str) -> TargetPool:
        pool = self._pools.get(conninfo)
        if pool is None:
            pool = TargetPool(conninfo, self._max, self._connect_timeout, self._max_idle)
            self._pools[conninfo] = pool
        return pool

    async def close_idle(self, older_than: float | None = None) -> int:
        closed = 0
        for pool in list(self._pools.values()):
            closed += await pool.close_idle(older_than)
        return closed

    async def close_all(self) -> None:
        await self.close_idle(0.0)

    def stats(self) -> dict[str, int]:
        return {
            "targets": len(self._pools),
            "in_use": sum(p.in_use for p in self._pools.values()),
            "idle": sum(p.idle_count for p in self._pools.values()),
            "opened": sum(p.opened for p in self._pools.values()),
        }


async def _close(conn: StepConnection) -> None:
    # Closing a broken connection must never raise.
    with contextlib.suppress(Exception):
        await conn.close()
