"""The sqlite outbox on real files: FIFO, ack, the bound, kill -9, two threads."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ids_core.outbox import Outbox, OutboxClosedError

REPO = Path(__file__).resolve().parents[2]


def msg(n: int, topic: str = "edge-ids/gw1/alerts") -> tuple[str, bytes, int, bool]:
    return (topic, f'{{"n": {n}}}'.encode(), 1, False)


def payload_numbers(items) -> list[int]:
    return [int(item.payload.decode().split(":")[1].rstrip("}")) for item in items]


def test_fifo_order_and_fields(tmp_path):
    with Outbox(tmp_path / "outbox.db", max_messages=100) as box:
        ids = box.put_many([msg(0), msg(1)])
        ids += box.put_many([("edge-ids/gw1/available", b"online", 1, True), msg(3)])
        assert ids == sorted(ids) and len(set(ids)) == 4
        items = box.pending(10)
        assert [i.id for i in items] == ids
        assert items[2].topic == "edge-ids/gw1/available"
        assert items[2].payload == b"online" and items[2].qos == 1 and items[2].retain is True
        assert items[0].retain is False and isinstance(items[0].payload, bytes)
        assert box.depth == 4


def test_pending_pages_with_after_id(tmp_path):
    with Outbox(tmp_path / "outbox.db", max_messages=100) as box:
        ids = box.put_many(msg(n) for n in range(10))
        first = box.pending(4)
        second = box.pending(4, after_id=first[-1].id)
        assert [i.id for i in first + second] == ids[:8]
        assert box.pending(0) == []


def test_ack_removes_only_given_ids(tmp_path):
    with Outbox(tmp_path / "outbox.db", max_messages=100) as box:
        ids = box.put_many(msg(n) for n in range(5))
        assert box.ack([ids[1], ids[3]]) == 2
        assert [i.id for i in box.pending(10)] == [ids[0], ids[2], ids[4]]
        assert box.ack([ids[1], 999_999]) == 0  # already acked, unknown: ignored
        assert box.ack([]) == 0
        assert box.depth == 3


def test_ids_are_never_reused_after_ack(tmp_path):
    """A late PUBACK for an acked id must never delete a newer message."""
    path = tmp_path / "outbox.db"
    with Outbox(path, max_messages=100) as box:
        old = box.put_many([msg(0)])
        box.ack(old)
    with Outbox(path, max_messages=100) as box:
        new = box.put_many([msg(1)])
        assert new[0] > old[0]


def test_bound_drops_oldest_counts_and_warns(tmp_path, caplog):
    path = tmp_path / "outbox.db"
    with caplog.at_level(logging.WARNING, logger="ids_core.outbox"), Outbox(path, max_messages=5) as box:
        box.put_many(msg(n) for n in range(4))
        box.put_many(msg(n) for n in range(4, 8))
        assert payload_numbers(box.pending(10)) == [3, 4, 5, 6, 7]
        assert box.depth == 5 and box.dropped == 3
    assert "dropped the 3 oldest" in caplog.text

    with Outbox(path, max_messages=5) as box:  # the count is persisted
        assert box.dropped == 3 and box.depth == 5
        box.put_many([msg(8)])
        assert box.dropped == 4
        assert payload_numbers(box.pending(10)) == [4, 5, 6, 7, 8]


def test_batch_larger_than_bound_keeps_its_newest(tmp_path):
    with Outbox(tmp_path / "outbox.db", max_messages=3) as box:
        ids = box.put_many(msg(n) for n in range(7))
        assert len(ids) == 7
        assert [i.id for i in box.pending(10)] == ids[-3:]
        assert box.dropped == 4


def test_reopen_with_smaller_bound_trims(tmp_path):
    path = tmp_path / "outbox.db"
    with Outbox(path, max_messages=10) as box:
        box.put_many(msg(n) for n in range(8))
    with Outbox(path, max_messages=3) as box:
        assert box.depth == 3 and box.dropped == 5
        assert payload_numbers(box.pending(10)) == [5, 6, 7]


def test_reopen_after_sigkill_keeps_every_committed_message(tmp_path):
    path = tmp_path / "outbox.db"
    child = textwrap.dedent(
        f"""
        import os
        from ids_core.outbox import Outbox
        box = Outbox({str(path)!r}, max_messages=1000)
        for start in range(0, 300, 30):
            batch = range(start, start + 30)
            box.put_many(("edge-ids/gw1/alerts", b'{{"n": %d}}' % n, 1, False) for n in batch)
        box.ack([i.id for i in box.pending(5)])
        os.kill(os.getpid(), 9)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", child], cwd=REPO, env=env, capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()
    assert (tmp_path / "outbox.db-wal").stat().st_size > 0  # never checkpointed: recovery reads the WAL

    with Outbox(path, max_messages=1000) as box:
        assert box.depth == 295 and box.dropped == 0
        assert payload_numbers(box.pending(1000)) == list(range(5, 300))


def test_state_is_written_with_the_messages_and_survives_reopen(tmp_path):
    path = tmp_path / "outbox.db"
    with Outbox(path, max_messages=2) as box:
        assert box.load_state() == {}
        box.put_many([msg(0)], state={"a": b"1", "b": b"2"})
        box.put_many([], state={"a": b"3", "b": None})  # state alone; None deletes
        box.put_many(msg(n) for n in range(1, 5))  # the bound drops messages, never state
        assert box.depth == 2 and box.dropped == 3
    with Outbox(path, max_messages=2) as box:
        assert box.load_state() == {"a": b"3"}


def test_state_and_messages_commit_together_or_not_at_all(tmp_path):
    with Outbox(tmp_path / "outbox.db", max_messages=10) as box:
        with pytest.raises(ValueError):
            box.put_many([msg(0), ("", b"x", 1, False)], state={"a": b"1"})  # invalid before anything is written
        with pytest.raises(TypeError):
            box.put_many([msg(0)], state={"a": 5})  # a bad value: nothing of the batch is written
        assert box.depth == 0 and box.pending(10) == [] and box.load_state() == {}


def test_state_committed_before_sigkill_is_there_with_its_messages(tmp_path):
    path = tmp_path / "outbox.db"
    child = textwrap.dedent(
        f"""
        import os
        from ids_core.outbox import Outbox
        box = Outbox({str(path)!r}, max_messages=1000)
        for n in range(50):
            box.put_many([("edge-ids/gw1/verdicts", b'{{"n": %d}}' % n, 1, False)], state={{"s": b"%d" % n}})
        os.kill(os.getpid(), 9)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", child], cwd=REPO, env=env, capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()
    with Outbox(path, max_messages=1000) as box:
        assert box.load_state() == {"s": b"49"} and payload_numbers(box.pending(100)) == list(range(50))


def test_concurrent_put_and_ack(tmp_path):
    """The pipeline thread puts while the network thread acks; nothing is lost or acked twice."""
    total, batch = 2000, 10
    put_ids: list[int] = []
    acked: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)
    done_putting = threading.Event()
    box = Outbox(tmp_path / "outbox.db", max_messages=total)

    def producer() -> None:
        try:
            start.wait()
            for b in range(0, total, batch):
                put_ids.extend(box.put_many(msg(n) for n in range(b, b + batch)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done_putting.set()

    def consumer() -> None:
        try:
            start.wait()
            while True:
                finished = done_putting.is_set()  # read before pending(): no put can be missed
                items = box.pending(50)
                if not items and finished:
                    return
                acked.extend(i.id for i in items)
                deleted = box.ack(i.id for i in items)
                if deleted != len(items):
                    raise AssertionError(f"expected {len(items)} deleted, got {deleted}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=producer), threading.Thread(target=consumer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    box.close()
    assert not errors
    assert not any(t.is_alive() for t in threads)
    assert acked == put_ids  # every message acked exactly once, in FIFO order
    assert len(put_ids) == total


def test_closed_outbox_raises(tmp_path):
    box = Outbox(tmp_path / "outbox.db", max_messages=10)
    box.close()
    box.close()  # idempotent
    with pytest.raises(OutboxClosedError):
        box.put_many([msg(0)])
    with pytest.raises(OutboxClosedError):
        box.pending(1)


@pytest.mark.parametrize(
    "item",
    [("", b"x", 1, False), ("t", "not bytes", 1, False), ("t", b"x", 3, False)],
)
def test_invalid_messages_are_rejected_before_writing(tmp_path, item):
    with Outbox(tmp_path / "outbox.db", max_messages=10) as box:
        with pytest.raises((ValueError, TypeError)):
            box.put_many([msg(0), item])
        assert box.depth == 0


def test_invalid_bound():
    with pytest.raises(ValueError, match="expected max_messages >= 1"):
        Outbox(":memory:", max_messages=0)


@settings(max_examples=40, deadline=None)
@given(
    bound=st.integers(1, 8),
    ops=st.lists(st.one_of(st.integers(1, 5), st.integers(-4, -1)), max_size=20),
)
def test_behaves_like_a_bounded_deque(bound, ops):
    """Model check: puts (n > 0 messages) and acks of the oldest (-n) against a plain list."""
    with tempfile.TemporaryDirectory() as d, Outbox(Path(d) / "o.db", max_messages=bound) as box:
        model: list[int] = []
        dropped = 0
        for op in ops:
            if op > 0:
                model += box.put_many(msg(0) for _ in range(op))
                dropped += max(0, len(model) - bound)
                model = model[-bound:]
            else:
                oldest = [i.id for i in box.pending(-op)]
                assert oldest == model[:-op]
                box.ack(oldest)
                model = model[-op:]
            assert [i.id for i in box.pending(100)] == model
            assert box.depth == len(model) and box.dropped == dropped
