"""The permissions file and the rules it describes (broker._permissions), without sockets."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import BrokerConfig, BrokerConfigError, encode_key, matches
from broker._permissions import Permissions, Rules, parse_table, plumbing_kind

FEED = "feed@host-a:4242:0badc0de"
OTHER = "strategy@host-b:77:cafe0001"


def rules(**table: object) -> Rules:
    return parse_table("feed", {"publishers": ["feed@host-a"], **table}, "perm.toml")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "permissions.toml"
    path.write_text(text)
    return path


def test_a_file_loads_one_rules_object_per_identity_table(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[identities.feed]
publishers = ["feed@host-a"]
publish = ["md.*"]
[identities.strategy]
publishers = ["strategy@*"]
subscribe = ["md.*", "$actors.*"]
reserved = true
""",
    )
    loaded = Permissions.load(path)
    assert loaded.identities == ("feed", "strategy")
    assert loaded.rules("nobody") is None
    strategy = loaded.rules("strategy")
    assert strategy is not None and strategy.reserved and strategy.owns(OTHER)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[identities]\n", "has no [identities.NAME] table"),
        ("[others.x]\n", "unknown table [others]"),
        ("[identities.feed]\npublsh = []\n", "table [identities.feed]: unknown field 'publsh'"),
        ("[identities.feed]\npublish = 'md.*'\n", "field 'publish' = 'md.*': must be a list of strings"),
        ("[identities.feed]\nreserved = 1\n", "field 'reserved' = 1: must be true or false"),
        ("[identities.feed]\npublish = ['md..x']\n", "field 'publish': 'md..x' is not a dotted key"),
        ("[identities.feed]\npublish = ['$bus.x']\n", "'$bus.x' is a reserved key; set reserved = true"),
        ("[identities.feed]\nreserved = true\npublish = ['$broker.stats']\n", "granted by the broker"),
        ("[identities.feed]\nreserved = true\npublish = ['$reply.*']\n", "granted by the broker"),
        ("[identities.feed]\nsubscribe = ['md.*.AAPL']\n", "has a '*' before its end"),
        ("[identities.feed]\npublishers = ['feed@a:1:x']\n", "is not a name@host pattern"),
        ("[identities.'bad name']\n", "'bad name' is not a key name"),
        ("[identities.feed\n", "is not valid TOML"),
    ],
)
def test_a_bad_file_is_refused_naming_file_table_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(BrokerConfigError, match="permissions file") as error:
        Permissions.load(path)
    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_a_file_that_is_not_utf8_is_refused_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "permissions.toml"
    path.write_bytes(b"[identities.feed]\npublish = ['md.\xff']\n")
    with pytest.raises(BrokerConfigError, match="is not UTF-8 text"):
        Permissions.load(path)


def test_a_fifo_or_a_huge_file_at_the_path_is_refused_never_waited_for(tmp_path: Path) -> None:
    # the forwarding thread reloads this file: open() of a FIFO blocked it (and all forwarding) until
    # someone wrote to the FIFO
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    done = threading.Event()
    errors: list[str] = []

    def load() -> None:
        try:
            Permissions.load(fifo)
        except BrokerConfigError as exc:
            errors.append(str(exc))
        done.set()

    threading.Thread(target=load, daemon=True).start()
    if not done.wait(10):
        with open(fifo, "wb"):  # unblock the reader that waited for a writer
            pass
        raise AssertionError("loading a FIFO waited for a writer")
    assert errors and "is not a regular file" in errors[0]
    huge = tmp_path / "huge.toml"
    huge.write_bytes(b"#" * ((1 << 20) + 1))
    with pytest.raises(BrokerConfigError, match="has 1048577 bytes; at most 1048576 are read"):
        Permissions.load(huge)


def test_a_missing_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(BrokerConfigError, match="no such file; write one"):
        Permissions.load(tmp_path / "nope.toml")


def test_permissions_need_curve() -> None:
    with pytest.raises(BrokerConfigError, match=re.escape("permissions='p.toml' needs CURVE")):
        BrokerConfig(permissions="p.toml")


def test_publisher_ids_are_own_only_when_their_name_at_host_matches() -> None:
    feed = rules(publishers=["feed@host-a", "replay@*"])
    assert feed.owns(FEED)
    assert feed.owns("replay@anywhere:1:ab")
    assert not feed.owns(OTHER)
    assert not feed.owns("feed@host-a")  # not a publisher id: no pid, no token
    assert not feed.owns("feed@host-ab:1:x")


def test_publish_patterns_never_grant_reserved_keys_without_reserved() -> None:
    feed = rules(publish=["*"])
    assert feed.may_publish(("md", "AAPL"))
    assert not feed.may_publish(("$actors", "bye", "g"))
    assert rules(publish=["$actors.*"], reserved=True).may_publish(("$actors", "bye", "g"))
    assert not rules(publish=["md.*"]).may_publish(("mdx", "AAPL"))


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        (("md", "x"), None),
        (("$bus", "hb", "feed"), "heartbeat"),
        (("$bus", "slow", "feed"), "heartbeat"),
        (("$bus", "other"), None),
        (("$sync", FEED), "sync"),
        (("$ask", "risk", "check"), "ask"),
        (("$reply", FEED), "reply"),
        (("$lvc", "req"), "snapshot"),
        (("$lvc", "snap", FEED), "broker"),
        (("$broker", "stats"), "broker"),
        (("$ask",), "broker"),
    ],
)
def test_plumbing_keys_are_told_apart(key: tuple[str, ...], kind: str | None) -> None:
    assert plumbing_kind(key) == kind


def test_subscriptions_are_checked_by_prefix() -> None:
    feed = rules(subscribe=["md.*", "orders.new"], answers=["risk.*"])
    assert feed.may_subscribe(encode_key(("md",)))
    assert feed.may_subscribe(encode_key(("md", "AAPL")))
    assert feed.may_subscribe(encode_key(("orders", "new")))
    assert not feed.may_subscribe(b"md")  # would also receive 'mdx'
    assert not feed.may_subscribe(encode_key(("orders",)))
    assert not feed.may_subscribe(b"")
    assert feed.may_subscribe(encode_key(("$bus", "hb")))  # every hub hears every heartbeat
    assert feed.may_subscribe(encode_key(("$reply", FEED)))
    assert feed.may_subscribe(encode_key(("$sync", FEED)))
    assert feed.may_subscribe(encode_key(("$lvc", "snap", FEED)))
    assert not feed.may_subscribe(encode_key(("$reply", OTHER)))  # someone else's inbox
    assert not feed.may_subscribe(encode_key(("$reply",)))  # every inbox
    assert not feed.may_subscribe(encode_key(("$broker", "stats")))
    assert feed.may_subscribe(encode_key(("$ask", "risk")))
    assert not feed.may_subscribe(encode_key(("$ask", "pricing")))


def test_everything_needs_a_star_and_reserved() -> None:
    assert rules(subscribe=["*"]).may_subscribe(b"m")
    assert not rules(subscribe=["*"]).may_subscribe(b"$")
    assert not rules(subscribe=["*"]).may_subscribe(b"")
    assert rules(subscribe=["*"], reserved=True).may_subscribe(b"")


segments = st.text(alphabet="abc$", min_size=1, max_size=3)
keys = st.lists(segments, min_size=1, max_size=4).map(tuple)
heads = st.lists(st.text(alphabet="abc", min_size=1, max_size=3), min_size=1, max_size=2).map(tuple)


@given(rule=heads, star=st.booleans(), key=keys, cut=st.integers(0, 20))
def test_a_permitted_subscription_only_ever_receives_permitted_keys(
    rule: tuple[str, ...], star: bool, key: tuple[str, ...], cut: int
) -> None:
    pattern = (*rule, "*") if star else rule
    feed = rules(subscribe=[".".join(pattern)])
    prefix = encode_key(key)[:cut]
    if feed.may_subscribe(prefix) and encode_key(key).startswith(prefix) and not key[0].startswith("$"):
        # the subscriber can receive `key`: it is the rule's key or lies under it
        assert key[: len(rule)] == rule


@given(pattern=st.lists(st.sampled_from(["a", "b", "*"]), min_size=1, max_size=3).map(tuple), key=keys)
def test_publish_agrees_with_the_reference_matcher(pattern: tuple[str, ...], key: tuple[str, ...]) -> None:
    feed = rules(publish=[".".join(pattern)])
    expected = matches(key, pattern) and not key[0].startswith("$")
    assert feed.may_publish(key) == expected
