"""The lab's gateway as a real deployment: the flow meter capturing live on the bridge, Mosquitto, and agents.

:class:`LivePipeline` is a capture factory for :func:`trafficlab.lab.run_scenario`. Inside the gateway namespace
it starts, before any lab traffic:

- a Mosquitto of its own on the namespace's loopback (``127.0.0.1:port``; the lab's device broker on the bridge
  addresses is untouched, and the IDS's own MQTT traffic never crosses the bridge, so the meter does not see it);
- one ``agent.daemon`` per :class:`AgentSpec` (own ``mqtt.client_id`` and ``state_dir``, same ``gateway_id``):
  every agent scores every flow and publishes verdicts and alerts on the same gateway topics; their documents
  are told apart by the ``model`` field (the sha256 of the model file each agent loaded);
- a recorder (``mosquitto_sub``) writing every flows/verdicts/alerts/events/deadletter message with its arrival time;
- ``iotids-flowmeter --interface br0`` with promiscuous mode on (frames the bridge forwards between two ports,
  device ↔ attacker, reach a capture on the bridge device only then), at the meter's default timeouts unless
  ``meter_set`` overrides them.

``stop()`` (called by the lab after the last packet) stops the meter (it writes its open flows and waits for
the broker's acknowledgements), waits until every agent has answered every ``seq`` the meter published, then
stops everything and returns counts. :func:`read_record` parses the recording afterwards. Nothing listens
outside the namespace and nothing leaves it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import yaml

from ids_core.artifacts import MODEL_FILES
from ids_core.eve import read_alert
from ids_core.flowmessage import decode as flow_records
from ids_core.waiting import wait_until
from trafficlab.capture import tcpdump_capture
from trafficlab.netns import Netns

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
PREFIX = "edge-ids-lab"
GATEWAY = "labgw"
SENSOR = "lab-meter"
RECORD_NAME = "mqtt-record.txt"
LEAVES = ("flows", "verdicts", "alerts", "events", "deadletter", f"flowmeter/{SENSOR}/stats")


@dataclasses.dataclass(frozen=True)
class AgentSpec:
    """One agent: a name for the report and the model directory (a trainer run directory) it loads."""

    name: str
    model_dir: Path

    def model_sha256(self) -> str:
        path = next((self.model_dir / n for n in MODEL_FILES if (self.model_dir / n).exists()), None)
        if path is None:
            raise FileNotFoundError(f"{self.model_dir}: no model file ({', '.join(MODEL_FILES)})")
        return hashlib.sha256(path.read_bytes()).hexdigest()


def _env(code_root: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("EDGE_IDS") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code_root), env.get("PYTHONPATH", "")]))
    env["TZ"] = "UTC"  # the meter's Timestamp text is local time; the labels read it as UTC
    return env


def _wait(pred: Any, timeout: float, what: str, context: Any = lambda: "", every: float = 0.1) -> Any:
    return wait_until(pred, timeout, what, context, every=every, error=RuntimeError)


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return f"--- {path} ---\n" + path.read_text(errors="replace")[-chars:]
    except OSError:
        return f"--- {path}: not written ---"


@dataclasses.dataclass
class Recording:
    """The recorder's file parsed: flow records by seq, verdicts and alerts per agent, dead letters."""

    flows: dict[int, dict[str, Any]]  # seq -> record (the meter's JSON object)
    flow_arrival: dict[int, float]  # seq -> when its message reached the recorder (epoch s)
    verdicts: dict[str, dict[int, list[tuple[float, float, str]]]]  # agent -> seq -> [(arrival, score, verdict)]
    alerts: dict[str, list[tuple[float, dict[str, Any]]]]  # agent -> [(arrival, alert document)]
    deadletters: list[dict[str, Any]]
    unknown_models: Counter[str]  # documents whose model matched no agent
    meter_stats: dict[str, Any] = dataclasses.field(default_factory=dict)  # the meter's last stats message
    gaps: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # the agents' "flows never arrived"


def read_record(path: Path, agents_by_sha: dict[str, str], sensor: str = SENSOR) -> Recording:
    """Parse a recording (``<epoch.ns> <topic> <payload>`` per line) into a :class:`Recording`."""
    rec = Recording({}, {}, defaultdict(lambda: defaultdict(list)), defaultdict(list), [], Counter())
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.rstrip("\n").split(" ", 2)
            if len(parts) != 3 or not parts[2].startswith(("{", "[")):
                continue
            t, topic, payload = float(parts[0]), parts[1], parts[2]
            leaf = topic.rsplit("/", 1)[-1]
            try:
                doc = json.loads(payload)
            except ValueError:
                continue
            if leaf == "stats":
                rec.meter_stats = doc
                continue
            if leaf == "flows":
                for r in flow_records(payload.encode()):
                    if r.get("sensor") == sensor:
                        rec.flows[int(r["seq"])] = r
                        rec.flow_arrival[int(r["seq"])] = t
                continue
            if leaf == "deadletter":
                rec.deadletters.append(doc)
                continue
            if leaf == "events":  # the agents' gap and alert_summary events
                if doc.get("event_type") == "gap":
                    rec.gaps.append(doc)
                continue
            is_alert = leaf == "alerts" and doc.get("event_type") == "alert"
            sha = (read_alert(doc).model if is_alert else doc.get("model") or {}).get("sha256") or ""
            agent = agents_by_sha.get(sha)
            if agent is None:
                rec.unknown_models[sha] += 1
                continue
            if leaf == "verdicts":
                for v in doc.get("verdicts", []):
                    if v.get("sensor") == sensor and "seq" in v:
                        rec.verdicts[agent][int(v["seq"])].append((t, float(v["score"]), v["verdict"]))
            elif is_alert:
                rec.alerts[agent].append((t, doc))
    return rec


class LivePipeline:
    """Capture factory: meter (live, promiscuous) → Mosquitto → agents, all inside the gateway namespace."""

    def __init__(
        self,
        work: Path,
        agents: list[AgentSpec],
        *,
        port: int = 1884,
        meter_set: tuple[str, ...] = (),
        pcap: bool = False,
        drain_timeout_s: float = 120.0,
        code_root: Path = REPO,
    ) -> None:
        """``code_root``: the source tree the meter and the agents run from (default: this repository)."""
        if len({a.name for a in agents}) != len(agents):
            raise ValueError("agent names must differ")
        self.work, self.agents, self.port, self.meter_set = work, agents, port, meter_set
        self.pcap, self.drain_timeout_s, self.code_root = pcap, drain_timeout_s, code_root
        self.by_sha: dict[str, str] = {}
        for a in agents:
            sha = a.model_sha256()
            if sha in self.by_sha:
                raise ValueError(f"agents {self.by_sha[sha]} and {a.name} load the same model ({sha[:12]}…)")
            self.by_sha[sha] = a.name
        self.procs: dict[str, subprocess.Popen] = {}
        self.tcpdump: Any = None
        self.record_path = work / RECORD_NAME
        self.gateway: Netns | None = None
        self.started_at = 0.0

    # ------------------------------------------------------------------ start

    def __call__(self, gateway: Netns, bridge: str, out_dir: Path) -> LivePipeline:
        self.gateway = gateway
        self.work.mkdir(parents=True, exist_ok=True)
        try:
            self._start_broker()
            self._start_recorder()
            for agent in self.agents:
                self._start_agent(agent)
            for agent in self.agents:
                _wait(lambda a=agent: self._up(a.name, "connected (session present"), 90,
                      f"agent {agent.name} connected", lambda a=agent: _tail(self._log_path(a.name)))  # fmt: skip
            if self.pcap:
                self.tcpdump = tcpdump_capture(gateway, bridge, out_dir)
            self._start_meter(bridge)
            _wait(lambda: self._up("meter", "flow meter ready"), 30, "the flow meter capturing",
                  lambda: _tail(self._log_path("meter")))  # fmt: skip
        except BaseException:
            self._terminate_all()
            raise
        self.started_at = time.time()
        return self

    def _up(self, name: str, line: str) -> bool:
        """``line`` is in the log of ``name``; an error if the process exited before writing it."""
        if line in self._log(name):
            return True
        if self.procs[name].poll() is not None:
            raise RuntimeError(f"{name} exited ({self.procs[name].returncode})\n{_tail(self._log_path(name))}")
        return False

    def _log_path(self, name: str) -> Path:
        return self.work / f"{name}.log"

    def _log(self, name: str) -> str:
        try:
            return self._log_path(name).read_text(errors="replace")
        except OSError:
            return ""

    def _popen(self, name: str, argv: list[str]) -> subprocess.Popen:
        assert self.gateway is not None
        with open(self._log_path(name), "ab") as out:
            proc = self.gateway.popen(
                argv, cwd=self.code_root, env=_env(self.code_root), stdout=out, stderr=subprocess.STDOUT
            )
        self.procs[name] = proc
        return proc

    def _start_broker(self) -> None:
        d = self.work / "broker"
        d.mkdir(exist_ok=True)
        conf = d / "mosquitto.conf"
        conf.write_text(
            "\n".join(
                [
                    "user root",
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    "set_tcp_nodelay true",
                    "persistence false",
                    "max_queued_messages 0",
                    "max_inflight_messages 0",
                    "message_size_limit 0",
                    f"log_dest file {d}/mosquitto.log",
                ]
            )
            + "\n"
        )
        self._popen("broker", ["mosquitto", "-c", str(conf)])
        assert self.gateway is not None

        def listening() -> bool:
            out = self.gateway.run(["ss", "-Hltn", f"sport = :{self.port}"]).stdout  # type: ignore[union-attr]
            return bool(out.strip())

        _wait(listening, 15, "mosquitto listening", lambda: _tail(d / "mosquitto.log"))

    def _start_recorder(self) -> None:
        topics = [a for leaf in LEAVES for a in ("-t", f"{PREFIX}/{GATEWAY}/{leaf}")]
        argv = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.port), "-i", "lab-recorder", "-q", "1",
                "-F", "%U %t %p", *topics]  # fmt: skip
        assert self.gateway is not None
        out = open(self.record_path, "ab")  # noqa: SIM115 - closed in _terminate_all via the process
        self.procs["recorder"] = self.gateway.popen(argv, stdout=out, stderr=subprocess.DEVNULL)
        out.close()
        time.sleep(0.5)  # subscribed before anything is published (the meter starts after the agents anyway)

    def _start_agent(self, agent: AgentSpec) -> None:
        cfg = {
            "gateway_id": GATEWAY,
            "state_dir": str(self.work / agent.name / "state"),
            "model": {"dir": str(agent.model_dir)},
            "mqtt": {
                "host": "127.0.0.1",
                "port": self.port,
                "client_id": f"lab-agent-{agent.name}",
                "topic_prefix": PREFIX,
            },
            "alerts": {"publish_verdicts": True, "rate_limit": {"max_alerts": 0}},
            "bundle": {"enabled": False},
            "stats_interval": 5,
            "log_level": "INFO",
        }
        path = self.work / agent.name / "agent.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self._popen(agent.name, [sys.executable, "-m", "agent.daemon", "--config", str(path)])

    def _start_meter(self, bridge: str) -> None:
        cfg = {
            "gateway_id": GATEWAY,
            "sensor": SENSOR,
            "state_dir": str(self.work / "meter" / "state"),
            "capture": {"promisc": True},
            "mqtt": {"host": "127.0.0.1", "port": self.port, "topic_prefix": PREFIX},
            "stats_interval": 5,
            "log_level": "INFO",
        }
        path = self.work / "meter" / "flowmeter.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        sets = [a for s in self.meter_set for a in ("--set", s)]
        self._popen("meter", [sys.executable, "-m", "flowmeter.cli", "--interface", bridge, "--config", str(path),
                              *sets])  # fmt: skip

    # ------------------------------------------------------------------ stop

    def answered(self, total: int) -> dict[str, int]:
        """Per agent, how many of seqs 0…total-1 have a verdict in the recording so far."""
        rec = read_record(self.record_path, self.by_sha)
        return {a.name: sum(1 for s in range(total) if s in rec.verdicts.get(a.name, {})) for a in self.agents}

    def stop(self) -> dict[str, Any]:
        out: dict[str, Any] = {"record": str(self.record_path)}
        try:
            meter = self.procs["meter"]
            meter.send_signal(signal.SIGTERM)
            try:
                out["meter_returncode"] = meter.wait(timeout=60)
            except subprocess.TimeoutExpired:
                meter.kill()
                out["meter_returncode"] = meter.wait()
            m = re.search(r"stopped: (\d+) records out, next seq (\d+)", self._log("meter"))
            if m is None:
                raise RuntimeError(f"the flow meter did not stop cleanly\n{_tail(self._log_path('meter'))}")
            total = int(m.group(2))
            out["flows_published"] = total
            if self.tcpdump is not None:
                out["tcpdump"] = self.tcpdump.stop()
            try:
                _wait(lambda: all(n >= total for n in self.answered(total).values()), self.drain_timeout_s,
                      "every agent's verdict on every flow", every=2.0)  # fmt: skip
            except RuntimeError as e:
                log.warning("%s", str(e).splitlines()[0])
            time.sleep(1.0)  # a late duplicate would be recorded now
            out["answered"] = self.answered(total)
            out["meter_stats"] = read_record(self.record_path, self.by_sha).meter_stats
        finally:
            self._terminate_all()
        return out

    def _terminate_all(self) -> None:
        order = [n for n in ("meter", *[a.name for a in self.agents], "recorder", "broker") if n in self.procs]
        for name in order:
            proc = self.procs[name]
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        if self.tcpdump is not None and self.tcpdump.proc.poll() is None:
            self.tcpdump.stop()

    def logs(self) -> str:
        """The tails of every log (for a failure message)."""
        names = ["meter", *[a.name for a in self.agents], "broker/mosquitto"]
        return "\n".join(_tail(self._log_path(n) if n != "broker/mosquitto" else self.work / "broker" / "mosquitto.log")
                         for n in names)  # fmt: skip
