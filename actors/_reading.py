"""A broker-connected hub's reader: what it takes off its receiving sockets, and when.

``loop.add_reader`` on each SUB socket's file descriptor drains it with non-blocking reads (ZeroMQ's
descriptor is edge-triggered) for at most :data:`_SLICE_S` seconds per callback, so timers and other
callbacks get their turn during a burst; each frame goes to :class:`actors._inbound.Inbound`, the
socket-free protocol step that decodes, checks, sequence-tracks and routes it. A consumer whose
queue is full holds the reader (:meth:`HubReader.hold`); a hub held, or behind a flood, for too long
discards what waited (:meth:`HubReader._skim`, :mod:`actors._skim`).
"""

from __future__ import annotations

import asyncio
import time

import zmq

from ._connections import BrokerConnections
from ._inbound import MessageCut
from ._liveness import HEARTBEAT_PREFIX, HubWatch
from ._redundancy import RedundantTracker
from ._skim import Latest, discard

_SLICE_S = 0.001  # seconds of reading (and inline handling) per reader callback before yielding
_CHUNK = 32  # messages between two looks at the clock
_REST_FRAMES = 1_000  # frames of a multi-frame message read per reader callback (~1 ms): see _skip_cut
_perf = time.perf_counter
# the reader looks at its sockets' connection events first when it has not run for this long (held,
# stalled, idle): a connection may have been lost and remade meanwhile (see _renew_sub)
_LOOK_AFTER_S = 0.02
# A skim (HubReader._skim) discards at most this many queues' worth of frames (hwm each: the hub's,
# the broker's, and the kernel's buffers between), and stops at a frame that waited less than this
# share of the time that set it off.
_SKIM_QUEUES = 4
_SKIM_FRESH = 0.25
# The newest frame of each key a skim takes is delivered after it (actors._skim.Latest): at most
# this many keys and bytes of frames per receiving socket; past them, further keys' go.
_KEEP_KEYS = 10_000
_KEEP_BYTES = 8 * 1024 * 1024


class HubReader(BrokerConnections):
    """The reading side of :class:`actors.RemoteHub` (see the module's docstring)."""

    holds = 0
    """Times reading stopped because a consumer's queue was full (see :meth:`hold`)."""
    skimmed = 0
    """Frames (one a message, from tickbus peers) discarded unread from the hub's queues while
    reading was held for long, or fell behind a flood (see :meth:`_skim`); counted as gaps too, as
    their publishers are heard again."""
    _watch: HubWatch
    _held: set[object]
    _expiry: asyncio.TimerHandle | None
    _skip_soon: asyncio.Handle | None

    def _init_reading(self, ivl: float, timeout: float, max_lag: float | None) -> None:
        """The reader's state; ``ivl`` and ``timeout``: the ZMTP heartbeat's (seconds); ``max_lag``:
        :func:`actors.connect`'s (None: the skim's own delay)."""
        self._skimming: asyncio.TimerHandle | asyncio.Handle | None = None  # held or behind (_skim)
        self._behind_since: float | None = None  # the reader last left messages waiting since (_behind)
        self._discarding = False  # a skim runs because the reader fell behind: it reads nothing meanwhile
        # half the heartbeat's timeout (ZeroMQ's is the interval when 0); no heartbeat, no skim
        beat = timeout if timeout > 0 else ivl
        self._skim_after = max(_LOOK_AFTER_S, beat / 2) if beat > 0 else None
        self._skim_left: list[int] = []  # frames the running skim may still discard, per socket
        # per socket, the newest frame of each key the running skim took: delivered after it
        self._latest = [Latest(_KEEP_KEYS, _KEEP_BYTES, HEARTBEAT_PREFIX) for _ in self._subs]
        self._read_at = 0.0  # when the reader last looked at the clock (_perf)
        # behind this long, and handing out messages this old, a reader discards (_behind)
        self._max_lag = max_lag if max_lag is not None else self._skim_after

    def _on_sub_readable(self) -> None:
        # One frame per message (format 2): a plain recv returns bytes, ~0.2 us a message. The
        # callback reads, and routes (sync handlers run inline), for at most _SLICE_S seconds, then
        # yields to the loop's other callbacks: a burst never starves timers or other actors, and
        # what this process cannot take waits in ZeroMQ's queues (or is dropped there, counted as
        # gaps by the sequence numbers) instead of being decoded to be dropped.
        now = self._reading_starts()
        if now is None:
            return
        read = self._inbound.read
        receive = self._receivers[0]
        end = now + _SLICE_S
        while not self._held:
            try:
                if read(receive, zmq.Again, _CHUNK) < _CHUNK:
                    self._read_at = _perf()
                    self._behind_since = None  # caught up
                    return
            except MessageCut:  # its other frames in the next callbacks, the loop's others between
                self._resume_skip()
                return
            if self._read_on(end):
                break
        self._behind()
        if not self._held and not self._discarding:
            self._loop.call_soon(self._on_sub_readable)  # more may be waiting: come back after others ran

    def _reading_starts(self) -> float | None:
        """The clock as a reader callback starts, or None if it must not read (closed, held, or in
        the frames of a refused message that are not all skipped yet)."""
        if self._closed or self._held or self._discarding:
            return None
        now = _perf()
        if now - self._read_at > _LOOK_AFTER_S:  # held, stalled or idle since: see _renew_sub
            self._look_at_connections()
        self._read_at = now
        if self._cut is not None and not self._skip_cut():
            return None
        return now

    def _read_on(self, end: float) -> bool:
        """After a chunk: True if the reader callback is out of time (a backlog), else it reads on."""
        now, last = _perf(), self._read_at
        self._read_at = now
        if now < end:
            return False
        self._watch.backlog_at = time.monotonic()  # out of time with messages waiting: a backlog
        if now - last > _LOOK_AFTER_S:  # a handler held this chunk up: look first next time
            self._read_at = 0.0
        return True

    def _on_subs_readable(self) -> None:
        # _on_sub_readable for several brokers: each broker's socket in turn, a chunk at a time,
        # the tracker told which broker each frame came from (actors._redundancy).
        now = self._reading_starts()
        if now is None:
            return
        # Inbound.read_copies: the common shapes inline (the next copy from this broker, delivered
        # or counted redundant), anything else through Inbound.handle, the tracker seeing every copy
        read = self._inbound.read_copies
        tracker: RedundantTracker = self._inbound.tracker  # type: ignore[assignment]
        end = now + _SLICE_S
        while not self._held:
            idle, cut = True, False
            try:
                for index, receive in enumerate(self._receivers):
                    tracker.source = index
                    if read(receive, zmq.Again, _CHUNK):
                        idle = False
            except MessageCut:  # as in _on_sub_readable
                cut = True
            if tracker.held:
                self._release()
            if cut:
                self._resume_skip()
                return
            if idle:
                self._read_at = _perf()
                self._behind_since = None  # caught up
                return
            if self._read_on(end):
                break
        self._behind()
        if not self._held and not self._discarding:
            self._loop.call_soon(self._on_sub_readable)

    def _behind(self) -> None:
        """The reader left messages waiting (out of time, or held by a full mailbox).

        Behind for longer than ``max_lag`` without once finding its queues empty, and
        handing its handlers messages that waited longer than that (the lag the sweep measured),
        the hub discards what waits in its queues (:meth:`_skim`): a reader slower than a flood
        otherwise hands its handlers ever older messages (seconds old within seconds), and loses
        its connection when ZeroMQ's heartbeat answers, queued behind the flood, come too late.
        Both are needed: a peer stamping its messages old cannot make a hub that keeps up discard,
        and a burst the reader drains in time loses nothing.
        """
        now, since, after = _perf(), self._behind_since, self._max_lag
        if since is None:
            self._behind_since = now
        elif (
            after is not None
            and now - since > after
            and self._watch.lag.lag > after
            and not (self._held or self._skimming is not None or self._closed)
        ):
            self._behind_since = None
            self._discarding = True
            self._skimming = self._loop.call_soon(self._skim, True)

    def _release(self) -> None:
        """Deliver the held frames whose turn came; wake up again when the oldest hold's window ends."""
        tracker: RedundantTracker = self._inbound.tracker  # type: ignore[assignment]
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        inbound = self._inbound
        for source, frame in tracker.take_ready(time.monotonic()):
            tracker.source, tracker.releasing = source, True
            inbound.received -= 1  # counted when it arrived
            try:
                inbound.handle(frame)
            finally:
                tracker.releasing = False
        deadline = tracker.next_deadline()
        if deadline is not None and not self._closed:
            self._expiry = self._loop.call_later(max(0.0, deadline - time.monotonic()), self._release)

    def hold(self, consumer: object) -> None:
        """Stop reading the bus while ``consumer``'s queue is full (ZeroMQ's queues hold or drop
        meanwhile, and the sequence numbers count what they drop as gaps). Held for longer than
        half the heartbeat's timeout, the hub discards what waits in its queues (:meth:`_skim`)."""
        if consumer not in self._held:
            self._held.add(consumer)
            self.holds += 1
            self._watch.backlog_at = time.monotonic()
            if self._skimming is None and self._skim_after is not None and not self._closed:
                self._skimming = self._loop.call_later(self._skim_after, self._skim, True)

    def release(self, consumer: object) -> None:
        """Read on once no consumer's queue is full."""
        if self._held and consumer in self._held:
            self._held.discard(consumer)
            if not self._held and not self._closed:
                if self._skimming is not None:
                    self._skimming.cancel()
                    self._skimming = None
                    self._discarding = False
                    if any(self._latest):  # what a skim kept goes before anything newer is read
                        self._discarding = True
                        self._skimming = self._loop.call_soon(self._deliver_latest)
                        return
                self._loop.call_soon(self._on_sub_readable)

    def _skim(self, first: bool) -> None:
        """Discard, unread, what waits in the receiving sockets' queues: while reading is held, or
        once when the reader fell behind (:meth:`_behind`).

        A hold that outlasts the heartbeat's timeout lost the connection: ZeroMQ stops reading a
        connection whose queue is full, the broker's answers to the heartbeat wait behind the
        burst, and the heartbeat times out (a reconnection, the subscriptions sent again, the
        queue lost anyway: see :meth:`_renew_sub`). A reader slower than a flood does the same a
        little later: ZeroMQ reads the connection again only each time half the queue was taken.
        So every half timeout of a hold, or of a reader that never caught up, the frames that
        waited are discarded, up to the first that waited less than :data:`_SKIM_FRESH` of that
        (:data:`_SKIM_QUEUES` queues' worth at most, per socket; see :mod:`actors._skim`): ZeroMQ
        reads the connection again, heartbeats included, and what the handlers get next is recent.
        A slice of :data:`_SLICE_S` per callback; counted in :attr:`skimmed` (frames), and as gaps
        once their publishers are heard again. The newest frame of each key among them is kept
        and delivered once the skim is through (:meth:`_deliver_latest`), before anything newer is
        read: a key the flood does not use loses at most what it sent meanwhile, less its last.
        """
        self._skimming = None
        if not (self._held or self._discarding) or self._closed or self._skim_after is None:
            self._discarding = False
            return
        self._look_at_connections()  # not a queue whose connection was lost and made again
        left = self._skim_left
        if first:  # frames: the queues before the newest (this hub's, the broker's, the kernel's)
            left[:] = [_SKIM_QUEUES * self._sub_options[0]] * len(self._subs)
        fresh = (self._skim_after if self._held or self._max_lag is None else self._max_lag) * _SKIM_FRESH
        age_of, inbound, latest = self._watch.lag.frame_age, self._inbound, self._latest
        deadline = _perf() + _SLICE_S
        out_of_time, discarded = False, -sum(kept.superseded for kept in latest)
        for index, receive in enumerate(self._receivers):
            if not left[index]:
                continue
            if len(self._subs) > 1:
                inbound.tracker.source = index
            run = discard(
                receive,
                zmq.Again,
                left[index],
                fresh=fresh,
                age_of=age_of,
                heartbeat=HEARTBEAT_PREFIX,
                keep=inbound.handle,
                deadline=deadline,
                latest=latest[index],
            )
            # done, or empty with nothing taken: this queue is through; empty after some frames, it
            # may be refilling (ZeroMQ reads the connection again), so it is looked at once more
            left[index] = 0 if run.done or (run.empty and not run.taken) else left[index] - run.taken
            if run.taken:
                inside = not run.empty and self._subs[index].get(zmq.RCVMORE)
                self._cut = index if inside else (None if self._cut == index else self._cut)
            discarded += run.taken - run.kept - run.stored
            if not (run.done or run.empty):
                out_of_time = True
                break
        discarded += sum(kept.superseded for kept in latest)  # kept, then replaced by a newer one
        if discarded:
            self.skimmed += discarded
            self._log.log(
                "WARNING",
                "skim" if self._held else "behind",
                "hub {}: {} for over {:.1f} s: discarded what waited in its queues (counted as gaps)",
                self.name,
                "reading held by a full mailbox" if self._held else "reading behind a flood",
                self._skim_after,
            )
        if out_of_time or any(left):
            self._skimming = self._loop.call_soon(self._skim, False)
        elif any(latest):
            self._discarding = True  # nothing is read before what was kept is delivered
            self._skimming = self._loop.call_soon(self._deliver_latest)
        else:
            self._skimmed()

    def _deliver_latest(self) -> None:
        """Hand the frames a skim kept (each key's newest, :class:`actors._skim.Latest`) to the
        inbound path, in the order they came, :data:`_SLICE_S` per callback; then read on (or, held,
        skim again later). ``_skimming`` stays set meanwhile: no other skim starts."""
        if self._closed:
            return
        inbound, several = self._inbound, len(self._subs) > 1
        deadline = _perf() + _SLICE_S
        for index, kept in enumerate(self._latest):
            if several:
                inbound.tracker.source = index
            while kept:
                for frame in kept.take(_CHUNK):
                    inbound.handle(frame)
                if _perf() >= deadline and any(self._latest):
                    self._skimming = self._loop.call_soon(self._deliver_latest)
                    return
        self._skimmed()

    def _skimmed(self) -> None:
        """A skim is through: held, the next one in half the heartbeat's timeout; else read on."""
        self._discarding = False
        if self._held:
            self._skimming = self._loop.call_later(self._skim_after, self._skim, True)  # type: ignore[arg-type]
        else:  # behind: read on, from the newest
            self._skimming = None
            self._loop.call_soon(self._on_sub_readable)

    def _rest_of_message(self) -> tuple[list[bytes], bool]:
        """The remaining frames of a multi-frame message (format 1, or not tickbus): the first three
        kept, later ones as empty placeholders (the count is only described), and whether that was
        all of them. At most ``_REST_FRAMES`` are read here; past that the reader stops
        (``MessageCut``) and skips the others in its next callbacks (:meth:`_skip_cut`).
        """
        source = self._inbound.tracker.source
        sock = self._subs[source]
        rest: list[bytes] = []
        while sock.getsockopt(zmq.RCVMORE):
            if len(rest) >= _REST_FRAMES:
                self._cut = source
                return rest, False
            # a message's frames arrive together: never Again here; past the third, not copied
            if len(rest) < 3:
                rest.append(sock.recv(zmq.NOBLOCK))
            else:
                sock.recv(zmq.NOBLOCK, copy=False)
                rest.append(b"")
        return rest, True

    def _skip_cut(self) -> bool:
        """Read and discard up to ``_REST_FRAMES`` more frames of the refused message; True once it ended
        (the reader goes on), else one callback (:meth:`_resume_skip`) comes back for more."""
        sock = self._subs[self._cut]  # type: ignore[index]
        for _ in range(_REST_FRAMES):
            if not sock.getsockopt(zmq.RCVMORE):
                self._cut = None
                return True
            sock.recv(zmq.NOBLOCK, copy=False)  # dropped: never copied out of ZeroMQ's message
        self._resume_skip()
        return False

    def _resume_skip(self) -> None:
        # one pending callback at most for the rest of a cut message, whoever ran out of frames:
        # the reader also runs for the other broker's socket, which stays readable meanwhile, and
        # for the sweep, and a callback each would have made a chain each, all skipping at once
        if self._skip_soon is None:
            self._skip_soon = self._loop.call_soon(self._skip_turn)

    def _skip_turn(self) -> None:
        self._skip_soon = None
        self._on_sub_readable()
