"""Per-identity permissions against allowed-but-misbehaving clients: a real broker process with CURVE,
an allow-list and a permissions file; raw pyzmq CURVE clients.

``rogue`` is on the allow-list with a narrow grant and tries everything it may not do, in bursts,
while ``feed`` streams to ``strategy`` and ``strategy`` asks ``risk``. Each attack must be dropped and
counted under ``rogue`` in the broker's ``('$broker', 'stats')`` messages, the broker's RSS must stay
bounded, and the legitimate stream must arrive whole and in order.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

import actors
from actors import Subscriber, ask
from actors.testing import ActorProcess, BrokerProcess, eventually
from broker import ClientCurve, decode_message, encode_header, encode_key, encode_message, encode_payload
from tests.system.chaos.chaos_actors import rss_kib

PERMISSIONS = """
[identities.feed]
publishers = ["feed@*"]
publish = ["md.*"]

[identities.strategy]
publishers = ["strategy@*"]
subscribe = ["md.*"]
ask = ["risk.check"]

[identities.risk]
publishers = ["risk@*"]
answers = ["risk.*"]

[identities.rogue]
publishers = ["rogue@*"]
publish = ["rogue.*"]
subscribe = ["rogue.*"]
answers = ["pricing.*"]

[identities.monitor]
publishers = ["monitor@*"]
subscribe = ["*"]
reserved = true
"""
NAMES = ("feed", "strategy", "risk", "rogue", "monitor")
FEED, STRATEGY, RISK, ROGUE = (f"{n}@testhost:1:0000000{i}" for i, n in enumerate(NAMES[:4]))
STATS = encode_key(("$broker", "stats"))
BURST = 5_000  # messages per attack
DISTINCT = 70_000  # distinct keys: more than the verdict cache holds (65,536)
PER_IDENTITY = 1_000  # --max-subscriptions-per-identity
LEGIT = 10_000  # messages of the legitimate stream, sent in slices between the attacks
RSS_GROWTH_LIMIT_KB = 64 * 1024
pytestmark = pytest.mark.slow


def make_keys(tmp_path: Path, names: tuple[str, ...]) -> tuple[Path, Path]:
    """``tickbus keys generate`` for the broker and ``names``; the clients' public keys allow-listed."""
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    allowed.mkdir()
    for name in ("broker", *names):
        result = subprocess.run(
            [sys.executable, "-m", "tickbus", "keys", "generate", name, "--dir", str(keys)],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if name != "broker":
            shutil.copy(result.stdout.split()[0], allowed)
    return keys, allowed


@pytest.fixture
def checked_broker(tmp_path: Path) -> Iterator[tuple[BrokerProcess, dict[str, ClientCurve]]]:
    keys, allowed = make_keys(tmp_path, NAMES)
    permissions = allowed / "permissions.toml"  # beside the keys: the allow-list reads only *.key
    permissions.write_text(PERMISSIONS)
    args = [
        "--curve-secret",
        str(keys / "broker.key_secret"),
        "--allow-dir",
        str(allowed),
        "--permissions",
        str(permissions),
        "--stats-interval",
        "0.05",
        "--max-subscriptions-per-identity",
        str(PER_IDENTITY),
    ]
    curves = {n: ClientCurve.from_files(keys / "broker.key", keys / f"{n}.key_secret") for n in NAMES}
    with BrokerProcess.start(extra_args=args) as broker:
        yield broker, curves


class Clients:
    """Raw CURVE sockets of every identity, and the statistics the broker publishes."""

    def __init__(self, broker: BrokerProcess, curves: dict[str, ClientCurve]) -> None:
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.ctx.setsockopt(zmq.LINGER, 0)
        self.broker, self.curves = broker, curves
        self.seq: dict[tuple[str, bytes], int] = {}
        self.stats: dict[str, Any] = {}
        self.seen: list[tuple[bytes, str, Any]] = []  # everything else the monitor received

    def socket(self, name: str, kind: int, endpoint: str) -> zmq.Socket[bytes]:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.SNDHWM, 0)  # the test's own sends must not drop
        sock.setsockopt(zmq.RCVHWM, 0)
        self.curves[name].apply(sock)
        sock.connect(endpoint)
        return sock

    def send(self, sock: zmq.Socket[bytes], publisher: str, key: tuple[str, ...], payload: Any) -> None:
        wire = encode_key(key)
        seq = self.seq[(publisher, wire)] = self.seq.get((publisher, wire), 0) + 1
        header = encode_header(publisher, seq, time.monotonic_ns(), time.time_ns())
        sock.send(encode_message(wire, header, encode_payload(payload)))

    def wait_for(self, sock: zmq.Socket[bytes], frame: bytes, timeout: float = 20.0) -> None:
        """Until the XPUB ``sock`` hears ``frame`` from the broker (a subscription forwarded upstream)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sock.poll(100) and sock.recv() == frame:
                return
        raise AssertionError(f"the broker never forwarded {frame!r} upstream")

    def until_stats(self, monitor: zmq.Socket[bytes], holds: Callable[[dict[str, Any]], bool]) -> None:
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            if monitor.poll(200):
                key, header, payload = decode_message(monitor.recv())
                if key != STATS:
                    self.seen.append((key, header.publisher, msgpack.unpackb(payload)))
                    continue
                self.stats = msgpack.unpackb(payload)
                if holds(self.stats):
                    return
        raise AssertionError(f"broker statistics never showed it; last: {self.stats.get('denied')}")


def test_an_allowed_identity_cannot_do_what_its_permissions_do_not_grant(
    checked_broker: tuple[BrokerProcess, dict[str, ClientCurve]],
) -> None:
    broker, curves = checked_broker
    c = Clients(broker, curves)
    fe, be = broker.frontend, broker.backend
    try:
        monitor = c.socket("monitor", zmq.SUB, be)
        monitor.setsockopt(zmq.SUBSCRIBE, b"")  # everything: so publishers send everything
        c.until_stats(monitor, lambda s: s["checked"] is True)
        feed = c.socket("feed", zmq.XPUB, fe)
        strategy_sub = c.socket("strategy", zmq.SUB, be)
        strategy_pub = c.socket("strategy", zmq.XPUB, fe)
        risk_pub = c.socket("risk", zmq.XPUB, fe)
        rogue_pub = c.socket("rogue", zmq.XPUB, fe)
        rogue_sub = c.socket("rogue", zmq.SUB, be)
        md, inbox = encode_key(("md",)), encode_key(("$reply", STRATEGY))
        strategy_sub.setsockopt(zmq.SUBSCRIBE, md)
        strategy_sub.setsockopt(zmq.SUBSCRIBE, inbox)
        for publisher in (feed, strategy_pub, risk_pub, rogue_pub):
            c.wait_for(publisher, b"\x01")  # the monitor's everything reached it
        received: list[int] = []
        sent = 0

        def legit_slice() -> None:
            nonlocal sent
            for _ in range(min(LEGIT // 10, LEGIT - sent)):
                sent += 1
                c.send(feed, FEED, ("md", "AAPL"), sent)
            while strategy_sub.poll(0):
                key, _, payload = decode_message(strategy_sub.recv())
                if key.startswith(md):
                    received.append(msgpack.unpackb(payload))

        pid = broker.proc.pid
        rss: dict[str, tuple[int, int]] = {}

        def attack(kind: str, count: int, run: Callable[[int], None], expect: int = 0) -> None:
            before = rss_kib(pid)
            for n in range(count):
                run(n)
                if n % max(1, count // 5) == 0:
                    legit_slice()
            total = expect or count
            c.until_stats(monitor, lambda s: s["denied"].get("rogue", {}).get(kind, 0) >= total)
            rss[f"{len(rss) + 1}. {kind} x{count}"] = (before, rss_kib(pid))

        # 1. a key outside its publish patterns (a distinct key each time: the verdict cache fills)
        attack("publish", DISTINCT, lambda n: c.send(rogue_pub, ROGUE, ("md", f"FAKE{n}"), -1))
        # 2. reserved keys: the broker's statistics and another group's goodbye
        attack("reserved", BURST, lambda n: c.send(rogue_pub, ROGUE, ("$broker", "stats"), {"uptime_s": -1}))
        attack(
            "reserved",
            BURST,
            lambda n: c.send(rogue_pub, ROGUE, ("$actors", "bye", "group-a"), {"group": "group-a"}),
            expect=2 * BURST,
        )
        # 3. a header under feed's publisher id
        attack("publisher", BURST, lambda n: c.send(rogue_pub, FEED, ("rogue", "x"), n))
        # 3b. a permitted message with a forged feed message smuggled in as a second frame: format 2 is
        # one frame a message, and subscribers' prefix filters would never look at the second
        smuggled = encode_message(
            encode_key(("md", "AAPL")), encode_header(FEED, 1, 1, 1), encode_payload(-1)
        )
        attack(
            "malformed",
            BURST,
            lambda n: rogue_pub.send_multipart(
                [
                    encode_message(encode_key(("rogue", "x")), encode_header(ROGUE, n + 1, 1, 1), b"\x01"),
                    smuggled,
                ]
            ),
        )
        # 4. subscriptions it may not make: md, everything, strategy's reply inbox
        forbidden = [md, b"", inbox, encode_key(("$broker",))]
        attack("subscribe", len(forbidden), lambda n: rogue_sub.setsockopt(zmq.SUBSCRIBE, forbidden[n]))
        # 5. more subscriptions than one identity may hold (permitted prefixes, distinct)
        attack(
            "subscription_limit",
            2 * PER_IDENTITY,
            lambda n: rogue_sub.setsockopt(zmq.SUBSCRIBE, encode_key(("rogue", str(n)))),
            expect=PER_IDENTITY,
        )
        # 6. messages (not subscriptions) sent upstream by a subscriber
        rogue_xsub = c.socket("rogue", zmq.XSUB, be)
        attack("upstream", BURST, lambda n: rogue_xsub.send_multipart([b"garbage", b"%d" % n]))
        # 7. answering strategy's ask for risk.check (rogue answers only pricing.*)
        request = {"reply_to": STRATEGY, "id": 1, "deadline": time.time_ns() + 60 * 10**9, "payload": {}}
        risk_sub = c.socket("risk", zmq.SUB, be)
        risk_sub.setsockopt(zmq.SUBSCRIBE, encode_key(("$ask", "risk")))
        c.wait_for(strategy_pub, b"\x01" + encode_key(("$ask", "risk")))
        c.send(strategy_pub, STRATEGY, ("$ask", "risk", "check"), request)
        assert risk_sub.poll(20_000), "the ask never reached risk"
        risk_sub.recv()
        attack(
            "reply",
            BURST,
            lambda n: c.send(rogue_pub, ROGUE, ("$reply", STRATEGY), {"id": 1, "ok": "forged"}),
        )
        c.send(risk_pub, RISK, ("$reply", STRATEGY), {"id": 1, "ok": "approved"})
        # the legitimate stream, finished, and the one true answer
        while sent < LEGIT:
            legit_slice()
        replies: list[Any] = []
        deadline = time.monotonic() + 30
        while (len(received) < LEGIT or not replies) and time.monotonic() < deadline:
            if strategy_sub.poll(200):
                key, _, payload = decode_message(strategy_sub.recv())
                (received if key.startswith(md) else replies).append(msgpack.unpackb(payload))
        assert received == list(range(1, LEGIT + 1)), f"lost {LEGIT - len(received)} legit messages"
        assert replies == [{"id": 1, "ok": "approved"}]
        assert not rogue_sub.poll(100), "rogue received something it never may"
        c.until_stats(monitor, lambda s: True)
        forwarded = {(key, publisher) for key, publisher, _ in c.seen}
        assert forwarded <= {
            (encode_key(("md", "AAPL")), FEED),
            (encode_key(("$ask", "risk", "check")), STRATEGY),
            (inbox, RISK),
        }, forwarded - {(encode_key(("md", "AAPL")), FEED)}
        assert [p for k, _, p in c.seen if k == inbox] == [{"id": 1, "ok": "approved"}]
        # counted per identity, nobody else blamed, the broker alive and bounded
        c.until_stats(monitor, lambda s: True)
        denied = c.stats["denied"]
        assert set(denied) == {"rogue"}, denied
        assert denied["rogue"] == {
            "publish": DISTINCT,
            "reserved": 2 * BURST,
            "publisher": BURST,
            "malformed": BURST,
            "subscribe": len(forbidden),
            "reply": BURST,
            "subscription_limit": PER_IDENTITY,
            "upstream": BURST,
        }
        assert broker.proc.poll() is None
        for kind, (before_kb, after_kb) in rss.items():
            print(f"RSS {kind}: {before_kb} kB -> {after_kb} kB")
            assert after_kb - before_kb < RSS_GROWTH_LIMIT_KB, (kind, before_kb, after_kb)
    finally:
        c.ctx.destroy(linger=0)


HUBS_PERMISSIONS = """
[identities.pricing]            # `tickbus run --name pricing` answering svc.price
publishers = ["pricing@*"]
answers = ["svc.*"]
publish = ["$actors.*"]
reserved = true

[identities.asker]              # this test's hub: asks, publishes and snapshots md, reads broker stats
publishers = ["asker@*"]
ask = ["svc.price"]
publish = ["md.*"]
subscribe = ["md.*", "$broker.*"]
reserved = true
"""


async def test_hubs_ask_answer_snapshot_and_sync_through_a_checked_broker_without_a_drop(
    tmp_path: Path,
) -> None:
    keys, allowed = make_keys(tmp_path, ("pricing", "asker"))
    (tmp_path / "permissions.toml").write_text(HUBS_PERMISSIONS)
    args = ["--curve-secret", str(keys / "broker.key_secret"), "--allow-dir", str(allowed)]
    args += ["--permissions", str(tmp_path / "permissions.toml"), "--lvc", "md.*", "--stats-interval", "0.1"]
    env = {
        "TICKBUS_CURVE_SERVERKEY": str(keys / "broker.key"),
        "TICKBUS_CURVE_SECRET": str(keys / "pricing.key_secret"),
    }
    with BrokerProcess.start(extra_args=args) as broker:
        pricer = ActorProcess.launch(
            broker, "tests.system.integration.ask_actors:Pricer", name="pricing", env=env
        )
        curve = ClientCurve.from_files(keys / "broker.key", keys / "asker.key_secret")
        hub = await actors.connect(broker.frontend, broker.backend, name="asker", curve=curve)
        try:
            stats: list[dict[str, Any]] = []
            Subscriber(hub, "stats").add_sync_listener(("$broker", "stats"), lambda k, p: stats.append(p))
            await hub.sync()
            await hub.wait_for_subscribers(("$ask", "svc", "price"))
            answers = [await ask(hub, ("svc", "price"), {"qty": n, "n": n}, timeout=10) for n in range(20)]
            assert [a["n"] for a in answers] == list(range(20))
            hub.publish(("md", "AAPL"), 101.5)
            await eventually(lambda: bool(stats) and stats[-1]["subscriptions"] > 0, 10, "statistics")
            snapshot = []
            for _ in range(100):  # the cache receives the publish asynchronously
                snapshot = await hub.snapshot(("md", "*"))
                if snapshot:
                    break
            assert [m.payload for m in snapshot] == [101.5], snapshot
            n_stats = len(stats)
            await eventually(lambda: len(stats) > n_stats + 2, 10, "fresh statistics")
            assert stats[-1]["checked"] is True
            assert stats[-1]["denied"] == {}, stats[-1]["denied"]
        finally:
            await hub.close()
            assert pricer.close() == 0, pricer.log()[-2000:]
