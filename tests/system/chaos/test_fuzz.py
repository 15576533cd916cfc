"""100,000 fuzzed messages at the broker (both sides) and through it at an actor, beside good traffic."""

from __future__ import annotations

import contextlib

import zmq

from actors.testing import BrokerProcess, eventually
from tests.system.chaos import fuzz
from tests.system.chaos.harness import LoadGen, account, assert_clean_exits, counting, wait_accounted

DOWNSTREAM = 70_000  # into the frontend under the actor's subscription: each reaches its hub
UPSTREAM = 30_000  # into the backend: each reaches every publisher's hub
WINDOW = 20_000  # fuzzed messages in flight at most (well under every high-water mark: none is lost)
BATCH = 5_000
ACTOR = "fuzzed"
LOGGED = {  # what the hub's log says for each reason of fuzz.downstream (any one of the phrases)
    "frames": ("dropped a message of",),
    "key": ("with a bad key", "has no key end", "is a bare key"),
    "header": ("with a bad header",),
    "payload": ("payload is not valid msgpack",),
    "oversize": ("(max_payload)",),
}


def connect_raw(ctx: zmq.Context[zmq.Socket[bytes]], kind: int, endpoint: str) -> zmq.Socket[bytes]:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.SNDHWM, 200_000)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


async def test_fuzzed_frames_crash_nothing_every_reject_is_counted_and_good_traffic_loses_nothing(
    transport: str, figures
):
    down = list(fuzz.downstream(DOWNSTREAM))
    up = fuzz.upstream(UPSTREAM)
    expected = fuzz.reasons(down)
    # a broker limit above the hubs' max_payload, so the oversize payloads reach the actor's hub
    broker = BrokerProcess.launch(transport=transport, extra_args=["--max-msg-size", str(32 << 20)])
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        async with counting(broker, [ACTOR]) as (counters, observer):
            counter = counters[ACTOR]
            raw_pub = connect_raw(ctx, zmq.XPUB, broker.frontend)  # an XPUB hears subscriptions
            raw_xsub = connect_raw(ctx, zmq.XSUB, broker.backend)
            load = LoadGen.launch(broker, rate=5_000)
            try:
                seen: set[bytes] = set()
                while fuzz.PREFIX not in seen:  # the broker forwards every subscription to a new publisher
                    if raw_pub.poll(10_000) == 0:
                        raise TimeoutError("the actor's subscription never reached the fuzzing socket")
                    seen.add(raw_pub.recv()[1:])

                def counted() -> int:
                    hub = observer.reports[ACTOR]["hub"]
                    return int(hub["malformed"]) + int(hub["malformed_upstream"])

                sent = 0
                for start in range(0, max(len(down), len(up)), BATCH):
                    for _, frames in down[start : start + BATCH]:
                        raw_pub.send_multipart(frames)
                    for frame in up[start : start + BATCH]:
                        raw_xsub.send(frame)
                    sent += len(down[start : start + BATCH]) + len(up[start : start + BATCH])
                    await eventually(lambda n=sent: counted() >= n - WINDOW, 30, "the actor keeping up")
                total_down, total_up = len(down), len(up)
                await eventually(
                    lambda: (
                        counted() >= total_down + total_up
                        and observer.hub.statistics().malformed_upstream >= total_up
                    ),
                    30,
                    "every fuzzed message counted",
                )
                load.halt()
                await wait_accounted(observer, [ACTOR], load.publisher_id, load.published)
                report = observer.reports[ACTOR]
                hub, good = report["hub"], account(report, load.publisher_id)
                at_observer = observer.hub.statistics().malformed_upstream
                figures(
                    f"{total_down} malformed downstream {dict(expected)} -> actor hub malformed "
                    f"{hub['malformed']} (oversize {hub['oversize']}); {total_up} upstream -> "
                    f"malformed_upstream {hub['malformed_upstream']} at the actor, {at_observer} at the "
                    f"observer; good traffic {good} of {load.published} published"
                )
                assert hub["malformed"] == total_down == sum(expected.values())
                assert hub["oversize"] == expected["oversize"]
                assert hub["malformed_by_reason"] == dict(expected)
                assert hub["malformed_upstream"] == total_up == at_observer
                assert good == {
                    "received": load.published,
                    "dropped": 0,
                    "gaps": 0,
                    "duplicates": 0,
                    "reordered": 0,
                }
                assert report["received"].get("?", 0) == 0, "no fuzzed message was delivered"
                assert report["actor"]["failures"] == 0
                # each reason is logged (rate-limited), not only counted; the process's log writer is a
                # thread woken once per burst, so a line logged last may reach the file a moment later
                # (a CI-style run read the log before the oversize line was in it)
                def unlogged() -> list[tuple[str, ...]]:
                    log = counter.log()
                    return [phrases for phrases in LOGGED.values() if not any(p in log for p in phrases)]

                with contextlib.suppress(TimeoutError):
                    await eventually(lambda: not unlogged(), 10, "a log line for each reason")
                assert unlogged() == [], "no log line with any of these phrases"
                assert broker.proc.poll() is None and counter.proc.poll() is None and load.proc.poll() is None
                assert_clean_exits(load, counters)
            finally:
                raw_pub.close(0)
                raw_xsub.close(0)
                load.close()
        assert broker.close() == 0, broker.log()[-2000:]
    finally:
        ctx.term()
        broker.close()
