"""End to end: real sample flows → real Mosquitto → the agent process → verdicts, alerts and dead letters
that match the int8 model run offline on the same records, bit for bit."""

from __future__ import annotations

import json

import pytest

pytest.register_assert_rewrite("agent_harness")

from agent_harness import Stream, duplicates, sample_rows, score_offline  # noqa: E402

pytest_plugins = ["agent_harness"]

N_FLOWS = 2000


@pytest.mark.timeout(120, func_only=True)
@pytest.mark.parametrize(
    ("settings", "per_message"),
    [({}, 1), ({"mqtt__protocol": "3.1.1"}, 1), ({}, 50)],
    ids=["mqtt5", "mqtt311", "50-per-message"],
)
def test_every_flow_scored_once_and_alerts_equal_offline_int8(
    agents, collector, broker, quick_run, sample_csv, settings, per_message
):
    agent = agents.spawn(**settings)
    stream = Stream(sample_rows(sample_csv, N_FLOWS), broker.port, per_message=per_message)
    stream.run()
    collector.wait_seqs(stream.seqs, 60, agent.log)
    offline = score_offline(quick_run.out_dir, stream.payloads())
    context = agent.log()

    # Every flow has one verdict, the sample's zero-duration row (Infinity rates) too: scored by the non-finite rule.
    assert offline.rejected == {}, offline.rejected
    assert collector.deadletters() == []
    counts = collector.verdict_counts()
    assert set(counts) == set(stream.seqs), context
    assert not duplicates(counts), f"flows scored more than once: {duplicates(counts)}"

    # Alerts: exactly the flows the offline int8 model scores above the threshold, with the same score.
    alerts = collector.alerts()
    alert_counts = collector.alert_counts()
    assert not duplicates(alert_counts), duplicates(alert_counts)
    assert set(alert_counts) == offline.alerts()
    for a in collector.alert_readings():
        assert a.score == offline.scores[a.seq], a
        assert a.threshold == offline.threshold
    verdicts = {v["seq"]: v for v in collector.verdicts()}
    for seq, v in verdicts.items():
        assert v["score"] == round(offline.scores[seq], 6), (v, offline.scores[seq])
        assert v["verdict"] == ("malicious" if offline.scores[seq] > offline.threshold else "benign"), v

    # Sanity against ground truth (the model saw most of the sample in training).
    truth = stream.truth()
    correct = sum((v["verdict"] == "malicious") == truth[seq] for seq, v in verdicts.items())
    assert correct / len(verdicts) >= 0.95, f"accuracy {correct / len(verdicts):.3f}"

    stats = collector.wait_stats(lambda s: s["flows_scored"] == N_FLOWS and s["outbox_depth"] == 0, 10, "stats")
    assert stats["deadletter_reasons"] == {}
    assert stats["alerts_out"] == len(alerts)
    assert stats["messages_in"] == -(-N_FLOWS // per_message)
    assert stats["model"]["version"] == quick_run.spec().model_version


@pytest.mark.timeout(60, func_only=True)
def test_clean_stream_reports_no_seq_gaps_or_repeats(agents, collector, broker, sample_csv):
    """One message of 10 in-order flows, one non-finite mid-message: nothing was lost or repeated upstream."""
    agent = agents.spawn()
    rows = sample_rows(sample_csv, 10)
    bad = [i for i, r in enumerate(rows) if "Infinity" in json.dumps(r)]
    assert len(bad) == 1 and 0 < bad[0] < 9, bad
    Stream(rows, broker.port, per_message=10).run()
    collector.wait_seqs(range(10), 20, agent.log)
    stats = collector.wait_stats(lambda s: s["flows_in"] == 10, 10, "stats after the message")
    other = stats["other"]
    assert other.get("seq_gap_flows", 0) == 0 and other.get("redeliveries_skipped", 0) == 0, stats
    assert stats["sequences"] == {"sensors": 1, "missing": 0}, stats
