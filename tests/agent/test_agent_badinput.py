"""Bad input at the live agent: every kind lands on the dead-letter topic with its reason code, is counted
in the stats, and the agent keeps serving; then ~200 random payloads, each answered."""

from __future__ import annotations

import collections
import json
import random
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest

pytest.register_assert_rewrite("agent_harness")

from agent_harness import sample_rows, topic, wait_until  # noqa: E402

from agent.documents import DEADLETTERS_PER_MESSAGE  # noqa: E402
from agent.records import RecordLimits, parse_flows  # noqa: E402
from flowmeter.replay import LABEL_COLUMNS  # noqa: E402
from ids_core.preprocess import PreprocessSpec  # noqa: E402

pytest_plugins = ["agent_harness"]

MAX_BYTES = 65536
MAX_RECORDS = 5
SENSOR = "bad"


@pytest.fixture
def base_record(sample_csv) -> dict[str, Any]:
    """A real flow of the sample, without its label."""
    row = sample_rows(sample_csv, 1, include_inf=False)[0]
    return {k: v for k, v in row.items() if k not in LABEL_COLUMNS}


def publish_all(client: mqtt.Client, payloads: list[bytes]) -> None:
    infos = [client.publish(topic("flows"), p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(10)


def flow(base: dict[str, Any], seq: int, **changes: Any) -> dict[str, Any]:
    return {**base, **changes, "seq": seq, "sensor": SENSOR}


def with_raw(rec: dict[str, Any], field: str, raw: str) -> bytes:
    """``rec`` as JSON with ``field``'s value replaced by the literal text ``raw`` (e.g. ``1e400``)."""
    text = json.dumps({**rec, field: "@@RAW@@"})
    return text.replace('"@@RAW@@"', raw).encode()


def bad_inputs(base: dict[str, Any], feature: str) -> list[tuple[str, bytes, str, int | None]]:
    """(kind, payload, reason, seq of the rejected record or None for a whole-message rejection)."""
    missing = {k: v for k, v in flow(base, 4).items() if k != feature}
    return [
        ("malformed JSON", b'{"seq": 1, "Flow_Duration": ', "invalid_json", None),
        ("non-UTF-8", b'{"seq": 2, "Src_IP": "\xff\xfe"}', "not_utf8", None),
        ("top-level number", b"42", "not_an_object", None),
        ("array with a non-object", json.dumps([flow(base, 3), 7]).encode(), "not_an_object", None),
        ("missing field", json.dumps(missing).encode(), "missing_field", 4),
        ("non-numeric field", json.dumps(flow(base, 5, **{feature: "12.5"})).encode(), "non_numeric", 5),
        ("Infinity as a string", json.dumps(flow(base, 6, **{feature: "Infinity"})).encode(), "non_numeric", 6),
        ("NaN as a string", json.dumps(flow(base, 7, **{feature: "NaN"})).encode(), "non_numeric", 7),
        ("bad identifier", json.dumps(flow(base, 9, Src_Port=70000)).encode(), "bad_identifier", 9),
        ("empty payload", b"", "empty", None),
        ("oversized", json.dumps(flow(base, 10, pad="x" * MAX_BYTES)).encode(), "too_large", None),
        ("too many records", json.dumps([flow(base, 20 + i) for i in range(MAX_RECORDS + 1)]).encode(),
         "too_many_records", None),
    ]  # fmt: skip


@pytest.mark.timeout(60, func_only=True)
def test_every_bad_input_is_dead_lettered_with_its_reason_and_counted(
    agents, collector, publisher, quick_run, base_record
):
    agent = agents.spawn(limits__max_message_bytes=MAX_BYTES, limits__max_records_per_message=MAX_RECORDS)
    feature = quick_run.spec().features[-1]
    cases = bad_inputs(base_record, feature)
    publish_all(publisher, [payload for _, payload, _, _ in cases])
    # good flows after all of them; non-finite literals are values (a zero-duration flow), scored by the rule
    good = [json.dumps(flow(base_record, 100)).encode()]
    good += [with_raw(flow(base_record, 101 + i), feature, raw) for i, raw in enumerate(["Infinity", "NaN", "1e400"])]
    publish_all(publisher, good)

    collector.wait_seqs([3, 100, 101, 102, 103], 30, agent.log, sensor=SENSOR)  # the agent still serves
    expected = collections.Counter(reason for _, _, reason, _ in cases)
    wait_until(lambda: len(collector.deadletters()) >= len(cases), 15, "every dead letter", agent.log)
    dead = collector.deadletters()
    by_reason = collections.defaultdict(list)
    for d in dead:
        by_reason[d["reason"]].append(d)
        assert d["source_topic"] == topic("flows") and d["event_type"] == "deadletter", d
        assert "expected" in d["detail"], d
    for kind, _payload, reason, seq in cases:
        found = [d for d in by_reason[reason] if seq is None or d["ident"].get("seq") == seq]
        assert found, f"{kind}: no dead letter with reason {reason!r} (seq {seq}); got {sorted(by_reason)}"
    assert collections.Counter(d["reason"] for d in dead) == expected
    assert [d["index"] for d in by_reason["not_an_object"]] == [None, 1]  # the whole message, then an element
    assert set(collector.verdict_counts(SENSOR)) == {3, 100, 101, 102, 103}

    stats = collector.wait_stats(lambda s: s["messages_in"] == len(cases) + len(good), 10, "stats", agent.log)
    assert stats["deadletter_reasons"] == dict(expected)
    assert stats["deadlettered"] == len(cases)
    assert agent.alive


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False, 0, -1, 2**64, 10**400, 1e308, -0.0, float("nan"), float("inf")])
    if kind == 2:
        return rng.uniform(-1e6, 1e6)
    if kind == 3:
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0xD800, 0xE000), rng.randrange(0x110000)]))
                       for _ in range(rng.randrange(12)))  # fmt: skip
    if kind == 4:
        return rng.choice(["inf", "NaN", "12.5", "", " ", "-Infinity"])
    if kind == 5:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["seq", "sensor", "Src_IP", "Flow_Duration", "Flow ID", "x"]): random_json(rng, depth + 1)
            for _ in range(rng.randrange(4))}  # fmt: skip


def random_payload(rng: random.Random, base: dict[str, Any], seq: int) -> bytes:
    """Random bytes, random JSON, or a real flow with one to three random mutations."""
    pick = rng.random()
    if pick < 0.2:
        return rng.randbytes(rng.randrange(300))
    if pick < 0.4:
        return json.dumps(random_json(rng)).encode()
    rec = flow(base, seq)
    for _ in range(rng.randrange(1, 4)):
        key = rng.choice(list(rec))
        op = rng.randrange(4)
        if op == 0:
            rec.pop(key, None)
        elif op == 1:
            rec[key] = random_json(rng)
        elif op == 2:
            rec[key.replace("_", " ")] = rec.get(key)  # the CICFlowMeter spelling too: a duplicate field
    text = json.dumps(rec if rng.random() < 0.7 else [rec, random_json(rng), flow(base, seq + 100_000)])
    if rng.random() < 0.1:
        text = text[: rng.randrange(len(text))]  # truncated
    return text.encode()


@pytest.mark.timeout(90, func_only=True)
def test_fuzz_200_random_payloads_each_answered_and_agent_alive(agents, collector, publisher, quick_run, base_record):
    """Every message gets its verdicts and dead letters, exactly as the agent's own parser predicts offline."""
    agent = agents.spawn()
    rng = random.Random(20261125)
    payloads = [random_payload(rng, base_record, seq) for seq in range(200)]
    spec = PreprocessSpec.load(quick_run.out_dir / "spec.json")
    accepted = rejected = 0
    for p in payloads:
        recs, rej = parse_flows(
            p, spec.features, categorical=tuple(spec.transform.encoders), key_columns=spec.window_key,
            limits=RecordLimits(),
        )  # fmt: skip
        accepted, rejected = accepted + len(recs), rejected + len(rej)
    assert accepted > 20 and rejected > 100, (accepted, rejected)  # the mix exercises both paths

    publish_all(publisher, payloads)
    publish_all(publisher, [json.dumps(flow(base_record, 999_999)).encode()])
    collector.wait_seqs([999_999], 30, agent.log, sensor=SENSOR)
    wait_until(
        lambda: len(collector.verdicts()) >= accepted + 1 and len(collector.deadletters()) >= rejected,
        20,
        f"{accepted + 1} verdicts and {rejected} dead letters",
        lambda: f"got {len(collector.verdicts())} and {len(collector.deadletters())}\n{agent.log()}",
    )
    stats = collector.wait_stats(lambda s: s["messages_in"] == len(payloads) + 1, 10, "stats", agent.log)
    assert (len(collector.verdicts()), len(collector.deadletters())) == (accepted + 1, rejected)
    assert stats["flows_scored"] == accepted + 1 and stats["deadlettered"] == rejected
    assert "internal_error" not in stats["deadletter_reasons"], stats["deadletter_reasons"]
    assert agent.alive, agent.log()


@pytest.mark.timeout(60, func_only=True)
def test_one_message_of_5000_empty_records_gives_at_most_n_plus_1_dead_letters(agents, collector, publisher):
    """No amplification: the first N record errors of a message in full, then one summary counting the rest."""
    agent = agents.spawn()
    n = DEADLETTERS_PER_MESSAGE
    payload = json.dumps([{}] * 5000).encode()
    publish_all(publisher, [payload, json.dumps([{}] * 3).encode()])  # then a small one: all in full

    stats = collector.wait_stats(lambda s: s["messages_in"] == 2, 20, "stats after both messages", agent.log)
    wait_until(lambda: len(collector.deadletters()) >= n + 1 + 3, 10, "the dead letters", agent.log)
    time.sleep(0.5)
    dead = collector.deadletters()
    full = [d for d in dead if d["event_type"] == "deadletter"]
    summaries = [d for d in dead if d["event_type"] == "deadletter_summary"]
    assert len(dead) == n + 1 + 3 and len(full) == n + 3, [d["event_type"] for d in dead]
    assert {d["reason"] for d in full} == {"missing_field"} and [d["index"] for d in full[:n]] == list(range(n))
    (summary,) = summaries
    assert summary["counts"] == {"missing_field": 5000 - n} and summary["suppressed"] == 5000 - n, summary
    assert summary["shown"] == n and summary["source_topic"] == topic("flows")
    assert stats["deadletter_reasons"] == {"missing_field": 5003} and stats["flows_in"] == 5003, stats
    assert stats["other"]["deadletters_summarised"] == 5000 - n
    assert agent.alive
