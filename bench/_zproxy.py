"""The raw-zmq baseline's server: libzmq's proxy, ``python -m bench._zproxy FRONTEND BACKEND``.

Binds an XSUB socket (publishers connect) and an XPUB socket (subscribers connect), prints
``ready`` and forwards in C with ``zmq.proxy`` until terminated.
High-water marks are 100,000, as in tickbus's broker.
"""

from __future__ import annotations

import signal
import sys

import zmq

from ._procs import die_with_parent


def main(argv: list[str]) -> None:
    """Run the proxy until a signal ends the process."""
    frontend, backend = argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the harness ends us with SIGTERM
    die_with_parent()
    ctx = zmq.Context()
    xsub = ctx.socket(zmq.XSUB)
    xsub.setsockopt(zmq.RCVHWM, 100_000)
    xsub.setsockopt(zmq.SNDHWM, 100_000)
    xsub.bind(frontend)
    xpub = ctx.socket(zmq.XPUB)
    xpub.setsockopt(zmq.SNDHWM, 100_000)
    xpub.setsockopt(zmq.RCVHWM, 100_000)
    xpub.bind(backend)
    print("ready", flush=True)
    zmq.proxy(xsub, xpub)


if __name__ == "__main__":
    main(sys.argv[1:])
