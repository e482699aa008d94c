"""The agent's opt-in Prometheus endpoint (``metrics.listen``): a real agent against a real Mosquitto is scraped,
the text exposition parsed with prometheus_client's own parser; names follow Prometheus' conventions, the counters
move as good flows, bad messages and alerts go through and agree with the stats topic (one source), and without
the setting there is no listener at all."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

pytest.register_assert_rewrite("agent_harness", "metrics_helpers")

from agent_harness import Stream, run_agent_cli, sample_rows, topic, wait_until  # noqa: E402
from conftest import free_port  # noqa: E402
from metrics_helpers import check_conventions, listening_inodes, refused, scrape, value  # noqa: E402
from systemd_units import unit_settings  # noqa: E402

from agent.stats import LATENCY_BUCKETS, Distribution, Latency  # noqa: E402
from ids_core.metrics_server import parse_listen  # noqa: E402
from ids_core.typedconfig import ConfigError  # noqa: E402

pytest_plugins = ["agent_harness"]

PREFIX = "edge_ids_agent_"
UNIT = Path(__file__).resolve().parents[2] / "config" / "edge-ids-agent.service"


# --------------------------------------------------------------------------- units (no agent)


def test_listen_setting_parses_host_port_and_names_the_key_when_bad():
    assert parse_listen("127.0.0.1:9711") == ("127.0.0.1", 9711)
    assert parse_listen("[::1]:9711") == ("::1", 9711)
    for bad in ("9711", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", ":9711", "127.0.0.1:http", "a b:1"):
        with pytest.raises(ConfigError, match=r"^metrics\.listen: "):
            parse_listen(bad)


def test_histogram_and_percentiles_come_from_the_same_samples():
    lat = Latency(size=4)
    lat.add(0.0005)  # on a bound: counted in that bucket (le is inclusive)
    lat.extend([0.003, 0.003, 20.0])
    buckets, total, count = lat.histogram()
    cumulative = dict(buckets)
    assert count == 4 and total == pytest.approx(20.0065)
    assert cumulative[0.0005] == 1 and cumulative[0.0025] == 1 and cumulative[0.005] == 3
    assert cumulative[LATENCY_BUCKETS[-1]] == 3 and cumulative[float("inf")] == 4
    assert lat.percentiles()["p50_ms"] == pytest.approx(3.0)
    lat.extend([0.001] * 10)  # the percentiles see the last `size` samples, the histogram every one since the start
    assert lat.percentiles() == {"p50_ms": 1.0, "p99_ms": 1.0} and lat.histogram()[2] == 14
    sizes = Distribution((1.0, 2.0))
    sizes.append(2)
    assert sizes.histogram()[0] == [(1.0, 0), (2.0, 1), (float("inf"), 1)]


def test_bad_listen_value_stops_startup_naming_the_key():
    proc = run_agent_cli("--set", "metrics.listen=localhost", "--validate-config")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("iotids-agent: configuration error: metrics.listen: 'localhost'"), proc.stderr


def test_systemd_unit_lets_the_agent_bind_only_the_documented_metrics_port():
    settings = unit_settings(UNIT)
    assert settings["SocketBindDeny"] == ["any"] and settings["SocketBindAllow"] == ["tcp:9711"], settings
    assert "AF_INET" in settings["RestrictAddressFamilies"][0].split()  # a loopback listener is an AF_INET socket
    assert "any" not in settings.get("IPAddressDeny", []) or "localhost" in " ".join(settings["IPAddressAllow"])


# --------------------------------------------------------------------------- the live agent


@pytest.mark.timeout(120, func_only=True)
def test_scraped_counters_move_with_flows_bad_messages_and_alerts(
    agents, collector, publisher, broker, quick_run, sample_csv
):
    listen = f"127.0.0.1:{free_port()}"
    agent = agents.spawn(metrics__listen=listen)
    assert listening_inodes(agent.pid), "the agent holds no listening socket"

    before = scrape(listen)
    check_conventions(before, PREFIX)
    identity = {"name": quick_run.spec().model_name, "version": quick_run.spec().model_version}
    model = before["edge_ids_agent_model_info"].samples[0].labels
    assert identity.items() <= model.items() and re.fullmatch(r"[0-9a-f]{64}", model["sha256"]), model
    assert value(before, "edge_ids_agent_mqtt_connected") == 1
    for name in ("flows_in", "flows_scored", "alerts", "alerts_suppressed", "messages_in", "outbox_dropped"):
        assert value(before, f"edge_ids_agent_{name}_total") == 0, name
    assert value(before, "edge_ids_agent_deadletters_total", reason="invalid_json") == 0
    assert value(before, "edge_ids_agent_flow_latency_seconds_count") == 0

    # good flows of the real sample, one per message, with sensor + seq
    stream = Stream(sample_rows(sample_csv, 60, include_inf=False), broker.port, sensor="good")
    stream.run(timeout=60)
    collector.wait_seqs(stream.seqs, 60, agent.log, sensor="good")
    after = wait_until(lambda: (f := scrape(listen)) and value(f, "edge_ids_agent_flows_scored_total") == 60 and f,
                       15, "60 flows scored on the endpoint", agent.log)  # fmt: skip
    check_conventions(after, PREFIX)
    assert value(after, "edge_ids_agent_flows_in_total") == 60
    assert value(after, "edge_ids_agent_messages_in_total") == 60
    alerts = value(after, "edge_ids_agent_alerts_total")  # final: a batch's alerts are stored with its verdicts
    assert alerts > 0, "the real sample's attacks raise alerts"
    wait_until(lambda: len(collector.alerts()) >= alerts, 10, f"{alerts} alerts at the collector", agent.log)
    assert len(collector.alerts()) == alerts
    assert value(after, "edge_ids_agent_flow_latency_seconds_count") == 60
    assert value(after, "edge_ids_agent_flow_latency_seconds_bucket", le="+Inf") == 60
    assert value(after, "edge_ids_agent_batch_size_sum") == 60
    batches = value(after, "edge_ids_agent_batch_size_count")
    assert 1 <= batches <= 60 and value(after, "edge_ids_agent_inference_seconds_count") == batches
    assert 0 < value(after, "edge_ids_agent_inference_seconds_sum") < 60
    wait_until(lambda: value(scrape(listen), "edge_ids_agent_messages_published_total") >= 1 + alerts, 10,
               "verdicts and alerts acknowledged by the broker", agent.log)  # fmt: skip

    # bad messages: each counted under its reason; the agent keeps serving
    bad = [b'{"seq": 1, "Flow_Duration": ', b"42", b"", b'{"seq": 2, "Src_IP": "\xff\xfe"}', b'{"x": 1}']
    for payload in bad:
        publisher.publish(topic("flows"), payload, qos=1).wait_for_publish(10)
    wait_until(lambda: len(collector.deadletters()) >= len(bad), 20, "the dead letters", agent.log)
    final = wait_until(lambda: (f := scrape(listen)) and value(f, "edge_ids_agent_messages_in_total") == 65 and f,
                       15, "the bad messages on the endpoint", agent.log)  # fmt: skip
    expected = {"invalid_json": 1, "not_an_object": 1, "empty": 1, "not_utf8": 1, "missing_field": 1}
    for reason, n in expected.items():
        assert value(final, "edge_ids_agent_deadletters_total", reason=reason) == n, reason
    assert value(final, "edge_ids_agent_deadletters_total", reason="too_large") == 0
    assert value(final, "edge_ids_agent_flows_scored_total") == 60

    # one source of truth: the stats topic says the same once nothing moves
    stats = collector.wait_stats(
        lambda s: s["messages_in"] == 65 and s["outbox_depth"] == 0,
        10,
        "stats after the bad messages, outbox drained",
        agent.log,
    )
    final = scrape(listen)
    assert stats["deadletter_reasons"] == expected
    for key, name in (("flows_in", "flows_in"), ("flows_scored", "flows_scored"), ("alerts_out", "alerts"),
                      ("alerts_suppressed", "alerts_suppressed"), ("deadlettered", None)):  # fmt: skip
        if name:
            assert value(final, f"edge_ids_agent_{name}_total") == stats[key], key
    dead = sum(s.value for s in final["edge_ids_agent_deadletters"].samples)
    assert dead == stats["deadlettered"] == len(bad)
    assert value(final, "edge_ids_agent_outbox_messages") == stats["outbox_depth"]
    assert agent.alive


@pytest.mark.timeout(90, func_only=True)
def test_no_listener_without_the_setting_and_a_taken_port_stops_startup(agents, quick_run):
    agent = agents.spawn()
    assert listening_inodes(agent.pid) == set()
    assert refused("127.0.0.1", 9711)  # the documented port: nothing there

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = agents.config("busy", metrics__listen=f"127.0.0.1:{port}")
        path = agents.tmp_path / "busy.yaml"
        path.write_text(json.dumps(cfg))
        proc = run_agent_cli("--config", str(path))
    assert proc.returncode == 2, proc.stderr
    assert f"iotids-agent: cannot start: metrics.listen: 127.0.0.1:{port}: Address already in use" in proc.stderr
