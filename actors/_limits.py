"""A hub's bounds on what its peers can make it hold or believe, and the clock-skew filter.

Every value from the wire is untrusted: a hub keeps at most :class:`HubLimits` of anything a peer can
grow (pending asks, reply tasks, snapshot entries), and a send time from another process counts
for lag and latency only when it is plausible (:class:`ClockSkew`). Each bound is counted when it
bites, in the statistics of the part that applies it. Set them with :func:`actors.connect`.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_PENDING_ASKS = 10_000
DEFAULT_MAX_SNAPSHOT_ENTRIES = 1_000_000
DEFAULT_MAX_CLOCK_SKEW = 60.0
DEFAULT_MAX_MESSAGE_AGE = 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class HubLimits:
    """What one hub holds at most on its peers' behalf (see :func:`actors.connect`)."""

    max_pending_asks: int = DEFAULT_MAX_PENDING_ASKS
    """Asks of this hub waiting for their reply; one more raises :class:`AskError` at once. Also the
    bound on replies this hub's answerers hold for an inbox not yet routed (beyond: dropped)."""
    max_snapshot_entries: int = DEFAULT_MAX_SNAPSHOT_ENTRIES
    """Entries one snapshot reply may bring; a reply announcing or sending more fails the snapshot."""
    max_clock_skew: float = DEFAULT_MAX_CLOCK_SKEW
    """Seconds a sender's timestamp may be in this hub's future and still count for lag and latency."""
    max_message_age: float = DEFAULT_MAX_MESSAGE_AGE
    """Seconds a sender's timestamp may be in the past and still count for lag and latency."""

    def __post_init__(self) -> None:
        for name in ("max_pending_asks", "max_snapshot_entries"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"hub limit {name}={value!r} is not an integer >= 1")
        for name in ("max_clock_skew", "max_message_age"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"hub limit {name}={value!r} is not a number of seconds > 0")


class ClockSkew:
    """Ages of received timestamps, or None (counted in ``skewed``) when a timestamp is implausible.

    A header's ``mono_ns``/``wall_ns`` come from the sender: zero, far future or far past are what a
    broken clock or a hostile peer sends, and must neither flag this hub slow nor skew its latency
    histograms. Plain ints; one subtraction and two comparisons per call.
    """

    __slots__ = ("_future_ns", "_past_ns", "skewed")

    def __init__(
        self, max_skew: float = DEFAULT_MAX_CLOCK_SKEW, max_age: float = DEFAULT_MAX_MESSAGE_AGE
    ) -> None:
        self._future_ns, self._past_ns = int(max_skew * 1e9), int(max_age * 1e9)
        self.skewed = 0

    def configure(self, max_skew: float, max_age: float) -> None:
        """Change the bounds (seconds into the future, seconds into the past)."""
        self._future_ns, self._past_ns = int(max_skew * 1e9), int(max_age * 1e9)

    def age_ns(self, now_ns: int, sent_ns: int) -> int | None:
        """``now_ns - sent_ns``, or None (counted) when ``sent_ns`` is outside the bounds."""
        age = now_ns - sent_ns
        if -self._future_ns <= age <= self._past_ns:
            return age
        self.skewed += 1
        return None
