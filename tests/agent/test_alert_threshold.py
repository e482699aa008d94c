"""A per-site alert threshold: ``alerts.threshold`` overrides the model's, is reloaded with SIGHUP and is carried
in every alert. The real agent against a real Mosquitto, with the session's trained quick model (T = 1: a flow's
score does not depend on the flows before it, so the same flows sent twice score the same)."""

from __future__ import annotations

import json
import signal

import pytest

pytest.register_assert_rewrite("agent_harness")

from agent_harness import sample_rows, topic, write_config  # noqa: E402

from agent.config import AgentConfig  # noqa: E402
from agent.model_life import merged_config  # noqa: E402
from firmware_bundle.errors import BadConfigError  # noqa: E402
from flowmeter.replay import connect, records  # noqa: E402
from ids_core.eve import read_alert  # noqa: E402
from ids_core.typedconfig import build  # noqa: E402

pytest_plugins = ["agent_harness"]

N_FLOWS = 400
SENSOR = "threshold-test"


def publish(port: int, rows: list[dict], first_seq: int, per_message: int = 50) -> range:
    """``rows`` as one sensor's flows numbered from ``first_seq`` (QoS 1, acknowledged before returning)."""
    client = connect("127.0.0.1", port)
    try:
        recs = [rec | {"seq": first_seq + i} for i, (rec, _truth) in enumerate(records(rows, SENSOR))]
        infos = [
            client.publish(topic("flows"), json.dumps(recs[i : i + per_message]), qos=1)
            for i in range(0, len(recs), per_message)
        ]
        for info in infos:
            info.wait_for_publish(30)
    finally:
        client.disconnect()
        client.loop_stop()
    return range(first_seq, first_seq + len(rows))


def in_force(collector) -> dict[int, float]:
    """seq → the threshold of the verdicts message that answered it."""
    return {v["seq"]: doc["threshold"] for doc in collector.docs("verdicts") for v in doc["verdicts"]}


@pytest.mark.timeout(180, func_only=True)
def test_sighup_with_a_new_threshold_changes_which_flows_alert_at_that_point(
    agents, collector, broker, quick_run, sample_csv
):
    spec = quick_run.spec()
    assert spec.window_length == 1, "the test sends the same flows twice and expects the same scores"
    model_t = spec.threshold
    agent = agents.spawn(name="thr")
    agent.wait_log(f"alert threshold {model_t} (the model's)")
    rows = sample_rows(sample_csv, N_FLOWS, include_inf=False)

    # 1. no alerts.threshold: the model's threshold decides and is carried in every alert
    first = publish(broker.port, rows, 0)
    collector.wait_seqs(first, 60, agent.log)
    before = {a.seq: a for a in map(read_alert, collector.alerts())}
    assert before and all(a.threshold == model_t and a.score > model_t for a in before.values())
    # the site's threshold: midway between two of the alerting scores (no score sits on it), at their median, so
    # part of the alerting flows fall under it
    values = sorted({a.score for a in before.values()})
    assert len(values) >= 2, values
    site_t = (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2
    assert model_t < site_t < 1

    # 2. the site sets alerts.threshold, the agent reloads on SIGHUP
    write_config(agent.config_path, agents.config("thr", alerts__threshold=site_t))
    agent.signal(signal.SIGHUP)
    agent.wait_log(f"alert threshold {site_t} (alerts.threshold; the model's is {model_t})")

    # 3. the same flows again, numbered on: the stream continues
    second = publish(broker.port, rows, N_FLOWS)
    collector.wait_seqs(second, 60, agent.log)
    alerts = [read_alert(d) for d in collector.alerts()]
    after = {a.seq: a for a in alerts if a.seq in second}
    verdicts = {v["seq"]: v for v in collector.verdicts()}
    threshold_of = in_force(collector)

    # the threshold in force changes once, exactly between the two passes, and every alert carries it
    assert {threshold_of[s] for s in first} == {model_t} and {threshold_of[s] for s in second} == {site_t}
    assert len(alerts) == len(before) + len(after), "every alert belongs to one pass, once"
    for a in alerts:
        assert a.threshold == threshold_of[a.seq] and a.score > a.threshold, a
    # which flows alert follows score > the threshold in force, flow by flow (verdicts list every flow)
    for seq, v in verdicts.items():
        assert (seq in before or seq in after) == (v["verdict"] == "malicious"), v
        assert (v["verdict"] == "malicious") == (v["score"] > threshold_of[seq]), v
    for i in range(N_FLOWS):
        assert verdicts[i]["score"] == verdicts[N_FLOWS + i]["score"], "same flow, same score"

    # what changed at that point: the flows scored above the model's threshold but not above the site's
    stopped = {i for i in range(N_FLOWS) if i in before and N_FLOWS + i not in after}
    started = {i for i in range(N_FLOWS) if i not in before and N_FLOWS + i in after}
    assert stopped and not started
    assert stopped == {i for i, a in before.items() if a.score <= site_t}
    assert {a.seq - N_FLOWS for a in after.values()} == {i for i, a in before.items() if a.score > site_t}

    # 4. a reload with a threshold outside (0, 1) is refused: the running one stays
    write_config(agent.config_path, agents.config("thr", alerts__threshold=1.5))
    agent.signal(signal.SIGHUP)
    agent.wait_log("reload: config rejected")
    assert "alerts.threshold: 1.5 is out of range" in agent.log()
    third = publish(broker.port, rows[:50], 2 * N_FLOWS)
    collector.wait_seqs(third, 60, agent.log)
    assert {in_force(collector)[s] for s in third} == {site_t}
    assert agent.alive


def test_a_bundles_agent_config_keeps_the_sites_threshold():
    """A model installed by bundle (with its agent-config fragment) keeps the site's ``alerts.threshold``; a site
    without one may take the fragment's; a fragment's threshold is validated like the file's."""
    site = build(AgentConfig, {"alerts": {"threshold": 0.8}})
    assert merged_config(site, b"alerts:\n  threshold: 0.6\n").alerts.threshold == 0.8
    assert merged_config(site, b"batch:\n  max_records: 64\n").alerts.threshold == 0.8
    assert merged_config(AgentConfig(), b"alerts:\n  threshold: 0.6\n").alerts.threshold == 0.6
    assert merged_config(AgentConfig(), b"batch:\n  max_records: 64\n").alerts.threshold is None
    with pytest.raises(BadConfigError, match=r"alerts\.threshold"):
        merged_config(AgentConfig(), b"alerts:\n  threshold: 1\n")
    assert AgentConfig().alerts.threshold_for(0.5) == 0.5 and site.alerts.threshold_for(0.5) == 0.8


def test_a_bundles_agent_config_cannot_change_how_alerts_are_grouped():
    """``alerts.max_per_message`` is the layout the site's consumers read: a bundle's fragment does not change it."""
    site = build(AgentConfig, {"alerts": {"max_per_message": 50}})
    assert merged_config(site, b"alerts:\n  max_per_message: 1\n").alerts.max_per_message == 50
    assert merged_config(AgentConfig(), b"alerts:\n  max_per_message: 50\n").alerts.max_per_message == 1
    assert merged_config(site, b"alerts:\n  publish_verdicts: true\n").alerts.publish_verdicts  # the rest applies
