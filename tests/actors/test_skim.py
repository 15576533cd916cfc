"""What a skim keeps of the frames it takes off a queue: each stream's newest (``actors._skim``)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from actors._liveness import HEARTBEAT_PREFIX
from actors._skim import Discarded, Latest, discard
from broker import encode_header, encode_key, encode_message


def frame(key: str, seq: int, publisher: str = "feed@h:1:a", payload: bytes = b"\x90") -> bytes:
    return encode_message(encode_key((key,)), encode_header(publisher, seq, 0, 0), payload)


def heartbeat(publisher: str, seq: int) -> bytes:
    """A heartbeat frame of a hub named ``feed`` (its key is the name's, its publisher its own)."""
    return encode_message(HEARTBEAT_PREFIX + b"feed\x00", encode_header(publisher, seq, 0, 0), b"\x90")


def test_the_newest_frame_of_each_key_is_kept_in_the_order_the_newest_came():
    latest = Latest(max_frames=10, max_bytes=10_000, heartbeat=HEARTBEAT_PREFIX)
    sent = [frame("a", 1), frame("b", 1), frame("a", 2), frame("c", 1), frame("b", 2)]
    assert all(latest.add(f) for f in sent)
    assert latest.take(10) == [sent[2], sent[3], sent[4]]
    assert latest.superseded == 2 and not latest and latest.size == 0
    # by key: another publisher's frame on a key takes the place of the first's
    assert latest.add(frame("a", 3)) and latest.add(frame("a", 1, "other@h:2:b"))
    assert latest.take(10) == [frame("a", 1, "other@h:2:b")] and latest.superseded == 3


def test_each_publisher_s_heartbeats_are_kept_apart_even_under_one_name():
    latest = Latest(max_frames=10, max_bytes=10_000, heartbeat=HEARTBEAT_PREFIX)
    beats = [heartbeat("feed@h:1:a", 1), heartbeat("feed@h2:1:b", 1), heartbeat("feed@h:1:a", 2)]
    assert all(latest.add(b) for b in beats)
    assert latest.take(10) == [beats[1], beats[2]] and latest.superseded == 1


def test_take_gives_the_oldest_first_and_clear_forgets_the_rest():
    latest = Latest(max_frames=10, max_bytes=10_000, heartbeat=HEARTBEAT_PREFIX)
    sent = [frame(k, 1) for k in "abcde"]
    for f in sent:
        latest.add(f)
    assert latest.take(2) == sent[:2] and len(latest) == 3
    assert latest.clear() == 3 and latest.take(5) == [] and latest.size == 0


def test_past_its_bounds_a_new_stream_is_refused_and_a_kept_one_still_replaced():
    by_count = Latest(max_frames=2, max_bytes=10_000, heartbeat=HEARTBEAT_PREFIX)
    assert by_count.add(frame("a", 1)) and by_count.add(frame("b", 1))
    assert not by_count.add(frame("c", 1))  # a third stream: not kept
    assert by_count.add(frame("a", 2))  # a kept stream's newer frame takes its place
    assert by_count.take(5) == [frame("b", 1), frame("a", 2)]
    small = frame("a", 1)
    by_bytes = Latest(max_frames=100, max_bytes=2 * len(small), heartbeat=HEARTBEAT_PREFIX)
    assert by_bytes.add(small) and by_bytes.add(frame("b", 1))
    assert not by_bytes.add(frame("c", 1)) and by_bytes.size == 2 * len(small)
    # a newer frame too large for what is left: the older one goes and the newer is not kept
    assert not by_bytes.add(frame("a", 2, payload=b"\xc4\x40" + bytes(64)))
    assert by_bytes.superseded == 1 and by_bytes.take(5) == [frame("b", 1)]


def test_a_run_of_one_key_keeps_its_newest_and_its_place_when_another_key_comes():
    latest = Latest(max_frames=10, max_bytes=10_000, heartbeat=HEARTBEAT_PREFIX)
    beat = heartbeat("feed@h:1:a", 1)
    sent = [frame("a", 1), frame("a", 2), frame("a", 3), beat, frame("a", 4), frame("a", 5), frame("b", 1)]
    assert all(latest.add(f) for f in sent)
    # a's newest before the heartbeat would have been delivered before it; after it, a's newest goes last
    assert latest.take(10) == [beat, frame("a", 5), frame("b", 1)] and latest.superseded == 4


def test_the_count_of_superseded_frames_is_whole_while_a_run_goes_on():
    # a skim reads it between its slices, a run of one key's frames still open (RemoteHub._skim)
    latest = Latest(max_frames=10, max_bytes=10_000, heartbeat=HEARTBEAT_PREFIX)
    assert all(latest.add(frame("a", seq)) for seq in (1, 2, 3))
    assert latest.superseded == 2
    assert latest.add(frame("a", 4)) and latest.superseded == 3 and len(latest) == 1


def test_a_run_s_newest_past_the_bounds_when_the_run_ends_is_counted_as_not_kept():
    small = frame("a", 1)
    latest = Latest(max_frames=10, max_bytes=2 * len(small), heartbeat=HEARTBEAT_PREFIX)
    assert latest.add(small) and latest.add(
        frame("a", 2, payload=b"\xc4\x40" + bytes(64))
    )  # a run: not checked yet
    assert latest.add(frame("b", 1))  # the run ends: its newest does not fit, and a's first went for it
    assert latest.take(5) == [frame("b", 1)] and latest.superseded == 2 and latest.size == 0


def test_a_frame_not_of_this_format_s_shape_is_not_kept():
    latest = Latest(max_frames=10, max_bytes=10_000, heartbeat=HEARTBEAT_PREFIX)
    full = frame("a", 1)
    key_end = full.index(b"\xff")
    for junk in (b"junk", b"\xffstarts with the key end", full[: key_end + 5]):
        assert not latest.add(junk)
    assert not latest


@given(st.lists(st.tuples(st.sampled_from("abc!"), st.sampled_from(["p@h:1:a", "q@h:2:b"])), max_size=60))
def test_what_is_kept_is_each_key_s_last_frame_and_the_count_closes(streams):
    # "!": a heartbeat of that publisher (its own stream), among the keys' frames
    latest = Latest(max_frames=100, max_bytes=100_000, heartbeat=HEARTBEAT_PREFIX)
    sent = [
        heartbeat(publisher, seq) if key == "!" else frame(key, seq, publisher)
        for seq, (key, publisher) in enumerate(streams, start=1)
    ]
    for f in sent:
        assert latest.add(f)
    kept = latest.take(len(sent))
    last = {
        (key, publisher if key == "!" else ""): f for (key, publisher), f in zip(streams, sent, strict=True)
    }
    assert kept == sorted(last.values(), key=sent.index)  # the newest of each, in the order they came
    assert len(kept) + latest.superseded == len(sent)


def _discard_all(frames: list[bytes], latest: Latest, handled: list[bytes]) -> Discarded:
    """``discard`` over ``frames`` as a queue, no frame fresh enough to stop it."""
    items = iter(frames)

    class QueueEmptyError(Exception):
        pass

    def receive() -> bytes:
        try:
            return next(items)
        except StopIteration:
            raise QueueEmptyError from None

    return discard(
        receive,
        QueueEmptyError,
        100,
        fresh=0.0,
        age_of=lambda f, mono, wall: None,
        heartbeat=HEARTBEAT_PREFIX,
        keep=handled.append,
        deadline=float("inf"),
        latest=latest,
    )


def test_discard_keeps_each_key_s_newest_and_hands_over_a_heartbeat_it_could_not_keep():
    beat = heartbeat("feed@h:1:a", 1)
    frames = [frame("a", 1), beat, frame("b", 1), frame("c", 1)]
    latest = Latest(max_frames=2, max_bytes=10_000, heartbeat=HEARTBEAT_PREFIX)  # a and the heartbeat
    handled: list[bytes] = []
    run = _discard_all(frames, latest, handled)
    assert (run.taken, run.stored, run.kept, run.empty) == (4, 2, 0, True)
    assert latest.take(5) == frames[:2] and handled == []
    # nothing kept once full: the heartbeat goes to keep at once, the others are discarded
    full = Latest(max_frames=0, max_bytes=10_000, heartbeat=HEARTBEAT_PREFIX)
    run = _discard_all([frame("d", 1), beat], full, handled)
    assert (run.taken, run.stored, run.kept) == (2, 0, 1) and handled == [beat]
