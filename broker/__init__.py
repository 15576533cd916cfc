"""The tickbus broker and the wire contract every client speaks.

**The wire contract** (no sockets, no asyncio):

- keys and matching: :class:`Key`, ``*`` wildcards, the wire form (:func:`encode_key`), the prefix a
  pattern subscribes (:func:`subscription_prefix`), and :class:`SubscriptionIndex` for routing;
- the envelope codec: one frame ``key KEY_END header payload`` (format 2), one header encoder
  (:func:`encode_header`) and one decoder (:func:`decode_header`), :func:`encode_message` /
  :func:`decode_message` / :func:`split_message` for whole frames, the payload codec;
- every reserved key and the publisher-id format (``broker._reserved``);
- CURVE key files (:func:`generate_keys`, :class:`ClientCurve`).

**The broker process.** Publishers connect to the *frontend* endpoints (an XSUB socket), subscribers
to the *backend* ones (an XPUB socket); each list may mix ``tcp://`` and ``ipc://``. Messages are
forwarded by libzmq's ``zmq_proxy_steerable`` in its own thread, so no Python code runs per message.
Subscriptions flow the other way, deduplicated, so a publisher learns which key prefixes anyone wants.

Off that fast path the broker keeps :class:`BrokerStatistics` (frames and bytes from the proxy's
counters, connected publishers and subscribers from socket monitors, distinct subscribed prefixes)
and publishes them every ``stats_interval`` seconds as a normal tickbus message on the reserved key
``('$broker', 'stats')`` (:data:`STATS_KEY`); subscribe to ``('$broker', '*')`` to receive them.

Run it with ``tickbus broker`` (see ``tickbus broker --help``), or embed it:

>>> with Broker(BrokerConfig(frontend=["ipc:///tmp/fe"], backend=["ipc:///tmp/be"])) as broker:
...     print(broker.statistics().subscribers)
0
"""

from observability import BindError, BrokerConfigError, BrokerError

from ._broker import Broker
from ._config import DEFAULT_BACKEND, DEFAULT_FRONTEND, DEFAULT_MAX_SUBSCRIPTION, BrokerConfig
from ._curve import ENV_SECRET, ENV_SERVER_KEY, ClientCurve, generate_keys, load_key_pair, load_public_key
from ._envelope import (
    FIXED,
    FLAG_TRACE,
    FORMAT_VERSION,
    FRAMES,
    KEY_END,
    MAX_HEADER_BYTES,
    MAX_PUBLISHER_ID,
    DecodeLimits,
    Header,
    decode_header,
    decode_header_at,
    decode_large_payload,
    decode_message,
    decode_payload,
    decode_small_payload,
    describe_frames,
    encode_header,
    encode_message,
    encode_payload,
    encode_traced_header,
    ext_hook,
    header_length,
    pack_payload,
    register_type,
    reset_payload_packer,
    split_message,
    trace_at,
)
from ._index import SubscriptionIndex
from ._keys import (
    RESERVED_PREFIX,
    WILDCARD,
    Key,
    PossibleKey,
    decode_key,
    encode_key,
    is_reserved,
    matches,
    subscription_prefix,
    validate,
)
from ._lvc import CacheStatistics, LastValueCache
from ._lvc import parse_request as parse_snapshot_request
from ._reserved import (
    ACTORS,
    ALERTS_PROFILE,
    ASK,
    BROKER_STATS,
    HEARTBEAT,
    LVC_INBOX,
    LVC_REQUEST,
    REPLY,
    SLOW,
    SYNC,
    PublisherId,
    new_publisher_id,
    parse_publisher_id,
    publisher_identity,
)
from ._stats import STATS_KEY, BrokerStatistics

__all__ = [
    "ACTORS",
    "ALERTS_PROFILE",
    "ASK",
    "BROKER_STATS",
    "BindError",
    "Broker",
    "BrokerConfig",
    "BrokerConfigError",
    "BrokerError",
    "BrokerStatistics",
    "CacheStatistics",
    "ClientCurve",
    "DEFAULT_BACKEND",
    "DEFAULT_FRONTEND",
    "DEFAULT_MAX_SUBSCRIPTION",
    "DecodeLimits",
    "ENV_SECRET",
    "ENV_SERVER_KEY",
    "FIXED",
    "FLAG_TRACE",
    "FORMAT_VERSION",
    "FRAMES",
    "HEARTBEAT",
    "Header",
    "KEY_END",
    "Key",
    "LVC_INBOX",
    "LVC_REQUEST",
    "LastValueCache",
    "MAX_HEADER_BYTES",
    "MAX_PUBLISHER_ID",
    "PossibleKey",
    "PublisherId",
    "REPLY",
    "RESERVED_PREFIX",
    "SLOW",
    "STATS_KEY",
    "SYNC",
    "SubscriptionIndex",
    "WILDCARD",
    "decode_header",
    "decode_header_at",
    "decode_key",
    "decode_large_payload",
    "decode_message",
    "decode_payload",
    "decode_small_payload",
    "describe_frames",
    "encode_header",
    "encode_key",
    "encode_message",
    "encode_payload",
    "encode_traced_header",
    "ext_hook",
    "generate_keys",
    "header_length",
    "is_reserved",
    "load_key_pair",
    "load_public_key",
    "matches",
    "new_publisher_id",
    "pack_payload",
    "parse_publisher_id",
    "parse_snapshot_request",
    "publisher_identity",
    "register_type",
    "reset_payload_packer",
    "split_message",
    "subscription_prefix",
    "trace_at",
    "validate",
]
