"""When an agent counts as dead: the lease rule, in one place, as pure functions.

pgAgent judged an agent dead the moment no backend had its pid. A pid is a connection, not
a process: a dropped service connection made a live agent "dead", and another agent aborted
every run it was still executing. pyagent judges by a lease instead:

* Every pyagent agent renews its lease: its poll writes `pga_jobagent.jaglogintime = now()`
  (for a pyagent row the column means "last renewed"). When the poll is late (a backlog,
  a lost service connection) the lease keeper renews through the bookkeeping pool instead,
  so a service connection that disappears does not stop the renewals.
* Its service session holds a shared advisory lock (class ADVERT_CLASS) whose key carries
  its lease terms: other agents read from it that the session is a pyagent agent's, and
  which terms to judge it by (cached, for when the session is gone).
* Another agent judges it dead when
  - its lease is older than its `lease` (it renewed nothing, through any connection, for
    that long: a partition, a hung or stopped process), or
  - its service session is gone and its lease is older than its `grace`, provided that
    the judge saw that session alive before (it knows the agent's terms, and the agent,
    which renews every `renew` seconds, has in all likelihood seen the judge's row and
    fences itself within the grace, see `fence_after`). This is how a SIGKILLed agent's
    jobs come back within seconds.
* An agent that cannot renew fences itself before anyone may judge it dead: it stops its
  running steps `FENCE_MARGIN` seconds before the earliest verdict (`fence_after`).
* Rows of other agents (the C pgAgent, or a pyagent never seen alive by the judge) keep
  pgAgent's rule while a backend holds their pid, and otherwise wait for the judge's own
  lease.

The one case this does not cover (docs/reliability.md): an agent alone on its database
whose connections are reset (not merely stalled) by a network fault less than one renewal
interval after a second agent registered; it did not see the newcomer, so it fences only
at its lease, while the newcomer may clear it at its grace.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# pg_advisory_lock_shared(ADVERT_CLASS, terms) on the service session: "pyag".
ADVERT_CLASS = 0x70796167
# An agent stops its runs this long before another agent may judge it dead.
FENCE_MARGIN = 0.75
# The lease keeper renews through the bookkeeping pool when the poll is this late.
RENEW_SLACK = 0.5
# The shortest and longest lease an agent may take (the advert packs it in 15 bits).
MIN_LEASE = 5.0
MAX_LEASE = 3000.0
# The default lease is at least this long (and three poll intervals).
DEFAULT_MIN_LEASE = 15.0


@dataclass(frozen=True)
class LeaseTerms:
    """How an agent holds its claims: renewed every `renew` s, judged dead after `lease` s
    without a renewal, or after `grace` s once its service session is gone."""

    lease: float
    grace: float
    renew: float

    @property
    def advert(self) -> int:
        """The advisory lock key that carries these terms (deciseconds: lease << 16 | grace)."""
        return (round(self.lease * 10) << 16) | round(self.grace * 10)


def default_lease(poll_interval: float) -> float:
    """The lease when --lease is not given: three poll intervals, at least 15 s."""
    return min(MAX_LEASE, max(DEFAULT_MIN_LEASE, 3 * poll_interval))


def lease_terms(poll_interval: float, lease: float | None = None) -> LeaseTerms:
    """An agent's terms: it renews at every poll (at least three times per lease), and its
    grace covers one late renewal and a reconnection."""
    lease = default_lease(poll_interval) if lease is None else lease
    renew = min(poll_interval, lease / 3)
    grace = min(1.5 * renew + 1.5, lease)
    return LeaseTerms(round(lease, 1), round(grace, 1), renew)


def terms_from_advert(advert: int) -> LeaseTerms:
    """The terms an agent's advisory lock key carries."""
    lease, grace = (advert >> 16) / 10, (advert & 0xFFFF) / 10
    return LeaseTerms(lease, grace, max(0.1, (grace - 1.5) / 1.5))


def fence_after(terms: LeaseTerms, others_known: bool) -> float:
    """Seconds without a renewal after which an agent stops its runs: before its grace ends
    when it knew of other agents at its last renewal (one of them may judge it by the
    grace), else before its lease ends (an agent registered later judges by the lease)."""
    limit = terms.grace if others_known else terms.lease
    return max(0.5, limit - FENCE_MARGIN)


@dataclass(frozen=True)
class Sighting:
    """One other agent's row as a poll saw it, with the backend holding its pid (if any)."""

    pid: int
    station: str
    last_renewed: datetime  # jaglogintime
    lease_age: float  # seconds since last_renewed, by the database's clock
    backend_alive: bool  # a backend has the pid
    advert: int | None  # the pyagent advert that backend holds (None: not a pyagent agent's)
    backend_newer: bool  # that backend started after last_renewed (pgAgent's pid-reuse test)


@dataclass(frozen=True)
class Verdict:
    """A dead agent and why it was judged so (for the log line)."""

    pid: int
    reason: str


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 100 else f"{value:.0f} s"


def connected(seen: Sighting) -> bool:
    """Its service session is on the server now (it can claim jobs this moment); an agent
    that is not connected may still be alive (reconnecting) until `judge` says otherwise."""
    if seen.advert is not None:
        return True
    return seen.backend_alive and not seen.backend_newer


def judge(seen: Sighting, known: LeaseTerms | None, own_terms: LeaseTerms) -> Verdict | None:
    """Whether another agent is dead (a Verdict) or may still be alive (None).

    `known`: its terms, from its advert now or as remembered from an earlier poll (None: the
    judge never saw its session alive)."""
    age = _seconds(seen.lease_age)
    if seen.advert is not None:
        # Its service session is on the server: only a lease that ran out makes it dead
        # (a partition, or a process that stopped answering).
        live = terms_from_advert(seen.advert)
        if seen.lease_age > live.lease:
            return Verdict(
                seen.pid,
                f"its session is still open but it renewed nothing for {age}"
                f" (lease {_seconds(live.lease)}): out of contact",
            )
        return None
    if seen.backend_alive and known is None:
        # Not a pyagent agent we know: pgAgent's rule (alive while a backend has its pid,
        # unless that backend started after the agent registered).
        if seen.backend_newer:
            return Verdict(seen.pid, "its pid now belongs to a newer session (pid reuse)")
        return None
    if known is None:
        # Never seen alive: no session of it, and no sign of life for a whole lease.
        if seen.lease_age > own_terms.lease:
            return Verdict(
                seen.pid,
                f"no session of it and no sign of life for {age}"
                f" (lease {_seconds(own_terms.lease)})",
            )
        return None
    if seen.lease_age > known.lease:
        return Verdict(
            seen.pid,
            f"its session is gone and it renewed nothing for {age} (lease {_seconds(known.lease)})",
        )
    if seen.lease_age > known.grace:
        return Verdict(
            seen.pid,
            f"its session is gone and it renewed nothing for {age} (grace {_seconds(known.grace)})",
        )
    return None
