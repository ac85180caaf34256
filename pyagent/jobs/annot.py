"""pyagent's annotation lines (`@NAME=value;` in jobdesc / jstdesc, see pyagent.annotations)
as plain fields of a job file, and back.

Job comment: `@JOB_TIMEOUT` -> timeout, `@RETRIES` -> retries, `@RETRY_DELAY` -> retry_delay,
`@ALERT` -> alert, `@TIMEZONE` -> timezone (read and checked by pyagent.annotations, as the
agent reads it), `@MANAGED_BY=pyagent;` -> the job is managed by `jobs apply` (may be pruned).
Step description: `@JOB_STEP_TIMEOUT` (or `@STEP_TIMEOUT`) -> timeout. Other lines, unknown
annotations included, stay in the comment / description text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pyagent.annotations import TIMEZONE, AnnotationError, parse_duration, parse_timezone

# Same grammar as pyagent.annotations: one annotation per line, the `;` optional.
_LINE = re.compile(r"^[ \t]*@([A-Za-z_]+)[ \t]*=[ \t]*([^;\n]*?)[ \t]*;?[ \t]*$")

MANAGED_VALUE = "pyagent"
JOB_NAMES = {
    "JOB_TIMEOUT": "timeout",
    "RETRIES": "retries",
    "RETRY_DELAY": "retry_delay",
    "ALERT": "alert",
    TIMEZONE: "timezone",
    "MANAGED_BY": "managed_by",
}
# Order of the annotation lines apply writes.
JOB_ORDER = ("JOB_TIMEOUT", "RETRIES", "RETRY_DELAY", "ALERT", TIMEZONE, "MANAGED_BY")
# Written as JOB_STEP_TIMEOUT; STEP_TIMEOUT is read too (the later one wins, as in the agent).
STEP_NAMES = {"JOB_STEP_TIMEOUT": "timeout", "STEP_TIMEOUT": "timeout"}
ALERT_VALUES = ("failure", "always", "never")


def split(text: str, known: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """(the text without the known annotation lines, {field: raw value})."""
    kept: list[str] = []
    found: dict[str, str] = {}
    removed = False
    for line in (text or "").split("\n"):
        match = _LINE.match(line)
        if match and match.group(1).upper() in known:
            found[known[match.group(1).upper()]] = match.group(2)
            removed = True
        else:
            kept.append(line)
    comment = "\n".join(kept)
    if removed:
        comment = comment.rstrip("\n")
    return comment, found


def job_fields(jobdesc: str) -> tuple[str, dict[str, str]]:
    return split(jobdesc, JOB_NAMES)


def step_fields(jstdesc: str) -> tuple[str, dict[str, str]]:
    return split(jstdesc, STEP_NAMES)


def compose(comment: str, lines: list[tuple[str, str]]) -> str:
    """A description: the comment, then one `@NAME=value;` line per annotation."""
    annotation_text = "\n".join(f"@{name}={value};" for name, value in lines)
    if not annotation_text:
        return comment
    comment = comment.rstrip("\n")
    return f"{comment}\n{annotation_text}" if comment else annotation_text


def duration_text(value: object, *, allow_zero: bool = False) -> str:
    """A duration from a file (number of seconds, or text such as `30 s`, `5 m`) as the
    annotation value; raises ValueError with the reason."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("must be a duration: a number of seconds or text like '30 s', '5 m'")
    text = f"{value:g} s" if isinstance(value, int | float) else " ".join(value.split())
    if allow_zero and re.fullmatch(r"0+(\.0*)?\s*(ms|s|m|h)?", text, re.IGNORECASE):
        return text
    try:
        parse_duration(text)
    except AnnotationError as exc:
        raise ValueError(str(exc)) from None
    return text


def timezone_text(value: object) -> str:
    """A `timezone:` from a file as the annotation value; raises ValueError with the reason
    (the same check the agent makes when it reads the annotation)."""
    if not isinstance(value, str):
        raise ValueError("must be a time zone name as text, such as Europe/Berlin")
    try:
        return parse_timezone(value)
    except AnnotationError as exc:
        raise ValueError(str(exc)) from None


def normalised(fields: Mapping[str, str]) -> dict[str, object]:
    """Field values compared by meaning (30 s == 0.5 m), for deciding whether to rewrite."""
    out: dict[str, object] = {}
    for key, value in fields.items():
        text = value.strip()
        if key in ("timeout", "retry_delay"):
            try:
                out[key] = parse_duration(text)
            except AnnotationError:
                out[key] = 0.0 if re.fullmatch(r"0+(\.0*)?\s*\w*", text) else text
        elif key == "retries":
            out[key] = int(text) if text.isdigit() else text
        elif key == "timezone":
            out[key] = text  # zone names are spelled exactly (Europe/Berlin)
        else:
            out[key] = text.lower()
    return out


def same_meaning(
    existing: str, comment: str, fields: Mapping[str, str], known: Mapping[str, str]
) -> bool:
    """True when `existing` already says this comment and these annotation values."""
    old_comment, old_fields = split(existing, known)
    return old_comment == comment and normalised(old_fields) == normalised(fields)
