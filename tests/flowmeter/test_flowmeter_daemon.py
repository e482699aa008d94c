"""The flow meter daemon with a real Mosquitto: pcap → meter → broker → subscriber, seq across restarts, the outbox
while the broker is away (and its bound), retained status, stats, live capture with SIGTERM flush, config errors."""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import time
from pathlib import Path

import pytest
import yaml
from agent_harness import NotifySocket, retained, wait_until
from meter_harness import (
    GATEWAY,
    PREFIX,
    SENSOR,
    MeterProcess,
    flow_records,
    meter_config,
    meter_offline,
    meter_stats,
    mixed_capture,
    run_cli,
    send_udp,
    seq_counts,
    status_payloads,
)

from flowmeter.config import DEFAULT_CONFIG, FlowmeterConfig
from flowmeter.settings import MeterSettings
from ids_core.flowmessage import decode
from ids_core.typedconfig import describe

STATUS_TOPIC = f"{PREFIX}/{GATEWAY}/flowmeter/{SENSOR}/status"

pytest_plugins = ["agent_harness"]  # its collector fixture


def _run_pcap(tmp_path: Path, port: int, pcaps: list[Path], name: str = "meter", **cfg) -> MeterProcess:
    log = tmp_path / f"{name}.log"
    return MeterProcess(meter_config(tmp_path, port, name, **cfg), [str(p) for p in pcaps], log).start()


def _identity(r: dict) -> tuple:
    return r["Flow_ID"], r["Timestamp"], r["Tot_Fwd_Pkts"], r["Tot_Bwd_Pkts"], r["Flow_Duration"]


def test_every_flow_of_a_pcap_published_once_with_consecutive_seqs(tmp_path, broker, collector):
    pcap = mixed_capture(tmp_path / "mixed.pcap", 120)
    expected = meter_offline([pcap])
    meter = _run_pcap(tmp_path, broker.port, [pcap])
    assert meter.wait(30) == 0, meter.log()
    wait_until(lambda: len(flow_records(collector)) >= len(expected), 10, "every record", meter.log)
    time.sleep(0.3)
    records = flow_records(collector)
    assert sorted(seq_counts(records).items()) == [(s, 1) for s in range(len(expected))]
    assert sorted(map(_identity, records)) == sorted(map(_identity, expected))
    assert all(len(decode(m.payload)) <= 50 for m in collector.messages("flows")), "publish.max_records"
    # zero-duration flows went out as the JSON literal Infinity (and came back as floats)
    lone = [r for r in records if r["Flow_Duration"] == 0]
    assert lone and all(math.isinf(r["Flow_Pkts/s"]) for r in lone)
    assert b"Infinity" in b"".join(m.payload for m in collector.messages("flows"))
    # status: online while it ran, offline retained after a clean exit; stats with EVE time stamps (+0000)
    assert status_payloads(collector)[0] == b"online"
    assert retained(broker.port, STATUS_TOPIC).payload == b"offline"
    last = meter_stats(collector)[-1]
    assert last["event_type"] == "flowmeter_stats" and last["timestamp"].endswith("+0000")
    assert last["flows_out"] == last["records_out"] == len(expected) and last["packets"] == 120 * 8
    assert last["outbox_depth"] == 0 and last["outbox_dropped"] == 0 and last["next_seq"] == len(expected)
    assert last["messages_published"] == len(collector.messages("flows"))
    for key in ("bytes", "active_flows", "evictions", "kernel_drops", "bad"):
        assert key in last


def test_seq_continues_across_a_restart(tmp_path, broker, collector):
    first, second = mixed_capture(tmp_path / "a.pcap", 30), mixed_capture(tmp_path / "b.pcap", 40, start_us=2 * 10**15)
    n1, n2 = len(meter_offline([first])), len(meter_offline([second]))
    assert _run_pcap(tmp_path, broker.port, [first]).wait(30) == 0
    assert _run_pcap(tmp_path, broker.port, [second]).wait(30) == 0  # same state dir: numbering continues
    wait_until(lambda: len(flow_records(collector)) >= n1 + n2, 10, "records of both runs")
    counts = seq_counts(flow_records(collector))
    assert sorted(counts.items()) == [(s, 1) for s in range(n1 + n2)]


def test_records_wait_in_the_outbox_while_the_broker_is_away(tmp_path, broker, collector):
    pcap = mixed_capture(tmp_path / "mixed.pcap", 60)
    n = len(meter_offline([pcap]))
    broker.stop()
    meter = _run_pcap(tmp_path, broker.port, [pcap])
    db = tmp_path / "meter" / "state" / "flowmeter-outbox.sqlite"
    wait_until(lambda: "waiting for the broker" in meter.log(), 20, "the records stored", meter.log)
    time.sleep(1.0)
    assert meter.proc.poll() is None, "the meter must wait for the broker, not exit with records undelivered"
    assert db.exists()
    broker.start()
    assert meter.wait(30) == 0, meter.log()
    wait_until(lambda: len(flow_records(collector)) >= n, 15, "the stored records after the broker came back")
    assert sorted(seq_counts(flow_records(collector))) == list(range(n)), "no record lost"


def test_drops_at_the_outbox_bound_are_counted(tmp_path, broker, collector):
    pcap = mixed_capture(tmp_path / "mixed.pcap", 50)  # 200 records = 20 messages of 10
    n = len(meter_offline([pcap]))
    broker.stop()
    meter = _run_pcap(tmp_path, broker.port, [pcap], outbox__max_messages=3, publish__max_records=10)
    wait_until(lambda: "waiting for the broker" in meter.log(), 20, "the records stored", meter.log)
    broker.start()
    assert meter.wait(30) == 0, meter.log()
    wait_until(lambda: len(flow_records(collector)) >= 30, 15, "the 3 messages the bound kept")
    wait_until(lambda: meter_stats(collector), 5, "final stats")
    counts = seq_counts(flow_records(collector))
    assert sorted(counts) == list(range(n - 30, n)), "the newest messages are kept, the oldest dropped"
    assert meter_stats(collector)[-1]["outbox_dropped"] == (n - 30) // 10
    assert "dropped the" in meter.log()


# --------------------------------------------------------------------------- live capture on loopback


@pytest.fixture
def sink():
    """A UDP socket the test's datagrams go to (so the kernel sends no ICMP port-unreachable)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def _live(
    tmp_path: Path, port: int, udp_port: int, env: dict | None = None, sandboxed: bool = False, **cfg
) -> MeterProcess:
    args = ["--interface", "lo", "--bpf", f"udp and port {udp_port}"]
    config = meter_config(tmp_path, port, **cfg)
    return MeterProcess(config, args, tmp_path / "live.log", env or {}, sandboxed).start()


def _packets_in(records: list[dict]) -> int:
    return sum(r["Tot_Fwd_Pkts"] + r["Tot_Bwd_Pkts"] for r in records)


@pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs CAP_NET_RAW")
def test_live_capture_broker_restart_mid_stream_loses_nothing(tmp_path, broker, collector, sink):
    meter = _live(tmp_path, broker.port, sink)
    try:
        wait_until(lambda: b"online" in status_payloads(collector), 20, "the meter online", meter.log)
        sent = send_udp(sink, 40, 41000)
        wait_until(lambda: _packets_in(flow_records(collector)) >= sent, 15, "the first flows", meter.log)
        broker.stop()
        sent += send_udp(sink, 40, 42000)  # captured while the broker is away: into the outbox
        time.sleep(1.0)
        broker.start()
        sent += send_udp(sink, 40, 43000)
        wait_until(lambda: _packets_in(flow_records(collector)) >= sent, 20, "every packet in a record", meter.log)
        meter.proc.send_signal(signal.SIGTERM)
        assert meter.wait(20) == 0, meter.log()
    finally:
        meter.kill()
    records = flow_records(collector)
    counts = seq_counts(records)
    assert sorted(counts) == list(range(len(counts))), "no seq missing"
    # at-least-once: a message the broker took just before it went down may come twice (same seq; the agent
    # answers it once); every captured datagram is in one record
    once = {r["seq"]: r for r in records}
    assert _packets_in(list(once.values())) == sent
    print(f"duplicates after the broker restart: {sum(counts.values()) - len(counts)}")
    assert retained(broker.port, STATUS_TOPIC).payload == b"offline"


@pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs CAP_NET_RAW")
def test_sigterm_flushes_active_flows_with_systemd_notify(tmp_path, broker, collector, sink):
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000"}
    meter = _live(tmp_path, broker.port, sink, env, meter__flow_timeout_us=60_000_000)
    try:
        notify.wait("READY=1", 20, context=meter.log)
        notify.wait("WATCHDOG=1", 10, count=2, context=meter.log)
        wait_until(lambda: b"online" in status_payloads(collector), 20, "the meter online", meter.log)
        sent = send_udp(sink, 25, 44000)
        wait_until(lambda: any(s["packets"] >= sent for s in meter_stats(collector)), 10, "the packets metered")
        assert flow_records(collector) == [], "flows are still active (60 s flow timeout)"
        meter.proc.send_signal(signal.SIGTERM)
        assert meter.wait(20) == 0, meter.log()
        notify.wait("STOPPING=1", 5)
    finally:
        meter.kill()
        notify.close()
    wait_until(lambda: len(flow_records(collector)) >= 25, 10, "the flushed flows")
    records = flow_records(collector)
    assert len(records) == 25 and _packets_in(records) == sent
    assert sorted(seq_counts(records)) == list(range(25))
    assert status_payloads(collector)[-1] == b"offline"


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to drop to CAP_NET_RAW"
)
def test_runs_with_only_cap_net_raw_and_memory_deny_write_execute(tmp_path, broker, collector, sink):
    """What the unit grants (AmbientCapabilities=CAP_NET_RAW only, NoNewPrivileges, MemoryDenyWriteExecute) is
    enough: capture with a BPF filter compiled by libpcap, the outbox, MQTT."""
    meter = _live(tmp_path, broker.port, sink, sandboxed=True)
    try:
        wait_until(lambda: b"online" in status_payloads(collector), 20, "the sandboxed meter online", meter.log)
        status = Path(f"/proc/{meter.proc.pid}/status").read_text()
        assert "CapEff:\t0000000000002000" in status and "NoNewPrivs:\t1" in status, status
        sent = send_udp(sink, 10, 45000)
        wait_until(lambda: _packets_in(flow_records(collector)) >= sent, 15, "the flows", meter.log)
        meter.proc.send_signal(signal.SIGTERM)
        assert meter.wait(20) == 0, meter.log()
    finally:
        meter.kill()
    assert "PR_SET_MDWE failed" not in meter.log()


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--set", "mqtt.port=70000"], "mqtt.port"),
        (["--set", "mqtt.qos=0"], "mqtt.qos"),
        (["--set", "publish.max_records=100000"], "publish.max_records"),
        (["--set", "publish.max_wait_ms=.nan"], "publish.max_wait_ms"),
        (["--set", "sensor=a/b"], "sensor"),
        (["--set", "meter.nonsense=1"], "nonsense"),
        (["--set", "mqtt.shared_group=g"], "mqtt.shared_group"),
        (["--interface", "no-such-if0"], "capture.interface"),
        (["--interface", "lo", "--bpf", "not a ( filter"], "capture.bpf"),
        (["--set", "mqtt.tls.enabled=true", "--set", "mqtt.tls.ca_file=/nonexistent/ca.pem", "--validate-config"],
         "mqtt.tls.ca_file"),
    ],
)  # fmt: skip
def test_bad_config_exits_2_with_one_line(tmp_path, args, names):
    cfg = tmp_path / "fm.yaml"
    cfg.write_text(yaml.safe_dump({"state_dir": str(tmp_path / "state"), "stats_interval": 1}))
    proc = run_cli(*args, "--config", str(cfg))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and names in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_validate_config_ok(tmp_path):
    proc = run_cli("--validate-config", "--set", f"state_dir={tmp_path / 's'}", "--interface", "lo")
    assert proc.returncode == 0 and "configuration OK" in proc.stdout, proc.stderr


def test_help_config_defaults_equal_the_shipped_yaml():
    """Defaults in code = config/flowmeter.yaml = the meter's own defaults (flowmeter.settings)."""
    shipped = yaml.safe_load(DEFAULT_CONFIG.read_text())

    def flat(node: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in node.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    coded = {line.split(" = ", 1)[0]: line.split(" = ", 1)[1].split("  ", 1)[0] for line in describe(FlowmeterConfig)}
    for key, value in flat(shipped).items():
        assert key in coded, f"{key} in the YAML is not a setting"
        same = repr(value) == coded[key] or repr(float(value)) == coded[key]
        assert same, f"{key}: yaml {value!r}, code {coded[key]}"
    meter = MeterSettings()
    assert shipped["meter"]["flow_timeout_us"] == meter.flow_timeout_us
    assert shipped["meter"]["activity_timeout_us"] == meter.activity_timeout_us
    assert shipped["meter"]["max_flows"] == meter.max_flows
