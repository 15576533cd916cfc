"""What the bus subscribes, as a publishing hub sees it (actors._wanted): bounds, brokers, epochs."""

from __future__ import annotations

from actors._wanted import BusSubscriptions
from broker import encode_key


def test_prefixes_beyond_the_bounds_are_refused_and_counted():
    wanted = BusSubscriptions(1, max_prefixes=2, max_prefix=8)
    assert wanted.subscribe(0, b"t\x00") is None and wanted.epoch == 1
    assert wanted.subscribe(0, b"t\x00") is None and wanted.epoch == 1  # again (a new pipe): no change
    assert "over max_subscription=8" in (wanted.subscribe(0, b"x" * 9) or "")
    assert wanted.subscribe(0, b"u\x00") is None
    assert "2 prefixes are stored" in (wanted.subscribe(0, b"v\x00") or "")
    assert wanted.refused == 2 and wanted.prefixes == {b"t\x00", b"u\x00"}
    assert wanted.unsubscribe(0, b"t\x00") and not wanted.unsubscribe(0, b"t\x00")
    assert wanted.subscribe(0, b"v\x00") is None  # room again
    assert wanted.epoch == 4


def test_with_two_brokers_a_key_is_wanted_while_either_broker_wants_it():
    wanted = BusSubscriptions(2, max_prefixes=10, max_prefix=64)
    key = encode_key(("md", "x"))
    assert wanted.subscribe(0, b"md\x00") is None and wanted.subscribe(1, b"md\x00") is None
    assert wanted.wants(key) and wanted.wants_key(("md", "*"))
    assert wanted.unsubscribe(0, b"md\x00")
    assert wanted.wants(key)  # broker 2 still carries it
    assert wanted.unsubscribe(1, b"md\x00")
    assert not wanted.wants(key) and not wanted.wants_key(("*",))
    assert not wanted.unsubscribe(1, b"md\x00")  # a broker cannot take back what it never gave


def test_a_reserved_key_is_not_covered_by_the_catch_all():
    wanted = BusSubscriptions(1, max_prefixes=10, max_prefix=64)
    assert wanted.subscribe(0, b"") is None  # '*': every ordinary key
    assert wanted.wants_key(("md", "x")) and not wanted.wants_key(("$bus", "hb", "x"))
