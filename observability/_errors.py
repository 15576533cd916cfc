"""tickbus's one exception tree. Every package raises these; each re-exports the branch it raises.

::

    TickbusError                                 root of everything tickbus raises on purpose
     ├── InvalidKeyError (also ValueError)       a key or pattern that cannot be routed
     ├── EnvelopeError (also ValueError)         a frame that is not a valid tickbus message
     ├── ConfigError (also ValueError)           a config file, variable or flag that does not validate
     ├── ConnectError (also ConnectionError)     an endpoint that cannot be reached or bound
     ├── ConsumeQueueNotFoundError (also KeyError)  consume() on an unknown subscription id
     ├── ActorError                              an actor that cannot be loaded, started or run
     ├── SnapshotError                           no snapshot from the broker's last-value cache
     ├── AskError                                a request (``ask``) that got no answer
     │    ├── AskTimeoutError (also TimeoutError)   no reply within the timeout
     │    ├── NoAnswererError (also LookupError)    nobody answers that key (known at once)
     │    └── AnswerError                        the answering handler raised; its error, re-raised here
     ├── BrokerError                             the broker cannot start, run or answer
     │    ├── BindError (also ConnectError)      a frontend/backend endpoint cannot be bound
     │    └── BrokerConfigError (also ConfigError)  a broker option that does not validate
     └── ObservabilityError                      anything observability cannot set up
          ├── MetricsError                       metrics exporters cannot start (a port in use, ...)
          ├── TracingError                       tracing cannot start, or a trace cannot be read
          └── ProfilerError                      the profiler cannot sample, store or answer
               ├── SamplerError                  Austin cannot start, attach or keep sampling
               │    └── PtraceNotPermittedError (also PermissionError)  the kernel refuses reads
               └── ProfileStoreError             profiles.sqlite cannot be opened or written

The tree lives in the bottom package (``observability``) so that every package above derives from
it without an import cycle. ``actors`` re-exports all of it (users write ``actors.AskTimeoutError``),
``broker`` its branch, ``observability`` everything.

Library errors (``zmq.ZMQError``, msgpack's exceptions, ``OSError``, ``sqlite3.Error``, Austin's)
are translated at one boundary with ``raise ... from exc``; ``asyncio.CancelledError`` is never
swallowed. Messages name the endpoint, file, key or process, what is wrong, and the fix.
"""

from __future__ import annotations

__all__ = [
    "ActorError",
    "AnswerError",
    "AskError",
    "AskTimeoutError",
    "BindError",
    "BrokerConfigError",
    "BrokerError",
    "ConfigError",
    "ConnectError",
    "ConsumeQueueNotFoundError",
    "EnvelopeError",
    "InvalidKeyError",
    "MetricsError",
    "NoAnswererError",
    "ObservabilityError",
    "ProfileStoreError",
    "ProfilerError",
    "PtraceNotPermittedError",
    "SamplerError",
    "SnapshotError",
    "TickbusError",
    "TracingError",
]


class TickbusError(Exception):
    """Root of every error tickbus raises on purpose."""


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
    """A request made with ``ask`` that did not get an answer."""


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


class BrokerError(TickbusError):
    """The broker cannot start, run or answer a statistics request."""


class BindError(BrokerError, ConnectError):
    """A frontend or backend endpoint cannot be bound; the message names it, the reason and the fix."""


class BrokerConfigError(BrokerError, ConfigError):
    """A broker option (config value or CLI flag) outside what is allowed."""


class ObservabilityError(TickbusError):
    """Root of the errors raised by :mod:`observability`."""


class MetricsError(ObservabilityError):
    """A metrics exporter cannot start; the message names the endpoint or file and the fix."""


class TracingError(ObservabilityError):
    """Tracing cannot start or a trace file cannot be read; the message names the setting or file."""


class ProfilerError(ObservabilityError):
    """The profiling collector cannot sample, store or answer a query."""


class SamplerError(ProfilerError):
    """Austin cannot be started, cannot attach to a process, or failed while sampling it."""


class PtraceNotPermittedError(SamplerError, PermissionError):
    """The kernel does not let Austin read the target's memory; the message says how to allow it."""


class ProfileStoreError(ProfilerError):
    """The profile store (``profiles.sqlite``) cannot be opened, read or written."""
