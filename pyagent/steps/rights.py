"""Whose rights a step runs with under `--step-rights author` (docs/security.md): the
decision as a pure function of the step and its recorded authors, the refusal messages,
and the connection a step logs in with as its author.

- A step whose responsible author is trusted (the agent's own role, a superuser, or a
  member of a trusted role) runs as the agent, as in pgAgent.
- Any other author's SQL step on a database of the agent's server runs in a session that
  logs in as that author; a batch or connection-string step is refused.
- A step (or job) without a record that still matches it is refused, with the way to
  adopt it.

The responsible author is the step's own author; when that one is trusted but the job's
on/off switch or host agent was last changed by someone who is not, it is the job's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import StrEnum

from pyagent import conninfo as ci
from pyagent.schema.privileges import display_role
from pyagent.store.records import UNKNOWN_AUTHOR, Author, StepAuthors, StepDef, StepKind

MODE_NOTE = "--step-rights author"


class Refusal(StrEnum):
    """Why a step did not run (the label of pyagent_steps_refused_total)."""

    NO_AUTHOR = "no_author"
    BATCH = "batch_untrusted"
    CONNSTR = "connstr_untrusted"
    LOGIN = "author_login_failed"


REFUSALS = tuple(Refusal)


@dataclass(frozen=True)
class AsAgent:
    """Run the step as today: with the agent's connection (or jstconnstr) or OS user."""


@dataclass(frozen=True)
class AsAuthor:
    """Run the SQL step in a session logged in as `role`."""

    role: str


@dataclass(frozen=True)
class Refused:
    """Do not run the step; `message` is its output and the log line."""

    reason: Refusal
    message: str
    author: str | None


Ruling = AsAgent | AsAuthor | Refused


def responsible(authors: StepAuthors) -> tuple[str, Author]:
    """Which record bounds the step's rights: ("step", its author), or ("job", the job's)
    when the step's author is trusted and the job's is not."""
    step, job = authors.step, authors.job
    if step.known and step.trusted and not (job.known and job.trusted):
        return "job", job
    return "step", step


def rule(step: StepDef, job_id: int) -> Ruling:
    """How `step` of job `job_id` runs under --step-rights author."""
    authors = step.authors or StepAuthors(UNKNOWN_AUTHOR, UNKNOWN_AUTHOR)
    which, author = responsible(authors)
    if not author.known:
        return Refused(Refusal.NO_AUTHOR, _no_author_message(which, author, job_id), author.role)
    assert author.role is not None
    if author.trusted:
        return AsAgent()
    if step.kind == StepKind.BATCH:
        return _untrusted(Refusal.BATCH, "batch steps", which, author.role)
    if step.kind == StepKind.SQL and step.connstr:
        return _untrusted(Refusal.CONNSTR, "connection-string steps", which, author.role)
    if step.kind == StepKind.SQL:
        return AsAuthor(author.role)
    return AsAgent()  # an invalid kind fails on its own, as in pgAgent


def _changed_by(which: str, role: str) -> str:
    if which == "job":
        return f"the job's on/off switch or host agent was last changed by role {role}"
    return f"this step was last changed by role {role}"


def _untrusted(reason: Refusal, what: str, which: str, role: str) -> Refused:
    message = (
        f"Step refused ({MODE_NOTE}): {what} run only for trusted authors, and "
        f"{_changed_by(which, display_role(role))}, which is not the agent's role, not a "
        "superuser and not a member of a trusted role (--trusted-role)"
    )
    return Refused(reason, message, role)


def _no_author_message(which: str, author: Author, job_id: int) -> str:
    subject = "the job's on/off switch and host agent have" if which == "job" else "it has"
    if author.role is None:
        why = (
            f"{subject} no recorded author (written before pyagent recorded authorship, "
            "or by a session that bypassed the recording)"
        )
    else:
        changed = "the job was" if which == "job" else "it was"
        why = (
            f"{changed} changed after its recorded author (role {display_role(author.role)}) "
            "while authorship was not being recorded"
        )
    return (
        f"Step refused ({MODE_NOTE}): {why}; after reviewing the job, the owner of schema "
        f"pyagent can adopt it: pyagent jobs adopt {job_id}"
    )


def login_failed_message(role: str, reason: str) -> str:
    """The output of an SQL step whose author could not log in."""
    detail = " ".join(reason.split()) or "the server refused the connection"
    return (
        f"Step not run ({MODE_NOTE}): cannot log in as its author, role "
        f"{display_role(role)}: {detail}; it never runs with the agent's rights"
    )


@functools.lru_cache(maxsize=1024)
def author_conninfo(agent_conninfo: str, application_name: str, dbname: str, role: str) -> str:
    """The connection an author's SQL step logs in with: the agent's own options and the
    step's database, as `role`, with no password of the agent's (password='' also keeps
    libpq from taking one from a service file or PGPASSWORD). libpq then finds the
    author's credentials as it would for anyone: the password file, certificates, or
    what the server's authentication allows."""
    target = ci.step_conninfo(agent_conninfo, application_name, "", dbname)
    return ci.make(target, user=role, password="")
