"""Counting live peers of a socket from its monitor events, without touching the socket.

Problem: libzmq 4.3's monitor events carry a file descriptor only on ACCEPTED and DISCONNECTED; the
handshake outcome (HANDSHAKE_SUCCEEDED / HANDSHAKE_FAILED_*) carries none, and for a listening socket
the endpoint is the bind address, shared by every connection. Worse, a peer of the wrong socket type
(a DEALER dialling the XSUB) fails its handshake *silently*: ACCEPTED then DISCONNECTED, no outcome.
So ``succeeded - disconnected`` drifts, negative under garbage clients.

Approach, relying on two properties of libzmq 4.3 with one I/O thread (the broker's context):

- a HANDSHAKE_FAILED_* event is emitted in the same call as the DISCONNECTED of its connection, so
  it always comes immediately before that DISCONNECTED: the two are paired on the spot;
- a HANDSHAKE_SUCCEEDED belongs to some still-open connection whose outcome is not known yet. While
  there is no doubt (as many untied successes as such connections) they are tied; when one of those
  connections disconnects and the others cannot own every untied success, it owned one, otherwise it
  failed silently.

Limits: exact unless a silent failure overlaps a successful handshake and the successful peer then
disconnects before the silent one; the count is then one too high until the silent connection closes
(libzmq drops it after ZMQ_HANDSHAKE_IVL, 30 s by default). Inproc peers (the broker's own) are skipped.
"""

from __future__ import annotations

import zmq

_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
MONITOR_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED | _FAILED
"""The socket monitor events :class:`PeerCounter` needs."""


class PeerCounter:
    """Live, handshaken peers of one listening socket, from its monitor events (module docstring)."""

    __slots__ = ("_failing", "_open", "_untied_ok")

    def __init__(self) -> None:
        self._open: dict[int, bool] = {}  # fd -> handshaken; absent from _open until accepted
        self._untied_ok = 0  # successes not yet tied to a connection
        self._failing = False  # a failure was reported: the next DISCONNECTED is that connection's

    def on_event(self, event: int, value: int, endpoint: str) -> None:
        """Count one monitor event (``value`` is the fd for ACCEPTED and DISCONNECTED)."""
        if endpoint.startswith("inproc://"):
            return
        if event == zmq.EVENT_ACCEPTED:
            self._open[value] = False
            self._tie()
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._untied_ok += 1
            self._tie()
        elif event & _FAILED:
            self._failing = True
        elif event == zmq.EVENT_DISCONNECTED:
            self._close(value)

    @property
    def count(self) -> int:
        """Peers that completed a handshake and have not disconnected."""
        return sum(self._open.values()) + self._untied_ok

    def _pending(self) -> list[int]:
        return [fd for fd, handshaken in self._open.items() if not handshaken]

    def _close(self, fd: int) -> None:
        failing, self._failing = self._failing, False
        handshaken = self._open.pop(fd, None)
        if handshaken is None or handshaken or failing:
            return
        # an open connection without a known outcome: did it own one of the untied successes?
        if self._untied_ok > len(self._pending()):
            self._untied_ok -= 1
        self._tie()

    def _tie(self) -> None:
        pending = self._pending()
        if self._untied_ok >= len(pending):  # no doubt left: every pending connection succeeded
            for fd in pending:
                self._open[fd] = True
            self._untied_ok = 0
