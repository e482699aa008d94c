"""The per-sensor seq record: de-duplication, the gap rule (reordering window), late arrivals, restarts,
bounds, and a round trip through a real outbox (the state commits with the batch or not at all)."""

from __future__ import annotations

import random

import pytest

from agent.sequences import LATE, NEW, REPEAT, Gap, SequenceTracker
from ids_core.outbox import Outbox


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def tracker(stored=None, **kw) -> tuple[SequenceTracker, Clock]:
    clock = Clock()
    kw.setdefault("reorder_seqs", 100)
    kw.setdefault("reorder_seconds", 5.0)
    return SequenceTracker(stored or {}, clock=clock, **kw), clock


def batch(t: SequenceTracker, seqs, sensor: str = "s", dup: bool = False, sweep: bool = False):
    """Classify ``seqs`` as one batch and commit it; returns (outcomes, gaps, counters)."""
    out = [t.classify(sensor, s, dup) for s in seqs]
    gaps = t.expire(all_sensors=sweep)
    t.changes()
    return out, gaps, t.settle(True)


def test_in_order_stream_is_new_once_then_repeats():
    t, _ = tracker()
    out, gaps, counts = batch(t, range(50))
    assert out == [NEW] * 50 and gaps == [] and not counts
    out, _, _ = batch(t, [10, 49, 0], dup=True)
    assert out == [REPEAT] * 3
    assert batch(t, [50])[0] == [NEW] and t.missing == 0


def test_a_repeat_inside_one_batch_is_recognised():
    t, _ = tracker()
    assert [t.classify("s", s) for s in (5, 6, 5, 7, 6)] == [NEW, NEW, REPEAT, NEW, REPEAT]


def test_reordering_inside_the_window_is_not_a_gap():
    t, clock = tracker()
    out, gaps, _ = batch(t, [0, 1, 4, 5, 2, 3, 9, 7, 8, 6])
    assert out == [NEW] * 10 and gaps == [] and t.missing == 0
    batch(t, [12])  # 10, 11 missing
    clock.t += 4.9
    assert batch(t, [13])[1] == [] and t.missing == 2
    assert batch(t, [11, 10])[0] == [NEW, NEW] and t.missing == 0


def test_a_hole_becomes_a_gap_after_the_time_window_reported_once_and_late_arrivals_are_scored_once():
    t, clock = tracker()
    batch(t, [0, 1, 2, 6, 7])
    clock.t += 5.0
    _, gaps, counts = batch(t, [], sweep=True)  # an idle sweep
    assert gaps == [Gap("s", 3, 5, "missing")]
    assert counts == {"seq_gaps": 1, "seq_gap_flows": 3}
    assert batch(t, [], sweep=True)[1] == []  # reported once
    out, gaps, counts = batch(t, [4, 4, 2])
    assert out == [LATE, REPEAT, REPEAT] and gaps == [] and counts == {"seq_late": 1}
    assert batch(t, [3, 5])[0] == [LATE, LATE] and batch(t, [3, 5])[0] == [REPEAT, REPEAT]


def test_a_hole_becomes_a_gap_after_reorder_seqs_later_seqs():
    t, _ = tracker(reorder_seqs=100)
    batch(t, [0, 2])
    assert batch(t, range(3, 101))[1] == []  # 99 seqs after the hole
    assert batch(t, [101])[1] == [Gap("s", 1, 1, "missing")]  # the 100th


def test_too_many_holes_declare_the_oldest_first():
    t, _ = tracker(max_ranges=4)
    _, gaps, _ = batch(t, [0, 2, 4, 6, 8, 10, 12])
    assert gaps == [Gap("s", 1, 1, "missing"), Gap("s", 3, 3, "missing")]
    assert t.missing == 4


def test_holes_below_the_first_seq_ever_seen_are_not_reported_but_welcome():
    t, clock = tracker()
    out, _, _ = batch(t, [500, 501])  # joined a running publisher
    assert out == [NEW, NEW]
    assert batch(t, [499])[0] == [NEW]  # still inside the window: reordered, not a repeat
    clock.t += 10
    _, gaps, counts = batch(t, [], sweep=True)
    assert gaps == [] and counts == {"seq_missing_unreported": 499}
    assert batch(t, [7])[0] == [LATE]


def test_publisher_restart_starts_a_new_epoch_but_a_redelivered_seq_0_is_a_repeat():
    t, _ = tracker()
    batch(t, [0, 1, 2, 3, 5])
    assert batch(t, [0], dup=True)[0] == [REPEAT]
    out, gaps, counts = batch(t, [0, 1, 2])
    assert out == [NEW] * 3 and gaps == [Gap("s", 4, 4, "publisher_restarted")]
    assert counts == {"seq_restarts": 1, "seq_gaps": 1, "seq_gap_flows": 1}


def test_state_survives_a_restart_only_if_committed_with_the_batch(tmp_path):
    path = tmp_path / "outbox.sqlite"
    with Outbox(path, 100) as box:
        t, _ = tracker(box.load_state())
        for s in range(10):
            t.classify("a", s)
        box.put_many([("x/verdicts", b"{}", 1, False)], state=t.changes())
        t.settle(True)
        t.classify("a", 10)
        t.classify("b", 0)
        t.changes()
        t.settle(False)  # the commit failed: nothing of this batch was recorded
        assert t.classify("a", 10) == NEW
    with Outbox(path, 100) as box:
        t2, _ = tracker(box.load_state())
        assert [t2.classify("a", s) for s in (9, 10)] == [REPEAT, NEW]
        assert t2.classify("b", 0) == NEW


def test_holes_restored_from_disk_get_a_fresh_window():
    t, clock = tracker()
    for s in (0, 1, 5):
        t.classify("s", s)
    rows = t.changes()
    t.settle(True)
    clock.t += 4
    restored, clock2 = tracker(rows)
    clock2.t += 4.9
    assert batch(restored, [], sweep=True)[1] == []  # 8.9 s after it opened, but only 4.9 s of this process
    assert restored.missing == 3


def test_sensors_are_bounded_the_least_recently_seen_forgotten():
    t, _ = tracker(max_sensors=3)
    for name in "abcd":
        batch(t, [0], sensor=name)
    t.classify("e", 0)
    rows = t.changes()
    counts = t.settle(True)
    assert rows["seq/b"] is None and counts["seq_sensors_forgotten"] == 1 and len(t) == 3
    assert t.classify("b", 0) == NEW  # forgotten: scored again (documented)


def test_shared_subscription_mode_reports_no_gaps():
    t, _ = tracker(report_gaps=False, max_ranges=2)
    _, gaps, counts = batch(t, [0, 2, 4, 6, 8])
    assert gaps == [] and counts == {"seq_missing_unreported": 2}


@pytest.mark.parametrize("seed", range(5))
def test_random_redeliveries_and_reorders_score_every_seq_once_or_report_it(seed):
    """Any interleaving of repeats, reorders and losses: every seq is NEW/LATE exactly once or in a gap."""
    rng = random.Random(seed)
    t, clock = tracker(reorder_seqs=50, max_ranges=8)
    n = 3000
    lost = set(rng.sample(range(1, n), 60))
    stream = [s for s in range(n) if s not in lost]
    for _ in range(300):  # local reorders
        i = rng.randrange(len(stream) - 5)
        stream[i : i + 5] = rng.sample(stream[i : i + 5], 5)
    redelivered = rng.sample(range(n), 500)  # MQTT re-deliveries (DUP), some of lost seqs arriving late
    scored, reported = [], set()
    for start in range(0, len(stream) + len(redelivered), 37):
        clock.t += rng.random()
        seqs = (stream + redelivered)[start : start + 37]
        out = [t.classify("s", s, dup=start + k >= len(stream)) for k, s in enumerate(seqs)]
        gaps = t.expire(all_sensors=rng.random() < 0.2)
        t.changes()
        t.settle(True)
        scored += [s for s, o in zip(seqs, out, strict=True) if o in (NEW, LATE)]
        for g in gaps:
            assert not reported & set(range(g.first, g.last + 1)), "a seq reported in two gaps"
            reported |= set(range(g.first, g.last + 1))
    clock.t += 10
    for g in batch(t, [], sweep=True)[1]:
        reported |= set(range(g.first, g.last + 1))
    assert len(scored) == len(set(scored)), "a seq scored twice"
    assert set(scored) | reported == set(range(n)), sorted(set(range(n)) - set(scored) - reported)[:10]
    assert reported <= lost | set(scored), "a gap named a seq that was neither lost nor scored late"
