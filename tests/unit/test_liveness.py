"""The lease rule (pyagent.liveness) as pure functions: terms, the advert, fencing, and
the verdict on another agent's row."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyagent import liveness
from pyagent.liveness import LeaseTerms, Sighting, fence_after, judge, lease_terms

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
OWN = lease_terms(5.0)


def seen(
    age: float,
    *,
    alive: bool = False,
    advert: int | None = None,
    newer: bool = False,
) -> Sighting:
    return Sighting(
        pid=4711,
        station="host-a",
        last_renewed=NOW,
        lease_age=age,
        backend_alive=alive,
        advert=advert,
        backend_newer=newer,
    )


def test_default_terms_follow_the_poll_interval():
    assert lease_terms(5.0) == LeaseTerms(lease=15.0, grace=9.0, renew=5.0)
    assert lease_terms(1.0) == LeaseTerms(lease=15.0, grace=3.0, renew=1.0)
    # pgAgent's documented -t 10: the lease grows with the poll interval.
    assert lease_terms(10.0) == LeaseTerms(lease=30.0, grace=16.5, renew=10.0)


def test_a_short_lease_makes_the_agent_renew_more_often_than_it_polls():
    terms = lease_terms(10.0, lease=6.0)
    assert terms.renew == 2.0 and terms.grace == 4.5 and terms.lease == 6.0


@given(st.floats(1, 600), st.one_of(st.none(), st.floats(liveness.MIN_LEASE, liveness.MAX_LEASE)))
def test_the_advert_carries_the_terms_and_fencing_comes_first(poll, lease):
    terms = lease_terms(poll, lease)
    decoded = liveness.terms_from_advert(terms.advert)
    assert abs(decoded.lease - terms.lease) < 0.06 and abs(decoded.grace - terms.grace) < 0.06
    assert 0 < terms.advert < 2**31  # an int4 advisory lock key
    # The agent stops its runs before any other agent may judge it dead.
    assert fence_after(terms, others_known=True) < terms.grace
    assert fence_after(terms, others_known=False) < terms.lease
    # It renews (plus the keeper's slack) well before it would fence.
    assert terms.renew + liveness.RENEW_SLACK < fence_after(terms, others_known=True)


def test_an_agent_whose_session_is_open_is_dead_only_when_its_lease_ran_out():
    advert = lease_terms(1.0).advert  # lease 15, grace 3
    assert judge(seen(14.0, alive=True, advert=advert), None, OWN) is None
    verdict = judge(seen(15.5, alive=True, advert=advert), None, OWN)
    assert verdict is not None and "still open" in verdict.reason and "15.5 s" in verdict.reason


def test_a_known_agent_whose_session_vanished_is_dead_after_its_grace():
    known = lease_terms(1.0)  # grace 3
    assert judge(seen(2.5), known, OWN) is None  # a reconnect in progress
    verdict = judge(seen(3.2), known, OWN)
    assert verdict is not None and "grace 3.0 s" in verdict.reason


def test_a_pid_now_held_by_another_session_does_not_keep_a_known_agent_alive():
    known = lease_terms(1.0)
    assert judge(seen(3.5, alive=True, advert=None), known, OWN) is not None


def test_an_agent_never_seen_alive_waits_for_the_judges_lease():
    assert judge(seen(14.0), None, OWN) is None
    verdict = judge(seen(15.1), None, OWN)
    assert verdict is not None and "no sign of life" in verdict.reason


def test_pgagents_rule_for_rows_held_by_other_backends():
    # The C pgAgent: alive as long as a backend has its pid, however old its row.
    assert judge(seen(86400.0, alive=True), None, OWN) is None
    # ... unless that backend started after the row was written (pid reuse).
    verdict = judge(seen(86400.0, alive=True, newer=True), None, OWN)
    assert verdict is not None and "pid reuse" in verdict.reason


@pytest.mark.parametrize("others", [True, False])
def test_fence_comes_a_margin_before_the_earliest_verdict(others):
    terms = lease_terms(5.0)
    limit = terms.grace if others else terms.lease
    assert fence_after(terms, others) == pytest.approx(limit - liveness.FENCE_MARGIN)
