"""The model of ``tickbus top``: statistics payloads folded into rows, rates and percentiles, no sockets.

Payloads come from the real code: ``run_group`` on an in-process hub publishes the group statistics,
``broker.BrokerStatistics`` and ``observability.profiling.alert_record``-shaped dicts the rest.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
from typing import Any

from rich.console import Console

import actors
import broker
from actors import ActorStatistics, Hub, HubStatistics, Key
from actors.testing import eventually
from observability import Histogram
from tickbus import _top_model
from tickbus._top_model import SORT_KEYS, STALE_AFTER, BusModel, percentile
from tickbus._top_view import Frames, plain_text, render

TARGETS = ["tests.system.integration.top_actors:Feed", "tests.system.integration.top_actors:Sink"]


def hub_stats(**counters: Any) -> dict[str, Any]:
    fields = {"published": 0, "delivered": 0, "listener_errors": 0, "patterns": 0, **counters}
    return dataclasses.asdict(HubStatistics(**fields))


def actor_stats(name: str, **counters: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": name,
        "handled": 0,
        "failures": 0,
        "consecutive_failures": 0,
        "queued": 0,
        "dropped": 0,
        "published": 0,
        "timer_runs": 0,
        "timer_overruns": 0,
        "running": True,
    }
    return dataclasses.asdict(ActorStatistics(**{**fields, **counters}))


def histogram(*values: int) -> list[list[int]]:
    h = Histogram()
    for v in values:
        h.record(v)
    return [list(b) for b in h.bucket_bounds()]


def group_payload(
    pid: int = 100, *, hub: dict[str, Any] | None = None, **actor_rows: dict[str, Any]
) -> dict[str, Any]:
    """The shape of ``actors._runner.group_statistics``; ``timing`` from each row's ``_timing``."""
    timing = {
        name: row.pop("_timing", {"handler_ns": [], "latency_ns": []}) for name, row in actor_rows.items()
    }
    return {
        "group": "g",
        "pid": pid,
        "host": "h1",
        "hub": hub or hub_stats(),
        "ask": {},
        "actors": {name: actor_stats(name, **row) for name, row in actor_rows.items()},
        "timing": timing,
    }


def broker_payload(uptime: float, forwarded: int, **more: Any) -> dict[str, Any]:
    stats = broker.BrokerStatistics(
        uptime_s=uptime,
        frames_in=forwarded,  # format 2: one frame a message
        bytes_in=forwarded * 100,
        frames_out=forwarded,
        bytes_out=forwarded * 100,
        messages_forwarded=forwarded,
        subscription_frames_in=0,
        subscription_frames_out=0,
        subscribers=2,
        publishers=3,
        subscriptions=4,
    )
    payload = stats.as_dict() | more
    payload.update(frontend=["tcp://127.0.0.1:5550"], backend=["tcp://127.0.0.1:5551"])
    return payload


def test_percentile_reports_the_upper_bound_of_the_bucket_holding_it() -> None:
    assert percentile({}, 50) is None
    assert percentile({10: 99, 1000: 1}, 50) == 10
    assert percentile({10: 99, 1000: 1}, 99) == 10
    assert percentile({10: 98, 1000: 2}, 99) == 1000


def test_broker_rates_come_from_counter_differences_over_the_broker_uptime() -> None:
    model = BusModel()
    model.on_message(Key("$broker", "stats"), broker_payload(10.0, 1000), now=1.0)
    assert model.broker is not None and model.broker.msg_rate is None
    model.on_message(Key("$broker", "stats"), broker_payload(12.0, 3000), now=1.1)
    b = model.broker
    assert b.msg_rate == 1000.0 and b.byte_rate == 100_000.0
    assert (b.publishers, b.subscribers, b.subscriptions, b.messages_forwarded) == (3, 2, 4, 3000)
    assert b.endpoints == ["tcp://127.0.0.1:5550", "tcp://127.0.0.1:5551"]


def test_a_broker_pair_shows_a_row_per_broker_each_with_its_own_rates_and_a_dead_one_goes_stale() -> None:
    model = BusModel()
    a, b = broker_payload(10.0, 1000), broker_payload(500.0, 90_000)
    b.update(frontend=["tcp://10.0.0.2:5550"], backend=["tcp://10.0.0.2:5551"])
    model.on_message(Key("$broker", "stats"), a, now=1.0)
    model.on_message(Key("$broker", "stats"), b, now=1.0)
    model.on_message(Key("$broker", "stats"), broker_payload(12.0, 3000), now=3.0)
    b2 = broker_payload(501.0, 90_500)
    b2.update(frontend=["tcp://10.0.0.2:5550"], backend=["tcp://10.0.0.2:5551"])
    model.on_message(Key("$broker", "stats"), b2, now=3.0)
    rows = sorted(model.brokers.values(), key=lambda r: r.endpoints)
    assert [(r.endpoints[0], r.msg_rate) for r in rows] == [
        ("tcp://10.0.0.2:5550", 500.0),
        ("tcp://127.0.0.1:5550", 1000.0),
    ]
    model.on_message(Key("$broker", "stats"), broker_payload(14.0, 5000), now=3.0 + STALE_AFTER + 1)
    model.refresh(3.0 + STALE_AFTER + 1.5)
    assert [r.stale for r in sorted(model.brokers.values(), key=lambda r: r.endpoints)] == [True, False]
    assert "broker STALE:" in plain_text(model, "group")


def test_group_and_actor_rates_come_from_counter_differences_between_reports() -> None:
    model = BusModel()
    model.on_message(
        Key("$actors", "stats", "g"),
        group_payload(hub=hub_stats(received=100, published=10), a={"handled": 100, "published": 10}),
        now=5.0,
    )
    row = model.actor_rows()[0]
    assert (row.group, row.actor, row.in_rate) == ("g", "a", None)
    model.on_message(
        Key("$actors", "stats", "g"),
        group_payload(
            hub=hub_stats(received=300, published=60, gaps=4, publishers_gone=1, publish_dropped=2, skimmed=3),
            a={"handled": 300, "published": 60, "dropped": 7, "queued": 3},
        ),
        now=7.0,
    )
    (row,) = model.actor_rows()
    assert (row.in_rate, row.out_rate, row.dropped, row.queued) == (100.0, 25.0, 7, 3)
    (group,) = model.group_rows()
    assert (group.in_rate, group.out_rate, group.gaps, group.skimmed, group.dropped, group.publishers_gone) == (
        100.0,
        25.0,
        4,
        3,
        2,
        1,
    )
    assert (group.host, group.pid, group.state) == ("h1", 100, "up")


def test_a_restarted_group_gets_no_rate_for_the_interval_of_the_restart() -> None:
    model = BusModel()
    model.on_message(Key("$actors", "stats", "g"), group_payload(100, a={"handled": 500}), now=1.0)
    model.on_message(Key("$actors", "stats", "g"), group_payload(200, a={"handled": 5}), now=2.0)
    assert model.actor_rows()[0].in_rate is None
    model.on_message(Key("$actors", "stats", "g"), group_payload(200, a={"handled": 25}), now=3.0)
    assert model.actor_rows()[0].in_rate == 20.0


def test_percentiles_describe_the_last_interval_only() -> None:
    model = BusModel()
    slow = histogram(*[5_000_000] * 100)  # 100 handlers of 5 ms before
    model.on_message(
        Key("$actors", "stats", "g"),
        group_payload(a={"_timing": {"handler_ns": slow, "latency_ns": []}}),
        now=1.0,
    )
    assert model.actor_rows()[0].handler_p50 is not None and model.actor_rows()[0].handler_p50 >= 5_000_000
    both = histogram(*[5_000_000] * 100, *[2_000] * 100)  # then 100 of 2 µs
    lat = histogram(*[40_000] * 99, 9_000_000)
    model.on_message(
        Key("$actors", "stats", "g"),
        group_payload(a={"_timing": {"handler_ns": both, "latency_ns": lat}}),
        now=2.0,
    )
    row = model.actor_rows()[0]
    assert row.handler_p50 is not None and 2_000 <= row.handler_p50 < 2_300
    assert row.handler_p99 is not None and row.handler_p99 < 2_300
    assert row.latency_p50 is not None and 40_000 <= row.latency_p50 < 45_000
    assert row.latency_p99 is not None and row.latency_p99 < 45_000  # 99 of 100 under 45 µs


def test_actor_rows_sort_by_each_column_highest_first() -> None:
    model = BusModel()
    model.on_message(Key("$actors", "stats", "g"), group_payload(feed={}, zsink={}), now=1.0)
    model.on_message(
        Key("$actors", "stats", "g"),
        group_payload(feed={"published": 100, "dropped": 1}, zsink={"handled": 100, "queued": 9}),
        now=2.0,
    )
    names = {sort: [r.actor for r in model.actor_rows(sort)] for sort in SORT_KEYS}
    assert names["group"] == ["feed", "zsink"]
    assert names["in/s"] == ["zsink", "feed"]
    assert names["out/s"] == ["feed", "zsink"]
    assert names["dropped"] == ["feed", "zsink"]
    assert names["queued"] == ["zsink", "feed"]


def test_groups_go_stale_without_reports_and_stopped_after_bye() -> None:
    model = BusModel()
    model.on_message(
        Key("$actors", "hello", "g"), {"group": "g", "pid": 1, "host": "h", "actors": ["a"]}, now=1.0
    )
    model.on_message(Key("$actors", "stats", "g"), group_payload(1, a={}), now=1.0)
    model.on_message(Key("$actors", "stats", "g"), group_payload(1, a={"handled": 10}), now=2.0)
    model.refresh(2.0 + STALE_AFTER + 0.1)
    assert model.group_rows()[0].state == "stale"
    assert model.actor_rows()[0].stale and model.actor_rows()[0].in_rate is None
    model.on_message(Key("$actors", "bye", "g"), {"group": "g", "pid": 1}, now=9.0)
    assert model.group_rows()[0].state == "stopped"
    model.on_message(
        Key("$actors", "hello", "g"), {"group": "g", "pid": 2, "host": "h", "actors": ["a"]}, now=10.0
    )
    assert model.group_rows()[0].state == "up"


def test_slow_notices_and_profile_alerts_stay_until_recovered_or_resolved() -> None:
    model = BusModel()
    notice = {"hub": "g", "publisher_id": "g@h:1:ab", "lag_seconds": 1.5, "gaps": 3, "state": "slow"}
    model.on_message(Key(*broker.SLOW, "g"), notice, now=1.0)
    alert = {
        "state": "active",
        "group": "g",
        "actor": "a",
        "function": {"name": "A.on_tick", "file": "x.py", "line": 3},
        "share": "own",
        "relative_change": 0.5,
    }
    model.on_message(Key(*broker.ALERTS_PROFILE, "a"), alert, now=1.0)
    model.on_message(Key("$actors", "stats", "g"), group_payload(a={}), now=1.0)
    model.refresh(1.0)
    assert list(model.slow) == ["g"] and len(model.alerts) == 1 and model.actor_rows()[0].alerts == 1
    text = plain_text(model, "group")
    assert "slow consumer: g processing messages 1.50s old, 3 gaps" in text
    assert "profile alert: A.on_tick in actor a (group g): own share +50.0%" in text
    model.on_message(Key(*broker.SLOW, "g"), {**notice, "state": "recovered"}, now=2.0)
    model.on_message(Key(*broker.ALERTS_PROFILE, "a"), {**alert, "state": "resolved"}, now=2.0)
    assert not model.slow and not model.alerts


def test_malformed_payloads_are_ignored_not_fatal() -> None:
    model = BusModel()
    model.on_message(Key("$actors", "stats", "g"), [1, 2], now=1.0)
    model.on_message(
        Key("$actors", "stats", "g"), {"hub": 3, "actors": {"a": "x"}, "timing": {"a": [[1]]}}, now=1.0
    )
    model.on_message(Key("$broker", "stats"), {"uptime_s": "x", "denied": {}}, now=1.0)
    assert model.ignored == 1 and model.actor_rows() == []


def test_plain_text_frame_has_no_terminal_control_codes() -> None:
    model = BusModel()
    model.on_message(Key("$broker", "stats"), broker_payload(1.0, 10), now=1.0)
    model.on_message(Key("$actors", "stats", "g"), group_payload(a={"handled": 1}), now=1.0)
    text = plain_text(model, "in/s")
    assert "\x1b" not in text
    assert "broker:" in text and "forwarded 10" in text and "sorted by in/s" in text and " a " in text


async def test_model_reads_the_statistics_a_real_group_publishes() -> None:
    hub = Hub(name="g")
    model = BusModel()
    loop = asyncio.get_running_loop()
    actors.Subscriber(hub, "top").add_sync_listener(
        Key("$actors", "*"), lambda key, payload: model.on_message(key, payload, loop.time())
    )
    config = actors.group_from_flags(TARGETS, name="g", frontend=None, backend=None, drain_timeout=1.0)
    stop = asyncio.Event()
    task = loop.create_task(actors.run_group(config, hub=hub, stop=stop, stats_interval=0.2))

    def busy() -> bool:
        rows = {r.actor: r for r in model.actor_rows()}
        return bool(
            rows.get("feed") and rows["feed"].out_rate and rows["zsink"].in_rate and rows["zsink"].handler_p99
        )

    try:
        await eventually(busy, 10, "rates and handler times of both actors")
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 10) == 0
    rows = {r.actor: r for r in model.actor_rows()}
    assert set(rows) == {"feed", "zsink"}
    assert rows["zsink"].handled > 0 and not rows["feed"].running  # the final report, after the drain
    assert model.group_rows()[0].state == "stopped"  # the final report, then bye


def terminal_text(renderable: Any) -> str:
    """What a colour terminal would be sent for ``renderable``."""
    out = io.StringIO()
    Console(file=out, width=200, force_terminal=True, color_system="truecolor").print(renderable)
    return out.getvalue()


HOSTILE = {
    "g[/x]": "[bold red]H",  # a closing tag that opens nothing: rich raised MarkupError
    "[link=https://evil.example]ok[/link]": "h2",
    "\x1b[2J\x1b]8;;https://evil.example\x07clear": "\x1b[31mred",
}


def test_peer_names_are_shown_as_written_never_as_markup_or_escape_codes() -> None:
    model = BusModel()
    for group, host in HOSTILE.items():
        model.on_message(Key("$actors", "hello", group), {}, now=1.0)
        model.on_message(Key("$actors", "stats", group), {**group_payload(a={}), "host": host}, now=1.0)
    alert = {"state": "active", "group": "[b]g", "actor": "\x1b[5ma", "function": {"name": "f[/i]"}}
    model.on_message(Key(*broker.ALERTS_PROFILE, "a"), alert, now=1.0)
    model.on_message(Key(*broker.SLOW, "[/s]"), {"state": "slow", "lag_seconds": 1, "gaps": 2}, now=1.0)
    model.refresh(1.0)
    text = plain_text(model, "group")
    assert "\x1b" not in text
    for shown in ("g[/x]", "[bold red]H", "[link=https://evil.example]ok[/link]", "\\x1b[2J\\x1b]8;;"):
        assert shown in text, shown
    assert "profile alert: f[/i] in actor \\x1b[5ma (group [b]g)" in text
    assert "slow consumer: [/s] processing messages 1.00s old, 2 gaps" in text
    sent = terminal_text(render(model, "group"))  # colours, yes; the peers' own sequences, no
    assert "\x1b[2J" not in sent and "\x1b]8" not in sent and "\x1b[31m" not in sent and "\x1b[5m" not in sent
    assert "g[/x]" in sent and "[bold red]H" in sent


def test_a_frame_that_fails_is_counted_and_the_previous_one_stays(monkeypatch) -> None:
    model = BusModel()
    model.on_message(Key("$actors", "stats", "g"), group_payload(a={}), now=1.0)
    frames, shown = Frames(), []

    def show(frame: Any) -> None:
        shown.append(terminal_text(frame))  # rendering, as Live.update(refresh=True) does

    assert frames.draw(model, "group", show) and frames.failures == 0

    class Broken:
        def __rich_console__(self, console: Any, options: Any) -> Any:
            raise ValueError("a cell that cannot be drawn")

    import tickbus._top_view as view

    monkeypatch.setattr(view, "_status", lambda model, failures: Broken())  # fails while being drawn
    assert not frames.draw(model, "group", show)
    monkeypatch.setattr(view, "_groups", lambda model, rows: 1 / 0)  # fails while being built
    assert not frames.draw(model, "group", show)
    assert frames.failures == 2 and len(shown) == 3
    assert "ZeroDivisionError: division by zero" in frames.last_failure
    for frame in shown[1:]:  # the last good frame again, with the count below it
        assert "g" in frame and " a " in frame
        assert "previous frame shown: frames failed" in frame
    monkeypatch.undo()
    assert frames.draw(model, "group", show)
    assert "frames failed 2 (last: ZeroDivisionError: division by zero)" in shown[-1]


def test_slow_notice_and_alert_fields_of_the_wrong_type_are_not_drawn() -> None:
    model = BusModel()
    for hub, lag, gaps in (("h", "x", "y"), ("h2", [1], {"a": 1}), ("h3", 2**64, True)):
        model.on_message(Key(*broker.SLOW, hub), {"state": "slow", "lag_seconds": lag, "gaps": gaps}, now=1.0)
    alert = {"state": "active", "group": "g", "actor": "a", "function": "f", "relative_change": 10**19}
    model.on_message(Key(*broker.ALERTS_PROFILE, "a"), alert, now=1.0)
    model.on_message(Key(*broker.ALERTS_PROFILE, "b"), {**alert, "actor": "b", "share": ["x"]}, now=1.0)
    assert model.slow["h"].lag_seconds is None and model.slow["h2"].gaps is None
    text = plain_text(model, "group")
    assert "slow consumer: h processing messages ?s old, ? gaps" in text
    assert "slow consumer: h2 processing messages ?s old, ? gaps" in text
    assert f"slow consumer: h3 processing messages {2.0**64:.2f}s old, ? gaps" in text
    assert "profile alert: f in actor a (group g):  share +1000000000000000000000.0%" in text
    assert "profile alert: f in actor b (group g):  share +1000000000000000000000.0%" in text
    assert model.ignored == 0


def test_every_table_is_bounded_and_what_did_not_fit_is_counted_and_shown() -> None:
    model = BusModel()
    for i in range(_top_model._MAX_GROUPS + 10):
        model.on_message(Key("$actors", "hello", f"g{i}"), {"host": "h"}, now=1.0)
    assert len(model.groups) == _top_model._MAX_GROUPS and model.ignored == 10
    model.on_message(Key("$actors", "stats", "g9999"), group_payload(a={}), now=1.0)
    assert "g9999" not in model.groups and "g9999" not in model._before and model.ignored == 11
    many = {f"a{i}": {} for i in range(_top_model._MAX_ACTORS + 5)}
    model.on_message(Key("$actors", "stats", "g0"), group_payload(**many), now=1.0)
    assert len(model.actors) == _top_model._MAX_ACTORS and model.ignored == 16
    assert len(model._before["g0"].actors) == _top_model._MAX_ACTORS
    for i in range(_top_model._MAX_SLOW + 3):
        model.on_message(Key(*broker.SLOW, f"h{i}"), {"state": "slow"}, now=1.0)
    assert len(model.slow) == _top_model._MAX_SLOW and model.ignored == 19
    alert = {"state": "active", "group": "g0", "actor": "a0"}
    for i in range(20_000):
        model.on_message(Key(*broker.ALERTS_PROFILE, "a0"), {**alert, "function": f"f{i}"}, now=1.0)
    assert (
        len(model.alerts) == _top_model._MAX_ALERTS and model.ignored == 19 + 20_000 - _top_model._MAX_ALERTS
    )
    model.on_message(
        Key(*broker.ALERTS_PROFILE, "a0"), {**alert, "function": "f0", "state": "resolved"}, now=1.0
    )
    model.on_message(Key(*broker.ALERTS_PROFILE, "a0"), {**alert, "function": "new"}, now=1.0)
    assert ("g0", "a0", "new") in model.alerts  # a resolved alert makes room
    status = plain_text(model, "group").splitlines()[1]  # under the broker's line
    assert status.startswith(f"messages {model.messages}  ignored {model.ignored} "), status


def test_the_live_frame_draws_no_more_rows_than_the_screen_has() -> None:
    model = BusModel()
    for i in range(30):
        model.on_message(Key("$actors", "hello", f"g{i:02}"), {}, now=1.0)
        model.on_message(Key(*broker.SLOW, f"h{i:02}"), {"state": "slow", "lag_seconds": 1.0}, now=1.0)
    model.on_message(
        Key("$actors", "stats", "g00"), group_payload(**{f"a{i:02}": {} for i in range(40)}), now=1.0
    )
    frame = terminal_text(render(model, "group", rows=10))
    assert "g09" in frame and "g10" not in frame and "... and 20 more groups" in frame
    assert " a09 " in frame and " a10 " not in frame and "... and 30 more actors" in frame
    assert "h09" in frame and "h10" not in frame and "... and 20 more notices" in frame
    every = plain_text(model, "group")  # --once: every row
    assert "g29" in every and " a39 " in every and "h29" in every and "more" not in every


def test_refresh_counts_the_alerts_once_not_once_per_actor() -> None:
    class Watched(dict[tuple[str, str, str], Any]):
        reads = 0

        def __iter__(self) -> Any:
            Watched.reads += 1
            return super().__iter__()

    model = BusModel()
    model.on_message(Key("$actors", "stats", "g"), group_payload(a={}, b={}, c={}), now=1.0)
    model.on_message(Key("$actors", "stats", "solo"), {**group_payload(solo={}), "group": "solo"}, now=1.0)
    model.alerts = Watched()
    for group, actor, function in (
        ("g", "a", "f1"),
        ("g", "a", "f2"),
        ("g", "g", "f3"),
        ("solo", "solo", "f"),
    ):
        record = {"state": "active", "group": group, "actor": actor, "function": function}
        model.on_message(Key(*broker.ALERTS_PROFILE, actor), record, now=1.0)
    Watched.reads = 0
    model.refresh(1.0)
    assert Watched.reads == 1
    counts = {(r.group, r.actor): r.alerts for r in model.actor_rows()}
    # a's own two and the group's one; the group's alert for b and c; the one actor of solo: once
    assert counts == {("g", "a"): 3, ("g", "b"): 1, ("g", "c"): 1, ("solo", "solo"): 1}
