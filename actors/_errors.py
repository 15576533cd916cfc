"""The actors branch of tickbus's one exception tree (the root is defined in observability/_errors.py,
the bottom layer, and re-exported here as ``actors.TickbusError``).

::

    TickbusError
     ├── InvalidKeyError (also ValueError)      a key or pattern that cannot be routed
     ├── EnvelopeError (also ValueError)        a frame that is not a valid tickbus message
     ├── ConfigError (also ValueError)          a config file or flag that does not validate
     ├── ConnectError (also ConnectionError)    an endpoint that cannot be reached or bound
     ├── ConsumeQueueNotFoundError (also KeyError)  consume() on an unknown subscription id
     ├── ActorError                             an actor that cannot be loaded, started or run
     ├── BrokerError                            see broker/_errors.py
     └── ObservabilityError                     see observability/_errors.py

Library errors (``zmq.ZMQError``, msgpack's exceptions, ``OSError``) are translated at one boundary
with ``raise ... from exc``; ``asyncio.CancelledError`` is never swallowed.
"""

from __future__ import annotations

from observability._errors import TickbusError

__all__ = [
    "ActorError",
    "ConfigError",
    "ConnectError",
    "ConsumeQueueNotFoundError",
    "EnvelopeError",
    "InvalidKeyError",
    "TickbusError",
]


class InvalidKeyError(TickbusError, ValueError):
    """A key or pattern that cannot be routed (not strings, NUL inside a segment, ...)."""


class EnvelopeError(TickbusError, ValueError):
    """A received frame set that is not a valid tickbus message."""


class ConfigError(TickbusError, ValueError):
    """A configuration value that does not validate; the message names the file, key and allowed values."""


class ConnectError(TickbusError, ConnectionError):
    """An endpoint that cannot be bound or connected; the message names the endpoint and the reason."""


class ConsumeQueueNotFoundError(TickbusError, KeyError):
    """``consume()`` was asked for a subscription id that was never subscribed (or is sync-only)."""


class ActorError(TickbusError):
    """An actor that cannot be loaded, started or run."""
