"""Failures mid-stream: the broker killed and restarted, the agent killed and restarted, a graceful stop.

At-least-once everywhere: duplicates are allowed (and reported with ``-rP``), silent losses are not (a broker
killed with ``kill -9`` may lose a flow it acknowledged; the agent then names it in a ``gap`` event). Alert sets
are compared with the offline int8 scores, which is exact for the T=1 quick model (a window model
after a restart legitimately starts its windows afresh, so only completeness is checked then).
"""

from __future__ import annotations

import json
import signal
import time

import pytest

pytest.register_assert_rewrite("agent_harness")

from agent_harness import (  # noqa: E402
    Stream,
    duplicates,
    epoch,
    outbox_rows,
    report,
    retained,
    sample_rows,
    score_offline,
    topic,
    wait_until,
)

from ids_core.eve import read_alert  # noqa: E402

pytest_plugins = ["agent_harness"]

N_FLOWS = 1000
RATE = 300.0  # flows/s: the stream lasts 5 s, so the kills land mid-stream


@pytest.fixture
def broker(durable_broker):
    """Kills of the broker below must lose nothing it acknowledged: it saves on every change."""
    return durable_broker


def check_nothing_lost(collector, stream, quick_run, context) -> tuple[int, int]:
    """Every flow has a verdict (or its dead letter) or is named in a gap event, and every alert the model
    raises for a flow that arrived was published; returns the numbers of duplicated verdicts and alerts."""
    offline = score_offline(quick_run.out_dir, stream.payloads())
    counts = collector.verdict_counts(stream.sensor)
    dead = collector.deadletter_seqs(stream.sensor)
    gaps = collector.gap_seqs(stream.sensor)
    missing = set(stream.seqs) - set(counts) - dead - gaps
    assert not missing, f"{len(missing)} flows without a verdict: {sorted(missing)[:30]}\n{context()}"
    assert dead - gaps == set(offline.rejected) - gaps, (dead, offline.rejected)
    alerts = collector.alert_counts(stream.sensor)
    if quick_run.spec().window_length > 1:  # windows after a restart or re-delivery differ from offline ones
        return len(duplicates(counts)), len(duplicates(alerts))
    lost = offline.alerts() - set(alerts) - gaps
    assert not lost, f"{len(lost)} alerts lost: {sorted(lost)[:30]}\n{context()}"
    assert set(alerts) <= offline.alerts(), f"unexpected alerts: {sorted(set(alerts) - offline.alerts())[:30]}"
    return len(duplicates(counts)), len(duplicates(alerts))


@pytest.mark.timeout(120, func_only=True)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_broker_restart_mid_stream_loses_no_flow_and_no_alert(
    broker, agents, collector, quick_run, sample_csv, sig, record_property
):
    agent = agents.spawn()
    stream = Stream(sample_rows(sample_csv, N_FLOWS), broker.port, sensor="s1", rate=RATE).start()
    wait_until(lambda: len(collector.verdict_counts()) >= 200, 30, "200 verdicts before the kill", agent.log)
    broker.stop(sig)
    scored_before = len(collector.verdict_counts())
    agent.wait_log("disconnected from the broker", 15)
    time.sleep(1.0)  # the broker stays away for a moment: replay and agent keep working meanwhile
    broker.start()

    stream.join(90)  # the publisher survived the restart and every flow was acknowledged
    collector.wait_seqs(stream.seqs, 60, agent.log, gaps=True)
    assert scored_before < N_FLOWS - 200, "the kill did not land mid-stream"
    assert agent.log_count("session present: False") == 1, agent.log()  # the broker kept our session
    assert agent.log_count("session present: True") >= 1, agent.log()
    dup_verdicts, dup_alerts = check_nothing_lost(collector, stream, quick_run, agent.log)
    collector.wait_stats(lambda s: s["outbox_depth"] == 0 and s["connected"], 15, "the outbox drained", agent.log)
    report(record_property, duplicate_verdicts=dup_verdicts, duplicate_alerts=dup_alerts)


@pytest.mark.timeout(90, func_only=True)
def test_alerts_made_while_the_broker_is_down_are_stored_then_forwarded_oldest_first(
    broker, agents, collector, quick_run, sample_csv, record_property
):
    """Flows already received when the broker goes away are still scored; their alerts wait in the
    on-disk outbox and are delivered after the restart in the order they were made."""
    agent = agents.spawn(batch__max_records=5000, batch__max_wait_ms=4000)  # the batch closes after the kill
    stream = Stream(sample_rows(sample_csv, 300, include_inf=False), broker.port, sensor="s2")
    stream.run()
    broker.stop(signal.SIGTERM)
    down = time.time()
    stored = wait_until(lambda: outbox_rows(agent.state_dir), 15, "alerts stored in the outbox", agent.log)
    time.sleep(0.5)  # nothing may leave while the broker is away
    broker.start()
    up = time.time()

    collector.wait_seqs(stream.seqs, 60, agent.log)
    offline = score_offline(quick_run.out_dir, stream.payloads())
    wait_until(lambda: set(collector.alert_counts()) >= offline.alerts(), 30, "every alert", agent.log)
    collector.wait_stats(lambda s: s["outbox_depth"] == 0 and s["connected"], 15, "the outbox drained", agent.log)

    stored_alerts = [json.loads(p) for _, t, p in stored if t.endswith("/alerts")]
    assert stored_alerts, f"no alert was made while the broker was down\n{agent.log()}"
    for a in stored_alerts:  # made during the outage (the batch closed after the broker went away)
        assert down <= epoch(a["timestamp"]) <= up, (a["timestamp"], down, up)
    stored_seqs = [read_alert(a).seq for a in stored_alerts]
    received = [a.seq for a in collector.alert_readings()]
    assert received[: len(stored_seqs)] == stored_seqs, "stored alerts not delivered first and oldest first"
    counts = collector.verdict_counts()
    assert not duplicates(counts), f"re-delivered flows were scored again: {duplicates(counts)}"
    report(record_property, stored_alerts=len(stored_alerts), stored_messages=len(stored))


@pytest.mark.timeout(120, func_only=True)
def test_agent_killed_mid_stream_resumes_its_session_and_loses_no_flow(
    broker, agents, collector, quick_run, sample_csv, record_property
):
    agent = agents.spawn()
    stream = Stream(sample_rows(sample_csv, N_FLOWS), broker.port, sensor="s3", rate=RATE).start()
    wait_until(lambda: len(collector.verdict_counts()) >= 200, 30, "200 verdicts before the kill", agent.log)
    agent.kill()
    scored_before = len(collector.verdict_counts())
    wait_until(lambda: collector.messages("status")[-1].payload == b"offline", 10, "the Last Will", agent.log)
    time.sleep(0.5)  # flows keep arriving at the broker for our session
    agent.start()
    agent.wait_connected()

    stream.join(90)
    collector.wait_seqs(stream.seqs, 60, agent.log)
    assert scored_before < N_FLOWS - 200, "the kill did not land mid-stream"
    assert agent.log_count("session present: False") == 1, agent.log()  # resumed, not a new session
    dup_verdicts, dup_alerts = check_nothing_lost(collector, stream, quick_run, agent.log)
    assert [m.payload for m in collector.messages("status")][-2:] == [b"offline", b"online"]
    report(record_property, duplicate_verdicts=dup_verdicts, duplicate_alerts=dup_alerts)


@pytest.mark.timeout(60, func_only=True)
def test_sigterm_finishes_the_batch_in_hand_publishes_offline_and_exits_0(broker, agents, collector, sample_csv):
    """Birth ``online`` (retained) on start; on SIGTERM the batch being filled is scored, ``offline`` is
    retained, exit code 0; what was received but not in the batch is served after the next start."""
    agent = agents.spawn(batch__max_records=5000, batch__max_wait_ms=2000)
    birth = retained(broker.port, topic("status"))
    assert (birth.payload, birth.retain) == (b"online", True)
    stream = Stream(sample_rows(sample_csv, 200, include_inf=False), broker.port, sensor="s4")
    stream.run()
    agent.signal(signal.SIGTERM)
    signalled = time.time()
    assert agent.wait(20) == 0, agent.log()

    verdict_docs = collector.docs("verdicts")
    assert verdict_docs, f"the batch in hand was dropped\n{agent.log()}"
    assert epoch(verdict_docs[0]["timestamp"]) >= signalled, "scored before the signal: no batch was in hand"
    assert "stopping: finishing the batch in hand" in agent.log()
    last = retained(broker.port, topic("status"))
    assert (last.payload, last.retain) == (b"offline", True)

    # A restart serves whatever was received but not in the batch, and repeats nothing.
    agent.start()
    agent.wait_connected()
    collector.wait_seqs(stream.seqs, 30, agent.log)
    assert not duplicates(collector.verdict_counts()), duplicates(collector.verdict_counts())
