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

The newest of each key is kept (:class:`Latest`): of the frames a skim takes, the last of each key
(and each publisher's last heartbeat) is delivered once the skim is through, in the order those
came, and the others are discarded. So a flood costs a quiet key at most the messages it sent
while the flood's were discarded, less one: a rare message (an order's answer, a risk limit's
change) on a key the flood does not use is handled, not lost with the flood's; a flood over many
keys leaves each key's newest value, as a conflating market-data feed would. Bounded in frames and
bytes: past either, frames of keys not kept yet are discarded (and heartbeats handled at once, as
without it).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import NamedTuple

from broker import FIXED, KEY_END

_perf = time.perf_counter
_monotonic_ns = time.monotonic_ns
_time_ns = time.time_ns
_FIXED_SIZE = FIXED.size


class Latest:
    """The newest frame of each key among those added, in the order those came, and of each
    publisher's heartbeats (frames whose key starts with ``heartbeat``): at most ``max_frames``
    frames and ``max_bytes`` bytes (their lengths). Socket-free.

    By key, not by (key, publisher): a second publisher on a key (a redundant feed) takes the
    first's place, and the first's stream shows a gap; keyed by both, a kept frame cost ~0.2 us
    more (a tuple of two slices to build and hash). Heartbeats by publisher: two hubs may share a
    name, hence a heartbeat key, and each must keep being heard through a flood.

    A run of frames of one key (a flood on one key, or a burst) takes the fast way: each only
    replaces the run's newest (a prefix check, ~0.5 us a frame less than the table's pop and set);
    the run's newest goes into the table when another key's frame comes, or anything is read."""

    def __init__(self, max_frames: int, max_bytes: int, heartbeat: bytes) -> None:
        self._max_frames, self._max_bytes = max_frames, max_bytes
        self._heartbeat = heartbeat
        self._frames: dict[bytes, bytes] = {}
        self._bytes = 0
        self._run_key = b""  # the key (with its key end) of the last frame kept, if not a heartbeat
        self._run: bytes | None = None  # that key's newest since, not in the table yet
        self._superseded = 0

    @property
    def superseded(self) -> int:
        """Frames counted as kept that were not: a newer one of their key (or their publisher's
        heartbeat) came, or, the newest of a run, the bounds were reached when the run ended.
        Read, it ends the run: the run's first frame, still in the table, is superseded only then."""
        self._end_run()
        return self._superseded

    def __len__(self) -> int:
        self._end_run()
        return len(self._frames)

    @property
    def size(self) -> int:
        """The kept frames' lengths, summed."""
        self._end_run()
        return self._bytes

    def add(self, frame: bytes) -> bool:
        """Keep ``frame`` as its key's newest, in place of the one kept before (moved to the end);
        False when it is not kept: not a frame of this format's shape (no key end, a short header),
        or a new key past the bounds."""
        if self._run_key and frame.startswith(self._run_key):  # the run goes on
            if self._run is not None:
                self._superseded += 1
            self._run = frame
            return True
        self._end_run()
        end = frame.find(KEY_END)
        start = end + 1 + _FIXED_SIZE
        if end <= 0 or len(frame) < start:
            return False
        stream = frame[:end]
        beat = frame.startswith(self._heartbeat)
        if beat:  # each publisher's heartbeats: a stream of their own
            # the key end between: a key has none, so no two (key, publisher) pairs make one stream
            stream = frame[: end + 1] + frame[start : start + frame[end + 3]]  # the id's length at end + 3
        if not self._put(stream, frame):
            return False
        self._run_key = b"" if beat else frame[: end + 1]
        return True

    def _put(self, stream: bytes, frame: bytes) -> bool:
        """``frame`` as ``stream``'s newest, the one before it superseded; False past the bounds."""
        frames = self._frames
        old = frames.pop(stream, None)
        if old is not None:
            self._bytes -= len(old)
            self._superseded += 1
        if len(frames) >= self._max_frames or self._bytes + len(frame) > self._max_bytes:
            return False
        frames[stream] = frame
        self._bytes += len(frame)
        return True

    def _end_run(self) -> None:
        """The run's newest frame into the table, in place of its key's (the run's first)."""
        run, self._run = self._run, None
        if run is not None and not self._put(self._run_key[:-1], run):
            self._superseded += 1  # counted as kept when it came
            self._run_key = b""

    def take(self, count: int) -> list[bytes]:
        """The ``count`` oldest kept frames (all, if fewer), no longer kept."""
        self._end_run()
        self._run_key = b""
        frames = self._frames
        taken = []
        for stream in list(itertools.islice(frames, count)):
            frame = frames.pop(stream)
            self._bytes -= len(frame)
            taken.append(frame)
        return taken

    def clear(self) -> int:
        """Forget every kept frame; return how many there were."""
        self._end_run()
        self._run_key = b""
        count = len(self._frames)
        self._frames.clear()
        self._bytes = 0
        return count


class Discarded(NamedTuple):
    """What one :func:`discard` call did to one queue."""

    taken: int
    """Frames received, kept ones included."""
    kept: int
    """Heartbeats among them, handled rather than discarded."""
    stored: int
    """Frames among them kept in ``latest`` (their key's newest so far)."""
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
    latest: Latest | None = None,
) -> Discarded:
    """Take up to ``budget`` frames with ``receive()``, until one waited less than ``fresh`` seconds
    or ``time.perf_counter()`` passes ``deadline`` (looked at every 64 frames). Each is kept in
    ``latest`` as its key's newest (:meth:`Latest.add`), if given; one not kept there is discarded,
    unless a heartbeat (it starts with ``heartbeat``), which is given to ``keep``. A frame of a
    one-key flood costs ~0.25 us, ~0.36 us with ``latest`` (2 vCPUs; ~1 us before :class:`Latest`
    took a run of one key's frames the fast way)."""
    taken = kept = stored = 0
    add = latest.add if latest is not None else None
    try:
        while taken < budget:
            frame = receive()
            taken += 1
            if add is not None and add(frame):
                stored += 1
            elif frame.startswith(heartbeat):
                keep(frame)
                kept += 1
            if taken & 63 == 1:  # the first, then every 64th: how long the rest waited
                age = age_of(frame, _monotonic_ns(), _time_ns())
                if age is not None and age < fresh:
                    return Discarded(taken, kept, stored, False, True)
                if _perf() >= deadline:
                    return Discarded(taken, kept, stored, False, False)
    except empty:
        return Discarded(taken, kept, stored, True, False)
    return Discarded(taken, kept, stored, False, True)
