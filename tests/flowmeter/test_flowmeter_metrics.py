"""The flow meter's opt-in Prometheus endpoint (``metrics.listen``): a live capture on loopback (bounded: 30 UDP
datagrams to a test socket, through a BPF filter) with a real Mosquitto, scraped and parsed with prometheus_client's
parser; the counters move with the packets and agree with the stats topic; the endpoint closes with the meter,
is absent without the setting, and a taken port stops start-up naming the setting."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

pytest.register_assert_rewrite("metrics_helpers")

from agent_harness import Collector, wait_until  # noqa: E402
from conftest import free_port  # noqa: E402
from meter_harness import MeterProcess, meter_config, meter_stats, mixed_capture, run_cli, send_udp  # noqa: E402
from metrics_helpers import check_conventions, listening_inodes, refused, scrape, value  # noqa: E402
from systemd_units import unit_settings  # noqa: E402

PREFIX = "edge_ids_flowmeter_"
UNIT = Path(__file__).resolve().parents[2] / "config" / "edge-ids-flowmeter.service"

pytest_plugins = ["agent_harness"]  # its collector fixture


@pytest.fixture
def sink():
    """A UDP socket the test's datagrams go to (so the kernel sends no ICMP port-unreachable)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def live_meter(tmp_path: Path, port: int, udp_port: int, name: str, **cfg) -> MeterProcess:
    args = ["--interface", "lo", "--bpf", f"udp and port {udp_port}"]
    config = meter_config(tmp_path, port, name, **cfg)
    return MeterProcess(config, args, tmp_path / f"{name}.log").start()


def online(collector: Collector) -> bool:
    return any(m.payload == b"online" for m in collector.messages("flowmeter/meter1/status"))


def test_systemd_unit_lets_the_meter_bind_only_the_documented_metrics_port():
    settings = unit_settings(UNIT)
    assert settings["SocketBindDeny"] == ["any"] and settings["SocketBindAllow"] == ["tcp:9712"], settings
    assert "AF_INET" in settings["RestrictAddressFamilies"][0].split()


@pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs CAP_NET_RAW")
@pytest.mark.timeout(90, func_only=True)
def test_scraped_counters_move_with_live_packets_and_agree_with_the_stats_topic(tmp_path, broker, collector, sink):
    listen = f"127.0.0.1:{free_port()}"
    meter = live_meter(tmp_path, broker.port, sink, "live", metrics__listen=listen)
    try:
        wait_until(lambda: online(collector), 20, "the meter online", meter.log)
        before = scrape(listen)
        check_conventions(before, PREFIX)
        for name in ("packets", "flows", "records", "kernel_drops", "outbox_dropped"):
            assert value(before, f"{PREFIX}{name}_total") == 0, name
        assert value(before, f"{PREFIX}mqtt_connected") == 1
        labels = before[f"{PREFIX}sensor_info"].samples[0].labels
        assert labels == {"gateway": "gw1", "sensor": "meter1", "source": "lo"}, labels

        sent = send_udp(sink, 15, 46000)  # 15 flows of 2 datagrams
        after = wait_until(lambda: (f := scrape(listen)) and value(f, f"{PREFIX}records_total") >= 15 and f,
                           20, "15 records on the endpoint", meter.log)  # fmt: skip
        check_conventions(after, PREFIX)
        assert value(after, f"{PREFIX}packets_total") == value(after, f"{PREFIX}flow_packets_total") == sent
        assert value(after, f"{PREFIX}flows_total") == value(after, f"{PREFIX}records_total") == 15
        assert value(after, f"{PREFIX}captured_bytes_total") > 40 * sent
        assert value(after, f"{PREFIX}kernel_drops_total") == 0
        wait_until(lambda: (f := scrape(listen)) and value(f, f"{PREFIX}outbox_messages") == 0
                   and value(f, f"{PREFIX}messages_published_total") == value(f, f"{PREFIX}messages_total"),
                   15, "every message acknowledged by the broker", meter.log)  # fmt: skip
        wait_until(lambda: collector.messages("flows"), 10, "the records passed on by the broker", meter.log)
        # one source of truth: the next stats message says what the endpoint says (nothing moves any more)
        start = len(meter_stats(collector))
        wait_until(lambda: len(meter_stats(collector)) > start + 1, 10, "two more stats messages", meter.log)
        stats = meter_stats(collector)[-1]
        final = scrape(listen)
        for key, name in (("packets", "packets"), ("flows_out", "flows"), ("records_out", "records"),
                          ("messages_out", "messages"), ("kernel_drops", "kernel_drops")):  # fmt: skip
            assert value(final, f"{PREFIX}{name}_total") == stats[key], key
        assert value(final, f"{PREFIX}next_seq") == stats["next_seq"] == 15
        assert value(final, f"{PREFIX}messages_published_total") == stats["messages_published"] >= 1

        meter.proc.send_signal(signal.SIGTERM)
        assert meter.wait(20) == 0, meter.log()
    finally:
        meter.kill()
    assert refused("127.0.0.1", int(listen.rsplit(":", 1)[1])), "the endpoint outlived the meter"


@pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs CAP_NET_RAW")
@pytest.mark.timeout(60, func_only=True)
def test_no_listener_without_the_setting(tmp_path, broker, collector, sink):
    meter = live_meter(tmp_path, broker.port, sink, "quiet")
    try:
        wait_until(lambda: online(collector), 20, "the meter online", meter.log)
        assert listening_inodes(meter.proc.pid) == set()
        assert refused("127.0.0.1", 9712)  # the documented port: nothing there
    finally:
        meter.kill()


def test_a_taken_port_stops_startup_naming_the_setting(tmp_path):
    pcap = mixed_capture(tmp_path / "one.pcap", 1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = meter_config(tmp_path, free_port(), metrics__listen=f"127.0.0.1:{port}")
        proc = run_cli(str(pcap), "--config", str(config))
    assert proc.returncode == 2, proc.stderr
    assert f"iotids-flowmeter: cannot start: metrics.listen: 127.0.0.1:{port}: Address already in use" in proc.stderr
    proc = run_cli(str(pcap), "--config", str(config), "--set", "metrics.listen=localhost")
    assert proc.returncode == 2 and "configuration error: metrics.listen: 'localhost'" in proc.stderr, proc.stderr
