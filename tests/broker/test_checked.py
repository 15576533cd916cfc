"""The checked forwarder's decisions (broker._checked.Gate), without sockets."""

from __future__ import annotations

from typing import Any

from broker import encode_header, encode_key, encode_payload
from broker._checked import Gate
from broker._permissions import Permissions, parse_table

FEED = "feed@host-a:4242:0badc0de"
RISK = "risk@host-b:77:cafe0001"
ASKER = "strategy@host-b:78:cafe0002"


def gate(per_identity: int = 100, total: int = 1000) -> Gate:
    tables = {
        "feed": {"publishers": ["feed@host-a"], "publish": ["md.*"], "subscribe": ["orders.*"]},
        "risk": {"publishers": ["risk@*"], "answers": ["risk.*"]},
        "pricing": {"publishers": ["pricing@*"], "answers": ["pricing.*"]},
        "strategy": {"publishers": ["strategy@*"], "subscribe": ["md.*"], "ask": ["risk.check"]},
    }
    permissions = Permissions({n: parse_table(n, t, "p.toml") for n, t in tables.items()})
    return Gate(permissions, max_per_identity=per_identity, max_total=total, now_ns=lambda: 0)


def send(
    g: Gate, identity: str, key: tuple[str, ...], payload: Any = None, publisher: str = FEED
) -> str | None:
    return g.publish(identity, encode_key(key), encode_header(publisher, 1, 1, 1), encode_payload(payload))


def test_permitted_messages_pass_and_others_are_counted_per_identity_and_kind() -> None:
    g = gate()
    assert send(g, "feed", ("md", "AAPL")) is None
    assert send(g, "feed", ("orders", "new")) == "publish"
    assert send(g, "feed", ("md", "AAPL"), publisher=RISK) == "publisher"
    assert send(g, "feed", ("$broker", "stats")) == "reserved"
    assert send(g, "feed", ("$actors", "bye", "g")) == "reserved"
    assert send(g, "feed", ("$lvc", "snap", FEED)) == "reserved"
    assert send(g, "stranger", ("md", "AAPL")) == "publish"
    assert g.publish("feed", b"md\x00", b"\xc1", b"", 3) == "malformed"
    assert g.publish("feed", encode_key(("md", "x")), encode_header(FEED, 1, 1, 1), b"", 2) == "malformed"
    assert g.statistics() == {
        "feed": {"publish": 1, "publisher": 1, "reserved": 3, "malformed": 2},
        "stranger": {"publish": 1},
    }


def test_the_cached_verdict_is_the_same_as_the_first() -> None:
    g = gate()
    for _ in range(3):
        assert send(g, "feed", ("md", "AAPL")) is None
        assert send(g, "feed", ("secret", "x")) == "publish"
    assert g.statistics() == {"feed": {"publish": 3}}


def test_heartbeats_and_sync_probes_are_allowed_only_under_the_hubs_own_name_and_id() -> None:
    g = gate()
    assert send(g, "feed", ("$bus", "hb", "feed")) is None
    assert send(g, "feed", ("$bus", "hb", "risk")) == "reserved"
    assert send(g, "feed", ("$sync", FEED)) is None
    assert send(g, "feed", ("$sync", RISK)) == "reserved"


def ask(
    g: Gate, ask_id: int = 1, key: tuple[str, ...] = ("risk", "check"), reply_to: str = ASKER
) -> str | None:
    request = {"reply_to": reply_to, "id": ask_id, "deadline": 10, "payload": {"qty": 1}}
    return send(g, "strategy", ("$ask", *key), request, publisher=ASKER)


def test_a_reply_is_accepted_once_and_only_from_an_identity_that_answers_the_asked_key() -> None:
    g = gate()
    assert ask(g) is None
    reply = {"id": 1, "ok": True}
    assert send(g, "pricing", ("$reply", ASKER), reply, publisher="pricing@x:1:a") == "reply"
    assert send(g, "feed", ("$reply", ASKER), reply) == "reply"
    assert send(g, "risk", ("$reply", ASKER), reply, publisher=RISK) is None
    assert send(g, "risk", ("$reply", ASKER), reply, publisher=RISK) == "reply"  # only once
    assert send(g, "risk", ("$reply", ASKER), {"id": 2, "ok": 1}, publisher=RISK) == "reply"  # never asked


def test_asks_need_the_ask_permission_and_the_askers_own_inbox() -> None:
    g = gate()
    assert ask(g, key=("pricing", "quote")) == "ask"
    assert ask(g, reply_to=FEED) == "ask"
    assert send(g, "strategy", ("$ask", "risk", "check"), "junk", publisher=ASKER) == "ask"
    assert (
        ask(g, reply_to="strategy@host-b:78:" + "f" * 60_000) == "ask"
    )  # its own, but held till its deadline
    assert len(g.asks) == 0


def test_the_ask_table_is_bounded() -> None:
    g = gate()
    g.asks._max = 3
    for n in range(10):
        assert ask(g, ask_id=n) is None
    assert len(g.asks) == 3 and g.asks.evicted == 7


def test_snapshot_requests_need_the_subscribe_permission_and_the_own_inbox() -> None:
    g = gate()
    request = {"id": "r1", "pattern": ["md", "*"], "inbox": ["$lvc", "snap", ASKER]}
    assert send(g, "strategy", ("$lvc", "req"), request, publisher=ASKER) is None
    secret = {**request, "pattern": ["orders", "*"]}
    assert send(g, "strategy", ("$lvc", "req"), secret, publisher=ASKER) == "snapshot"
    theirs = {**request, "inbox": ["$lvc", "snap", FEED]}
    assert send(g, "strategy", ("$lvc", "req"), theirs, publisher=ASKER) == "snapshot"


MD = encode_key(("md",))


def test_a_subscription_goes_upstream_once_and_leaves_with_its_last_holder() -> None:
    g = gate()
    assert g.subscription("strategy", b"\x01" + MD) == (True, b"\x01" + MD)
    assert g.subscription("strategy", b"\x01" + MD) == (True, None)  # second connection
    assert g.subscription("strategy", b"\x00" + MD) == (True, None)
    assert g.subscription("strategy", b"\x00" + MD) == (True, b"\x00" + MD)
    assert g.subscriptions == 0


def test_a_forbidden_subscription_is_neither_applied_nor_forwarded() -> None:
    g = gate()
    assert g.subscription("feed", b"\x01" + MD) == (False, None)
    assert g.subscription("feed", b"\x01") == (False, None)  # everything
    assert g.subscription("feed", b"junk") == (False, None)
    assert g.statistics() == {"feed": {"subscribe": 2, "upstream": 1}}


def test_a_closed_refused_connection_does_not_take_a_holders_subscription() -> None:
    g = gate()
    g.subscription("strategy", b"\x01" + MD)
    g.subscription("feed", b"\x01" + MD)  # refused
    # libzmq reports the refused connection's request when it closes, without an identity
    assert g.subscription(None, b"\x00" + MD) == (True, None)
    assert g.subscriptions == 1
    # then the holder's connection closes: unambiguous, released and sent upstream
    assert g.subscription(None, b"\x00" + MD) == (True, b"\x00" + MD)


def test_an_ambiguous_anonymous_unsubscribe_keeps_the_prefix() -> None:
    g = Gate(
        Permissions({n: parse_table(n, {"subscribe": ["md.*"]}, "p") for n in ("a", "b")}),
        max_per_identity=10,
        max_total=10,
    )
    g.subscription("a", b"\x01" + MD)
    g.subscription("b", b"\x01" + MD)
    assert g.subscription(None, b"\x00" + MD) == (True, None)
    assert g.subscriptions == 1


def test_the_brokers_own_subscriptions_are_applied_unchecked() -> None:
    g = gate()
    prefix = encode_key(("secret",))
    assert g.subscription(None, b"\x01" + prefix) == (True, b"\x01" + prefix)
    assert g.subscription(None, b"\x00" + prefix) == (True, b"\x00" + prefix)
    assert g.statistics() == {}


def test_subscriptions_are_limited_per_identity_and_in_total() -> None:
    g = gate(per_identity=2, total=3)
    sub = [b"\x01" + encode_key(("md", str(n))) for n in range(5)]
    assert g.subscription("strategy", sub[0])[0]
    assert g.subscription("strategy", sub[1])[0]
    assert g.subscription("strategy", sub[1])[0]  # not a new prefix for it
    assert g.subscription("strategy", sub[2]) == (False, None)
    assert g.subscription(None, sub[3])[0]  # the broker's own: total 3 now
    assert g.subscription(None, b"\x01" + encode_key(("x",)))[0]  # the broker's own are never refused
    g.subscription("strategy", b"\x00" + sub[0][1:])
    assert g.subscription("strategy", sub[4]) == (False, None)  # the total bites
    assert g.statistics() == {"strategy": {"subscription_limit": 2}}
