"""tickbus actors: asyncio components that talk only by publishing and subscribing.

The aiopubsub API (``Hub``, ``Key``, ``Publisher``, ``Subscriber``) works in one process with
``Hub()`` and across processes and hosts with ``hub = await actors.connect()``, which routes through
a ``tickbus broker``. Keys and pattern semantics: :mod:`actors._keys`.
"""

from ._actor import Actor, ActorStatistics, every, handler
from ._ask import answers, ask, ask_statistics
from ._config import ActorSpec, GroupConfig, load_group_config
from ._connect import DEFAULT_BACKEND, DEFAULT_FRONTEND, connect
from ._curve import ClientCurve
from ._envelope import (
    FORMAT_VERSION,
    Header,
    decode_header,
    decode_payload,
    encode_header,
    encode_payload,
    register_type,
)
from ._errors import (
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
from ._hub import Hub, HubStatistics, Message, Publisher, Subscriber, SubscriberStatistics
from ._keys import Key, PossibleKey, decode_key, encode_key, is_reserved, matches, subscription_prefix
from ._mailbox import Mailbox
from ._remote import RemoteHub
from ._request import AskStatistics
from ._runner import load_actor_class, run_group, version
from ._sequence import Observation, SequenceTracker
from ._systemd import SystemdNotifier

__all__ = [
    "Actor",
    "ActorError",
    "ActorSpec",
    "ActorStatistics",
    "AnswerError",
    "AskError",
    "AskStatistics",
    "AskTimeoutError",
    "ClientCurve",
    "ConfigError",
    "ConnectError",
    "ConsumeQueueNotFoundError",
    "DEFAULT_BACKEND",
    "DEFAULT_FRONTEND",
    "EnvelopeError",
    "FORMAT_VERSION",
    "GroupConfig",
    "Header",
    "Hub",
    "HubStatistics",
    "InvalidKeyError",
    "Key",
    "Mailbox",
    "Message",
    "NoAnswererError",
    "Observation",
    "PossibleKey",
    "Publisher",
    "RemoteHub",
    "SequenceTracker",
    "SnapshotError",
    "Subscriber",
    "SubscriberStatistics",
    "SystemdNotifier",
    "TickbusError",
    "answers",
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
    "handler",
    "is_reserved",
    "load_actor_class",
    "load_group_config",
    "matches",
    "register_type",
    "run_group",
    "subscription_prefix",
    "version",
]
