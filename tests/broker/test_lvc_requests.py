"""The last-value cache's bounds on snapshot requests, without sockets (broker._lvc_requests)."""

from __future__ import annotations

import pytest

from broker import BrokerConfig, BrokerConfigError
from broker._lvc import LastValueCache
from broker._lvc_requests import Pending, PendingRequests, ReplyPlan, RequestGate, split


def test_a_requester_gets_its_burst_then_its_rate_and_others_are_unaffected():
    gate = RequestGate(rate=10.0, burst=3, total_rate=1000.0, max_requesters=100)
    assert [gate.admit("rogue@h", 0.0) for _ in range(5)] == [True, True, True, False, False]
    assert gate.admit("legit@h", 0.0) is True
    assert gate.admit("rogue@h", 0.1) is True  # one token back after 0.1 s at 10/s
    assert gate.limited == 2


def test_made_up_requester_ids_cannot_get_around_the_total_rate_nor_grow_the_table():
    gate = RequestGate(rate=10.0, burst=3, total_rate=50.0, max_requesters=100)
    admitted = sum(gate.admit(f"fake{n}@h", 0.0) for n in range(10_000))
    assert admitted == 50  # the total bucket's burst (one second's worth)
    assert gate.limited == 10_000 - 50
    assert len(gate) == 100


def test_a_refused_requester_does_not_spend_the_shared_tokens():
    gate = RequestGate(rate=1.0, burst=1, total_rate=2.0, max_requesters=10)
    assert gate.admit("rogue@h", 0.0)
    assert not any(gate.admit("rogue@h", 0.0) for _ in range(100))
    assert gate.admit("legit@h", 0.0)


def test_pending_requests_are_bounded_answered_on_subscription_and_expire_at_their_deadline():
    pending = PendingRequests(max_pending=3)
    a, b, c = (Pending(str(n), ("px", "*"), inbox, 1.0 + n) for n, inbox in enumerate([b"i1", b"i2", b"i1"]))
    assert all(pending.add(r) for r in (a, b, c))
    assert not pending.add(Pending("d", ("px", "*"), b"i3", 5.0))
    assert pending.full == 1 and len(pending) == 3
    assert pending.subscribed(b"i1") == [a, c]
    assert pending.subscribed(b"i1") == []
    assert pending.next_deadline() == 2.0
    assert pending.expire(1.5) == []
    assert pending.expire(2.0) == [b]
    assert (len(pending), pending.expired, pending.next_deadline()) == (0, 1, None)


def test_many_answered_requests_behind_a_waiting_one_do_not_pile_up():
    pending = PendingRequests(max_pending=4)
    pending.add(Pending("slow", ("*",), b"never", 100.0))
    for n in range(10_000):
        pending.add(Pending(str(n), ("*",), b"fast", 100.0))
        pending.subscribed(b"fast")
    assert len(pending) == 1
    assert len(pending._queue) <= 2 * 4 + 16 + 1


def test_a_reply_plan_builds_each_part_only_when_asked_and_the_parts_match_the_old_split():
    entries = [[b"k%d" % n, b"h", b"x" * 100] for n in range(1200)]
    bounds = split(entries, 512, 1 << 20)
    assert bounds == [0, 512, 1024, 1200]
    plan = ReplyPlan("r", b"inbox", entries, bounds, 0.0)
    parts = []
    while not plan.finished:
        parts.append(plan.part())
        plan.sent(1.0)
    assert [(p["part"], p["parts"], len(p["entries"])) for p in parts] == [
        (0, 3, 512),
        (1, 3, 512),
        (2, 3, 176),
    ]
    assert split([], 512, 1 << 20) == [0, 0]  # an empty snapshot is one empty part
    assert ReplyPlan.refusal("r", b"i", "no", 0.0).part() == {"id": "r", "error": "no"}


def test_the_cache_still_answers_all_parts_at_once_for_callers_of_parts():
    cache = LastValueCache(max_keys=10, max_bytes=1 << 20, patterns=[("px", "*")])
    cache.store(b"px\x00a\x00", b"h", b"p")
    assert cache.parts("r", ("px", "*")) == [
        {"id": "r", "part": 0, "parts": 1, "entries": [[b"px\x00a\x00", b"h", b"p"]]}
    ]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("lvc_max_pending", 0),
        ("lvc_request_burst", 0),
        ("lvc_send_hwm", -1),
        ("lvc_request_rate", -1.0),
        ("lvc_inbox_wait", float("nan")),
        ("lvc_total_request_rate", "fast"),
        ("lvc_max_requesters", 1.5),
    ],
)
def test_request_limits_are_validated(option, value):
    with pytest.raises(BrokerConfigError, match=option):
        BrokerConfig(**{option: value})
