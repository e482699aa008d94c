"""Limits before bytes, against a real Mosquitto and the real agent process: the agent's MQTT 5 CONNECT carries a
Maximum Packet Size, so a 100 MB flow message and a 200 MB retained bundle never reach it — its peak RSS (the
kernel's VmHWM, reset before they are published) stays within 20 MB of its idle RSS and it keeps serving. A flow
message a little over its limit still arrives and is dead-lettered ``too_large``. The tiny int8 model of the
bundle tests stands in for a trained run."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from conftest import _broker

pytest.register_assert_rewrite("agent_harness")

from agent_harness import AgentProcess, Collector, agent_config, topic, wait_until, write_config  # noqa: E402
from bundle_helpers import N_FEATURES, tiny_model  # noqa: E402

from agent.config import AgentConfig  # noqa: E402
from agent.mqtt import max_packet_size  # noqa: E402
from firmware_bundle import keys  # noqa: E402
from ids_core.typedconfig import build  # noqa: E402

MB = 1 << 20
SENSOR = "limits"


def flow(seq: int) -> bytes:
    rec = {f"f{i}": 0.5 for i in range(N_FEATURES)} | {"Src_IP": "10.0.0.1", "sensor": SENSOR, "seq": seq}
    return json.dumps(rec).encode()


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


class RssSampler:
    """Samples VmRSS every 2 ms in a thread (the kernel's VmHWM is the true peak; this shows the course)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_kb, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, status_kb(self.pid, "VmRSS"))
            time.sleep(0.002)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def publish(
    port: int, topic_name: str, payload: bytes, *, retain: bool = False, timeout: float = 120, v5: bool = True
) -> None:
    """Publish with QoS 1 and wait for the broker's PUBACK: the broker has taken it (accepted, or dropped by
    its ``message_size_limit``)."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        info = c.publish(topic_name, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout)
        assert info.is_published(), f"the broker did not accept {len(payload)} bytes on {topic_name}"
    finally:
        c.disconnect()
        c.loop_stop()


def test_maximum_packet_size_rule():
    cfg = AgentConfig()
    flows_only = max_packet_size(cfg)
    assert 2 * cfg.limits.max_message_bytes < flows_only < 2 * cfg.limits.max_message_bytes + 8192
    cfg.bundle.enabled = True
    assert 2 * cfg.bundle.max_bytes < max_packet_size(cfg) < 2 * cfg.bundle.max_bytes + 8192
    cfg.bundle.max_bytes = 255 * MB
    assert max_packet_size(cfg) == 268_435_460  # MQTT's largest packet


@pytest.mark.timeout(300, func_only=True)
def test_huge_messages_never_reach_the_agent(tmp_path, broker):
    model_dir = tiny_model().write_artifacts(tmp_path / "model")
    _, pub, _ = keys.write_keypair(tmp_path / "keys", "fleet")
    cfg = agent_config(tmp_path, port=broker.port, model_dir=model_dir, bundle__enabled=True,
                       bundle__public_keys=[str(pub)], stats_interval=60)  # fmt: skip
    bundle_topic = f"{cfg['mqtt']['topic_prefix']}/fleet/bundle"
    agent = AgentProcess(write_config(tmp_path / "agent.yaml", cfg), tmp_path / "agent.log")
    collector = Collector(broker.port).start()
    try:
        agent.start()
        agent.wait_connected()
        assert f"maximum packet size {max_packet_size(build(AgentConfig, cfg))}" in agent.log(), agent.log()
        publish(broker.port, topic("flows"), flow(0))
        collector.wait_seqs([0], 30, agent.log, sensor=SENSOR)
        time.sleep(1.0)
        idle_kb, startup_peak_kb = status_kb(agent.pid, "VmRSS"), status_kb(agent.pid, "VmHWM")
        Path(f"/proc/{agent.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS, so it measures from here
        with RssSampler(agent.pid) as sampler:
            publish(broker.port, topic("flows"), b"[" + b"{}," * (100 * MB // 3) + b"{}]")  # 100 MB
            publish(broker.port, bundle_topic, bytes(200 * MB), retain=True)  # 200 MB, retained
            publish(broker.port, topic("flows"), flow(1) + b" " * (1 * MB))  # over the limit, under the maximum
            publish(broker.port, topic("flows"), flow(2))
            collector.wait_seqs([2], 60, agent.log, sensor=SENSOR)
            wait_until(lambda: collector.deadletters(), 30, "the dead letter of the 1 MB + 1 flow message", agent.log)
        peak_kb = status_kb(agent.pid, "VmHWM")
        print(f"idle RSS {idle_kb / 1024:.1f} MB, peak {peak_kb / 1024:.1f} MB (sampled {sampler.peak_kb / 1024:.1f})")
        assert peak_kb - idle_kb < 20 * 1024, (idle_kb, peak_kb)
        assert [d["reason"] for d in collector.deadletters()] == ["too_large"]
        assert set(collector.verdict_counts(SENSOR)) == {0, 2}
        assert agent.alive and agent.log_count("disconnected") == 0, agent.log()

        agent.signal(15)  # restarted, it is offered the retained 200 MB bundle on subscribing: dropped as well
        assert agent.wait() == 0
        agent.start()
        agent.wait_connected()
        publish(broker.port, topic("flows"), flow(3))
        collector.wait_seqs([3], 30, agent.log, sensor=SENSOR)
        restart_peak_kb = status_kb(agent.pid, "VmHWM")
        print(f"start-up peak {startup_peak_kb / 1024:.1f} MB, with the retained bundle {restart_peak_kb / 1024:.1f}")
        assert restart_peak_kb - startup_peak_kb < 20 * 1024, (startup_peak_kb, restart_peak_kb)
    finally:
        agent.kill()
        collector.stop()
        publish(broker.port, bundle_topic, b"", retain=True)  # clear it: the broker saves its store on shutdown


@pytest.fixture
def limited_broker(tmp_path):
    """Mosquitto with the README's ``message_size_limit`` (2 MB): the bound for MQTT 3.1.1 agents."""
    gen = _broker(tmp_path, durable=False, extra=(f"message_size_limit {2 * MB}",))
    yield next(gen)
    next(gen, None)


@pytest.mark.timeout(300, func_only=True)
def test_mqtt_311_agent_is_protected_by_the_brokers_message_size_limit(tmp_path, limited_broker):
    """MQTT 3.1.1 has no Maximum Packet Size: the broker's limit refuses the 100 MB publish before any subscriber
    sees it (paho reads a packet's whole body; refusing it by its length would mean disconnecting, and the broker
    would send the QoS 1 message again on reconnect)."""
    port = limited_broker.port
    model_dir = tiny_model().write_artifacts(tmp_path / "model")
    cfg = agent_config(tmp_path, port=port, model_dir=model_dir, mqtt__protocol="3.1.1", stats_interval=60)
    agent = AgentProcess(write_config(tmp_path / "agent.yaml", cfg), tmp_path / "agent.log")
    collector = Collector(port).start()
    try:
        agent.start()
        agent.wait_connected()
        assert "maximum packet size set by the broker" in agent.log(), agent.log()
        publish(port, topic("flows"), flow(0))
        collector.wait_seqs([0], 30, agent.log, sensor=SENSOR)
        time.sleep(1.0)
        idle_kb = status_kb(agent.pid, "VmRSS")
        Path(f"/proc/{agent.pid}/clear_refs").write_text("5")
        # a 3.1.1 publisher gets a plain PUBACK for a message the broker drops (paho 2.2 as an MQTT 5 publisher
        # does not complete the QoS 1 flow when the PUBACK carries reason 0x95, packet too large)
        publish(port, topic("flows"), b"[" + b"{}," * (100 * MB // 3) + b"{}]", v5=False)
        publish(port, topic("flows"), flow(1))
        collector.wait_seqs([1], 30, agent.log, sensor=SENSOR)
        peak_kb = status_kb(agent.pid, "VmHWM")
        print(f"MQTT 3.1.1: idle RSS {idle_kb / 1024:.1f} MB, peak {peak_kb / 1024:.1f} MB")
        assert peak_kb - idle_kb < 20 * 1024, (idle_kb, peak_kb)
        assert not collector.deadletters() and set(collector.verdict_counts(SENSOR)) == {0, 1}
    finally:
        agent.kill()
        collector.stop()
