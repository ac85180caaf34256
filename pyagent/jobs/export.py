"""`jobs export`: jobs as they are in the database, as job files (see docs/jobs.md)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from pyagent.annotations import (
    JOB_OPTIONS,
    MANAGED_BY,
    STEP_TIMEOUT,
    Description,
    Option,
    read_job,
    read_step,
)
from pyagent.jobs import cron
from pyagent.jobs.lookup import by_job, find_job
from pyagent.jobs.model import KIND_WORD, NATIVE_FIELDS, ON_ERROR_WORD
from pyagent.jobs.zones import Zone, own_zone
from pyagent.safetext import INVISIBLE
from pyagent.store.catalog import Catalog, JobRecord, ScheduleRecord, StepRecord


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line text, no anchors, keys in the order given."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if INVISIBLE.search(value):
        # Double-quoted, so that dump() can spell the characters as escapes.
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


def _stamp(value: Any, zone: Zone) -> str:
    return str(value.astimezone(zone.tz).isoformat(sep=" "))


def _exception(d: Any, t: Any) -> str:
    parts = []
    if d is not None:
        parts.append(d.isoformat())
    if t is not None:
        parts.append(t.strftime("%H:%M") if t.second == 0 and not t.microsecond else t.isoformat())
    return " ".join(parts)


def _option_values(read: Description[Any], options: Sequence[Option[Any]]) -> dict[str, Any]:
    """{field: value} of the options a description gives, as a job file writes them: a
    value as the agent reads it, a value it ignores as written (so that it is seen)."""
    out: dict[str, Any] = {}
    for option in options:
        line = read.lines.get(option.field)
        if line is None:
            continue
        value = getattr(read.values, option.field)
        if value is None:
            out[option.field] = line.text
        else:
            # Numbers of retries stay numbers; durations, names and words are text.
            out[option.field] = value if isinstance(value, int) else option.write(value)
    return out


def step_document(step: StepRecord) -> dict[str, Any]:
    read = read_step(step.desc)
    doc: dict[str, Any] = {"name": step.name, "kind": KIND_WORD[step.kind]}
    if step.dbname:
        doc["database"] = step.dbname
    if step.connstr:
        doc["connection"] = step.connstr
    doc["on_error"] = ON_ERROR_WORD[step.onerror]
    if not step.enabled:
        doc["enabled"] = False
    if read.text:
        doc["description"] = read.text
    doc |= _option_values(read, [STEP_TIMEOUT])
    doc["code"] = step.code
    return doc


def schedule_document(sched: ScheduleRecord, zone: Zone) -> dict[str, Any]:
    fields = cron.Fields.of(sched)
    doc: dict[str, Any] = {"name": sched.name}
    if sched.desc:
        doc["description"] = sched.desc
    if not sched.enabled:
        doc["enabled"] = False
    text = cron.to_cron(fields)
    if text is not None:
        doc["cron"] = text
    else:
        for kind in NATIVE_FIELDS:
            value = cron.format_native(kind, fields.get(kind))
            if value is not None:
                doc[kind] = value
    doc["start"] = _stamp(sched.start, zone)
    if sched.end is not None:
        doc["end"] = _stamp(sched.end, zone)
    if sched.exceptions:
        doc["exceptions"] = [_exception(e.date, e.time) for e in sched.exceptions]
    return doc


def job_document(
    job: JobRecord, steps: Sequence[StepRecord], schedules: Sequence[ScheduleRecord], zone: Zone
) -> dict[str, Any]:
    read = read_job(job.desc)
    doc: dict[str, Any] = {"name": job.name, "class": job.class_name, "enabled": job.enabled}
    if job.hostagent:
        doc["host_agent"] = job.hostagent
    if not read.values.managed:
        doc["managed"] = False
    if read.text:
        doc["comment"] = read.text
    doc |= _option_values(read, [o for o in JOB_OPTIONS if o is not MANAGED_BY])
    doc["steps"] = [step_document(s) for s in steps]
    # A job with its own zone has its start/end written in that zone's local time.
    stamps_zone = own_zone(job.desc) or zone
    doc["schedules"] = [schedule_document(s, stamps_zone) for s in schedules]
    return doc


def _yaml_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def dump(docs: Sequence[dict[str, Any]]) -> str:
    """The documents as YAML. YAML escapes control characters itself but writes
    bidirectional and other invisible format characters as they are; those are written as
    escapes too (inside double-quoted scalars), so the text stays exact and the terminal
    showing it sees nothing it acts on."""
    text = yaml.dump_all(
        docs,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
        explicit_start=len(docs) > 1,
    )
    return INVISIBLE.sub(_yaml_escape, text)


def file_stem(name: str) -> str:
    stem = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:80]
    return stem or "job"


def documents(
    catalog: Catalog, zone: Zone, idents: Sequence[str]
) -> list[tuple[JobRecord, dict[str, Any]]]:
    """(job, document) for the jobs named (all jobs when none is named), by name."""
    jobs = [find_job(catalog, ident) for ident in idents] if idents else catalog.jobs()
    ids = [j.jobid for j in jobs]
    steps = by_job(catalog.steps(ids))
    schedules = by_job(catalog.schedules(ids))
    return [
        (job, job_document(job, steps.get(job.jobid, []), schedules.get(job.jobid, []), zone))
        for job in jobs
    ]


def write_directory(
    found: Sequence[tuple[JobRecord, dict[str, Any]]], directory: Path
) -> list[Path]:
    """One file per job (<name>.yaml; -<id> added when two names give one file name)."""
    directory.mkdir(parents=True, exist_ok=True)
    stems = [file_stem(job.name) for job, _ in found]
    written = []
    for (job, doc), stem in zip(found, stems, strict=True):
        unique = f"{stem}-{job.jobid}" if stems.count(stem) > 1 else stem
        path = directory / f"{unique}.yaml"
        path.write_text(dump([doc]), encoding="utf-8")
        written.append(path)
    return written
