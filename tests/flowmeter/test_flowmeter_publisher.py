"""RecordBatcher: records → numbered messages (columnar batches or JSON arrays) in the outbox, next seq stored in the
same transaction."""

from __future__ import annotations

import json
import math
import time

import pytest

from flowmeter.publisher import STATE_KEY, RecordBatcher
from ids_core.flowmessage import decode
from ids_core.outbox import Outbox


def _records(n: int, start: int = 0) -> list[dict]:
    return [
        {"Flow_ID": f"f{i}", "Flow_Byts/s": math.inf if i % 3 == 0 else 1.5, "Flow_Duration": i}
        for i in range(start, start + n)
    ]


def _stored(outbox: Outbox) -> list[list[dict]]:
    return [decode(item.payload) for item in outbox.pending(10_000)]


@pytest.mark.parametrize("columnar", [True, False], ids=["columnar", "records"])
def test_batches_by_count_with_consecutive_seqs_and_the_next_seq_in_state(tmp_path, columnar):
    with Outbox(tmp_path / "o.sqlite", 1000) as outbox:
        woken = []
        b = RecordBatcher(outbox, topic="p/gw/flows", sensor="s1", max_records=4, columnar=columnar,
                          wake=lambda: woken.append(1))  # fmt: skip
        for r in _records(10):
            b.add(r)
        assert b.waiting == 2 and b.records_out == 8 and len(woken) == 2
        assert b.flush() == 2
        messages = _stored(outbox)
        assert [len(m) for m in messages] == [4, 4, 2]
        assert all(isinstance(json.loads(i.payload), dict if columnar else list) for i in outbox.pending(100))
        assert [r["seq"] for m in messages for r in m] == list(range(10))
        assert {r["sensor"] for m in messages for r in m} == {"s1"}
        assert outbox.load_state()[STATE_KEY + "s1"] == b"10"
        assert all(item.topic == "p/gw/flows" and item.qos == 1 for item in outbox.pending(100))


def test_infinity_and_nan_are_json_literals(tmp_path):
    with Outbox(tmp_path / "o.sqlite", 10) as outbox:
        b = RecordBatcher(outbox, topic="t", sensor="s")
        b.add({"Flow_Byts/s": math.nan, "Flow_Pkts/s": math.inf})
        b.flush()
        payload = outbox.pending(1)[0].payload
        assert payload.startswith(b'{"columns":["Flow_Byts/s","Flow_Pkts/s","sensor","seq"],"rows":[[NaN,Infinity,')


def test_a_record_with_other_keys_starts_a_new_columnar_message(tmp_path):
    with Outbox(tmp_path / "o.sqlite", 10) as outbox:
        b = RecordBatcher(outbox, topic="t", sensor="s")
        for r in [{"a": 1}, {"a": 2}, {"a": 3, "Label": "Normal"}, {"a": 4}]:
            b.add(r)
        b.flush()
        messages = _stored(outbox)
        assert [[r["seq"] for r in m] for m in messages] == [[0, 1], [2], [3]]
        assert messages[1][0]["Label"] == "Normal"


def test_seq_continues_after_reopening(tmp_path):
    path = tmp_path / "o.sqlite"
    with Outbox(path, 1000) as outbox:
        b = RecordBatcher(outbox, topic="t", sensor="s", max_records=100)
        for r in _records(7):
            b.add(r)
        b.flush()
        outbox.ack([i.id for i in outbox.pending(100)])  # delivered: the messages go, the next seq stays
    with Outbox(path, 1000) as outbox:
        b = RecordBatcher(outbox, topic="t", sensor="s", max_records=100)
        assert b.next_seq == 7
        b.add(_records(1)[0])
        b.flush()
        assert [r["seq"] for m in _stored(outbox) for r in m] == [7]
        other = RecordBatcher(outbox, topic="t", sensor="another")
        assert other.next_seq == 0


@pytest.mark.parametrize("columnar", [True, False], ids=["columnar", "records"])
def test_messages_split_below_max_message_bytes(tmp_path, columnar):
    with Outbox(tmp_path / "o.sqlite", 1000) as outbox:
        b = RecordBatcher(outbox, topic="t", sensor="s", max_records=1000, max_message_bytes=4096, columnar=columnar)
        for r in _records(200):
            b.add({**r, "pad": "x" * 100})
        b.flush()
        items = outbox.pending(1000)
        assert len(items) > 1 and all(len(i.payload) <= 4096 for i in items)
        assert [r["seq"] for i in items for r in decode(i.payload)] == list(range(200))


def test_due_after_max_wait(tmp_path):
    with Outbox(tmp_path / "o.sqlite", 10) as outbox:
        b = RecordBatcher(outbox, topic="t", sensor="s", max_wait_s=0.05)
        assert not b.due()
        b.add(_records(1)[0])
        assert not b.due()
        time.sleep(0.06)
        assert b.due()
