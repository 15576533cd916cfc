"""A broker pair while the resolver does not answer: the broker named by a host name that cannot be
resolved must not take the other broker's traffic with it.

libzmq resolves a host name on every (re)connect, blocking, in the I/O thread of the connection. A
hub's two brokers shared one I/O thread: broker A gone (its name now unresolvable) and DNS not
answering, which one outage often brings together, held the connection to broker B as well, for as
long as each lookup waited, again at every reconnect: measured, nothing through B in 40 s. The hub
runs in a mount namespace of its own whose resolver is a UDP socket that never answers."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import actors
from actors.testing import BrokerProcess

RESOLVER = ("127.0.0.153", 53)
UNRESOLVABLE = "broker-a.tickbus-test.invalid"


@pytest.fixture
def silent_resolver(tmp_path: Path) -> Iterator[list[str]]:
    """The command prefix that runs a program with a resolver that never answers (30 s a lookup)."""
    if os.geteuid() != 0:
        pytest.skip("a mount namespace with its own resolv.conf, and port 53, need root")
    if shutil.which("unshare") is None:
        pytest.skip("no unshare on this machine (util-linux)")
    resolver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        resolver.bind(RESOLVER)  # queries queue here unread: no answer, no ICMP refusal either
    except OSError as exc:
        resolver.close()
        pytest.skip(f"cannot bind the silent resolver at {RESOLVER}: {exc}")
    (tmp_path / "resolv.conf").write_text(f"nameserver {RESOLVER[0]}\noptions timeout:30 attempts:1\n")
    (tmp_path / "nsswitch.conf").write_text("hosts: files dns\n")
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        resolver.close()
        pytest.skip(f"this machine cannot make a mount namespace: {probe.stderr.decode().strip()}")
    mounts = " && ".join(
        f"mount --bind {tmp_path / name} /etc/{name}" for name in ("resolv.conf", "nsswitch.conf")
    )
    try:
        yield ["unshare", "-m", "--propagation", "private", "sh", "-c", f'{mounts} && exec "$@"', "sh"]
    finally:
        resolver.close()


async def test_a_broker_whose_name_does_not_resolve_leaves_the_other_brokers_traffic_alone(
    silent_resolver: list[str],
) -> None:
    with BrokerProcess.start() as broker_a, BrokerProcess.start() as broker_b:
        named = [endpoint.replace("127.0.0.1", UNRESOLVABLE) for endpoint in (broker_a.frontend, broker_a.backend)]
        victim = subprocess.Popen(  # noqa: ASYNC220 -- its lines are read in a thread
            [
                *silent_resolver,
                sys.executable,
                "-m",
                "tests.system.integration.pair_victim",
                named[0],
                named[1],
                broker_b.frontend,
                broker_b.backend,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        publisher = await actors.connect(broker_b.frontend, broker_b.backend, name="publisher-b")
        try:
            assert victim.stdout is not None
            assert await _line(victim) == "ready"
            # a 30 s lookup for broker A holds the shared I/O thread: B's handshake and the
            # subscription wait with it (before: nothing in 40 s); now both within moments
            await publisher.wait_for_subscribers(("t", "x"), timeout=20)
            for i in range(100):
                publisher.publish(actors.Key("t", "x"), i)
            while (line := await _line(victim)) != "received 100":
                assert line.startswith("received "), f"the victim hub said {line!r} (exit {victim.poll()})"
        finally:
            await publisher.close()
            victim.kill()
            victim.wait(10)


async def _line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return (await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)).strip()
