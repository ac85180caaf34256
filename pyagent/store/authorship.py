"""pyagent's authorship records for the management commands: who last changed each job
and step (`jobs show`), who last changed what a run ran (`jobs history`), the change log
(`jobs changes`) and adoption by the schema's owner (`jobs adopt`). Every statement is a
named block of `authorship.sql`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg

from pyagent.store.sqlfile import load_blocks

ObjectKind = Literal["j", "s"]


def _sql(name: str) -> str:
    return load_blocks("pyagent.store", "authorship.sql")[name]


@dataclass(frozen=True)
class Access:
    """Whether the records are installed and what this role may do with them."""

    installed: bool
    read_authors: bool
    read_changes: bool
    write_authors: bool


@dataclass(frozen=True)
class AuthorRecord:
    """Who last changed what decides what a job ('j') or step ('s') runs, and whether the
    record still matches the row (False: changed while the recording was bypassed)."""

    kind: ObjectKind
    id: int
    jobid: int
    author: str
    changed_at: datetime
    current: bool


@dataclass(frozen=True)
class ChangeRecord:
    """One entry of the change log."""

    id: int
    changed_at: datetime
    author: str
    jobid: int
    jobname: str | None
    object: str  # job, step, schedule, exception
    object_id: int
    object_name: str | None
    action: str  # create, change, delete, adopt
    fields: tuple[str, ...]
    decides: bool


@dataclass(frozen=True)
class RunAuthor:
    """The author of the last change to what a run ran, made before it started."""

    author: str
    changed_at: datetime


@dataclass(frozen=True)
class LockedJob:
    """A job held for adoption: what will be attributed, and its records now."""

    jobid: int
    name: str
    enabled: bool
    hostagent: str
    author: str | None
    current: bool
    steps: tuple[LockedStep, ...]


@dataclass(frozen=True)
class LockedStep:
    jstid: int
    name: str
    enabled: bool
    kind: str
    dbname: str
    connstr: str
    code: str
    author: str | None
    current: bool


class AuthorshipRecords:
    """Reads and writes of schema pyagent on the management commands' connection."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def _rows(self, name: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(_sql(name), params)
            return list(cur.fetchall()) if cur.description is not None else []

    def access(self) -> Access:
        ((installed, usage, read_authors, read_changes, write_authors),) = self._rows("access")
        return Access(
            bool(installed),
            bool(usage and read_authors),
            bool(usage and read_changes),
            bool(usage and write_authors),
        )

    def authors(self, jobids: Sequence[int]) -> dict[tuple[ObjectKind, int], AuthorRecord]:
        """The records of these jobs and their steps, by (kind, id)."""
        found: dict[tuple[ObjectKind, int], AuthorRecord] = {}
        for kind, oid, jobid, author, changed_at, current in self._rows(
            "authors", {"jobids": list(jobids)}
        ):
            record = AuthorRecord(kind, oid, jobid, author, changed_at, bool(current))
            found[(record.kind, record.id)] = record
        return found

    def changes(self, jobid: int | None = None, *, limit: int = 50) -> list[ChangeRecord]:
        """The change log, newest first."""
        return [
            ChangeRecord(
                id=r[0],
                changed_at=r[1],
                author=r[2],
                jobid=r[3],
                jobname=r[4],
                object=r[5],
                object_id=r[6],
                object_name=r[7],
                action=r[8],
                fields=tuple(r[9] or ()),
                decides=bool(r[10]),
            )
            for r in self._rows("changes", {"jobid": jobid, "limit": limit})
        ]

    def run_authors(self, jlgids: Sequence[int]) -> dict[int, RunAuthor]:
        """For each run, the author of the last change to what it ran (from the change log)."""
        return {
            r[0]: RunAuthor(r[1], r[2]) for r in self._rows("run_authors", {"jlgids": list(jlgids)})
        }

    def unattributed_jobs(self) -> list[int]:
        """Jobs of which the job or a step has no record matching it."""
        return [r[0] for r in self._rows("unattributed_jobs")]

    def role_exists(self, role: str) -> bool:
        return bool(self._rows("role_exists", {"role": role})[0][0])

    def session_role(self) -> str:
        return str(self._rows("session_role")[0][0])

    @contextmanager
    def adoption(self) -> Iterator[None]:
        """One transaction: the locks of `lock_job` are held until it ends."""
        with self.conn.transaction():
            yield

    def lock_job(self, jobid: int) -> LockedJob | None:
        """The job and its steps, locked against changes until the transaction ends."""
        rows = self._rows("lock_job", {"jobid": jobid})
        if not rows:
            return None
        jid, name, enabled, hostagent, author, current = rows[0]
        steps = tuple(
            LockedStep(
                r[0], r[1], bool(r[2]), r[3], r[4] or "", r[5] or "", r[6] or "", r[7], bool(r[8])
            )
            for r in self._rows("lock_steps", {"jobid": jobid})
        )
        return LockedJob(jid, name, bool(enabled), hostagent, author, bool(current), steps)

    def adopt(self, jobid: int, author: str) -> None:
        """Attribute the job and all its steps, as they are now, to `author`; logged."""
        self._rows("adopt_job", {"jobid": jobid, "author": author})
        self._rows("log_adoption", {"jobid": jobid, "author": author})
