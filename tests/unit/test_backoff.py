"""The one backoff helper: grows, caps, jitters, resets."""

from __future__ import annotations

from pyagent.backoff import Backoff


def test_grows_exponentially_up_to_the_maximum_without_jitter():
    b = Backoff(initial=1.0, maximum=30.0, jitter=0.0)
    assert [b.next_delay() for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]


def test_reset_starts_again_from_the_initial_delay():
    b = Backoff(initial=0.5, maximum=10.0, jitter=0.0)
    for _ in range(5):
        b.next_delay()
    b.reset()
    assert b.next_delay() == 0.5


def test_jitter_spreads_delays_within_bounds_and_never_above_the_maximum():
    delays = []
    for _ in range(200):
        b = Backoff(initial=10.0, maximum=12.0, jitter=0.2)
        delays.append(b.next_delay())
    assert all(8.0 <= d <= 12.0 for d in delays)
    # Several agents retrying after one outage do not all pick the same delay.
    assert len({round(d, 3) for d in delays}) > 50
