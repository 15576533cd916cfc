"""Publisher heartbeats, publishers gone quiet, restarts and slow consumers, through a real broker."""

from __future__ import annotations

import asyncio
import signal
import time

import actors
from actors.testing import BrokerProcess, eventually
from tests.system.integration.outage import outage


async def test_losses_at_the_tail_of_a_stream_are_counted_from_heartbeats():
    async with outage(pub_hwm=50) as run:
        sub_hub, pub_hub, received = run.sub_hub, run.pub_hub, run.received
        for i in range(40):  # within the high-water mark
            pub_hub.publish(actors.Key("t", "x"), i)
        await eventually(lambda: len(received) == 40, 5, "the first 40 arrived")
        run.kill()
        sent = 40
        for _ in range(20):  # into the void, and then nothing more: only a heartbeat can tell
            for _ in range(100):
                pub_hub.publish(actors.Key("t", "x"), sent)
                sent += 1
            await asyncio.sleep(0.01)
        run.restart()
        await eventually(lambda: sub_hub.connected and pub_hub.connected, 5, "both hubs reconnected")
        # What the publisher's send queue held when the broker died arrives after the reconnect, so the
        # loss is only known once the stream has settled: every message sent is received or a gap.
        await eventually(
            lambda: len(received) + sub_hub.statistics().gaps == sent,
            10,
            f"all {sent} received or counted lost",
        )
        heard = sub_hub.statistics().heartbeats  # two more repeat the report: it must not count twice
        await eventually(lambda: sub_hub.statistics().heartbeats >= heard + 4, 10, "two more heartbeats each")
        stats = sub_hub.statistics()
        print(f"sent {sent}, received {len(received)}, lost {sent - len(received)}, gaps {stats.gaps}")
        assert sent - len(received) > 0
        assert stats.gaps == sent - len(received)
        assert stats.heartbeats > 0 and stats.publishers_live >= 1


async def test_a_publisher_that_stops_heartbeating_is_reported_gone_and_a_restart_is_an_incarnation(
    tickbus_broker,
):
    sub_hub = await actors.connect(tickbus_broker.frontend, tickbus_broker.backend, name="sub")
    got: list[tuple[str, int]] = []
    try:
        actors.Subscriber(sub_hub, "s").add_sync_listener(actors.Key("t", "*"), lambda k, p: got.append(p))
        await sub_hub.sync()
        first = await actors.connect(
            tickbus_broker.frontend, tickbus_broker.backend, name="feed", idle_heartbeat=0.2
        )
        await first.wait_for_subscribers(("t", "x"))
        for i in range(1, 4):
            first.publish(actors.Key("t", "x"), ("first", i))
        await eventually(
            lambda: sub_hub.statistics().publishers_live >= 2, 5, "the feed's heartbeat"
        )  # and its own
        first._send_farewell = lambda: None  # type: ignore[method-assign]  # a crash: no farewell heartbeat
        await first.close()  # no goodbye: only the missing heartbeats tell
        closed = time.monotonic()
        await eventually(lambda: sub_hub.statistics().publishers_gone == 1, 5, "the feed reported gone")
        gone_after = time.monotonic() - closed
        second = await actors.connect(tickbus_broker.frontend, tickbus_broker.backend, name="feed")
        try:
            await second.wait_for_subscribers(("t", "x"))
            for i in range(1, 4):
                second.publish(actors.Key("t", "x"), ("second", i))
            await eventually(lambda: len(got) == 6, 5, "both incarnations' messages")
        finally:
            await second.close()  # a clean close: its farewell heartbeat says it left
        await eventually(lambda: sub_hub.statistics().publishers_live == 1, 5, "the second feed's farewell")
        stats = sub_hub.statistics()
        assert stats.publishers_gone == 1  # the crash only: the clean close is not "gone"
        print(f"gone reported {gone_after:.2f} s after the feed closed (3 x 0.2 s heartbeats)")
        assert gone_after < 2.0
        assert stats.incarnations == 1
        assert stats.gaps == stats.duplicates == stats.reordered == 0
    finally:
        await sub_hub.close()


async def test_a_hub_that_falls_behind_flags_itself_slow_and_recovers(tickbus_broker):
    watcher = await actors.connect(tickbus_broker.frontend, tickbus_broker.backend, name="watcher")
    sub_hub = await actors.connect(
        tickbus_broker.frontend, tickbus_broker.backend, name="sub", slow_after=0.5
    )
    pub_hub = await actors.connect(tickbus_broker.frontend, tickbus_broker.backend, name="pub")
    events: list[dict[str, object]] = []
    got: list[int] = []
    try:
        actors.Subscriber(watcher, "w").add_sync_listener(
            actors.Key("$bus", "slow", "*"), lambda k, p: events.append(p)
        )
        await watcher.sync()
        actors.Subscriber(sub_hub, "s").add_sync_listener(actors.Key("t", "*"), lambda k, p: got.append(p))
        await sub_hub.sync()
        await pub_hub.wait_for_subscribers(("t", "x"))
        await pub_hub.wait_for_subscribers(("$bus", "slow", "sub"))
        pub_hub.publish(actors.Key("t", "x"), 0)
        time.sleep(1.0)  # noqa: ASYNC251 -- the whole loop stalls: the sub hub will process a 1 s old message
        await eventually(lambda: len(got) == 1, 5, "the old message")
        await eventually(lambda: sub_hub.statistics().slow, 2, "the sub hub flagged slow")
        for i in range(1, 20):
            pub_hub.publish(actors.Key("t", "x"), i)
            await asyncio.sleep(0.02)
        await eventually(
            lambda: [e["state"] for e in events if e["hub"] == "sub"] == ["slow", "recovered"],
            5,
            f"slow, then recovered: {events}",
        )
        stats = sub_hub.statistics()
        assert stats.slow_episodes == 1 and not stats.slow
        first = next(e for e in events if e["hub"] == "sub")
        assert float(first["lag_seconds"]) >= 0.9  # type: ignore[arg-type]
    finally:
        for hub in (watcher, sub_hub, pub_hub):
            await hub.close()


async def test_a_broker_gone_silent_is_detected_by_zmtp_heartbeats_within_three_seconds():
    broker = BrokerProcess.launch()
    hub = await actors.connect(broker.frontend, broker.backend, name="sub")
    try:
        broker.signal(signal.SIGSTOP)  # the process and its TCP stack stay: only heartbeats can tell
        stopped = time.monotonic()
        await eventually(lambda: not hub.connected, 5, "the hub noticed the silent broker")
        noticed = time.monotonic() - stopped
        broker.signal(signal.SIGCONT)
        await hub.wait_connected(5)
        print(f"silent broker noticed after {noticed:.2f} s (0.5 s heartbeats, 2 s timeout)")
        assert noticed <= 3.0
        assert hub.statistics().disconnects >= 1
    finally:
        broker.signal(signal.SIGCONT)
        await hub.close()
        broker.close()


async def test_a_hub_without_heartbeats_closes_without_a_farewell_nobody_could_parse(tickbus_broker):
    sub_hub = await actors.connect(tickbus_broker.frontend, tickbus_broker.backend, name="sub")
    got: list[object] = []
    try:
        actors.Subscriber(sub_hub, "s").add_sync_listener(actors.Key("t", "*"), lambda k, p: got.append(p))
        await sub_hub.sync()
        quiet = await actors.connect(
            tickbus_broker.frontend, tickbus_broker.backend, name="top-like", idle_heartbeat=0
        )
        await quiet.wait_for_subscribers(("t", "x"))
        quiet.publish(actors.Key("t", "x"), 1)
        await eventually(lambda: got == [1], 5, "the message")
        await quiet.close()  # heartbeats off (`tickbus top`): no farewell, whose interval would be 0
        await sub_hub.sync()  # a round trip after the close: anything it sent has arrived
        assert sub_hub.statistics().malformed == 0
    finally:
        await sub_hub.close()
