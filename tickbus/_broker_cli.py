"""``tickbus broker`` and ``python -m broker``: run a broker until SIGTERM/SIGINT.

Once every endpoint is bound the command prints exactly one line to stdout and flushes it,
``tickbus broker ready frontend=<endpoints> backend=<endpoints>`` (comma-separated, wildcard ports
resolved), which scripts and test fixtures wait for. Logs go to stderr (loguru's default sink; this
package never configures sinks). Exit codes: 0 after a signal, 2 when the broker cannot start (one
line on stderr naming the endpoint or option and the fix), 1 after an internal failure.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from actors import ConfigError
from broker import DEFAULT_BACKEND, DEFAULT_FRONTEND, Broker, BrokerConfig
from observability import (
    BrokerError,
    ObservabilityError,
    SystemdNotifier,
    WatchdogFeeder,
    announce,
    configure_logging,
    metrics,
)

from ._service_config import apply_command_config

READY_PREFIX = "tickbus broker ready"
_DESCRIPTION = (
    "Run a tickbus broker: publishers connect to the frontend (XSUB), subscribers to the backend (XPUB); "
    "libzmq's proxy forwards between them. Statistics are published on ('$broker', 'stats'). "
    "SIGTERM/SIGINT stop it with exit code 0."
)

_LVC_LIMITS: tuple[tuple[str, type, str, str], ...] = (  # flag, type, metavar, help; BrokerConfig.lvc_*
    ("--lvc-max-pending", int, "N", "snapshot requests that may wait for their inbox at once"),
    ("--lvc-inbox-wait", float, "SECONDS", "drop a snapshot request whose inbox is not subscribed by then"),
    ("--lvc-request-rate", float, "PER_S", "snapshot requests a second per requester (name@host)"),
    ("--lvc-request-burst", int, "N", "snapshot requests one requester may make at once"),
    ("--lvc-total-request-rate", float, "PER_S", "snapshot requests a second from all requesters"),
    ("--lvc-max-requesters", int, "N", "requesters whose request rate the cache tracks"),
    ("--lvc-send-hwm", int, "PARTS", "snapshot reply parts queued towards the broker"),
)


def _lvc_limits(args: argparse.Namespace) -> dict[str, Any]:
    return {flag[2:].replace("-", "_"): getattr(args, flag[2:].replace("-", "_")) for flag, *_ in _LVC_LIMITS}


def add_options(parser: argparse.ArgumentParser) -> None:
    """Add the broker's options to ``parser`` (shared by ``tickbus broker`` and ``python -m broker``)."""
    defaults = BrokerConfig()
    parser.add_argument(
        "--frontend",
        action="append",
        metavar="URL",
        help=f"endpoint publishers connect to; repeatable, tcp:// or ipc:// (default {DEFAULT_FRONTEND})",
    )
    parser.add_argument(
        "--backend",
        action="append",
        metavar="URL",
        help=f"endpoint subscribers connect to; repeatable, tcp:// or ipc:// (default {DEFAULT_BACKEND})",
    )
    parser.add_argument(
        "--hwm",
        type=int,
        metavar="N",
        default=defaults.sndhwm,
        help="send and receive high-water mark per peer, in messages (default %(default)s)",
    )
    parser.add_argument(
        "--max-msg-size",
        type=int,
        metavar="BYTES",
        default=defaults.max_msg_size,
        help="disconnect a peer that sends a larger frame; -1 for no limit (default %(default)s)",
    )
    parser.add_argument(
        "--max-subscription",
        type=int,
        metavar="BYTES",
        default=defaults.max_subscription,
        help="disconnect a subscriber that sends a longer subscription (default %(default)s)",
    )
    parser.add_argument(
        "--heartbeat-ivl",
        type=float,
        metavar="SECONDS",
        default=defaults.heartbeat_ivl,
        help="ZMTP heartbeat interval; 0 disables heartbeats (default %(default)s)",
    )
    parser.add_argument(
        "--heartbeat-timeout",
        type=float,
        metavar="SECONDS",
        default=defaults.heartbeat_timeout,
        help="drop a peer silent this long after a heartbeat (default %(default)s)",
    )
    parser.add_argument(
        "--lvc",
        action="append",
        metavar="PATTERN",
        help="keep the latest message of keys matching this dotted pattern for late joiners' snapshots, "
        "e.g. 'price.*' ('*': every key); repeatable (default: no cache)",
    )
    for flag, kind, metavar, help_ in _LVC_LIMITS:
        parser.add_argument(
            flag,
            type=kind,
            metavar=metavar,
            default=getattr(defaults, flag[2:].replace("-", "_")),
            help=help_ + " (default %(default)s)",
        )
    parser.add_argument(
        "--stats-interval",
        type=float,
        metavar="SECONDS",
        default=defaults.stats_interval,
        help="publish statistics on ('$broker', 'stats') this often; 0 disables (default %(default)s)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics on 127.0.0.1:PORT/metrics (default $TICKBUS_METRICS_PORT; 0: off)",
    )
    parser.add_argument(
        "--curve-secret",
        metavar="FILE",
        help="serve CURVE with this secret key file (NAME.key_secret from `tickbus keys generate`); "
        "needs --allow-dir",
    )
    parser.add_argument(
        "--allow-dir",
        metavar="DIR",
        help="admit only clients whose public key file (NAME.key) is in DIR; re-read when DIR changes",
    )
    parser.add_argument(
        "--permissions",
        metavar="FILE",
        help="per-identity permissions (permissions.toml: what each allow-listed key may publish, "
        "subscribe, ask and answer); needs CURVE; forwards in Python, checked (default: off)",
    )
    parser.add_argument(
        "--max-subscriptions-per-identity",
        type=int,
        metavar="N",
        default=defaults.max_subscriptions_per_identity,
        help="with --permissions: distinct prefixes one identity may subscribe (default %(default)s)",
    )
    parser.add_argument(
        "--max-subscriptions-total",
        type=int,
        metavar="N",
        default=defaults.max_subscriptions_total,
        help="with --permissions: distinct prefixes the broker holds in total (default %(default)s)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback tcp endpoint without CURVE (unauthenticated, unencrypted)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="TOML file with a [broker] table (see observability._config); flags and "
        "$TICKBUS_BROKER_* override it",
    )


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``broker`` subcommand to the ``tickbus`` command's subparsers."""
    parser = subparsers.add_parser("broker", help="run a tickbus broker", description=_DESCRIPTION)
    add_options(parser)


def config_from_args(args: argparse.Namespace) -> BrokerConfig:
    """The :class:`BrokerConfig` the parsed options describe (:class:`BrokerConfigError` if invalid)."""
    return BrokerConfig(
        frontend=args.frontend or [DEFAULT_FRONTEND],
        backend=args.backend or [DEFAULT_BACKEND],
        sndhwm=args.hwm,
        rcvhwm=args.hwm,
        max_msg_size=args.max_msg_size,
        max_subscription=args.max_subscription,
        heartbeat_ivl=args.heartbeat_ivl,
        heartbeat_timeout=args.heartbeat_timeout,
        heartbeat_ttl=args.heartbeat_timeout,
        stats_interval=args.stats_interval,
        lvc_patterns=[tuple(p.split(".")) for p in args.lvc or ()],
        **_lvc_limits(args),
        curve_secret=str(args.curve_secret) if args.curve_secret else None,
        allow_dir=str(args.allow_dir) if args.allow_dir else None,
        insecure=bool(args.insecure),
        permissions=str(args.permissions) if args.permissions else None,
        max_subscriptions_per_identity=args.max_subscriptions_per_identity,
        max_subscriptions_total=args.max_subscriptions_total,
    )


def ready_line(broker: Broker) -> str:
    """The line announcing that ``broker`` has bound every endpoint."""
    return (
        f"{READY_PREFIX} frontend={','.join(broker.frontend_endpoints)} "
        f"backend={','.join(broker.backend_endpoints)}"
    )


def run(args: argparse.Namespace) -> int:
    """Run the broker the options describe until SIGTERM/SIGINT; return the exit code."""
    ready = False
    notifier = SystemdNotifier()  # READY/WATCHDOG/STOPPING under a Type=notify unit; else a no-op
    feeder: WatchdogFeeder | None = None

    def on_ready(broker: Broker) -> None:
        nonlocal ready, feeder
        # bound, signals handled: export OTLP JSON lines under the data directory (or to
        # $OTEL_EXPORTER_OTLP_ENDPOINT), and serve Prometheus if a port is set
        metrics.enable("broker", brokers=[broker], prometheus_port=args.metrics_port)
        ready = True
        announce(ready_line(broker))  # one write, from a thread (see actors._runner)
        notifier.ready(ready_line(broker))
        # alive = the proxy thread answers on its control socket and the statistics thread runs
        feeder = notifier.feed_from_thread(lambda: broker.running and _answers(broker))

    configure_logging("broker")
    broker: Broker | None = None
    try:
        # --config FILE's [broker], then $TICKBUS_BROKER_*
        args = apply_command_config(args, "broker", add_parser)
        broker = Broker(config_from_args(args))
        broker.run_forever(on_ready=on_ready)
    except (BrokerError, ObservabilityError, ConfigError) as exc:
        print(exc, file=sys.stderr, flush=True)
        return 1 if ready else 2
    finally:
        notifier.stopping()
        if feeder is not None:
            feeder.cancel()
        metrics.disable()
        if broker is not None:
            metrics.remove(broker)
    return 0


def _answers(broker: Broker) -> bool:
    try:
        broker.statistics(timeout=1.0)
    except BrokerError:
        return False
    return True
