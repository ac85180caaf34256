"""SQL steps: run a step's code on its target database, as pgAgent does.

The code is sent in one simple-query call on an autocommit connection with no parameters,
so several statements run as one implicit transaction, `%` is not special, and VACUUM
works as a single statement. jslresult is the row count of the last command, or -1 on
error; jsloutput is empty on success, or the server's error text. Unlike pgAgent, NOTICE
and WARNING messages raised by the step are kept in jsloutput too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextlib import AsyncExitStack

import psycopg
from psycopg import pq
from psycopg.errors import Diagnostic

from pyagent.logsetup import scrub
from pyagent.runtag import TAG
from pyagent.steps.pools import StepConnection, TargetPool
from pyagent.steps.result import StepOutcome, clean_text

NO_CONNECTION = "Couldn't get a connection to the database!"
EMPTY_CODE = "ERROR:  the step's SQL is empty: there is no statement to execute"
COPY_UNSUPPORTED = (
    "ERROR:  COPY ... FROM STDIN / TO STDOUT cannot be used in a job step "
    "(there is no client to exchange data with); use COPY with a server file or a program"
)


def _format_notice(diag: Diagnostic) -> str:
    lines = [f"{diag.severity or 'NOTICE'}:  {diag.message_primary or ''}"]
    if diag.message_detail:
        lines.append(f"DETAIL:  {diag.message_detail}")
    if diag.message_hint:
        lines.append(f"HINT:  {diag.message_hint}")
    return "\n".join(lines)


def _error_text(exc: psycopg.Error, encoding: str) -> str:
    if exc.pgresult is not None and exc.pgresult.error_message:
        return exc.pgresult.error_message.decode(encoding, "replace").strip()
    return str(exc).strip()


class PreparedSession:
    """A step's connection taken from its pool and named after the run while the step's log
    row is being written (the two round trips overlap), then used by `run_sql_step`. The
    caller closes it (the connection goes back to its pool) whatever happens."""

    def __init__(self, pool: TargetPool, tag: str) -> None:
        self._stack = AsyncExitStack()
        self._opening = asyncio.ensure_future(self._open(pool, tag))

    async def _open(self, pool: TargetPool, tag: str) -> StepConnection | BaseException:
        try:
            conn = await self._stack.enter_async_context(pool.connection())
        except (psycopg.Error, OSError) as exc:
            return exc
        if tag:
            await _name_session(conn, tag)
        return conn

    async def connection(self) -> StepConnection | BaseException:
        """The connection, or why there is none."""
        return await asyncio.shield(self._opening)

    async def close(self) -> None:
        if not self._opening.done():
            self._opening.cancel()
        with contextlib.suppress(BaseException):
            await self._opening
        await self._stack.aclose()


async def run_sql_step(
    pool: TargetPool,
    code: str,
    max_output_bytes: int,
    tag: str = "",
    *,
    no_connection: Callable[[str], StepOutcome] | None = None,
    prepared: PreparedSession | None = None,
) -> StepOutcome:
    """Execute one SQL step on a connection of `pool` (or the `prepared` one); never raises
    except on cancellation. Without a connection, the outcome is `no_connection(reason)`
    when given, else pgAgent's "Couldn't get a connection" with libpq's reason. `tag`
    becomes the session's application_name while the step runs (the connection's reset
    after the step restores its own), so the session can be found by its run."""
    async with AsyncExitStack() as stack:
        if prepared is None:
            prepared = PreparedSession(pool, tag)
            stack.push_async_callback(prepared.close)
        conn = await prepared.connection()
        if isinstance(conn, BaseException):
            reason = scrub(str(conn).strip())
            if no_connection is not None:
                return no_connection(reason)
            output = f"{NO_CONNECTION}\n{reason}" if reason else NO_CONNECTION
            return StepOutcome(False, -1, clean_text(output, max_output_bytes))
        return await _execute(conn, code, max_output_bytes)
    raise AssertionError("unreachable")  # pragma: no cover


async def _name_session(conn: StepConnection, tag: str) -> None:
    # One simple-protocol statement, the cheapest round trip psycopg makes (the agent pays
    # it per SQL step). The tag is made by pyagent.runtag.run_tag of integers only, and
    # checked to be exactly that before it is written between quotes; anything else would
    # not be sent.
    if not TAG.fullmatch(tag):
        raise ValueError(f"not a run tag: {tag!r}")
    # A failure here (a broken connection) shows in the step's own execution right after.
    with contextlib.suppress(psycopg.Error):
        await conn.execute(f"SET application_name TO '{tag}'".encode(), prepare=False)


async def _execute(conn: StepConnection, code: str, max_output_bytes: int) -> StepOutcome:
    notices: list[str] = []
    kept = 0
    dropped = 0

    def on_notice(diag: Diagnostic) -> None:
        # Keep no more than the output cap: a step may raise notices without end.
        nonlocal kept, dropped
        text = _format_notice(diag)
        if kept + len(text) <= max_output_bytes:
            notices.append(text)
            kept += len(text) + 1
        else:
            dropped += 1

    conn.add_notice_handler(on_notice)
    try:
        outcome = await _run(conn, code)
    except asyncio.CancelledError:
        # Stop the statement on the server before giving up the connection.
        await _cancel_and_close(conn)
        raise
    finally:
        conn.remove_notice_handler(on_notice)
    if dropped:
        notices.append(f"[pyagent: output truncated, {dropped} more notices not stored]")
    text = "\n".join([*notices, outcome.output] if outcome.output else notices)
    return StepOutcome(outcome.succeeded, outcome.result, clean_text(text, max_output_bytes))


async def _run(conn: StepConnection, code: str) -> StepOutcome:
    if not code.strip():
        return StepOutcome(False, -1, EMPTY_CODE)
    encoding = conn.info.encoding
    try:
        query = code.encode(encoding)
    except UnicodeEncodeError as exc:
        return StepOutcome(
            False,
            -1,
            f"ERROR:  the step's SQL has characters that the connection's encoding "
            f"({conn.info.encoding}) cannot carry: {exc.object[exc.start : exc.end]!r}",
        )
    cur = conn.cursor()
    try:
        await cur.execute(query, prepare=False)
    except psycopg.Error as exc:
        if isinstance(exc, psycopg.ProgrammingError) and exc.sqlstate is None:
            # psycopg refused the result (a COPY to or from the client); the connection is
            # mid-protocol and must not be reused.
            await conn.close()
            return StepOutcome(False, -1, COPY_UNSUPPORTED)
        return StepOutcome(False, -1, _error_text(exc, encoding))
    last = cur.pgresult
    while cur.nextset():
        last = cur.pgresult
    if last is None or last.status == pq.ExecStatus.EMPTY_QUERY:
        return StepOutcome(False, -1, EMPTY_CODE)
    return StepOutcome(True, last.command_tuples or 0, "")


async def _cancel_and_close(conn: StepConnection) -> None:
    # Best effort: the connection is closed right after, whatever happens.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(conn.cancel_safe(), timeout=5)
    with contextlib.suppress(Exception):
        await conn.close()
