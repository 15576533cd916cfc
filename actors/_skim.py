"""Discarding what waited in a hub's receive queues, oldest first, up to the newest.

Problem: a hub that cannot take what arrives falls behind in ZeroMQ's queues: its own (``hwm``
messages), the broker's towards it (the broker's ``hwm``) and the kernel's buffers between. Two
things go wrong, measured with a 20 us handler under a flat-out flood through a real broker: the
handlers get ever older messages (their age grew ~1 s a second, to 4.4 s), and the connection is
lost after a few seconds. ZeroMQ stops reading a connection whose queue is full and reads it again
only each time the reader took half the queue, so the broker's answers to the ZMTP heartbeat wait
behind the flood and the heartbeat times out. The same happens to a hub whose reading is held by a
full mailbox. A reconnection drops the queues too, but late, with the subscriptions sent again.

Approach: the remote hub (``RemoteHub._behind``, ``RemoteHub.hold``) calls for a skim when it has
been behind, or held, for half the heartbeat's timeout. :func:`discard` takes frames off one
socket unread (~0.3 us each) and looks at how long every 64th waited (``LagMonitor.frame_age``,
the send time in its header): it stops at the first that waited less than ``fresh`` seconds, at a
budget of frames (several queues' worth), at the end of a time slice, or when the queue runs
empty. Heartbeats are kept (handled, no handler runs): no publisher seems gone for a skim and the
tails they report are counted. What is discarded comes back as sequence gaps once its publishers
are heard again; the hub counts the frames in ``skimmed``. Socket-free: ``receive`` returns the
next frame or raises ``empty``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

_perf = time.perf_counter
_monotonic_ns = time.monotonic_ns
_time_ns = time.time_ns


class Discarded(NamedTuple):
    """What one :func:`discard` call did to one queue."""

    taken: int
    """Frames received, kept ones included."""
    kept: int
    """Heartbeats among them, handled rather than discarded."""
    empty: bool
    """The queue ran empty (then never inside a message: ZeroMQ queues a message whole)."""
    done: bool
    """A frame newer than ``fresh`` was reached, or the budget spent: nothing more to discard."""


def discard(
    receive: Callable[[], bytes],
    empty: type[Exception],
    budget: int,
    *,
    fresh: float,
    age_of: Callable[[bytes, int, int], float | None],
    heartbeat: bytes,
    keep: Callable[[bytes], None],
    deadline: float,
) -> Discarded:
    """Take up to ``budget`` frames with ``receive()``, discarding all but heartbeats (frames that
    start with ``heartbeat``, given to ``keep``), until one waited less than ``fresh`` seconds or
    ``time.perf_counter()`` passes ``deadline`` (looked at every 64 frames)."""
    taken = kept = 0
    try:
        while taken < budget:
            frame = receive()
            taken += 1
            if frame.startswith(heartbeat):
                keep(frame)
                kept += 1
            if taken & 63 == 1:  # the first, then every 64th: how long the rest waited
                age = age_of(frame, _monotonic_ns(), _time_ns())
                if age is not None and age < fresh:
                    return Discarded(taken, kept, False, True)
                if _perf() >= deadline:
                    return Discarded(taken, kept, False, False)
    except empty:
        return Discarded(taken, kept, True, False)
    return Discarded(taken, kept, False, True)
