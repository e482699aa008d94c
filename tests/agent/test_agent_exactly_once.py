"""Exactly one verdict per flow across crashes: 5,000 flows with ``sensor``/``seq`` (arrays of 25), the agent
``kill -9``-ed three times mid-stream, or the broker ``kill -9``-ed mid-stream (the README's crash settings).

Every published flow must get exactly one verdict (or dead letter), or be named by a ``gap`` event; no flow
may be scored twice. What the collector receives is at-least-once (a verdicts message re-sent after a lost
PUBACK arrives twice, byte for byte), so scoring is counted over distinct payloads: a flow scored twice
would sit in two different verdicts messages.
"""

from __future__ import annotations

import collections
import json
import signal
import time
from typing import Any

import pytest

pytest.register_assert_rewrite("agent_harness")

from agent_harness import Stream, duplicates, report, sample_rows, score_offline, wait_until  # noqa: E402

from ids_core.eve import read_alert  # noqa: E402

pytest_plugins = ["agent_harness"]

N_FLOWS = 5000
PER_MESSAGE = 25
RATE = 500.0  # flows/s: the stream lasts 10 s, so every kill lands mid-stream
SENSOR = "meter1"


@pytest.fixture
def broker(durable_broker):
    """``persistence true``, ``autosave_on_changes true``, ``autosave_interval 1``: the README's crash settings."""
    return durable_broker


def distinct_docs(collector, leaf: str) -> list[dict[str, Any]]:
    """Each message received on ``leaf`` once, however often the broker delivered it."""
    return [json.loads(p) for p in dict.fromkeys(m.payload for m in collector.messages(leaf))]


def scored(collector) -> tuple[collections.Counter[int], collections.Counter[int], set[int]]:
    """How often each seq of SENSOR was answered (verdict or dead letter) and alerted; the seqs in gap events."""
    answers = collections.Counter(
        v["seq"] for doc in distinct_docs(collector, "verdicts") for v in doc["verdicts"] if v.get("sensor") == SENSOR
    )
    answers.update(
        d["ident"]["seq"] for d in distinct_docs(collector, "deadletter") if d.get("ident", {}).get("sensor") == SENSOR
    )
    readings = [read_alert(a) for a in distinct_docs(collector, "alerts") if a["event_type"] == "alert"]
    alerts = collections.Counter(a.seq for a in readings if a.sensor == SENSOR)
    events = distinct_docs(collector, "events")
    gaps = {s for g in events if g["event_type"] == "gap" and g["sensor"] == SENSOR
            for s in range(g["first_seq"], g["last_seq"] + 1)}  # fmt: skip
    return answers, alerts, gaps


def transport_duplicates(collector, leaf: str) -> int:
    msgs = collector.messages(leaf)
    return len(msgs) - len({m.payload for m in msgs})


def per_process_total(collector, counter: str) -> int:
    """Sum over agent processes (their counters start at 0) of the last value seen in their stats."""
    total = last = 0
    uptime = float("inf")
    for doc in collector.docs("stats"):
        if doc["uptime_s"] < uptime:
            total += last
        uptime, last = doc["uptime_s"], doc["other"].get(counter, 0)
    return total + last


def rows_5000(sample_csv) -> list[dict[str, Any]]:
    rows = sample_rows(sample_csv, 2000)  # the real sample (one non-finite row: a dead letter, also once)
    return [dict(r) for r in (rows * 3)[:N_FLOWS]]


def check_exactly_once(collector, stream, quick_run, context) -> dict[str, int]:
    """Wait until every seq is answered or in a gap and the outbox drained; assert nothing was scored twice."""
    everything = set(stream.seqs)

    def unaccounted() -> set[int]:
        answers, _alerts, gaps = scored(collector)
        return everything - set(answers) - gaps

    wait_until(lambda: not unaccounted(), 60, "a verdict, dead letter or gap event for every flow",
               lambda: f"{len(unaccounted())} unaccounted, e.g. {sorted(unaccounted())[:20]}\n{context()}")  # fmt: skip
    collector.wait_stats(lambda s: s["outbox_depth"] == 0 and s["connected"], 20, "the outbox drained", context)
    time.sleep(1.0)  # anything still on its way (a second copy would show up now)
    answers, alerts, gaps = scored(collector)
    assert not duplicates(answers), f"flows scored twice: {sorted(duplicates(answers).items())[:20]}\n{context()}"
    assert not duplicates(alerts), f"flows alerted twice: {sorted(duplicates(alerts).items())[:20]}"
    assert set(answers) | gaps == everything

    offline = score_offline(quick_run.out_dir, stream.payloads())
    if quick_run.spec().window_length == 1:  # the T=1 quick model: alerts exactly as offline, except lost flows
        expected = offline.alerts() & set(answers)
        assert set(alerts) == expected, sorted(set(alerts) ^ expected)[:20]
    return {
        "flows": N_FLOWS,
        "answered": len(answers),
        "scored_twice": len(duplicates(answers)),
        "alerts": len(alerts),
        "gap_flows": len(gaps),
        "gap_flows_without_verdict": len(gaps - set(answers)),
        "redeliveries_skipped": per_process_total(collector, "redeliveries_skipped"),  # by sensor/seq
        "redelivered_messages_skipped": per_process_total(collector, "redelivered_messages_skipped"),  # by packet id
        "verdict_messages_received_twice": transport_duplicates(collector, "verdicts"),
    }


@pytest.mark.slow
@pytest.mark.timeout(180, func_only=True)
def test_agent_killed_three_times_mid_stream_scores_every_flow_exactly_once(
    broker, agents, collector, quick_run, sample_csv, record_property
):
    agent = agents.spawn()
    stream = Stream(rows_5000(sample_csv), broker.port, sensor=SENSOR, rate=RATE, per_message=PER_MESSAGE).start()
    kills = []
    for at in (1000, 2500, 4000):  # early; during the catch-up after a restart; late
        wait_until(lambda at=at: len(scored(collector)[0]) >= at, 60, f"{at} flows answered", agent.log)
        agent.kill()
        kills.append(len(scored(collector)[0]))
        agent.start()
        agent.wait_connected()
    stream.join(90)
    numbers = check_exactly_once(collector, stream, quick_run, agent.log)
    assert all(k < N_FLOWS for k in kills), f"a kill came after the stream was answered: {kills}"
    assert numbers["gap_flows"] == 0, f"the broker lost nothing, yet gaps were reported: {numbers}"
    assert agent.log_count("session present: False") == 1, agent.log()  # every restart resumed the session
    report(record_property, answered_at_kills=kills, **numbers)


@pytest.mark.slow
@pytest.mark.timeout(180, func_only=True)
def test_broker_killed_mid_stream_every_flow_answered_once_or_reported_in_a_gap(
    durable_broker, agents, collector, quick_run, sample_csv, record_property
):
    """The README's crash settings (persistence with autosave on every change), as the issue states."""
    broker = durable_broker
    agent = agents.spawn()
    stream = Stream(rows_5000(sample_csv), broker.port, sensor=SENSOR, rate=RATE, per_message=PER_MESSAGE).start()
    wait_until(lambda: len(scored(collector)[0]) >= 2000, 60, "2000 flows answered", agent.log)
    broker.stop(signal.SIGKILL)
    at_kill = len(scored(collector)[0])
    agent.wait_log("disconnected from the broker", 15)
    time.sleep(1.0)
    broker.start()
    stream.join(90)
    numbers = check_exactly_once(collector, stream, quick_run, agent.log)
    assert at_kill < N_FLOWS - 1000, "the kill did not land mid-stream"
    if numbers["gap_flows"]:
        assert agent.log_count("never arrived") >= 1, agent.log()
    report(record_property, answered_at_kill=at_kill, **numbers)
