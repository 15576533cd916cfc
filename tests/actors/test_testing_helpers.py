"""``actors.testing``'s helpers that tests everywhere lean on."""

from __future__ import annotations

import socket

from actors.testing import free_tcp_port


def test_free_ports_in_a_row_are_distinct_and_bindable() -> None:
    # The kernel may give a port just released out again at once: a frontend and a backend asked
    # for one after the other once got the same port (a broker that refused to start, in the bench).
    ports = [free_tcp_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    for port in ports[-2:]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))
