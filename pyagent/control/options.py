"""Per-job control options read from the job's comment, and the pure retry rules.

Annotations (see `pyagent.annotations`), each on its own line of the job's Comment:

- ``@RETRIES=N;`` — how many times a failed run is retried (0 = never);
- ``@RETRY_DELAY=<duration>;`` — the delay before the first retry, doubled for each further
  retry of the same streak, up to `MAX_RETRY_DELAY` (or the first delay, if larger);
- ``@ALERT=failure|always|never;`` — which run endings are reported to the alert sinks.

The agent-wide defaults come from ``--retries`` / ``--retry-delay``; an annotation wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pyagent.annotations import AnnotationError, parse_annotations
from pyagent.duration import DurationError, parse_duration
from pyagent.settings import DEFAULT_RETRY_DELAY, ControlSettings

AlertPolicy = Literal["failure", "always", "never"]
ALERT_POLICIES: tuple[AlertPolicy, ...] = ("failure", "always", "never")

# The doubling stops here: a job that keeps failing is retried at most hourly.
MAX_RETRY_DELAY = 3600.0
# More retries than this is a typo, not a policy.
MAX_RETRIES = 100

RETRIES = "RETRIES"
RETRY_DELAY = "RETRY_DELAY"
ALERT = "ALERT"


@dataclass(frozen=True)
class JobControlOptions:
    """A job's retry and alert options, with the problems found while reading them."""

    retries: int = 0
    retry_delay: float = DEFAULT_RETRY_DELAY
    alert: AlertPolicy = "failure"
    problems: tuple[str, ...] = ()


def parse_retries(value: str) -> int:
    """A retry count: a whole number from 0 to MAX_RETRIES."""
    text = value.strip()
    if not text.isdigit():
        raise AnnotationError(f"{value!r} is not a whole number of retries (0 to {MAX_RETRIES})")
    count = int(text)
    if count > MAX_RETRIES:
        raise AnnotationError(f"{value!r}: at most {MAX_RETRIES} retries")
    return count


def parse_retry_delay(value: str) -> float:
    """A retry delay: a duration (30 s, 2 m, 1 h); zero means "retry at once" (as
    `pyagent jobs apply` allows `retry_delay: 0`)."""
    try:
        return parse_duration(value, allow_zero=True)
    except DurationError as exc:
        raise AnnotationError(str(exc)) from None


def parse_alert_policy(value: str) -> AlertPolicy:
    """failure, always or never (case-insensitive)."""
    text = value.strip().lower()
    for policy in ALERT_POLICIES:
        if text == policy:
            return policy
    raise AnnotationError(f"{value!r} is not one of failure, always, never")


def job_control_options(jobdesc: str, defaults: ControlSettings) -> JobControlOptions:
    """The options of a job from its comment; a bad value keeps the default and is reported."""
    found = parse_annotations(jobdesc)
    problems: list[str] = []
    retries, delay = defaults.retries, defaults.retry_delay
    alert: AlertPolicy = "failure"
    if RETRIES in found:
        try:
            retries = parse_retries(found[RETRIES])
        except AnnotationError as exc:
            problems.append(f"@{RETRIES}: {exc}")
    if RETRY_DELAY in found:
        try:
            delay = parse_retry_delay(found[RETRY_DELAY])
        except AnnotationError as exc:
            problems.append(f"@{RETRY_DELAY}: {exc}")
    if ALERT in found:
        try:
            alert = parse_alert_policy(found[ALERT])
        except AnnotationError as exc:
            problems.append(f"@{ALERT}: {exc}")
    return JobControlOptions(retries, delay, alert, tuple(problems))


def read_job_control(defaults: ControlSettings, job_id: int, jobdesc: str) -> JobControlOptions:
    """A run's control options; each bad annotation is logged as a warning naming the job."""
    from pyagent.logsetup import get_logger

    options = job_control_options(jobdesc, defaults)
    for problem in options.problems:
        get_logger().warning(f"Job {job_id}: ignoring {problem}", job_id=job_id)
    return options


def backoff_delay(attempt: int, first_delay: float, cap: float = MAX_RETRY_DELAY) -> float:
    """Seconds before retry number `attempt` (1-based): the first delay doubled for each
    retry after the first, never above the cap (or the first delay, when that is larger)."""
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    limit = max(cap, first_delay)
    # Bounded exponent: 2**64 seconds is already far past any cap.
    return min(first_delay * 2.0 ** min(attempt - 1, 64), limit)


@dataclass(frozen=True)
class RetryDecision:
    """What to do after a failed run: retry `attempt` of `retries` in `delay` seconds, or
    (attempt > retries) go back to the schedule."""

    attempt: int
    retries: int
    delay: float | None

    @property
    def retrying(self) -> bool:
        return self.delay is not None


def decide_retry(failure_streak: int, options: JobControlOptions) -> RetryDecision | None:
    """The retry rule. `failure_streak` counts the job's consecutive failed runs, the one
    that just ended included. None when the job has no retries at all."""
    if options.retries <= 0 or failure_streak < 1:
        return None
    if failure_streak > options.retries:
        return RetryDecision(failure_streak, options.retries, None)
    return RetryDecision(
        failure_streak, options.retries, backoff_delay(failure_streak, options.retry_delay)
    )
