"""Real ``python -m tickbus broker`` processes on loopback tcp and ipc, with real pyzmq clients."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import time
from pathlib import Path

import pytest
import zmq

from broker import (
    FORMAT_VERSION,
    Header,
    decode_message,
    decode_payload,
    encode_header,
    encode_key,
    encode_message,
    encode_payload,
)
from tests.broker.broker_helpers import recv_until, wait_for_subscription

pytestmark = pytest.mark.timeout(20)

LOCAL = "tcp://127.0.0.1:*"
STATS = encode_key(("$broker", "stats"))


def _message(key: tuple[str, ...], publisher: str, seq: int, body: object) -> bytes:
    """The one frame of a message (envelope format 2)."""
    return encode_message(
        encode_key(key),
        encode_header(publisher, seq, time.monotonic_ns(), time.time_ns()),
        encode_payload(body),
    )


def _decoded(frames: list[bytes]) -> tuple[bytes, Header, object]:
    """(wire key, header, payload) of a received message, which must be one frame."""
    assert len(frames) == 1, f"a message of {len(frames)} frames"
    key, header, payload = decode_message(frames[0])
    return key, header, decode_payload(payload)


def _tcp_port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def test_messages_go_from_publishers_to_subscribers_over_tcp_and_ipc_of_one_broker(
    broker, ctx, short_tmp: Path
):
    b = broker(
        "--frontend", LOCAL, "--frontend", f"ipc://{short_tmp}/fe",
        "--backend", LOCAL, "--backend", f"ipc://{short_tmp}/be",
    )  # fmt: skip
    assert b.frontend[1] == f"ipc://{short_tmp}/fe" and b.backend[1] == f"ipc://{short_tmp}/be"
    subs = {}
    for name, endpoint in (("via-tcp", b.backend[0]), ("via-ipc", b.backend[1])):
        sub = ctx.socket(zmq.SUB)
        sub.connect(endpoint)
        sub.subscribe(encode_key(("fwd", name)))
        subs[name] = sub
    pubs = {}
    for name, endpoint in (("tcp-pub", b.frontend[0]), ("ipc-pub", b.frontend[1])):
        pub = ctx.socket(zmq.XPUB)
        pub.connect(endpoint)
        wait_for_subscription(pub, {encode_key(("fwd", "via-tcp")), encode_key(("fwd", "via-ipc"))})
        pubs[name] = pub

    sent: dict[str, list[list[bytes]]] = {name: [] for name in subs}
    for seq in range(1, 51):
        for pub_name, pub in pubs.items():
            for sub_name in subs:
                frame = _message(("fwd", sub_name), pub_name, seq, {"n": seq})
                pub.send(frame)
                sent[sub_name].append([frame])
    for name, sub in subs.items():
        got = [recv_until(sub, lambda f: True, 5.0) for _ in range(100)]
        headers = [_decoded(m)[1] for m in got]
        by_publisher = {p: [h.seq for h in headers if h.publisher == p] for p in pubs}
        assert by_publisher == {p: list(range(1, 51)) for p in pubs}, name
        assert sorted(got) == sorted(sent[name])
        assert not sub.poll(50), "nothing beyond what was published"


def test_stats_message_reports_subscribers_subscriptions_and_exact_frame_counts(broker, ctx):
    b = broker("--frontend", LOCAL, "--backend", LOCAL, "--stats-interval", "0.1")
    stats_sub = ctx.socket(zmq.SUB)
    stats_sub.connect(b.backend[0])
    stats_sub.subscribe(encode_key(("$broker",)))
    data_sub = ctx.socket(zmq.SUB)
    data_sub.connect(b.backend[0])
    data_sub.subscribe(encode_key(("t",)))
    pub = ctx.socket(zmq.XPUB)
    pub.connect(b.frontend[0])
    wait_for_subscription(pub, {encode_key(("t",))})
    n = 20
    for seq in range(1, n + 1):
        pub.send(_message(("t", "x"), "pub", seq, seq))
    for _ in range(n):
        recv_until(data_sub, lambda f: True, 5.0)

    seqs_seen: list[int] = []

    def complete(frames: list[bytes]) -> bool:
        key, header, stats = _decoded(frames)
        assert key == STATS
        seqs_seen.append(header.seq)
        return stats["frames_in"] >= n and stats["subscribers"] == 2 and stats["publishers"] == 1

    _, header, stats = _decoded(recv_until(stats_sub, complete, 5.0))
    assert header.publisher.startswith("broker") and header.version == FORMAT_VERSION
    assert seqs_seen == sorted(seqs_seen) and seqs_seen[0] >= 1
    # every stats message that reached the proxy before this snapshot was delivered to stats_sub;
    # format 2: one frame a message
    earlier_stats = sum(1 for s in seqs_seen if s < header.seq)
    assert stats["frames_in"] == n + earlier_stats
    assert stats["frames_out"] == stats["frames_in"]
    assert stats["messages_forwarded"] == stats["frames_out"]
    assert stats["subscribers"] == 2 and stats["publishers"] == 1
    assert stats["subscriptions"] == 2  # b"$broker\x00" and b"t\x00"
    assert stats["subscription_frames_in"] == 2
    assert stats["frontend"] == b.frontend and stats["backend"] == b.backend
    assert stats["uptime_s"] > 0


def test_sigterm_stops_a_busy_broker_promptly_with_exit_code_0(broker, ctx):
    b = broker("--frontend", LOCAL, "--backend", LOCAL)
    sub = ctx.socket(zmq.SUB)
    sub.connect(b.backend[0])
    sub.subscribe(b"")
    pub = ctx.socket(zmq.XPUB)
    pub.connect(b.frontend[0])
    wait_for_subscription(pub, {b""})
    for seq in range(1, 1001):
        pub.send(_message(("load",), "pub", seq, "x" * 100))
    started = time.monotonic()
    b.signal(signal.SIGTERM)
    assert b.wait(3.0) == 0
    assert time.monotonic() - started < 2.0
    assert "stopped after" in b.stderr()


def test_sigint_right_after_the_ready_line_also_exits_0(broker):
    b = broker("--frontend", LOCAL, "--backend", LOCAL)
    b.signal(signal.SIGINT)
    assert b.wait(3.0) == 0
    assert "Traceback" not in b.stderr()


def test_a_second_broker_on_a_bound_port_fails_with_one_line_and_exit_code_2(broker, launch):
    first = broker("--frontend", LOCAL, "--backend", LOCAL)
    taken = first.frontend[0]
    second = launch("--frontend", taken, "--backend", LOCAL)
    assert second.wait(5.0) == 2
    assert second.stdout.read() == ""
    assert second.stderr_path.read_text() == (
        f"broker frontend endpoint '{taken}' is already bound by another process; pick a free port or stop it\n"
    )
    assert first.proc.poll() is None


def test_an_invalid_option_value_fails_with_one_line_and_exit_code_2(launch):
    proc = launch("--frontend", "udp://127.0.0.1:1")
    assert proc.wait(5.0) == 2
    lines = proc.stderr_path.read_text().splitlines()
    assert lines == [
        "broker frontend endpoint 'udp://127.0.0.1:1' is not a tcp:// or ipc:// URL; "
        "use tcp://HOST:PORT or ipc:///path/to/socket"
    ]


def test_garbage_from_raw_clients_neither_kills_the_broker_nor_loses_good_traffic(broker, ctx):
    b = broker("--frontend", LOCAL, "--backend", LOCAL, "--max-msg-size", "65536", "--stats-interval", "0.1")
    rng = random.Random(1234)
    good_sub = ctx.socket(zmq.SUB)
    good_sub.connect(b.backend[0])
    good_sub.subscribe(b"good\x00")
    everything = ctx.socket(zmq.SUB)  # makes publishers send everything, garbage included
    everything.setsockopt(zmq.RCVHWM, 0)
    everything.connect(b.backend[0])
    everything.subscribe(b"")
    good = ctx.socket(zmq.XPUB)
    good.connect(b.frontend[0])
    wait_for_subscription(good, {b"good\x00", b""})
    garbage_pub = ctx.socket(zmq.XPUB)  # an XPUB so we can tell when it is connected
    garbage_pub.setsockopt(zmq.SNDHWM, 0)
    garbage_pub.connect(b.frontend[0])
    wait_for_subscription(garbage_pub, {b""})
    dealers = []
    for endpoint in (b.frontend[0], b.backend[0]):  # wrong socket type: the handshake fails
        dealer = ctx.socket(zmq.DEALER)
        dealer.connect(endpoint)
        dealers.append(dealer)
    upstream = ctx.socket(zmq.XSUB)  # sends junk "subscriptions" and data frames upstream
    upstream.connect(b.backend[0])

    def junk() -> bytes:
        return rng.randbytes(rng.randrange(0, 300))

    good_count = garbage_frames = 0
    for i in range(1000):
        frames = [junk() for _ in range(rng.choice([1, 1, 2, 4, 7]))]
        garbage_pub.send_multipart(frames, zmq.NOBLOCK)
        garbage_frames += len(frames)
        for dealer in dealers:
            with contextlib.suppress(zmq.Again):  # queued until the (failing) handshake
                dealer.send(junk(), zmq.NOBLOCK)
        upstream.send(rng.choice([b"\x02", b"\x01\xff", b"", b"\x00zz"]) + junk(), zmq.NOBLOCK)
        if i % 4 == 0:
            good_count += 1
            good.send(_message(("good", "k"), "good-pub", good_count, i))
    for port in {_tcp_port(b.frontend[0]), _tcp_port(b.backend[0])}:
        for first_byte in (b"\xff", b"\x01", b""):
            with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
                raw.sendall(first_byte + os.urandom(4096))
    garbage_pub.send_multipart([b"good\x00", os.urandom(100_000)])  # over --max-msg-size: dropped peer
    for i in range(good_count + 1, good_count + 51):
        good.send(_message(("good", "k"), "good-pub", i, i))
    good_count += 50

    seqs = []

    def collect(frames: list[bytes]) -> bool:
        if len(frames) == 1:
            try:
                _, header, _ = decode_message(frames[0])
            except Exception:  # a junk frame that happens to share the prefix
                return False
            if header.publisher == "good-pub":
                seqs.append(header.seq)
        return len(seqs) == good_count

    recv_until(good_sub, collect, 5.0)
    assert seqs == list(range(1, good_count + 1))
    assert b.proc.poll() is None

    stats_sub = ctx.socket(zmq.SUB)
    stats_sub.connect(b.backend[0])
    stats_sub.subscribe(STATS)
    # the dealers keep failing their handshakes every 100 ms meanwhile; they are never counted
    last = recv_until(
        stats_sub,
        lambda f: (s := _decoded(f)[2])["subscribers"] == 4 and s["publishers"] == 2,
        5.0,
    )  # good_sub, everything, upstream, stats_sub; good and the (reconnected) garbage publisher
    stats = _decoded(last)[2]
    assert stats["frames_in"] >= good_count + garbage_frames  # the garbage did reach the broker
    b.signal(signal.SIGTERM)
    assert b.wait(3.0) == 0
