"""Broker fixtures (tests/broker/fixtures.py): real broker processes, short ipc dirs, a zmq context."""

from tests.broker.fixtures import broker, ctx, launch, short_tmp

__all__ = ["broker", "ctx", "launch", "short_tmp"]
