"""Is a connection a server session of its own, as the agent's identity needs?

The agent is its service session: pga_jobagent.jagpid is that backend's pid, and the
claims, the LISTEN and any session lock belong to that backend. A pooler in transaction
(or statement) mode hands each transaction to whichever server backend is free, so that
identity would change under the agent. An idle pooler often hands a client the same
backend twice in a row, so comparing two transactions alone proves nothing; the check
makes the pooler show itself:

1. the connection's first transaction notes its backend (pid and server start time) and
   leaves a random mark in its session (a custom setting);
2. a witness, a second connection made the same way, opens a transaction and holds it:
   a transaction pool hands it a free backend, usually the one just released, so it sees
   that pid or the mark; a statement pool refuses its transaction block;
3. while the witness holds its backend, the connection's next transaction must find the
   same backend with the mark still there.

Any of these failing proves the connection is not a session of its own; a direct
connection and a session-mode pool pass all of them. When the witness cannot be made (a
connection limit), steps 1 and 3 decide alone. When a pooler or proxy answered the login
(the pid it announced is not the server's), the check runs three rounds, since another
client's transaction may take and give back the backend just between two looks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import psycopg

from pyagent.store.sqlfile import load_blocks

Connection = psycopg.AsyncConnection[tuple[Any, ...]]
ConnectWitness = Callable[[], Awaitable[Connection]]

# Seconds allowed to each statement of the check and to the witness's connection. A
# statement of the connection itself that takes longer raises TimeoutError (the caller
# treats the connection as dead); a slow witness only leaves its question unanswered.
CHECK_TIMEOUT = 10.0
# Rounds of the check when a pooler or proxy answered the login (one otherwise).
ROUNDS_BEHIND_A_PROXY = 3
# SQLSTATE a pooler in statement mode answers a transaction block with (PgBouncer's).
PROTOCOL_VIOLATION = "08P01"


def _statement(name: str) -> str:
    return load_blocks("pyagent.store", "session_check.sql")[name]


class Finding(StrEnum):
    """What the check found."""

    SESSION = "session"  # the same backend throughout, the mark kept
    SHARED_BACKEND = "shared backend"  # the witness was handed this connection's backend
    BACKEND_CHANGED = "backend changed"  # the next transaction ran on another backend
    MARK_LOST = "mark lost"  # same pid, but the session's setting was gone
    NO_TRANSACTION_BLOCKS = "no transaction blocks"  # the witness's BEGIN was refused


@dataclass(frozen=True)
class SessionFacts:
    """The check's finding, with the pids it saw."""

    finding: Finding
    pid: int  # the backend of the connection's first transaction
    other_pid: int | None = None  # the next transaction's, or the witness's
    announced_pid: int = 0  # the pid the connection was told at login
    detail: str = ""  # the witness's error (NO_TRANSACTION_BLOCKS)

    @property
    def is_session(self) -> bool:
        return self.finding is Finding.SESSION

    @property
    def through_proxy(self) -> bool:
        """A pooler or proxy answered the login: the pid it announced is not the
        server's (a session-mode pool does this too)."""
        return self.announced_pid != self.pid

    def describe(self) -> str:
        """What was found, as a phrase for an operator's line."""
        if self.finding is Finding.SHARED_BACKEND:
            return (
                f"another connection was handed its server backend, pid {self.pid},"
                " between two of its transactions"
            )
        if self.finding is Finding.BACKEND_CHANGED:
            return (
                f"its transactions ran on different server backends, pid {self.pid}"
                f" then pid {self.other_pid}"
            )
        if self.finding is Finding.MARK_LOST:
            return (
                "a setting made in one transaction was gone in the next, on server"
                f" backend pid {self.pid}"
            )
        if self.finding is Finding.NO_TRANSACTION_BLOCKS:
            return (
                "a second connection made the same way was refused a transaction block:"
                f" {self.detail}"
            )
        return f"a session of its own, server backend pid {self.pid}"


class NotASession(Exception):
    """The connection is not a server session of its own (see `facts`)."""

    def __init__(self, facts: SessionFacts) -> None:
        super().__init__(f"the connection is not a session of its own ({facts.describe()})")
        self.facts = facts


async def require_session(conn: Connection, connect_witness: ConnectWitness) -> SessionFacts:
    """The facts when `conn` is a session of its own; raises NotASession otherwise."""
    facts = await examine(conn, connect_witness)
    if not facts.is_session:
        raise NotASession(facts)
    return facts


async def examine(conn: Connection, connect_witness: ConnectWitness) -> SessionFacts:
    """Run the check on the idle autocommit connection `conn`; `connect_witness` makes a
    second autocommit connection the same way. Raises TimeoutError or psycopg errors of
    `conn` itself; the witness's own failures only leave it out."""
    announced = int(conn.info.backend_pid)
    witness = await _open_witness(connect_witness)
    try:
        facts = await _look_once(conn, witness, announced)
        # Behind a pooler or proxy, another client's transaction may take and give back
        # this connection's backend just between two looks: look a few more times.
        rounds = ROUNDS_BEHIND_A_PROXY if facts.through_proxy else 1
        for _ in range(rounds - 1):
            if not facts.is_session:
                break
            facts = await _look_once(conn, witness, announced)
        return facts
    finally:
        if witness is not None:
            await _close(witness)


async def _look_once(
    conn: Connection, witness: Connection | None, announced: int
) -> SessionFacts:
    """One round: mark, let the witness look while it holds a transaction, look again."""
    # os.urandom, not secrets: the daemon must not load hashlib/OpenSSL for this.
    mark = os.urandom(8).hex()
    pid, started, _ = await _one(conn, "mark_session", {"mark": mark})
    seen = await _witness_look(witness) if witness is not None else None
    try:
        if isinstance(seen, str):
            return SessionFacts(Finding.NO_TRANSACTION_BLOCKS, pid, None, announced, seen)
        if seen is not None and ((seen[0], seen[1]) == (pid, started) or seen[2] == mark):
            return SessionFacts(Finding.SHARED_BACKEND, pid, int(seen[0]), announced)
        later_pid, later_started, later_mark = await _one(conn, "read_session")
    finally:
        if witness is not None:
            await _end_transaction(witness)
    if (later_pid, later_started) != (pid, started):
        return SessionFacts(Finding.BACKEND_CHANGED, pid, int(later_pid), announced)
    if later_mark != mark:
        return SessionFacts(Finding.MARK_LOST, pid, int(later_pid), announced)
    return SessionFacts(Finding.SESSION, pid, int(later_pid), announced)


async def _one(
    conn: Connection, name: str, params: dict[str, str] | None = None
) -> tuple[Any, ...]:
    # prepare=False: nothing of the check may rely on the session it is checking.
    cur = await asyncio.wait_for(
        conn.execute(_statement(name), params, prepare=False), timeout=CHECK_TIMEOUT
    )
    row = await cur.fetchone()
    assert row is not None  # one row, always
    return row


async def _open_witness(connect_witness: ConnectWitness) -> Connection | None:
    try:
        return await asyncio.wait_for(connect_witness(), timeout=CHECK_TIMEOUT)
    except (psycopg.Error, OSError, TimeoutError):
        return None


async def _witness_look(witness: Connection) -> tuple[Any, ...] | str | None:
    """Open a transaction on the witness (left open) and read its backend: the row, the
    error text of a refused transaction block, or None when it could not tell."""
    try:
        await asyncio.wait_for(witness.execute("BEGIN", prepare=False), timeout=CHECK_TIMEOUT)
        return tuple(await _one(witness, "read_session"))
    except psycopg.Error as exc:
        if exc.sqlstate == PROTOCOL_VIOLATION:
            return str(exc).strip().splitlines()[0] if str(exc).strip() else exc.sqlstate
        return None
    except (OSError, TimeoutError):
        return None


async def _end_transaction(witness: Connection) -> None:
    # A failed rollback leaves a broken witness: its next look then tells nothing.
    with contextlib.suppress(psycopg.Error, OSError, TimeoutError):
        await asyncio.wait_for(witness.execute("ROLLBACK", prepare=False), CHECK_TIMEOUT)


async def _close(conn: Connection) -> None:
    # Closing ends the witness's transaction; a broken witness must not fail the check.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(conn.close(), timeout=5)
