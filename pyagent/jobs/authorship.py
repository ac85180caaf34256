"""`jobs changes` (the change log) and `jobs adopt` (attributing jobs that have no
recorded author, after review): pyagent's authorship records (docs/security.md).

Every name and every line of code shown here was written by a job editor: control
characters are shown escaped, so that nothing a job holds can move the cursor, hide a
line or restyle the terminal of the person reviewing it."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyagent.conninfo import mask_conninfo
from pyagent.jobs.errors import JobsError
from pyagent.jobs.lookup import find_job
from pyagent.jobs.model import KIND_WORD
from pyagent.jobs.render import indent, table
from pyagent.jobs.zones import Zone
from pyagent.store.authorship import Access, AuthorshipRecords, ChangeRecord, LockedJob
from pyagent.store.catalog import Catalog
from pyagent.store.records import StepKind

NOT_INSTALLED = (
    "pyagent's authorship records are not installed in this database "
    "(pyagent schema add-extras DSN, as the owner of the pgagent tables)"
)


def visible(text: str, *, keep_newlines: bool = False) -> str:
    """Text with control and format characters shown as \\xNN or \\uNNNN (tabs and, when
    asked, newlines kept)."""
    kept = {"\t", "\n"} if keep_newlines else {"\t"}
    return "".join(
        ch if ch in kept or not unicodedata.category(ch).startswith("C") else _escaped(ch)
        for ch in text
    )


def _escaped(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _access(catalog: Catalog) -> tuple[AuthorshipRecords, Access]:
    records = catalog.authorship
    access = records.access()
    if not access.installed:
        raise JobsError(NOT_INSTALLED)
    return records, access


# --- changes ------------------------------------------------------------------------------


def change_text(change: ChangeRecord) -> str:
    """`changed step "vacuum" (12): code, name` and the like."""
    verb = {"create": "created", "change": "changed", "delete": "deleted", "adopt": "adopted"}
    name = f' "{visible(change.object_name)}"' if change.object_name else ""
    text = f"{verb.get(change.action, change.action)} {change.object}{name} ({change.object_id})"
    if change.fields:
        text += ": " + ", ".join(visible(f) for f in change.fields)
    return text


def change_data(change: ChangeRecord, zone: Zone) -> dict[str, Any]:
    return {
        "id": change.id,
        "at": zone.iso(change.changed_at),
        "author": change.author,
        "job_id": change.jobid,
        "job": change.jobname,
        "object": change.object,
        "object_id": change.object_id,
        "object_name": change.object_name,
        "action": change.action,
        "fields": list(change.fields),
        "decides_what_runs": change.decides,
    }


def changes(
    catalog: Catalog, zone: Zone, ident: str | None, *, limit: int
) -> tuple[list[dict[str, Any]], str]:
    """The change log of all jobs or of JOB (an id of a deleted job works too)."""
    records, access = _access(catalog)
    if not access.read_changes:
        raise JobsError(
            "permission denied for pyagent.change_log: its owner grants it with "
            "pyagent schema grant-editor DSN ROLE (or GRANT SELECT ON pyagent.change_log)"
        )
    jobid: int | None = None
    if ident:
        text = ident.strip()
        jobid = int(text) if text.isdigit() else find_job(catalog, text).jobid
    found = records.changes(jobid, limit=limit)
    rows = [
        [
            zone.fmt(c.changed_at),
            visible(c.author),
            f"{visible(c.jobname or '?')} ({c.jobid})",
            ("* " if c.decides else "  ") + change_text(c),
        ]
        for c in found
    ]
    if not rows:
        return [], "no changes recorded" + (f" for job {jobid}" if jobid is not None else "")
    text = table(["WHEN", "BY", "JOB", "CHANGE"], rows)
    text += (
        "\n(* changed what decides what runs: the author of the job or step is now the role"
        f" shown; times in {zone.name})"
    )
    return [change_data(c, zone) for c in found], text


# --- adopt --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Adoption:
    """What an adoption attributed (or would have): jobs, to whom, whether it was done."""

    author: str
    jobs: tuple[LockedJob, ...]
    applied: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "author": self.author,
            "applied": self.applied,
            "jobs": [
                {"id": j.jobid, "name": j.name, "steps": [s.jstid for s in j.steps]}
                for j in self.jobs
            ],
        }


def _record_text(author: str | None, current: bool) -> str:
    if author is None:
        return "no recorded author"
    if not current:
        return f"recorded author {visible(author)}, but changed since without a record"
    return f"author {visible(author)}"


def review_text(job: LockedJob) -> str:
    """A job as the reviewer sees it before adopting: every step with its code."""
    lines = [
        f"job {job.jobid}: {visible(job.name)}  ({'enabled' if job.enabled else 'disabled'}, "
        f"host agent {visible(job.hostagent) or '(any)'}; {_record_text(job.author, job.current)})"
    ]
    if not job.steps:
        lines.append("  (no steps)")
    for step in job.steps:
        kind = (
            KIND_WORD.get(StepKind(step.kind), step.kind) if step.kind in ("s", "b") else step.kind
        )
        if step.connstr:
            where = "connection string " + visible(mask_conninfo(step.connstr))
        else:
            where = f"database {visible(step.dbname)}" if step.dbname else "shell"
        lines.append(
            f"  step {step.jstid} {visible(step.name)}  ({kind}, {where}"
            f"{'' if step.enabled else ', disabled'}; {_record_text(step.author, step.current)})"
        )
        code = visible(step.code.rstrip("\n"), keep_newlines=True) or "(empty)"
        lines.append(indent(code, "      | "))
    return "\n".join(lines)


def adopt(
    catalog: Catalog,
    idents: list[str],
    *,
    unrecorded: bool,
    author: str | None,
    confirm: Callable[[str, Adoption], bool],
) -> Adoption:
    """Attribute the named jobs (or, with `unrecorded`, every job that has something
    without a matching record) and all their steps, as they are now, to `author` (default:
    the role running this). The jobs are locked while `confirm` looks at them, so what it
    was shown is exactly what is attributed; `confirm` returning False changes nothing."""
    records, access = _access(catalog)
    if not access.write_authors:
        raise JobsError(
            "adopting writes pyagent.authorship, which only its owner (the role that ran "
            "pyagent schema add-extras) or a superuser may do"
        )
    role = author or records.session_role()
    if not records.role_exists(role):
        raise JobsError(f"there is no role named {role!r}")
    with records.adoption():
        jobids = [find_job(catalog, ident).jobid for ident in idents]
        if unrecorded:
            jobids.extend(j for j in records.unattributed_jobs() if j not in jobids)
        locked: list[LockedJob] = []
        for jobid in dict.fromkeys(jobids):
            job = records.lock_job(jobid)
            if job is not None:
                locked.append(job)
        plan = Adoption(role, tuple(locked), False)
        if not locked:
            return plan
        text = "\n\n".join(review_text(j) for j in locked)
        if not confirm(text, plan):
            return plan
        for job in locked:
            records.adopt(job.jobid, role)
    return Adoption(role, tuple(locked), True)
