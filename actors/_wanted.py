"""What the bus subscribes, as a publishing hub sees it: socket-free.

Problem: a hub serialises and sends a key only when somebody on the bus subscribes to it, and what
it knows of the bus's subscriptions is whatever its XPUB sockets were told, by any peer: it must
hold at most a configured number of prefixes of a bounded length, and answer "does anyone want
this key?" at a bounded cost whatever the key.

Approach: :class:`BusSubscriptions` keeps one set of prefixes per broker (a broker pair tells each
hub the same subscriptions twice) and, with several brokers, how many brokers want each prefix: a
key is wanted while any broker wants it. A new prefix beyond ``max_prefixes`` stored, or longer than
``max_prefix`` bytes, is refused (:meth:`subscribe` returns why; the hub counts and logs it and
does not tell its socket). Every accepted change bumps :attr:`epoch`, which the hub compares with
the epoch it last checked a key at, so a key's "wanted" is looked up once per subscription change,
not per message. The XPUB sockets themselves are the hub's part (:mod:`actors._sending`).
"""

from __future__ import annotations

from collections.abc import Collection

from broker import encode_key, subscription_prefix


class BusSubscriptions:
    """The prefixes the bus subscribes, per broker, bounded (see the module doc)."""

    def __init__(self, brokers: int, *, max_prefixes: int, max_prefix: int) -> None:
        self.max_prefixes, self.max_prefix = max_prefixes, max_prefix
        self.sets: list[set[bytes]] = [set() for _ in range(brokers)]
        self._counts: dict[bytes, int] = {}  # several brokers: prefix -> brokers that want it
        # the union of every broker's set; with one broker that broker's set itself
        self.prefixes: Collection[bytes] = self.sets[0] if brokers == 1 else self._counts
        self.refused = 0
        self.epoch = 0  # bumped by every change the hub accepted (see the module doc)

    def subscribe(self, broker: int, prefix: bytes) -> str | None:
        """A subscription to ``prefix`` from ``broker``'s side of the bus: None when accepted (the
        hub then tells its socket, even for a prefix it stored already: the pipe it came from is new),
        else why it was refused (counted in :attr:`refused`)."""
        prefixes = self.sets[broker]
        if prefix in prefixes:
            return None
        if len(prefix) > self.max_prefix:
            self.refused += 1
            return f"a {len(prefix)}-byte prefix is over max_subscription={self.max_prefix}"
        if len(prefixes) >= self.max_prefixes:
            self.refused += 1
            return f"{len(prefixes)} prefixes are stored (max_remote_subscriptions)"
        prefixes.add(prefix)
        if len(self.sets) > 1:
            self._counts[prefix] = self._counts.get(prefix, 0) + 1
        self.epoch += 1
        return None

    def unsubscribe(self, broker: int, prefix: bytes) -> bool:
        """An unsubscription from ``broker``'s side: True when the prefix was stored (now gone)."""
        prefixes = self.sets[broker]
        if prefix not in prefixes:
            return False
        prefixes.discard(prefix)
        if len(self.sets) > 1:
            left = self._counts[prefix] - 1
            if left:
                self._counts[prefix] = left
            else:
                del self._counts[prefix]
        self.epoch += 1
        return True

    def wants(self, kb: bytes) -> bool:
        """True when a stored prefix covers the wire key (or prefix) ``kb``.

        ZeroMQ matches byte prefixes: hubs subscribe at segment ends, the broker's last-value cache
        to single bytes, a foreign ZeroMQ client to any. No stored prefix is longer than
        ``max_prefix``, so no longer one is looked up: a bounded cost whatever ``kb`` (every prefix
        of a 64 KiB reply key took 0.5 s).
        """
        prefixes = self.prefixes
        return any(kb[:i] in prefixes for i in range(min(len(kb), self.max_prefix) + 1))

    def wants_key(self, key: tuple[str, ...]) -> bool:
        """True when a subscriber anywhere would receive ``key`` (``*`` segments allowed; ``('*',)``: any)."""
        if tuple(key) == ("*",):
            return bool(self.prefixes)
        kb = subscription_prefix(key) if "*" in key else encode_key(key)
        if key and key[0].startswith("$"):  # reserved: a leading '*' (wire prefix b"") never matches it
            ends = [i + 1 for i, c in enumerate(kb[: self.max_prefix]) if c == 0]
            return any(kb[:end] in self.prefixes for end in ends)
        return self.wants(kb)
