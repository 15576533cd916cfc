"""tickbus actors: asyncio components that talk only by publishing and subscribing.

The aiopubsub API (``Hub``, ``Key``, ``Publisher``, ``Subscriber``, and its helpers ``Loop``,
``ThrottledPublisher``, ``MockHub``) works in one process with
``Hub()`` and across processes and hosts with ``hub = await actors.connect()``, which routes through
a ``tickbus broker``. Keys, pattern semantics and the envelope are the wire contract of :mod:`broker`;
``actors`` re-exports what applications use (``Key``, ``register_type``, the codec) and the whole
exception tree.
"""

from broker import (
    FORMAT_VERSION,
    ClientCurve,
    DecodeLimits,
    Header,
    Key,
    PossibleKey,
    decode_header,
    decode_key,
    decode_payload,
    encode_header,
    encode_key,
    encode_payload,
    is_reserved,
    matches,
    register_type,
    subscription_prefix,
)
from observability import (
    ActorError,
    AnswerError,
    AskError,
    AskTimeoutError,
    ConfigError,
    ConnectError,
    ConsumeQueueNotFoundError,
    EnvelopeError,
    InvalidKeyError,
    NoAnswererError,
    SnapshotError,
    TickbusError,
)

from ._actor import Actor, ActorStatistics
from ._ask import answers, ask, ask_statistics
from ._config import ActorSpec, GroupConfig, group_from_flags, load_group_config
from ._connect import DEFAULT_BACKEND, DEFAULT_FRONTEND, connect
from ._extras import Loop, MockHub, ThrottledPublisher
from ._hub import BrokerCopies, Hub, HubStatistics, Message
from ._limits import HubLimits
from ._mailbox import Mailbox
from ._markers import every, handler
from ._parent import watch_parent
from ._pubsub import Publisher, Subscriber, SubscriberStatistics
from ._redundancy import RedundantTracker
from ._remote import RemoteHub
from ._request import AskStatistics
from ._runner import app_version, load_actor_class, run_group, serve_group, version
from ._sequence import Observation, SequenceTracker

__all__ = [
    "Actor",
    "ActorError",
    "ActorSpec",
    "ActorStatistics",
    "AnswerError",
    "AskError",
    "AskStatistics",
    "AskTimeoutError",
    "BrokerCopies",
    "ClientCurve",
    "ConfigError",
    "ConnectError",
    "ConsumeQueueNotFoundError",
    "DEFAULT_BACKEND",
    "DEFAULT_FRONTEND",
    "DecodeLimits",
    "EnvelopeError",
    "FORMAT_VERSION",
    "GroupConfig",
    "Header",
    "Hub",
    "HubLimits",
    "HubStatistics",
    "InvalidKeyError",
    "Key",
    "Loop",
    "Mailbox",
    "Message",
    "MockHub",
    "NoAnswererError",
    "Observation",
    "PossibleKey",
    "Publisher",
    "RedundantTracker",
    "RemoteHub",
    "SequenceTracker",
    "SnapshotError",
    "Subscriber",
    "SubscriberStatistics",
    "ThrottledPublisher",
    "TickbusError",
    "answers",
    "app_version",
    "ask",
    "ask_statistics",
    "connect",
    "decode_header",
    "decode_key",
    "decode_payload",
    "encode_header",
    "encode_key",
    "encode_payload",
    "every",
    "group_from_flags",
    "handler",
    "is_reserved",
    "load_actor_class",
    "load_group_config",
    "matches",
    "register_type",
    "run_group",
    "serve_group",
    "subscription_prefix",
    "version",
    "watch_parent",
]
