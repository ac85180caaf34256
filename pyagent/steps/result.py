"""The outcome of one step, as it is written to pga_jobsteplog."""

from __future__ import annotations

from dataclasses import dataclass

# Output stored in jsloutput is capped; the marker says how much was dropped.
DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class StepOutcome:
    """What a step executor reports: success, the jslresult value and the jsloutput text."""

    succeeded: bool
    result: int | None
    output: str


def clean_text(data: bytes | str, max_bytes: int = DEFAULT_MAX_OUTPUT_BYTES) -> str:
    """Make any program output storable as PostgreSQL text: valid UTF-8, no NUL, capped."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    dropped = 0
    if len(raw) > max_bytes:
        dropped = len(raw) - max_bytes
        raw = raw[:max_bytes]
    text = raw.decode("utf-8", "replace").replace("\x00", "\ufffd")
    if dropped:
        text += f"\n[pyagent: output truncated, {dropped} more bytes not stored]\n"
    return text
