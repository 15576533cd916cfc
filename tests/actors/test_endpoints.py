"""Which broker endpoints make libzmq resolve a host name (each broker of a pair then gets an I/O
thread of its own: see tests/system/integration/test_dns_outage.py)."""

from __future__ import annotations

import pytest

from actors._remote import names_a_host


@pytest.mark.parametrize(
    ("endpoint", "resolved"),
    [
        ("tcp://127.0.0.1:5555", False),
        ("tcp://[::1]:5555", False),
        ("tcp://[fe80::1%eth0]:5555", False),
        ("tcp://10.0.0.1;10.0.0.2:5555", False),  # a source address, then the broker's
        ("ipc:///run/tickbus/frontend", False),
        ("tcp://broker-a:5555", True),
        ("tcp://localhost:5555", True),
        ("tcp://10.0.0.1;broker-b.example:5555", True),
        ("tcp://not an endpoint", True),  # not understood: treated as a name
    ],
)
def test_an_endpoint_names_a_host_unless_it_gives_an_address(endpoint: str, resolved: bool) -> None:
    assert names_a_host(endpoint) is resolved
