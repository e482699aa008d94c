"""Scale-out: two agents in one MQTT 5 shared subscription split one stream between them."""

from __future__ import annotations

import signal

import pytest

pytest.register_assert_rewrite("agent_harness")

from agent_harness import Stream, duplicates, sample_rows, wait_until  # noqa: E402

pytest_plugins = ["agent_harness"]

N_FLOWS = 1000


@pytest.mark.timeout(90, func_only=True)
def test_two_agents_in_a_shared_group_split_one_stream_exactly(agents, collector, broker, sample_csv):
    shared = {"mqtt__shared_group": "ids-workers", "stats_interval": 3600}  # stats only when stopping
    a = agents.spawn("a", **shared)  # distinct client ids and state dirs come from the names
    b = agents.spawn("b", **shared)
    assert "subscribed to $share/ids-workers/" in a.log() and "$share/ids-workers/" in b.log()
    stream = Stream(sample_rows(sample_csv, N_FLOWS), broker.port, rate=2000)
    stream.run()
    collector.wait_seqs(stream.seqs, 60, agents.logs)

    counts = collector.verdict_counts()
    assert not duplicates(counts), f"flows scored by both agents: {sorted(duplicates(counts))[:20]}"
    assert not collector.deadletters()  # the sample's zero-duration row (Infinity rates) is scored, not rejected
    assert set(counts) == set(stream.seqs)

    # Who did what: each agent's final stats message, published as it stops (one at a time).
    scored = {}
    for agent in (a, b):
        before = collector.count("stats")
        agent.signal(signal.SIGTERM)
        assert agent.wait(20) == 0, agent.log()
        wait_until(lambda n=before: collector.count("stats") > n, 10, "the final stats", agent.log)
        last = collector.messages("stats")[-1]
        doc = last.doc()
        assert last.topic.endswith(f"/stats/{doc['client_id']}"), last.topic  # each agent reports on its own topic
        scored[agent.config_path.parent.name] = doc["flows_in"]
    assert scored["a"] > 0 and scored["b"] > 0, scored
    assert scored["a"] + scored["b"] == N_FLOWS, scored
