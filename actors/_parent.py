"""End a ``tickbus`` process when the process that launched it is gone (``TICKBUS_PARENT_FD``).

Both ends of the link: :class:`actors.testing.BrokerProcess` and
:class:`~actors.testing.ActorProcess` start their child with :func:`spawn_linked`, which hands it
the read end of a pipe (its number in ``$TICKBUS_PARENT_FD``) and keeps the write end; the
``tickbus`` command calls :func:`watch_parent`. Every descriptor of a process closes when it dies,
however it dies, so the child reads end-of-file once the launcher is gone: a test run killed by a
signal (a libzmq assertion, the CI's timeout) no longer leaves its brokers and actor groups
running, bound to their ports. The child then sends itself
SIGTERM, so it stops as it would under systemd: drained, its exporters flushed.

A pipe rather than ``PR_SET_PDEATHSIG``: the kernel sends that signal when the *thread* that forked
the child ends, so a broker launched from a worker thread would be stopped with the thread.

Nothing is watched without the variable (systemd units, a shell). The variable is removed from
the environment, so the process's own children (Austin samplers) do not inherit it.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import threading
from typing import IO

from loguru import logger

ENV = "TICKBUS_PARENT_FD"


def spawn_linked(args: list[str], env: dict[str, str], log: IO[str]) -> tuple[subprocess.Popen[str], int]:
    """Start ``args`` (stdout a pipe, stderr to ``log``) with a pipe whose end-of-file tells the child
    this process is gone.

    Returns the process and the pipe's write end, which this process keeps open until the child
    has exited: if this process dies first (a test run killed by a signal), the kernel closes it and
    the child stops itself instead of running on, orphaned, on its ports.
    """
    read_end, write_end = os.pipe()  # neither inheritable: the child gets the read end alone
    try:
        proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**env, ENV: str(read_end)},
            pass_fds=(read_end,),
        )
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    return proc, write_end


def watch_parent() -> threading.Thread | None:
    """If ``$TICKBUS_PARENT_FD`` names a pipe, SIGTERM this process once its write end is closed.

    Returns the watching thread (a daemon), or None when there is nothing to watch.
    """
    value = os.environ.pop(ENV, None)
    if value is None:
        return None
    try:
        fd = int(value)
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            raise ValueError("not a pipe")
    except (ValueError, OSError) as exc:
        logger.warning("{}={!r} is not an open pipe ({}): the launcher is not watched", ENV, value, exc)
        return None
    os.set_inheritable(fd, False)
    thread = threading.Thread(target=_wait_for_eof, args=(fd,), name="tickbus-parent-watch", daemon=True)
    thread.start()
    return thread


def _wait_for_eof(fd: int) -> None:
    try:
        while os.read(fd, 4096):  # the launcher never writes: anything read is ignored
            pass
        reason = "the process that launched this one is gone"
    except OSError as exc:  # the link itself failed: nothing left to watch it by, so stop as well
        reason = f"the pipe from the launching process failed ({exc})"
    logger.warning("{}: stopping (SIGTERM to self)", reason)
    os.kill(os.getpid(), signal.SIGTERM)
