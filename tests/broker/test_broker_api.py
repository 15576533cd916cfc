"""The broker's public face and its socket-free parts: config validation, errors, statistics decoding."""

from __future__ import annotations

import errno
import importlib
import inspect
import struct

import pytest
import zmq

import broker
from broker import BindError, BrokerConfig, BrokerConfigError, BrokerError, BrokerStatistics
from broker._bind import bind_error
from broker._envelope import decode_message, decode_payload
from broker._keys import decode_key
from broker._peers import PeerCounter
from broker._stats import ProxyCounters, StatsEnvelope, SubscriptionTable
from observability import ConfigError, ConnectError, TickbusError


def test_every_public_name_imports_has_a_docstring_and_all_is_sorted():
    module = importlib.import_module("broker")
    assert module.__all__ == sorted(module.__all__)
    assert {"Broker", "BrokerConfig", "BrokerError", "BrokerStatistics"} <= set(module.__all__)
    for name in module.__all__:
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__doc__, f"broker.{name} has no docstring"


def test_broker_errors_sit_in_the_one_tickbus_tree():
    assert issubclass(BrokerError, TickbusError)
    assert issubclass(BindError, BrokerError) and issubclass(BindError, ConnectError)
    assert issubclass(BrokerConfigError, BrokerError) and issubclass(BrokerConfigError, ConfigError)


def test_default_config_binds_loopback_5550_and_5551_with_documented_options():
    config = BrokerConfig()
    assert config.frontend == ("tcp://127.0.0.1:5550",)
    assert config.backend == ("tcp://127.0.0.1:5551",)
    assert (config.sndhwm, config.rcvhwm, config.max_msg_size) == (100_000, 100_000, 2 * 1024 * 1024)
    assert (config.heartbeat_ivl, config.heartbeat_timeout, config.stats_interval) == (0.5, 2.0, 1.0)
    assert config.tcp_keepalive is True


def test_config_stores_endpoint_lists_as_tuples_mixing_tcp_and_ipc():
    config = BrokerConfig(frontend=["tcp://127.0.0.1:*", "ipc:///tmp/x"], backend=["ipc:///tmp/y"])
    assert config.frontend == ("tcp://127.0.0.1:*", "ipc:///tmp/x")
    assert config.backend == ("ipc:///tmp/y",)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"frontend": []}, "broker option frontend is empty"),
        ({"frontend": "tcp://127.0.0.1:1"}, "is not a list of endpoints"),
        ({"backend": ["udp://127.0.0.1:1"]}, "broker backend endpoint 'udp://127.0.0.1:1' is not a tcp://"),
        ({"frontend": ["tcp://127.0.0.1"]}, "has no valid port"),
        ({"frontend": ["tcp://127.0.0.1:99999"]}, "has no valid port"),
        ({"frontend": ["ipc:///a", "ipc:///a"]}, "lists an endpoint twice"),
        ({"frontend": ["ipc:///a"], "backend": ["ipc:///a"]}, "is both a frontend and a backend"),
        ({"sndhwm": -1}, "broker option sndhwm=-1 is not an integer >= 0"),
        ({"max_msg_size": 0}, "broker option max_msg_size=0 is not a byte count"),
        ({"heartbeat_ivl": float("nan")}, "broker option heartbeat_ivl=nan is not a number of seconds"),
        ({"stats_interval": -1}, "broker option stats_interval=-1 is not a number of seconds"),
        ({"heartbeat_ttl": 7000.0}, "exceeds ZeroMQ's limit"),
        ({"stats_interval": 1e-6}, "stats_interval=1e-06 is below 0.01 s"),
        ({"max_subscription": 0}, "broker option max_subscription=0 is not a byte count in 1..65536"),
        ({"max_subscription": 1 << 20}, "is not a byte count in 1..65536"),
    ],
)
def test_config_rejects_bad_values_naming_the_option_and_the_fix(kwargs, message):
    with pytest.raises(BrokerConfigError, match=message.replace("*", r"\*").replace("(", r"\(")):
        BrokerConfig(**kwargs)


def test_wildcard_ports_may_appear_on_both_sides():
    config = BrokerConfig(frontend=["tcp://127.0.0.1:*"], backend=["tcp://127.0.0.1:*"])
    assert config.frontend == config.backend


def test_bind_errors_are_one_line_and_name_the_endpoint_reason_and_fix():
    busy = bind_error("frontend", "tcp://127.0.0.1:5550", errno.EADDRINUSE)
    assert str(busy) == (
        "broker frontend endpoint 'tcp://127.0.0.1:5550' is already bound by another process; "
        "pick a free port or stop it"
    )
    for code in (errno.EACCES, errno.EADDRNOTAVAIL, errno.ENODEV, errno.ENOENT, errno.EINVAL, errno.EIO):
        text = str(bind_error("backend", "tcp://x:1", code))
        assert text.startswith("broker backend endpoint 'tcp://x:1' ")
        assert "\n" not in text and ";" in text


def test_proxy_counters_decode_eight_little_endian_uint64_frames():
    frames = [struct.pack("<Q", n) for n in (30, 300, 2, 20, 2, 20, 30, 300)]
    counters = ProxyCounters.from_frames(frames)
    assert counters.frontend_frames_in == 30 and counters.backend_bytes_out == 300
    stats = BrokerStatistics.build(counters, uptime_s=1.5, subscribers=1, publishers=2, subscriptions=3)
    assert (stats.frames_in, stats.bytes_in, stats.frames_out, stats.bytes_out) == (30, 300, 30, 300)
    assert stats.messages_forwarded == 30  # one frame per message (format 2)
    assert (stats.subscription_frames_in, stats.subscription_frames_out) == (2, 2)


def test_proxy_counters_reject_a_reply_that_is_not_eight_counters():
    with pytest.raises(BrokerError, match="not 8 uint64 counters"):
        ProxyCounters.from_frames([b"\x00" * 8] * 7)
    with pytest.raises(BrokerError):
        ProxyCounters.from_frames([b"\x00" * 4] * 8)


def test_subscription_table_tracks_distinct_prefixes_from_subscribe_and_unsubscribe_frames():
    table = SubscriptionTable()
    assert table.apply(b"\x01a\x00") and table.apply(b"\x01") and table.apply(b"\x01a\x00")
    assert table.prefixes == {b"a\x00", b""} and len(table) == 2
    assert table.wants(b"zzz\x00")  # the empty prefix wants everything
    assert table.apply(b"\x00")
    assert not table.wants(b"zzz\x00") and table.wants(b"a\x00b\x00")
    assert not table.apply(b"\x02junk") and not table.apply(b"")
    assert table.apply(b"\x00a\x00") and len(table) == 0
    assert table.apply(b"\x00never-subscribed")  # an unknown unsubscribe changes nothing


TCP = "tcp://127.0.0.1:5550"
ACCEPTED, OK, DISCONNECTED = zmq.EVENT_ACCEPTED, zmq.EVENT_HANDSHAKE_SUCCEEDED, zmq.EVENT_DISCONNECTED
FAILED = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL


def _feed(peers: PeerCounter, *events: tuple[int, int]) -> int:
    for event, fd in events:
        peers.on_event(event, fd if event in (ACCEPTED, DISCONNECTED) else 0, TCP)
    return peers.count


def test_peer_counter_counts_handshaken_connections_until_they_disconnect():
    peers = PeerCounter()
    assert _feed(peers, (ACCEPTED, 10), (OK, 0), (ACCEPTED, 11), (OK, 0)) == 2
    assert _feed(peers, (DISCONNECTED, 10)) == 1
    assert _feed(peers, (ACCEPTED, 10), (OK, 0)) == 2  # fd numbers are reused
    assert _feed(peers, (DISCONNECTED, 11), (DISCONNECTED, 10)) == 0


def test_peer_counter_ignores_failed_and_silently_failed_handshakes_and_inproc_peers():
    peers = PeerCounter()
    assert _feed(peers, (ACCEPTED, 10), (OK, 0)) == 1
    # garbage bytes: the handshake fails with an event
    assert _feed(peers, (ACCEPTED, 11), (FAILED, 0), (DISCONNECTED, 11)) == 1
    # a port probe closing before it speaks
    assert _feed(peers, (ACCEPTED, 12), (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, 0), (DISCONNECTED, 12)) == 1
    # a DEALER dialling an XSUB: libzmq 4.3 reports no handshake outcome at all
    for _ in range(50):
        assert _feed(peers, (ACCEPTED, 13), (DISCONNECTED, 13)) == 1
    peers.on_event(OK, 0, "inproc://tickbus-broker-frontend-x")
    assert peers.count == 1


def test_peer_counter_sorts_out_overlapping_handshakes():
    peers = PeerCounter()
    # a silent long-lived connection (never speaks) while a good peer connects and handshakes
    assert _feed(peers, (ACCEPTED, 20), (ACCEPTED, 21), (OK, 0)) == 1
    assert _feed(peers, (DISCONNECTED, 20)) == 1  # the silent one leaves: the success was the other's
    assert _feed(peers, (DISCONNECTED, 21)) == 0
    # two good peers handshaking at once
    assert _feed(peers, (ACCEPTED, 30), (ACCEPTED, 31), (OK, 0), (OK, 0)) == 2
    assert _feed(peers, (DISCONNECTED, 31), (DISCONNECTED, 30)) == 0
    # a silent failure overlapping a good peer: the leftover success is the good peer's
    assert _feed(peers, (ACCEPTED, 40), (ACCEPTED, 41), (DISCONNECTED, 40), (OK, 0)) == 1
    assert _feed(peers, (DISCONNECTED, 41)) == 0
    # a reported failure is the connection that disconnects right after it, not the other pending one
    assert _feed(peers, (ACCEPTED, 50), (ACCEPTED, 51), (FAILED, 0), (DISCONNECTED, 50), (OK, 0)) == 1
    assert _feed(peers, (DISCONNECTED, 51)) == 0
    # the same, with the success reported before the failure
    assert _feed(peers, (ACCEPTED, 60), (ACCEPTED, 61), (OK, 0), (FAILED, 0), (DISCONNECTED, 60)) == 1
    assert _feed(peers, (DISCONNECTED, 61)) == 0


def test_stats_envelope_is_a_valid_tickbus_message_with_sequence_from_one():
    envelope = StatsEnvelope("broker@h:1:ab", ["tcp://127.0.0.1:1"], ["ipc:///tmp/b"])
    stats = BrokerStatistics.build(
        ProxyCounters(*range(8)), uptime_s=2.0, subscribers=4, publishers=5, subscriptions=6
    )
    (first,) = envelope.frames(stats, mono_ns=10, wall_ns=20)
    (second,) = envelope.frames(stats, mono_ns=11, wall_ns=21)
    kb, header, raw = decode_message(first)
    assert kb == b"$broker\x00stats\x00" and decode_key(kb) == ("$broker", "stats")
    assert (header.publisher, header.seq, header.mono_ns, header.wall_ns) == ("broker@h:1:ab", 1, 10, 20)
    assert decode_message(second)[1].seq == 2
    payload = decode_payload(raw)
    assert payload == {
        **stats.as_dict(),
        "frontend": ["tcp://127.0.0.1:1"],
        "backend": ["ipc:///tmp/b"],
    }
    assert payload["subscribers"] == 4 and payload["messages_forwarded"] == 6


def test_public_module_docstring_explains_the_broker():
    assert broker.__doc__ and "proxy" in broker.__doc__ and "('$broker', 'stats')" in broker.__doc__
