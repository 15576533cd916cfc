"""Reserved keys and the publisher-id format, defined once in broker._reserved."""

from __future__ import annotations

import os
import socket

from hypothesis import given
from hypothesis import strategies as st

import broker
from broker import PublisherId, new_publisher_id, parse_publisher_id, publisher_identity


def test_a_new_publisher_id_names_this_host_and_process_and_differs_per_incarnation():
    first, second = new_publisher_id("feed"), new_publisher_id("feed")
    assert first != second
    parsed = parse_publisher_id(first)
    assert parsed is not None
    assert (parsed.name, parsed.host, parsed.pid) == ("feed", socket.gethostname(), os.getpid())
    assert publisher_identity(first) == publisher_identity(second) == f"feed@{socket.gethostname()}"


@given(
    st.text(min_size=0, max_size=12),
    st.text(alphabet=st.characters(blacklist_characters=":@"), min_size=1, max_size=12),
    st.integers(min_value=0, max_value=2**22),
    st.text(alphabet="0123456789abcdef", min_size=8, max_size=8),
)
def test_publisher_ids_round_trip(name, host, pid, token):
    text = str(PublisherId(name, host, pid, token))
    assert parse_publisher_id(text) == PublisherId(name, host, pid, token)
    assert publisher_identity(text) == f"{name}@{host}"


def test_malformed_publisher_ids_parse_to_none():
    for text in ("", "feed", "feed@h", "feed@h:1", "feed@h:x:t", "feedh:1:t", "feed@h:\u0661:t"):
        assert parse_publisher_id(text) is None, text


def test_every_reserved_key_is_reserved_and_never_matched_by_a_star():
    keys = [
        broker.BROKER_STATS,
        broker.HEARTBEAT,
        broker.SLOW,
        broker.SYNC,
        broker.LVC_REQUEST,
        broker.LVC_INBOX,
        (broker.ASK, "x"),
        (broker.REPLY, "x"),
        (broker.ACTORS, "hello"),
        broker.ALERTS_PROFILE,
    ]
    for key in keys:
        assert broker.is_reserved(key)
        assert not broker.matches(broker.Key(*key), broker.Key("*"))
    assert broker.STATS_KEY == broker.BROKER_STATS
