"""The broker's peer log, socket-free: addresses by fd, gone peers, refusals counted and named."""

from __future__ import annotations

import socket

import zmq
from loguru import logger

from broker._peer_log import MAX_HOST_TOPICS, UNKNOWN, PeerLog, closed_by_peer, closing_hosts

TCP = "tcp://10.0.0.1:5550"


def capture() -> tuple[list[str], int]:
    lines: list[str] = []
    return lines, logger.add(lambda m: lines.append(m.record["message"]), level="INFO")


def capture_levels() -> tuple[list[tuple[str, str]], int]:
    lines: list[tuple[str, str]] = []
    sink = logger.add(lambda m: lines.append((m.record["level"].name, m.record["message"])), level="INFO")
    return lines, sink


def test_a_peer_that_closes_its_connection_left_at_info_with_its_address_and_age():
    clock = [100.0]
    log = PeerLog("frontend", {7: "10.0.0.2:40000"}.get, now=lambda: clock[0])
    lines, sink = capture_levels()
    try:
        log.on_event(zmq.EVENT_ACCEPTED, 7, TCP)
        log.on_event(zmq.EVENT_HANDSHAKE_SUCCEEDED, 0, TCP)
        assert log.address(7) == "10.0.0.2:40000"
        clock[0] = 112.5
        log.on_event(zmq.EVENT_DISCONNECTED, 7, TCP)
    finally:
        logger.remove(sink)
    assert lines == [
        ("INFO", "peer left: 10.0.0.2:40000 closed its connection to the broker frontend after 12.5 s")
    ]
    assert log.refused == 0 and log.address(7) is None


def test_a_connection_the_broker_closed_itself_is_a_peer_gone_warning():
    log = PeerLog("backend", {7: "10.0.0.2:40000"}.get, closed_by_peer=lambda address: False, now=lambda: 5.0)
    lines, sink = capture_levels()
    try:
        log.on_event(zmq.EVENT_ACCEPTED, 7, TCP)
        log.on_event(zmq.EVENT_DISCONNECTED, 7, TCP)
    finally:
        logger.remove(sink)
    assert lines == [
        (
            "WARNING",
            "peer gone: 10.0.0.2:40000 dropped by the broker backend after 0.0 s (no heartbeat answered, or "
            "a protocol error)",
        )
    ]


def test_closed_by_peer_tells_which_side_of_a_real_tcp_connection_closed_first():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        ports = frozenset({port})
        client = socket.create_connection(("127.0.0.1", port))
        accepted, address = server.accept()
        with accepted:
            client.close()  # the peer closes first: our side is in CLOSE_WAIT
            assert closed_by_peer(f"{address[0]}:{address[1]}", ports) is True
        client = socket.create_connection(("127.0.0.1", port))
        accepted, address = server.accept()
        with client:
            assert closed_by_peer(f"{address[0]}:{address[1]}", ports) is False  # established: nobody closed
            accepted.close()  # we close first: FIN_WAIT2 here, then TIME_WAIT
            assert closed_by_peer(f"{address[0]}:{address[1]}", ports) is False
    assert closed_by_peer("ipc pid 12 uid 0", frozenset()) is True


def _client(port: int, own_port: int = 0) -> socket.socket:
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    client.bind(("127.0.0.1", own_port))
    client.connect(("127.0.0.1", port))
    return client


def test_closed_by_peer_looks_only_at_connections_to_its_own_ports():
    # An earlier server (a broker killed in another test, say) closed first on a connection from the
    # client port p: its row lingers a minute in TIME_WAIT with remote 127.0.0.1:p. A new client of
    # ours from that same port closes first: that is "left", whatever the stale row says. (Found by
    # CI: a clean stop logged as "peer gone" after the chaos tests.)
    with socket.create_server(("127.0.0.1", 0)) as earlier:
        client = _client(earlier.getsockname()[1])
        reused = client.getsockname()[1]
        accepted, _ = earlier.accept()
        accepted.close()
        client.close()
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = _client(server.getsockname()[1], reused)
        accepted, address = server.accept()
        assert address[1] == reused
        with accepted:
            client.close()
            assert closed_by_peer(f"127.0.0.1:{reused}", frozenset({server.getsockname()[1]})) is True


def test_a_failed_handshake_is_a_counted_refusal_named_by_address_and_denied_key():
    denials = {"10.0.0.9": ("10.0.0.9", "KEY")}
    log = PeerLog(
        "backend", {3: "10.0.0.9:5000", 4: None}.get, denied_key=lambda h: denials.get(h or "10.0.0.9")
    )
    lines, sink = capture()
    try:
        log.on_event(zmq.EVENT_ACCEPTED, 3, TCP)
        log.on_event(zmq.EVENT_HANDSHAKE_FAILED_AUTH, 400, TCP)
        log.on_event(zmq.EVENT_DISCONNECTED, 3, TCP)
        log.on_event(zmq.EVENT_ACCEPTED, 4, TCP)  # closed before its address could be read
        log.on_event(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, 0x11000001, TCP)
        log.on_event(zmq.EVENT_DISCONNECTED, 4, TCP)
    finally:
        logger.remove(sink)
    assert log.refused == 2
    assert lines == [
        "refused peer 10.0.0.9:5000 on the broker backend: its CURVE key KEY is not on the allow-list "
        "(refused so far: 1)",
        f"refused peer {UNKNOWN} on the broker backend: handshake failed (no CURVE, or the wrong broker key?) "
        "(refused so far: 2)",
    ]


def test_refusals_from_one_host_are_logged_once_a_second_and_all_counted():
    log = PeerLog("frontend", lambda fd: f"10.0.0.5:{fd}")
    lines, sink = capture()
    try:
        for fd in range(10, 20):
            log.on_event(zmq.EVENT_ACCEPTED, fd, TCP)
            log.on_event(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, 0, TCP)
            log.on_event(zmq.EVENT_DISCONNECTED, fd, TCP)
    finally:
        logger.remove(sink)
    assert log.refused == 10 and len(lines) == 1 and lines[0].startswith("refused peer 10.0.0.5:10 ")


def test_refusals_from_ever_new_hosts_share_one_limit_past_the_first_hosts():
    # a peer knocking from ever new addresses (an IPv6 /64) must neither grow the log's table nor
    # get a line per address: 5,000 hosts made 5,000 topics, each logged at once
    hosts = [f"[2001:db8::{i:x}]" for i in range(5_000)]
    log = PeerLog("frontend", lambda fd: f"{hosts[fd]}:4000")
    lines, sink = capture()
    try:
        for fd in range(len(hosts)):
            log.on_event(zmq.EVENT_ACCEPTED, fd, TCP)
            log.on_event(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, 0, TCP)
            log.on_event(zmq.EVENT_DISCONNECTED, fd, TCP)
    finally:
        logger.remove(sink)
    assert log.refused == 5_000
    assert len(lines) == MAX_HOST_TOPICS + 1  # a line per host for the first ones, then one for the rest
    assert len(log._log._next) <= MAX_HOST_TOPICS + 1


def test_the_brokers_own_inproc_peers_are_ignored():
    log = PeerLog("frontend", lambda fd: "x")
    log.on_event(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, 0, "inproc://tickbus-broker-frontend")
    log.on_event(zmq.EVENT_DISCONNECTED, 1, "inproc://tickbus-broker-frontend")
    assert log.refused == 0


def test_a_refused_peer_closed_before_it_was_read_is_named_by_the_kernels_closing_connections():
    hosts: set[str] = {"10.0.0.7"}
    log = PeerLog("frontend", lambda fd: None, closing_hosts=lambda: set(hosts))
    lines, sink = capture()
    try:
        for fd, host in ((5, "10.0.0.7"), (6, "10.0.0.8")):
            hosts.add(host)
            log.on_event(zmq.EVENT_ACCEPTED, fd, TCP)
            log.on_event(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, 0, TCP)
            log.on_event(zmq.EVENT_DISCONNECTED, fd, TCP)
    finally:
        logger.remove(sink)
    assert [line.partition(" on the broker")[0] for line in lines] == [
        "refused peer 10.0.0.7 (closed before its port could be read)",
        f"refused peer {UNKNOWN} (one of 10.0.0.7, 10.0.0.8)",
    ]


def test_closing_hosts_reads_this_namespaces_closed_connections_on_a_port():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server closes first: its side lingers in FIN_WAIT/TIME_WAIT
        client.close()
        assert closing_hosts(frozenset({port})) == {"127.0.0.1"}


def test_a_storm_of_disconnects_reads_the_kernel_s_tcp_tables_once_per_batch(monkeypatch):
    # Each disconnect read and parsed all of /proc/net/tcp and tcp6, under the lock statistics()
    # (the watchdog's check) waits for: 10,000 peers leaving at once held it for seconds.
    import broker._peer_log as peer_log
    from broker import Broker, BrokerConfig
    from tests.broker.broker_helpers import eventually

    reads = [0]
    real_open = open

    def counting_open(path, *args, **kwargs):
        if str(path).startswith("/proc/net/tcp"):
            reads[0] += 1
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(peer_log, "open", counting_open, raising=False)
    peers = 200
    config = BrokerConfig(frontend=["tcp://127.0.0.1:*"], backend=["tcp://127.0.0.1:*"], stats_interval=0.0)
    ctx = zmq.Context()
    try:
        with Broker(config) as broker:
            port = int(broker.frontend_endpoints[0].rpartition(":")[2])
            sockets = []
            for _ in range(peers):
                sock = ctx.socket(zmq.PUB)
                sock.connect(broker.frontend_endpoints[0])
                sockets.append(sock)
            eventually(lambda: broker.statistics().publishers == peers, 30, "every peer connected")
            with broker._lock:  # the side thread waits: the storm's events queue up meanwhile
                for sock in sockets:
                    sock.close(linger=0)
                eventually(lambda: not _established_to(port), 30, "every connection closed")
                before = reads[0]
            eventually(lambda: broker.statistics().publishers == 0, 30, "every disconnect handled")
            # two tables (tcp, tcp6) per parse; a few batches at most, not one parse per peer
            assert reads[0] - before <= 2 * 5, f"{(reads[0] - before) // 2} parses for {peers} disconnects"
    finally:
        ctx.term()


def _established_to(port: int) -> bool:
    """Whether some connection to ``port`` on this host is still ESTABLISHED (read without the broker)."""
    wanted = f":{port:04X}"
    with open("/proc/net/tcp") as table:
        return any(
            row.split()[1].endswith(wanted) and row.split()[3] == "01"
            for row in table.read().splitlines()[1:]
        )
