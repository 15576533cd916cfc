"""sd_notify from tickbus processes to a real notify socket: READY, WATCHDOG fed by the event loop
itself (a blocked loop stops it), STOPPING on SIGTERM; the environment parsing without a socket."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors import ConfigError
from actors.testing import ActorProcess, BrokerProcess, free_tcp_port
from observability import SystemdNotifier, parse_notify_address, watchdog_interval
from tests.system.systemd.notify_listener import NotifyListener, service

WATCHDOG_USEC = "300000"  # 0.3 s: fed every 0.1 s


@pytest.fixture
def listener() -> Iterator[NotifyListener]:
    with tempfile.TemporaryDirectory(prefix="tickbus-notify-") as tmp:
        notify = NotifyListener(Path(tmp) / "notify.sock")
        try:
            yield notify
        finally:
            notify.close()


@pytest.fixture
def broker() -> Iterator[BrokerProcess]:
    with BrokerProcess.start() as running:
        yield running


def test_notify_address_is_a_path_or_an_abstract_name():
    assert parse_notify_address("/run/systemd/notify") == "/run/systemd/notify"
    assert (
        parse_notify_address("@/org/freedesktop/systemd1/notify/42")
        == b"\0/org/freedesktop/systemd1/notify/42"
    )
    with pytest.raises(ConfigError, match=r"NOTIFY_SOCKET = 'relative' is neither an absolute path"):
        parse_notify_address("relative")


def test_watchdog_interval_is_a_third_of_the_period_and_only_for_the_named_pid():
    assert watchdog_interval({}, 10) is None
    assert watchdog_interval({"WATCHDOG_USEC": "3000000"}, 10) == pytest.approx(1.0)
    assert watchdog_interval({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "10"}, 10) == pytest.approx(1.0)
    assert watchdog_interval({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "11"}, 10) is None
    with pytest.raises(ConfigError, match=r"WATCHDOG_USEC = '3s' is not a positive number of microseconds"):
        watchdog_interval({"WATCHDOG_USEC": "3s"}, 10)


def test_notifier_without_notify_socket_sends_nothing():
    notifier = SystemdNotifier({})
    assert not notifier.enabled
    assert notifier.ready("x") is False
    assert notifier.sent == 0


async def test_loop_feed_sends_watchdog_from_the_loop_and_stops_when_cancelled(listener):
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": WATCHDOG_USEC})
    loop = asyncio.get_running_loop()
    feeder = notifier.feed_from_loop(loop)
    try:  # receive in a thread: the loop must stay free to run the feed callback
        received = [await loop.run_in_executor(None, listener.next, 5.0) for _ in range(3)]
    finally:
        feeder.cancel()
    assert received == [{"WATCHDOG": "1"}] * 3
    sent = notifier.sent
    # three periods with the feed cancelled: nothing more may arrive (at most one already in flight)
    late = [await loop.run_in_executor(None, listener.next, 0.3) for _ in range(2)]
    assert late[-1] is None
    assert notifier.sent <= sent + 1
    notifier.close()


def _group_env(listener: NotifyListener) -> dict[str, str]:
    return {"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": WATCHDOG_USEC}


def test_tickbus_run_reports_ready_feeds_the_watchdog_and_reports_stopping(broker, listener):
    proc = ActorProcess.launch(
        broker, "tests.system.systemd.service_actors:Sink", name="sinks", env=_group_env(listener)
    )
    try:
        ready = listener.wait_for("READY")
        assert ready["STATUS"] == "group sinks running actors sink"
        for _ in range(3):
            listener.wait_for("WATCHDOG", timeout=5)
        proc.signal(signal.SIGTERM)
        stopping = listener.wait_for("STOPPING", timeout=10)
        assert stopping["STATUS"] == "group sinks draining"
        assert proc.proc.wait(20) == 0
    finally:
        proc.close()


def test_a_blocked_event_loop_stops_feeding_the_watchdog(broker, listener, tmp_path):
    block = tmp_path / "block"
    config = f'[[actor]]\nclass = "tests.system.systemd.service_actors:Sink"\n[actor.config]\nblock_file = "{block}"\n'
    proc = ActorProcess.launch(broker, name="sinks", config_toml=config, env=_group_env(listener))
    try:
        listener.wait_for("READY")
        listener.wait_for("WATCHDOG", timeout=5)
        block.write_text("1.5")  # the sink sleeps 1.5 s in a timer callback, on the loop
        before = len(listener.received)
        gaps: list[float] = []
        while not gaps or max(gaps) < 1.4:
            listener.wait_for("WATCHDOG", timeout=10)  # feeding resumes after the block
            times = [t for t, m in listener.received[before - 1 :] if m.get("WATCHDOG") == "1"]
            gaps = [b - a for a, b in itertools.pairwise(times)]
        assert not block.exists(), "the sink consumed the block file"
        assert "sink blocks its event loop for 1.5 s" in proc.log()
    finally:
        proc.close()


def test_broker_reports_ready_with_its_endpoints_feeds_the_watchdog_and_reports_stopping(listener):
    frontend, backend = f"tcp://127.0.0.1:{free_tcp_port()}", f"tcp://127.0.0.1:{free_tcp_port()}"
    argv = [sys.executable, "-m", "tickbus", "broker", "--frontend", frontend, "--backend", backend]
    with service(argv, {**os.environ, **_group_env(listener)}, "tickbus broker ready") as (proc, line):
        ready = listener.wait_for("READY")
        assert ready["STATUS"] == line == f"tickbus broker ready frontend={frontend} backend={backend}"
        for _ in range(3):
            listener.wait_for("WATCHDOG", timeout=5)
        proc.send_signal(signal.SIGTERM)
        listener.wait_for("STOPPING", timeout=10)
        assert proc.wait(20) == 0


def test_thread_feed_feeds_only_while_its_check_passes(listener):
    """The broker's feed: WATCHDOG=1 only when the check (the proxy answered) succeeds."""
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": WATCHDOG_USEC})
    healthy = threading.Event()
    feeder = notifier.feed_from_thread(healthy.is_set)
    try:
        assert listener.next(0.4) is None  # four feed intervals with a failing check: silence
        healthy.set()
        assert listener.next(5.0) == {"WATCHDOG": "1"}
    finally:
        feeder.cancel()
        notifier.close()


def test_a_notify_socket_nobody_reads_never_blocks_and_the_feed_goes_on(tmp_path):
    # PID 1 not draining its queue (daemon-reload, a busy manager): a blocking sendto stopped the
    # event loop that feeds the watchdog, for as long as systemd did not read
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as stalled:
        stalled.bind(str(path))
        notifier = SystemdNotifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": WATCHDOG_USEC})
        done = threading.Event()

        def flood() -> None:
            for _ in range(10_000):  # far past what a datagram queue holds
                notifier.watchdog()
            done.set()

        threading.Thread(target=flood, daemon=True).start()
        assert done.wait(30), f"sd_notify blocked after {notifier.sent} notifications"
        assert notifier.skipped > 0 and notifier.enabled
        assert notifier.sent + notifier.skipped == 10_000
        while True:  # systemd reads again: the next notification goes
            stalled.setblocking(False)
            try:
                stalled.recv(4096)
            except BlockingIOError:
                break
        assert notifier.ready("back")
        notifier.close()
