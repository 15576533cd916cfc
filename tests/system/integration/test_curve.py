"""CURVE and the ZAP allow-list, end to end: real broker and actor processes, real key files.

Rogue clients connect from their own loopback source addresses (127.0.0.2: no key, 127.0.0.3: a key
not on the allow-list), so the broker's log lines can be told apart by address.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import zmq

import actors
from actors import ClientCurve, Key, encode_header, encode_key, encode_payload
from actors.testing import ActorProcess, BrokerProcess, eventually, free_tcp_port, wait_for_line
from broker import encode_message

NO_KEY_HOST, UNLISTED_HOST = "127.0.0.2", "127.0.0.3"
LEGIT_MESSAGES = 200


def tickbus(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tickbus", *args], check=False, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """broker, alice (allow-listed) and mallory (not) key pairs made by `tickbus keys generate`."""
    made: dict[str, Path] = {}
    for name in ("broker", "alice", "mallory"):
        result = tickbus("keys", "generate", name, "--dir", str(tmp_path / "keys"))
        assert result.returncode == 0, result.stderr
        public, secret = result.stdout.split()
        made[name], made[f"{name}_secret"] = Path(public), Path(secret)
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    shutil.copy(made["alice"], allowed)
    made["allowed"] = allowed
    return made


@pytest.fixture
def curve_broker(keys: dict[str, Path]) -> Any:
    curve = ["--curve-secret", str(keys["broker_secret"]), "--allow-dir", str(keys["allowed"])]
    with BrokerProcess.start(extra_args=curve) as broker:
        yield broker


def from_host(host: str, endpoint: str) -> str:
    """``endpoint`` dialled from the local source address ``host``."""
    return f"tcp://{host}:0;{endpoint.removeprefix('tcp://')}"


def raw_publisher(ctx: zmq.Context[Any], endpoint: str, curve: ClientCurve | None) -> zmq.Socket[bytes]:
    """A bare PUB socket: it sends whatever it has, subscribed or not, once connected."""
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    if curve is not None:
        curve.apply(sock)
    sock.connect(endpoint)
    return sock


async def test_clients_without_a_listed_key_receive_nothing_deliver_nothing_and_are_logged(
    keys: dict[str, Path], curve_broker: BrokerProcess
) -> None:
    fe, be = curve_broker.frontend, curve_broker.backend
    alice = ClientCurve.from_files(keys["broker"], keys["alice_secret"])
    mallory = ClientCurve.from_files(keys["broker"], keys["mallory_secret"])
    sub = await actors.connect(fe, be, name="legit-sub", curve=alice)
    pub = await actors.connect(fe, be, name="legit-pub", curve=alice)
    rogues = [
        await actors.connect(from_host(NO_KEY_HOST, fe), from_host(NO_KEY_HOST, be), name="nokey", wait=None),
        await actors.connect(
            from_host(UNLISTED_HOST, fe),
            from_host(UNLISTED_HOST, be),
            name="unlisted",
            wait=None,
            curve=mallory,
        ),
    ]
    ctx: zmq.Context[Any] = zmq.Context()
    raw = [
        raw_publisher(ctx, from_host(NO_KEY_HOST, fe), None),
        raw_publisher(ctx, from_host(UNLISTED_HOST, fe), mallory),
    ]
    legit: list[Any] = []
    rogue_seen: list[Any] = []
    stats: list[dict[str, Any]] = []
    stolen: list[list[Any]] = [[] for _ in rogues]
    sent_by_rogues = 0

    async def rogue_traffic() -> None:
        nonlocal sent_by_rogues
        header = encode_header("rogue@x:1:0", 1, 0, 0)
        while True:
            for rogue in rogues:
                rogue.publish(Key("rogue", rogue.name), "forged")
            for sock in raw:
                sock.send(encode_message(encode_key(("rogue", "raw")), header, encode_payload("forged")))
            sent_by_rogues += len(rogues) + len(raw)
            await asyncio.sleep(0.01)

    knockers: list[zmq.Socket[bytes]] = []

    async def knock() -> None:
        # libzmq gives up on a connection whose handshake was refused (mechanism mismatch, ZAP
        # denial): a CI run saw three attempts from the keyless host in 45 s, each closed before
        # the broker's monitor read its address. A new socket is a new attempt, and a new chance.
        while True:
            for host, curve in ((NO_KEY_HOST, None), (UNLISTED_HOST, mallory)):
                knockers.append(raw_publisher(ctx, from_host(host, fe), curve))
            while len(knockers) > 8:
                knockers.pop(0).close(linger=0)
            await asyncio.sleep(0.5)

    try:
        actors.Subscriber(sub, "s").add_sync_listener(Key("legit", "*"), lambda k, p: legit.append(p))
        actors.Subscriber(sub, "r").add_sync_listener(Key("rogue", "*"), lambda k, p: rogue_seen.append(p))
        actors.Subscriber(sub, "b").add_sync_listener(Key("$broker", "stats"), lambda k, p: stats.append(p))
        for rogue, box in zip(rogues, stolen, strict=True):
            actors.Subscriber(rogue, "steal").add_sync_listener(
                Key("legit", "*"), lambda k, p, b=box: b.append(p)
            )
        await sub.sync()
        traffic = asyncio.create_task(rogue_traffic())
        knocking = asyncio.create_task(knock())
        try:
            log = curve_broker.log

            def refusal_lines(host: str) -> list[str]:
                # the host is named as the peer, or, when libzmq closed the connection before its
                # address was read, among the kernel's closing connections ("one of ...")
                return [line for line in log().splitlines() if "refused peer" in line and host in line]

            try:
                await eventually(
                    lambda: bool(refusal_lines(UNLISTED_HOST)) and bool(refusal_lines(NO_KEY_HOST)),
                    45,  # a fresh rogue knocks every 0.5 s
                    "the broker logged both rogue hosts' refusals naming them",
                )
            except TimeoutError:
                print("\n".join(line for line in log().splitlines() if "refused" in line))
                raise
            await pub.wait_for_subscribers(("legit", "x"))
            for n in range(LEGIT_MESSAGES):
                pub.publish(Key("legit", "x"), n)
            await eventually(lambda: len(legit) == LEGIT_MESSAGES, 10, "every legit message arrived")
            await eventually(
                lambda: bool(stats) and stats[-1]["refused"] >= 4, 10, "refusals in broker stats"
            )
        finally:
            traffic.cancel()
            knocking.cancel()
            await asyncio.gather(traffic, knocking, return_exceptions=True)
        await sub.sync()  # anything the rogues got through would be here by now
        assert legit == list(range(LEGIT_MESSAGES)), "the legitimate path works under CURVE"
        assert sent_by_rogues > 100 and rogue_seen == [], "nothing from a rogue publisher arrived"
        assert stolen == [[], []], "no rogue subscriber received anything"
        assert not any(r.connected for r in rogues)
        assert all(r.statistics().received == 0 for r in rogues)
        text = log()
        print("\n".join(line for line in text.splitlines() if "refused" in line))
        assert f"its CURVE key {mallory.public_key.decode()} is not on the allow-list" in text
        assert any("no CURVE" in line for line in refusal_lines(NO_KEY_HOST))
        assert sub.statistics().gaps == 0
    finally:
        for sock in (*raw, *knockers):
            sock.close(linger=0)
        ctx.term()
        for hub in (sub, pub, *rogues):
            await hub.close()


async def test_a_client_key_added_to_the_allow_list_is_admitted_without_a_restart(
    keys: dict[str, Path], curve_broker: BrokerProcess
) -> None:
    mallory = ClientCurve.from_files(keys["broker"], keys["mallory_secret"])
    fe, be = curve_broker.frontend, curve_broker.backend
    refused = await actors.connect(fe, be, name="early", wait=None, curve=mallory)
    try:
        await eventually(lambda: "is not on the allow-list" in curve_broker.log(), 10, "mallory refused")
        assert not refused.connected
    finally:
        await refused.close()  # libzmq treats a ZAP refusal as final: that socket never retries
    shutil.copy(keys["mallory"], keys["allowed"])
    admitted = await actors.connect(fe, be, name="late", wait=10, curve=mallory)
    try:
        assert admitted.connected
        # the broker's log line may trail the handshake it describes
        await eventually(lambda: "reloaded: 2 client key(s)" in curve_broker.log(), 5, "the reload logged")
    finally:
        await admitted.close()


async def test_actors_run_with_keys_from_the_environment_end_to_end(
    keys: dict[str, Path], curve_broker: BrokerProcess
) -> None:
    env = {"TICKBUS_CURVE_SERVERKEY": str(keys["broker"]), "TICKBUS_CURVE_SECRET": str(keys["alice_secret"])}
    group = '[group]\nname = "echoes"\n\n[[actor]]\nclass = "tests.system.integration.sample_actors:Echo"\n'
    echo = ActorProcess.launch(curve_broker, config_toml=group, name="echoes", env=env)
    alice = ClientCurve.from_files(keys["broker"], keys["alice_secret"])
    hub = await actors.connect(curve_broker.frontend, curve_broker.backend, name="client", curve=alice)
    try:
        sub = actors.Subscriber(hub, "s")
        sub.subscribe(Key("pong", "*"))
        await hub.sync()
        await hub.wait_for_subscribers(("ping", "a"))
        for n in range(20):
            hub.publish(Key("ping", "a"), n)
        got = [await asyncio.wait_for(sub.consume(), 10) for _ in range(20)]
        assert got == [(("pong", "a"), n) for n in range(20)]
    finally:
        await hub.close()
        assert echo.close() == 0


async def test_snapshots_and_request_reply_work_over_curve(keys: dict[str, Path]) -> None:
    curve = ["--curve-secret", str(keys["broker_secret"]), "--allow-dir", str(keys["allowed"])]
    env = {"TICKBUS_CURVE_SERVERKEY": str(keys["broker"]), "TICKBUS_CURVE_SECRET": str(keys["alice_secret"])}
    alice = ClientCurve.from_files(keys["broker"], keys["alice_secret"])
    with BrokerProcess.start(extra_args=[*curve, "--lvc", "price.*"]) as broker:
        pricer = ActorProcess.launch(
            broker, "tests.system.integration.ask_actors:Pricer", name="pricing", env=env
        )
        hub = await actors.connect(broker.frontend, broker.backend, name="asker", curve=alice)
        try:
            answer = await actors.ask(hub, ("svc", "price"), {"qty": 4, "n": 1}, timeout=10)
            assert answer["px"] == 6.0 and answer["pid"] == pricer.proc.pid
            publisher = await actors.connect(broker.frontend, broker.backend, name="prices", curve=alice)
            try:
                await publisher.wait_for_subscribers(("price", "x"))  # the broker's cache subscribes
                publisher.publish(Key("price", "x"), 101.5)
                for _ in range(200):  # the cache thread takes it off the backend: a moment later
                    cached = await hub.snapshot(("price", "*"), timeout=10)
                    if cached:
                        break
                    await asyncio.sleep(0.05)
            finally:
                await publisher.close()
            assert [m[1] for m in cached] == [101.5]
        finally:
            await hub.close()
            assert pricer.close() == 0


async def test_ipc_endpoints_are_curve_too_and_name_a_refused_local_peer_by_pid(
    keys: dict[str, Path],
) -> None:
    curve = ["--curve-secret", str(keys["broker_secret"]), "--allow-dir", str(keys["allowed"])]
    alice = ClientCurve.from_files(keys["broker"], keys["alice_secret"])
    wrong_server = ClientCurve.from_files(keys["mallory"], keys["alice_secret"])  # alice, misconfigured
    with BrokerProcess.start(transport="ipc", extra_args=curve) as broker:
        good = await actors.connect(broker.frontend, broker.backend, name="good", curve=alice)
        lost = await actors.connect(
            broker.frontend, broker.backend, name="lost", wait=None, curve=wrong_server
        )
        try:
            got: list[Any] = []
            actors.Subscriber(good, "s").add_sync_listener(Key("t", "*"), lambda k, p: got.append(p))
            await good.sync()
            await good.wait_for_subscribers(("t", "x"))
            good.publish(Key("t", "x"), 1)
            await eventually(lambda: got == [1], 10, "delivery over ipc with CURVE")
            await eventually(
                lambda: f"refused peer ipc pid {os.getpid()} " in broker.log(),
                10,
                "the wrong-server-key peer refused",
            )
            assert not lost.connected and lost.statistics().received == 0
        finally:
            await good.close()
            await lost.close()


def test_the_unkeyed_actor_group_is_refused_and_says_which_keys_to_check(
    keys: dict[str, Path], curve_broker: BrokerProcess
) -> None:
    group = '[group]\nname = "plain"\n\n[[actor]]\nclass = "tests.system.integration.sample_actors:Echo"\n'
    # the runner gives up after its 10 s connect timeout, with the reason as its last line
    with pytest.raises(actors.TickbusError, match=r"refused this hub's handshake \(no CURVE key\)"):
        ActorProcess.launch(curve_broker, config_toml=group, name="plain", timeout=30)
    refusals = [line for line in curve_broker.log().splitlines() if "refused peer" in line]
    assert refusals and "no CURVE" in refusals[0], refusals


@pytest.mark.parametrize("host", ["0.0.0.0", "*"])
def test_a_non_loopback_endpoint_without_curve_refuses_to_start_unless_insecure(host: str) -> None:
    frontend = f"tcp://{host}:{free_tcp_port()}"
    args = [
        sys.executable,
        "-m",
        "tickbus",
        "broker",
        "--frontend",
        frontend,
        "--backend",
        f"tcp://127.0.0.1:{free_tcp_port()}",
    ]
    refused = subprocess.run(args, check=False, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"broker frontend endpoint {frontend!r} is reachable from other hosts but CURVE is off; give "
        "--curve-secret FILE --allow-dir DIR (see `tickbus keys`), bind to 127.0.0.1, or pass --insecure "
        "to accept unauthenticated, unencrypted peers"
    ]
    proc = subprocess.Popen([*args, "--insecure"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for_line(proc, "tickbus broker ready", 20).startswith(
            "tickbus broker ready frontend=tcp://"
        )
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        proc.communicate()


def test_bad_curve_options_stop_the_broker_with_one_line_naming_the_fix(keys: dict[str, Path]) -> None:
    port = free_tcp_port()
    base = [sys.executable, "-m", "tickbus", "broker", "--frontend", f"tcp://127.0.0.1:{port}"]
    base += ["--backend", f"tcp://127.0.0.1:{free_tcp_port()}"]
    cases = {
        ("--curve-secret", str(keys["broker"]), "--allow-dir", str(keys["allowed"])): "holds no secret key",
        ("--curve-secret", str(keys["broker_secret"])): "curve_secret is set but allow_dir is not",
        ("--curve-secret", str(keys["broker_secret"]), "--allow-dir", "/nonexistent"): "does not exist",
        ("--curve-secret", "/nonexistent.key_secret", "--allow-dir", str(keys["allowed"])): "no such file",
    }
    for extra, expected in cases.items():
        result = subprocess.run([*base, *extra], check=False, capture_output=True, text=True, timeout=30)
        assert result.returncode == 2, (extra, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (extra, result.stderr)


def test_keys_generate_writes_an_owner_only_secret_and_never_overwrites(tmp_path: Path) -> None:
    result = tickbus("keys", "generate", "host-b", "--dir", str(tmp_path / "k"))
    assert result.returncode == 0, result.stderr
    public, secret = (Path(p) for p in result.stdout.split())
    assert (public.name, secret.name) == ("host-b.key", "host-b.key_secret")
    assert secret.stat().st_mode & 0o777 == 0o600 and (tmp_path / "k").stat().st_mode & 0o777 == 0o700
    shown = tickbus("keys", "show", str(public)).stdout.strip()
    assert len(shown) == 40 and shown == tickbus("keys", "show", str(secret)).stdout.strip()
    before = secret.read_bytes()
    again = tickbus("keys", "generate", "host-b", "--dir", str(tmp_path / "k"))
    assert again.returncode == 2 and "already exists" in again.stderr
    assert secret.read_bytes() == before
    bad = tickbus("keys", "generate", "../escape", "--dir", str(tmp_path / "k"))
    assert bad.returncode == 2 and "is not allowed" in bad.stderr
