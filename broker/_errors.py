"""The broker's errors, a branch of tickbus's one exception tree (:mod:`actors._errors`).

::

    TickbusError
     └── BrokerError                                    the broker cannot start, run or answer
          ├── BindError (also actors.ConnectError)      a frontend/backend endpoint cannot be bound
          └── BrokerConfigError (also actors.ConfigError)  an option that does not validate

ZeroMQ's ``ZMQError`` and ``OSError`` are translated where they happen (binding, the control socket)
with ``raise ... from exc``; every message names the endpoint or option, what is wrong and the fix.
"""

from __future__ import annotations

from actors import ConfigError, ConnectError, TickbusError


class BrokerError(TickbusError):
    """The broker cannot start, run or answer a statistics request."""


class BindError(BrokerError, ConnectError):
    """A frontend or backend endpoint cannot be bound; the message names it, the reason and the fix."""


class BrokerConfigError(BrokerError, ConfigError):
    """A :class:`~broker.BrokerConfig` value (or CLI flag) outside what is allowed."""
