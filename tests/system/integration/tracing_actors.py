"""An actor the tracing tests run through ``tickbus run``."""

from __future__ import annotations

from typing import Any

from actors import Actor, Key, handler


class Logger(Actor):
    """Logs every ``('trace-log', *)`` from its handler, then answers at ``('trace-ack', *)``."""

    name = "logger"

    @handler(("trace-log", "*"))
    def on_log(self, key: Key, payload: Any) -> None:
        self.log.info("logging {} in a handler", payload)
        self.publish(("trace-ack", *key[1:]), payload)
