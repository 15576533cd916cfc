"""The tickbus broker: one process every publisher and subscriber connects to.

Publishers connect to the *frontend* endpoints (an XSUB socket), subscribers to the *backend* ones
(an XPUB socket); each list may mix ``tcp://`` and ``ipc://``. Messages are forwarded by libzmq's
``zmq_proxy_steerable`` in its own thread, so no Python code runs per message. Subscriptions flow the
other way, deduplicated, so a publisher learns which key prefixes anyone wants.

Off that fast path the broker keeps :class:`BrokerStatistics` (frames and bytes from the proxy's
counters, connected publishers and subscribers from socket monitors, distinct subscribed prefixes)
and publishes them every ``stats_interval`` seconds as a normal tickbus message on the reserved key
``('$broker', 'stats')`` (:data:`STATS_KEY`); subscribe to ``('$broker', '*')`` to receive them.

Run it with ``tickbus broker`` or ``python -m broker`` (see :mod:`broker._cli`), or embed it:

>>> with Broker(BrokerConfig(frontend=["ipc:///tmp/fe"], backend=["ipc:///tmp/be"])) as broker:
...     print(broker.statistics().subscribers)
0
"""

from ._broker import Broker
from ._config import DEFAULT_BACKEND, DEFAULT_FRONTEND, BrokerConfig
from ._errors import BindError, BrokerConfigError, BrokerError
from ._stats import STATS_KEY, BrokerStatistics

__all__ = [
    "BindError",
    "Broker",
    "BrokerConfig",
    "BrokerConfigError",
    "BrokerError",
    "BrokerStatistics",
    "DEFAULT_BACKEND",
    "DEFAULT_FRONTEND",
    "STATS_KEY",
]
