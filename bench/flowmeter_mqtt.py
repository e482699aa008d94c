"""The MQTT case: the meter daemon publishing through a throw-away Mosquitto, and a subscriber counting records."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from flowmeter_children import EXPECTED_RECORDS, py_env, run_child

from ids_core.flowmessage import decode as flow_records


def daemon_config(path: Path, port: int, state: Path, timeouts: tuple[int, int]) -> Path:
    path.write_text(
        f"""gateway_id: bench
sensor: bench
state_dir: {state}
meter:
  flow_timeout_us: {timeouts[0]}
  activity_timeout_us: {timeouts[1]}
mqtt:
  host: 127.0.0.1
  port: {port}
  client_id: bench-flowmeter
  clean_start: true
stats_interval: 3600
log_level: WARNING
"""
    )
    return path


def ours_mqtt(pcap: Path, timeouts: tuple[int, int], core: int | None, work: Path, port: int, i: int) -> dict:
    """pcap → the meter daemon (``iotids-flowmeter --config``): outbox, JSON arrays on MQTT at QoS 1, exits once the
    broker has acknowledged every message; a subscriber (outside the pinned core) counts the records that arrive."""
    state = work / f"state-{i}"
    cfg = daemon_config(work / f"flowmeter-{i}.yaml", port, state, timeouts)
    counter = RecordCounter(port, "edge-ids/bench/flows")
    try:
        r = run_child([sys.executable, "-m", "flowmeter", "--config", str(cfg), str(pcap)], core, py_env())
        # the records case of the same capture and timeouts counts what must arrive; wait for it (or give up)
        expected = EXPECTED_RECORDS.get((str(pcap), timeouts), 0)
        received = counter.wait_for(expected, 60)
    finally:
        counter.stop()
    shutil.rmtree(state, ignore_errors=True)
    if r["rc"] != 0:
        raise RuntimeError(f"flow meter daemon failed ({r['rc']}): {r['stderr']}")
    return {**r, "flows": received, "stdout": "", "stderr": ""}


class RecordCounter:
    """Subscribes to the daemon's flows topic and counts the records that arrive (any message format)."""

    def __init__(self, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.records = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-counter")
        self.client.on_message = lambda _c, _u, msg: self._count(msg.payload)
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        time.sleep(0.3)

    def _count(self, payload: bytes) -> None:
        self.records += len(flow_records(payload))

    def wait_for(self, n: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.records < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.records

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Mosquitto:
    """A throw-away Mosquitto on a free loopback port (no persistence), pinned to ``core``."""

    def __init__(self, work: Path, core: int | None) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        conf = work / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 0\n"
            "max_queued_messages 0\nset_tcp_nodelay true\n"
        )
        cmd = ["mosquitto", "-c", str(conf)]
        if core is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(core), *cmd]
        self.log = open(work / "mosquitto.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
