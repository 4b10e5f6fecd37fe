"""Deadline arithmetic, written once: every time limit in smug is a :class:`Deadline`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["Deadline", "grace_seconds", "GRACE_BASE", "GRACE_FRACTION", "STOP_RESERVE"]

#: The hard limit of a time-limited solve is ``limit + GRACE_BASE + GRACE_FRACTION * limit``.
GRACE_BASE = 0.5
GRACE_FRACTION = 0.05

#: Seconds before the hard limit at which a solver child is killed, so that the call itself (killing, reaping,
#: building the answer) still returns by the hard limit on a loaded machine.
STOP_RESERVE = 0.1


def grace_seconds(limit: float) -> float:
    """How long past its time limit a solve may run before it is stopped (a margin for clean shutdown)."""
    return GRACE_BASE + GRACE_FRACTION * limit


@dataclass
class Deadline:
    """A point in time (or none) that every step of a solve counts down to.

    ``Deadline(None)`` never expires; ``Deadline(5.0)`` expires 5 s after it was
    made.  :meth:`remaining` is what a solver's native limit should be set to;
    :meth:`capped` makes an earlier deadline for a sub-step.
    """

    seconds: float | None
    start: float = field(default_factory=time.perf_counter)

    @property
    def at(self) -> float | None:
        """The ``time.perf_counter()`` value at which it expires (``None``: never)."""
        return None if self.seconds is None else self.start + self.seconds

    def elapsed(self) -> float:
        """Seconds since the deadline was made."""
        return time.perf_counter() - self.start

    def remaining(self) -> float | None:
        """Seconds left (never negative); ``None`` without a limit."""
        at = self.at
        return None if at is None else max(0.0, at - time.perf_counter())

    def expired(self) -> bool:
        """True once no time is left."""
        at = self.at
        return at is not None and time.perf_counter() >= at

    def solver_limit(self, minimum: float = 1e-3) -> float | None:
        """What to pass a solver as its own limit: the time left, at least ``minimum`` (solvers reject 0)."""
        r = self.remaining()
        return None if r is None else max(minimum, r)

    def capped(self, seconds: float | None) -> Deadline:
        """A deadline no later than this one and at most ``seconds`` from now."""
        r = self.remaining()
        if seconds is None:
            return Deadline(r)
        return Deadline(seconds if r is None else min(r, seconds))

    def hard(self) -> float | None:
        """The ``perf_counter`` time by which a call past its limit has returned (limit plus grace)."""
        at = self.at
        return None if at is None or self.seconds is None else at + grace_seconds(self.seconds)

    def stop_at(self) -> float | None:
        """When a solver child past its limit is killed: :meth:`hard` less :data:`STOP_RESERVE`."""
        h = self.hard()
        return None if h is None else h - STOP_RESERVE
