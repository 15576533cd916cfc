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
     ├── SnapshotError                          no snapshot from the broker's last-value cache
     ├── AskError                               a request (``ask``) that got no answer
     │    ├── AskTimeoutError (also TimeoutError)  no reply within the timeout
     │    ├── NoAnswererError (also LookupError)   nobody answers that key (known at once)
     │    └── AnswerError                       the answering handler raised; its error, re-raised here
     ├── BrokerError                            see broker/_errors.py
     └── ObservabilityError                     see observability/_errors.py

Library errors (``zmq.ZMQError``, msgpack's exceptions, ``OSError``) are translated at one boundary
with ``raise ... from exc``; ``asyncio.CancelledError`` is never swallowed.
"""

from __future__ import annotations

from observability._errors import TickbusError

__all__ = [
    "ActorError",
    "AnswerError",
    "AskError",
    "AskTimeoutError",
    "ConfigError",
    "ConnectError",
    "ConsumeQueueNotFoundError",
    "EnvelopeError",
    "InvalidKeyError",
    "NoAnswererError",
    "SnapshotError",
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


class SnapshotError(TickbusError):
    """No snapshot: the broker has no last-value cache, or its reply did not arrive in time."""


class AskError(TickbusError):
    """A request made with ``ask`` that did not get an answer (see :mod:`actors._ask`)."""


class AskTimeoutError(AskError, TimeoutError):
    """No reply arrived within the ask's timeout; a reply arriving later is counted and dropped."""


class NoAnswererError(AskError, LookupError):
    """Nobody answers the asked key, as far as the asking hub knows: no ``@answers`` pattern matches it."""


class AnswerError(AskError):
    """The answering handler raised; ``error_type``, ``answerer`` and the message say what and where."""

    def __init__(self, message: str, *, error_type: str = "", answerer: str = "") -> None:
        super().__init__(message)
        self.error_type = error_type
        self.answerer = answerer
