"""Exponential backoff with jitter, for every reconnect and every retry through an outage.

Jitter keeps several agents that lost the same database from retrying in lock-step when it
comes back."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# One generator for every Backoff: seeding a new one costs more than the retry it spaces.
_RANDOM = random.Random()  # noqa: S311 - jitter, not cryptography


@dataclass
class Backoff:
    """Delays that start at `initial`, grow by `factor` up to `maximum`, each spread by
    +/- `jitter` (a fraction) but never above `maximum`."""

    initial: float
    maximum: float
    factor: float = 2.0
    jitter: float = 0.2
    _current: float = field(default=0.0, init=False)
    _random: random.Random = field(default=_RANDOM, init=False, repr=False, compare=False)

    def next_delay(self) -> float:
        """The delay to wait now; the following one is longer."""
        base = self._current or self.initial
        self._current = min(base * self.factor, self.maximum)
        spread = base * self.jitter
        return max(0.0, min(self.maximum, base + self._random.uniform(-spread, spread)))

    def reset(self) -> None:
        """Success: the next failure starts again from `initial`."""
        self._current = 0.0
