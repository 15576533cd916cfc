"""``tickbus broker``'s options build the :class:`broker.BrokerConfig` they describe."""

from __future__ import annotations

import argparse

from broker import BrokerConfig
from tickbus._broker_cli import add_parser, config_from_args


def test_cli_options_build_the_config_with_repeatable_endpoints():
    parser = argparse.ArgumentParser(prog="tickbus")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "broker",
            "--frontend",
            "tcp://127.0.0.1:1",
            "--frontend",
            "ipc:///tmp/f",
            "--backend",
            "tcp://127.0.0.1:2",
            "--hwm",
            "10",
            "--max-msg-size",
            "1024",
            "--heartbeat-ivl",
            "0.25",
            "--heartbeat-timeout",
            "1.5",
            "--stats-interval",
            "0.25",
        ]
    )
    config = config_from_args(args)
    assert config.frontend == ("tcp://127.0.0.1:1", "ipc:///tmp/f")
    assert config.backend == ("tcp://127.0.0.1:2",)
    assert (config.sndhwm, config.rcvhwm, config.max_msg_size) == (10, 10, 1024)
    assert (config.heartbeat_ivl, config.heartbeat_timeout, config.heartbeat_ttl) == (0.25, 1.5, 1.5)
    assert config.stats_interval == 0.25
    defaults = config_from_args(parser.parse_args(["broker"]))
    assert defaults == BrokerConfig()
