"""Durations: the one way pyagent reads them from text and writes them as text.

A duration is a number of seconds (a float). As text it is a bare number of seconds (`90`,
`0.5`) or terms with units h, m, s and ms, largest first (`30 s`, `500ms`, `2 m`,
`1 h 30 m`). `format_duration` writes the terms form, exactly, so `parse_duration` reads
back the same number: annotations written by `pyagent jobs apply`, log lines, alerts and
the jobs commands' output all spell durations this way.
"""

from __future__ import annotations

import math
import re

_NUMBER = r"(\d+(?:\.\d+)?)"
_DURATION = re.compile(
    rf"^(?:{_NUMBER}"
    rf"|(?:{_NUMBER}\s*h)?\s*(?:{_NUMBER}\s*m(?!s))?\s*(?:{_NUMBER}\s*s)?\s*(?:{_NUMBER}\s*ms)?)$",
    re.IGNORECASE,
)
# Seconds per unit of the terms, in the pattern's order (a bare number is seconds).
_UNITS = (1.0, 3600.0, 60.0, 1.0, 0.001)
_EXAMPLES = "examples: 30 s, 500 ms, 2 m, 1 h 30 m"


class DurationError(ValueError):
    """Text that is not a duration (the message says why)."""


def parse_duration(text: str, *, allow_zero: bool = False) -> float:
    """Seconds from `30 s`, `500ms`, `2m`, `1 h 30 m` or a bare number of seconds; zero only
    when `allow_zero`."""
    match = _DURATION.match(text.strip())
    if match is None or not any(match.groups()):
        raise DurationError(f"{text!r} is not a duration ({_EXAMPLES})")
    total = sum(
        float(number) * unit
        for number, unit in zip(match.groups(), _UNITS, strict=True)
        if number is not None
    )
    if not math.isfinite(total):
        raise DurationError(f"{text!r} is too long a duration")
    # Microseconds, as format_duration writes them: every duration read is written back exactly.
    seconds = round(total, 6)
    if seconds == 0 and not allow_zero:
        raise DurationError(f"{text!r}: must be greater than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """`0.25 s`, `30 s`, `1 m 30 s`, `2 h 5 m`: exact to the microsecond, readable back by
    parse_duration."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    micro = round(seconds * 1_000_000)
    whole, fraction = divmod(micro, 1_000_000)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h"] if hours else []
    if minutes:
        parts.append(f"{minutes} m")
    if secs or fraction or not parts:
        text = f"{secs}.{fraction:06d}".rstrip("0").rstrip(".")
        parts.append(f"{text} s")
    return " ".join(parts)


def rounded(seconds: float) -> float:
    """A measured duration rounded to what is worth showing: hundredths of a second under
    10 s, tenths under a minute, whole seconds under an hour, whole minutes above."""
    if seconds < 10:
        return round(seconds, 2)
    if seconds < 60:
        return round(seconds, 1)
    if seconds < 3600:
        return float(round(seconds))
    return round(seconds / 60) * 60.0
