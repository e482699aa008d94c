"""Helpers for the flow meter daemon's tests: a crafted mixed capture, its records metered in-process, the daemon
(``python -m flowmeter.cli … --config``) as a child process, and views of what a subscriber received."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pcap_craft import ACK, FIN, PSH, SYN, T0, tcp4, udp4, write_pcap

from flowmeter.meter import FlowMeter
from flowmeter.pcapfile import read_capture
from flowmeter.settings import MeterSettings
from ids_core.flowmessage import decode

REPO = Path(__file__).resolve().parents[2]
PREFIX = "edge-ids-test"  # the agent harness's prefix and gateway, so an agent and its collector see the records
GATEWAY = "gw1"
SENSOR = "meter1"

# The unit's sandbox in miniature: only CAP_NET_RAW (effective, ambient, bounding), no new privileges, and the
# kernel's MemoryDenyWriteExecute (prctl PR_SET_MDWE, Linux >= 6.3) set before anything is imported.
SANDBOX = ["setpriv", "--inh-caps=-all,+net_raw", "--ambient-caps=-all,+net_raw", "--bounding-set=-all,+net_raw",
           "--no-new-privs"]  # fmt: skip
SANDBOX_BOOT = """
import ctypes, runpy, sys
if ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) != 0:
    raise SystemExit(f"PR_SET_MDWE failed: errno {ctypes.get_errno()}")
sys.argv = ["iotids-flowmeter", *sys.argv[1:]]
runpy.run_module("flowmeter.cli", run_name="__main__")
"""


def mixed_capture(path: Path, conversations: int, start_us: int = T0) -> Path:
    """``conversations`` × (a TCP exchange closed by FIN, a DNS-like UDP pair, a lone SYN: a zero-duration flow
    with Infinity rates), 2 ms apart; the addresses differ per conversation."""
    packets: list[tuple[int, bytes]] = []
    for i in range(conversations):
        t = start_us + i * 2_000
        c, s = f"10.1.{i // 250}.{i % 250 + 1}", "10.2.0.1"
        port = 20_000 + i
        packets += [
            (t, tcp4(c, s, port, 80, SYN)),
            (t + 40, tcp4(s, c, 80, port, SYN | ACK)),
            (t + 80, tcp4(c, s, port, 80, PSH | ACK, b"GET / HTTP/1.1\r\n\r\n")),
            (t + 150, tcp4(s, c, 80, port, PSH | ACK, b"x" * 300)),
            (t + 200, tcp4(c, s, port, 80, FIN | ACK)),
            (t + 600, udp4(c, "10.2.0.53", port, 53, b"q" * 30)),
            (t + 700, udp4("10.2.0.53", c, 53, port, b"r" * 90)),
            (t + 900, tcp4(c, "10.2.0.9", port, 23, SYN)),
        ]
    return write_pcap(path, packets)


def meter_offline(paths: Iterable[Path], settings: MeterSettings | None = None) -> list[dict[str, Any]]:
    """The records the meter makes of the captures (each flushed at its end), in order."""
    out: list[dict[str, Any]] = []
    for path in paths:
        meter = FlowMeter(settings or MeterSettings(), out.append)
        for ts, frame, linktype in read_capture(path):
            meter.packet(ts, frame, linktype)
        meter.flush()
    return out


def meter_config(tmp_path: Path, port: int, name: str = "meter", **dotted: Any) -> Path:
    """A flow meter YAML for the test broker (fast reconnects and stats); ``dotted`` keys (``a__b``) override."""
    cfg: dict[str, Any] = {
        "gateway_id": GATEWAY,
        "sensor": SENSOR,
        "state_dir": str(tmp_path / name / "state"),
        "mqtt": {
            "host": "127.0.0.1",
            "port": port,
            "topic_prefix": PREFIX,
            "keepalive": 5,
            "reconnect_min_delay": 0.5,
            "reconnect_max_delay": 1.0,
        },
        "publish": {"max_records": 50, "max_wait_ms": 100},
        "stats_interval": 0.5,
        "log_level": "INFO",
    }
    for key, value in dotted.items():
        node = cfg
        *parents, leaf = key.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    path = tmp_path / name / "flowmeter.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@dataclass
class MeterProcess:
    """``python -m flowmeter.cli ARGS --config CONFIG`` as a child; output appended to ``log_path``."""

    config: Path
    args: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    sandboxed: bool = False  # run inside SANDBOX (only CAP_NET_RAW, MDWE)
    proc: subprocess.Popen | None = None

    def start(self) -> MeterProcess:
        from agent_harness import agent_env  # without systemd or EDGE_IDS__ variables, with the repo on PYTHONPATH

        cmd = [sys.executable, "-m", "flowmeter.cli", *self.args, "--config", str(self.config)]
        if self.sandboxed:
            cmd = [*SANDBOX, sys.executable, "-c", SANDBOX_BOOT, *cmd[3:]]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=agent_env(self.env), stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"flow meter did not exit within {timeout} s\n{self.log()}") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "--- flow meter log ---\n" + text[-6000:]


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    from agent_harness import agent_env

    return subprocess.run(
        [sys.executable, "-m", "flowmeter.cli", *args], cwd=REPO, env=agent_env(), capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def flow_records(collector: Any) -> list[dict[str, Any]]:
    """Every record of every flows message the collector received, in arrival order (JSON with Infinity/NaN)."""
    out = []
    for msg in collector.messages("flows"):
        doc = json.loads(msg.payload)
        assert isinstance(doc, dict) and set(doc) == {"columns", "rows"}, f"expected a columnar batch, got {doc!r:.80}"
        out += decode(msg.payload)
    return out


def seq_counts(records: list[dict[str, Any]], sensor: str = SENSOR) -> Counter[int]:
    return Counter(r["seq"] for r in records if r.get("sensor") == sensor)


def meter_stats(collector: Any) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in collector.messages(f"flowmeter/{SENSOR}/stats")]


def status_payloads(collector: Any) -> list[bytes]:
    return [m.payload for m in collector.messages(f"flowmeter/{SENSOR}/status")]


def send_udp(port: int, flows: int, first_sport: int) -> int:
    """``flows`` UDP conversations of 2 datagrams to 127.0.0.1:``port`` (each from its own source port)."""
    sent = 0
    for i in range(flows):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", first_sport + i))
            for _ in range(2):
                s.sendto(b"m" * 40, ("127.0.0.1", port))
                sent += 1
    return sent
