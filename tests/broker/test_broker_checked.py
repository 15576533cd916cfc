"""An embedded broker with CURVE and permissions: the checked forwarder, its statistics, its reload."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from broker import (
    Broker,
    BrokerConfig,
    BrokerConfigError,
    ClientCurve,
    encode_header,
    encode_key,
    encode_message,
    generate_keys,
)

GRANT = '[identities.feed]\npublishers = ["feed@*"]\npublish = ["md.*"]\nsubscribe = ["md.*"]\n'
REVOKED = '[identities.feed]\npublishers = ["feed@*"]\nsubscribe = ["md.*"]\n'
FEED = "feed@h:1:a"
MD = encode_key(("md", "x"))


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Path, BrokerConfig, ClientCurve]]:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    generate_keys("broker", tmp_path)
    public, secret = generate_keys("feed", tmp_path)
    shutil.copy(public, allowed)
    permissions = tmp_path / "permissions.toml"
    permissions.write_text(GRANT)
    config = BrokerConfig(
        frontend=["tcp://127.0.0.1:*"],
        backend=["tcp://127.0.0.1:*"],
        curve_secret=str(tmp_path / "broker.key_secret"),
        allow_dir=str(allowed),
        permissions=str(permissions),
        stats_interval=0,
    )
    yield permissions, config, ClientCurve.from_files(tmp_path / "broker.key", secret)


def client(
    ctx: zmq.Context[zmq.Socket[bytes]], kind: int, curve: ClientCurve, endpoint: str
) -> zmq.Socket[bytes]:
    sock = ctx.socket(kind)
    curve.apply(sock)
    sock.connect(endpoint)
    return sock


def test_a_checked_broker_forwards_what_is_granted_and_rereads_the_file_when_it_changes(
    setup: tuple[Path, BrokerConfig, ClientCurve], ctx: zmq.Context[zmq.Socket[bytes]]
) -> None:
    permissions, config, curve = setup
    with Broker(config) as broker:
        assert broker.statistics().checked is True
        sub = client(ctx, zmq.SUB, curve, broker.backend_endpoints[0])
        sub.setsockopt(zmq.SUBSCRIBE, encode_key(("md",)))
        pub = client(ctx, zmq.XPUB, curve, broker.frontend_endpoints[0])
        assert pub.poll(10_000) and pub.recv() == b"\x01" + encode_key(("md",))  # applied, sent upstream
        pub.send(encode_message(MD, encode_header(FEED, 1, 0, 0), b"\x01"))
        assert sub.poll(10_000) and sub.recv().startswith(MD + b"\xff")
        permissions.write_text(REVOKED)
        deadline, seq = time.monotonic() + 20, 1
        while not broker.statistics().denied.get("feed", {}).get("publish"):  # the reload: once a second
            assert time.monotonic() < deadline, "the rewritten permissions were never applied"
            seq += 1
            pub.send(encode_message(MD, encode_header(FEED, seq, 0, 0), b"\x01"))
            sub.poll(50)
        pub.send(encode_message(MD, encode_header(FEED, seq + 1, 0, 0), b"after"))
        late = []
        while sub.poll(300):  # what was forwarded before the reload may still be on its way
            late.append(sub.recv())
        assert not any(frame.endswith(b"after") for frame in late)
        stats = broker.statistics()
        assert stats.frames_in >= stats.frames_out > 0


def test_a_bad_permissions_file_stops_the_start_naming_it(
    setup: tuple[Path, BrokerConfig, ClientCurve],
) -> None:
    permissions, config, _ = setup
    permissions.write_text("[identities.feed]\npublish = 3\n")
    with pytest.raises(
        BrokerConfigError, match=r"permissions\.toml, table \[identities\.feed\], field 'publish'"
    ):
        Broker(config).start()


def test_a_rewritten_file_that_is_not_utf8_keeps_the_previous_rules_and_the_broker(
    setup: tuple[Path, BrokerConfig, ClientCurve], ctx: zmq.Context[zmq.Socket[bytes]]
) -> None:
    from loguru import logger

    permissions, config, curve = setup
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="ERROR")
    try:
        with Broker(config) as broker:
            sub = client(ctx, zmq.SUB, curve, broker.backend_endpoints[0])
            sub.setsockopt(zmq.SUBSCRIBE, encode_key(("md",)))
            pub = client(ctx, zmq.XPUB, curve, broker.frontend_endpoints[0])
            assert pub.poll(10_000) and pub.recv() == b"\x01" + encode_key(("md",))
            permissions.write_bytes(b"[identities.feed]\npublish = ['md.\xff']\n")
            deadline = time.monotonic() + 20
            while not any("not UTF-8 text" in line for line in lines):  # the reload check: once a second
                assert time.monotonic() < deadline, f"no reload error logged: {lines}"
                time.sleep(0.05)
            pub.send(encode_message(MD, encode_header(FEED, 1, 0, 0), b"still"))
            assert sub.poll(10_000) and sub.recv().endswith(b"still")  # alive, previous rules kept
            assert broker.statistics().checked is True
    finally:
        logger.remove(sink)
