"""What every exporter shares: the OpenTelemetry resource of this process and the data directory.

The data directory holds the embedded exports (OTLP JSON lines for traces and metrics, profiles
later): ``$TICKBUS_DATA_DIR`` if set, else ``$XDG_STATE_HOME/tickbus``, else ``~/.local/state/tickbus``.
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path

from opentelemetry.sdk.resources import Resource


def data_dir(create: bool = True) -> Path:
    """The directory for embedded exports (created unless ``create=False``)."""
    explicit = os.environ.get("TICKBUS_DATA_DIR")
    if explicit:
        path = Path(explicit)
    else:
        state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        path = Path(state) / "tickbus"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


@functools.cache
def tickbus_version() -> str:
    """The installed tickbus version (``0+unknown`` when run from a bare checkout).

    Looked up once a process: the code that runs does not change with what is installed later.
    """
    try:
        return metadata.version("tickbus")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def module_version(module: str) -> str | None:
    """The installed version of the distribution that provides ``module``'s top-level package.

    ``None`` when no installed distribution provides it (a bare checkout, a script directory).
    """
    top = module.partition(".")[0]
    for name in _distributions_by_package().get(top, ()):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


@functools.cache
def _distributions_by_package() -> Mapping[str, list[str]]:
    # Read once a process: it opens every installed distribution's metadata (and its RECORD where
    # it lists no top-level packages), 40-50 ms of one core in the demo's virtualenv. In a running
    # group that was a 30-55 ms stall of its loop right after its actors started.
    return metadata.packages_distributions()


def process_resource(service: str, actors: Sequence[str] = (), version: str | None = None) -> Resource:
    """This process's resource: service name (``$OTEL_SERVICE_NAME`` wins), version, host, pid, actors.

    ``service.version`` is the application's ``version`` (tickbus's when not given);
    ``$OTEL_RESOURCE_ATTRIBUTES`` is merged in by the SDK as usual.
    """
    attributes: dict[str, str | int] = {
        "service.name": os.environ.get("OTEL_SERVICE_NAME") or service,
        "service.version": version or tickbus_version(),
        "tickbus.version": tickbus_version(),
        "host.name": socket.gethostname(),
        "process.pid": os.getpid(),
    }
    if actors:
        attributes["tickbus.actors"] = ",".join(actors)
    return Resource.create(attributes)
