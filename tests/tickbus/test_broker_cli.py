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


def test_the_snapshot_request_limits_come_from_flags_the_config_file_and_the_environment(
    tmp_path, monkeypatch
):
    from tickbus._service_config import apply_command_config

    parser = argparse.ArgumentParser(prog="tickbus")
    add_parser(parser.add_subparsers(dest="command"))
    defaults = config_from_args(parser.parse_args(["broker"]))
    assert (defaults.lvc_max_pending, defaults.lvc_inbox_wait, defaults.lvc_request_rate) == (64, 1.0, 10.0)
    assert (defaults.lvc_request_burst, defaults.lvc_total_request_rate) == (50, 200.0)
    assert (defaults.lvc_max_requesters, defaults.lvc_send_hwm) == (10_000, 64)
    path = tmp_path / "broker.toml"
    path.write_text("[broker]\nlvc_max_pending = 8\nlvc_request_rate = 2.5\nlvc_send_hwm = 4\n")
    monkeypatch.setenv("TICKBUS_BROKER_LVC_TOTAL_REQUEST_RATE", "30")
    args = parser.parse_args(
        ["broker", "--config", str(path), "--lvc-send-hwm", "16", "--lvc-inbox-wait", "0.5"]
    )
    config = config_from_args(apply_command_config(args, "broker", add_parser))
    assert (config.lvc_max_pending, config.lvc_request_rate, config.lvc_total_request_rate) == (8, 2.5, 30.0)
    assert (config.lvc_send_hwm, config.lvc_inbox_wait) == (16, 0.5)
