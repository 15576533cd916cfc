"""tickbus applications and the command: the top floor, which nothing imports.

- the ``tickbus`` command (:mod:`tickbus._cli`: one parser, one dispatch), also ``python -m tickbus``;
- ``tickbus broker`` around :class:`broker.Broker`; ``tickbus run`` around :func:`actors.serve_group`;
- the profiling collector daemon (:mod:`tickbus.collector`): discovers actor processes on the bus
  and publishes alerts there, around the bus-free core :mod:`observability.profiling`;
- ``tickbus profile``, ``tickbus trace``, ``tickbus keys``, ``tickbus deploy install``.

The floors below, each importing only the ones under it and only through their ``__init__``:
``actors`` (client library) → ``broker`` (wire contract and broker process) → ``observability``.
"""

from ._cli import main

__all__ = ["main"]
