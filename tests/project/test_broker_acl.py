"""The shipped least-privilege Mosquitto setup (config/mosquitto/) against a real broker: every role is refused
on every topic it must not touch (PUBACK / SUBACK reason codes, MQTT 5), and each role's own traffic flows end to
end — publisher → flows → the real agent → alerts read by the SIEM; a retained bundle from the release account
read by a gateway agent's account.

The broker runs the shipped edge-ids.conf with only its file paths (into a tmp dir), its port (a free loopback
port) and the plugin's architecture directory changed; the certificate and the accounts come from the shipped
make-certs.sh and accounts.sh, run as the README says.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from agent_harness import AgentProcess, agent_config, agent_env, wait_until, write_config
from bundle_helpers import N_FEATURES, TinyModel, tiny_model
from conftest import REPO, free_port

from ids_core.flowmessage import decode

SHIPPED = REPO / "config" / "mosquitto"
ETC = "/etc/mosquitto/edge-ids"  # where the shipped configuration keeps certificates and mosquitto_ctrl options
DYNSEC_FILE = "/var/lib/mosquitto/edge-ids-dynsec.json"
NOT_AUTHORIZED = 0x87
ACCEPTED = (0x00, 0x10)  # PUBACK: success, or "no matching subscribers" (success too)
P = "edge-ids"  # the default prefix accounts.sh writes into the roles
GW, OTHER = "gw1", "gw2"
SENSOR = "meter1"  # the flow meter's sensor name, given to accounts.sh
CAPTURE = REPO.parent / "shared" / "pcaps" / "sv__detect-itype-prefilter__icmpv4-ping.pcap"  # a real capture


def client_id_of(username: str) -> str:
    """The client id accounts.sh binds an account to: the agent's and the flow meter's default client ids
    (agent.config.AgentConfig.client_id, flowmeter.config's), else the username."""
    role, _, gw = username.partition("-")
    return {"agent": f"edge-ids-{gw}", "publisher": f"edge-ids-flowmeter-{gw}-{SENSOR}"}.get(role, username)


METER = (f"flowmeter/{SENSOR}/status", f"flowmeter/{SENSOR}/stats")  # the flow meter's own topics


def leaves(gw: str) -> list[str]:
    """Every concrete topic of one gateway that some part of the system publishes."""
    tails = ["flows", "alerts", "events", "verdicts", "deadletter", "status", "stats", "bundle/status",
             f"status/edge-ids-{gw}", f"stats/edge-ids-{gw}", *METER]  # fmt: skip
    return [f"{P}/{gw}/{t}" for t in tails]


TOPICS = [*leaves(GW), *leaves(OTHER), f"{P}/fleet/bundle", f"{P}/{GW}", "other/topic", "$CONTROL/dynamic-security/v1"]
FILTERS = [*TOPICS, "#", f"{P}/#", f"{P}/+/flows", f"{P}/+/alerts", f"{P}/{GW}/#", f"{P}/{GW}/+", "$SYS/#",
           f"$share/g/{P}/{GW}/flows", f"$share/g/{P}/{OTHER}/flows", f"$share/g/{P}/+/alerts"]  # fmt: skip


@dataclass
class Role:
    """An account and exactly what it may publish and subscribe to (anything else must be refused)."""

    username: str
    publish: set[str] = field(default_factory=set)
    subscribe: set[str] = field(default_factory=set)


def agent_publishes(gw: str) -> set[str]:
    own = ["alerts", "events", "verdicts", "deadletter", "bundle/status", "status", "stats",
           f"status/edge-ids-{gw}", f"stats/edge-ids-{gw}"]  # fmt: skip
    return {f"{P}/{gw}/{t}" for t in own}


MONITORED = ("status", "stats", "verdicts", "deadletter", "bundle/status", *METER)
ROLES = {
    "publisher": Role(f"publisher-{GW}", publish={f"{P}/{GW}/{t}" for t in ("flows", *METER)}),
    "agent": Role(f"agent-{GW}", publish=agent_publishes(GW),
                  subscribe={f"{P}/{GW}/flows", f"{P}/fleet/bundle", f"$share/g/{P}/{GW}/flows"}),
    "siem": Role("siem", subscribe={f"{P}/{GW}/alerts", f"{P}/{OTHER}/alerts", f"{P}/+/alerts",
                                    f"{P}/{GW}/events", f"{P}/{OTHER}/events"}),
    "release": Role("release", publish={f"{P}/fleet/bundle"},
                    subscribe={f"{P}/{GW}/bundle/status", f"{P}/{OTHER}/bundle/status"}),
    "monitor": Role("monitor", subscribe={f"{P}/{gw}/{t}" for gw in (GW, OTHER)
                                          for t in (*MONITORED, f"status/edge-ids-{gw}", f"stats/edge-ids-{gw}")}),
}  # fmt: skip


# --------------------------------------------------------------------------- the broker


@dataclass
class AclBroker:
    workdir: Path
    port: int
    secrets: Path
    proc: subprocess.Popen | None = None

    @property
    def ca(self) -> Path:
        return self.workdir / "etc" / "certs" / "ca.crt"

    def password(self, username: str) -> str:
        return self.password_file(username).read_text().strip()

    def password_file(self, username: str) -> Path:
        return self.secrets / f"{username}.password"

    def log(self) -> str:
        path = self.workdir / "mosquitto.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else "<no broker log>"


def shipped_conf(etc: Path, dynsec_file: Path, port: int, workdir: Path) -> str:
    """edge-ids.conf with its files moved into the test's directory and its listener onto a free loopback port."""
    text = (SHIPPED / "edge-ids.conf").read_text()
    listener = ("\nlistener 8883\n", f"\nlistener {port} 127.0.0.1\n")
    for old, new in ((ETC, str(etc)), (DYNSEC_FILE, str(dynsec_file)), listener):
        assert old in text, f"the shipped configuration no longer has {old!r}"
        text = text.replace(old, new)
    plugin = next(Path("/usr/lib").glob("*/mosquitto_dynamic_security.so"), None)
    assert plugin, "mosquitto's dynamic-security plugin is not installed (package mosquitto)"
    text = re.sub(r"^plugin /usr/lib/[^/]+/mosquitto_dynamic_security.so$", f"plugin {plugin}", text, flags=re.M)
    # what the distribution's mosquitto.conf adds around conf.d (as root, stay root: pytest's tmp dirs are 0700)
    local = ["user root" if os.geteuid() == 0 else "", f"persistence true\npersistence_location {workdir}/",
             f"log_dest file {workdir}/mosquitto.log"]  # fmt: skip
    return "\n".join(line for line in local if line) + "\n" + text


def run(script: str, *args: str, env: dict[str, str]) -> None:
    done = subprocess.run([str(SHIPPED / script), *args], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, f"{script} {' '.join(args)}: exit {done.returncode}\n{done.stdout}{done.stderr}"


@pytest.fixture(scope="module")
def acl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclBroker]:
    """The shipped broker, set up as the README says: certificates, the plugin's file, the broker, the accounts
    (one for the module: the tests publish nothing retained before the last one)."""
    tmp_path = tmp_path_factory.mktemp("acl_broker")
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists() or not shutil.which("mosquitto_ctrl") or not shutil.which("openssl"):
        pytest.fail("mosquitto, mosquitto_ctrl (packages mosquitto, mosquitto-clients) and openssl are needed")
    etc, dynsec_file, port = tmp_path / "etc", tmp_path / "lib" / "dynsec.json", free_port()
    b = AclBroker(tmp_path, port, tmp_path / "secrets")
    env = {**os.environ, "DIR": str(etc), "DYNSEC_FILE": str(dynsec_file), "BROKER_PORT": str(port),
           "OUT": str(b.secrets)}  # fmt: skip
    run("make-certs.sh", str(etc / "certs"), "localhost", "127.0.0.1", env=env)
    run("accounts.sh", "init", env=env)
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(shipped_conf(etc, dynsec_file, port, tmp_path))
    b.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _listening(port) or b.proc.poll() is not None, 10, "the broker listening", b.log)
        assert b.proc.poll() is None, f"mosquitto exited with the shipped configuration:\n{b.log()}"
        run("accounts.sh", "roles", env=env)
        for args in (["gateway", GW, SENSOR], ["gateway", OTHER, SENSOR], ["operator", "siem"], ["operator", "release"],
                     ["operator", "monitor"]):  # fmt: skip
            run("accounts.sh", *args, env=env)
        yield b
    finally:
        b.proc.terminate()
        b.proc.wait(10)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------- MQTT 5 clients


class Probe:
    """A paho MQTT 5 client over TLS (the shipped CA, hostname verified) that reports reason codes."""

    def __init__(self, broker: AclBroker, username: str | None, password: str | None, client_id: str = "") -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.tls_set(ca_certs=str(broker.ca), cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.port = broker.port
        self.connack = threading.Event()
        self.connect_reason: Any = None
        self.acks: dict[int, Any] = {}
        self.messages: list[mqtt.MQTTMessage] = []
        self._acked = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_publish = lambda _c, _u, mid, reason, _p: self._ack(mid, reason)
        self.client.on_subscribe = lambda _c, _u, mid, reasons, _p: self._ack(mid, reasons)
        self.client.on_message = lambda _c, _u, msg: self.messages.append(msg)

    def _on_connect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        self.connect_reason = reason
        self.connack.set()

    def _ack(self, mid: int, reason: Any) -> None:
        with self._acked:
            self.acks[mid] = reason
            self._acked.notify_all()

    def connect(self) -> Any:
        """Connect (to ``localhost``: the name the certificate gives); the CONNACK reason code."""
        self.client.connect("localhost", self.port, keepalive=10)
        self.client.loop_start()
        wait_until(self.connack.is_set, 10, f"CONNACK on port {self.port}")
        return self.connect_reason

    def _wait_ack(self, mid: int, what: str) -> Any:
        with self._acked:
            assert self._acked.wait_for(lambda: mid in self.acks, 10), f"timed out waiting for {what}"
            return self.acks.pop(mid)

    def publish(self, topic: str, payload: bytes = b"{}", retain: bool = False) -> int:
        """QoS 1 publish; the PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, f"not sent: {info.rc}"
        return self._wait_ack(info.mid, f"PUBACK for {topic}").value

    def subscribe(self, topic_filter: str) -> int:
        """QoS 1 subscribe; the SUBACK reason code (the granted QoS, or an error)."""
        rc, mid = self.client.subscribe(topic_filter, qos=1)
        assert rc == mqtt.MQTT_ERR_SUCCESS
        return self._wait_ack(mid, f"SUBACK for {topic_filter}")[0].value

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def login(acl_broker: AclBroker) -> Iterator[Callable[..., Probe]]:
    """``login(username, client_id=…, password=…)``: a connected Probe (closed at teardown), by default with
    the account's own client id and password; the CONNACK must then be a success."""
    opened: list[Probe] = []

    def open_probe(username: str | None, client_id: str | None = None, password: str | None = None) -> Probe:
        own = password is None and username is not None and client_id is None
        password = acl_broker.password(username) if username and password is None else password
        p = Probe(acl_broker, username, password, client_id_of(username or "") if client_id is None else client_id)
        opened.append(p)
        reason = p.connect()
        assert not own or not reason.is_failure, f"{username}: connection refused: {reason}\n{acl_broker.log()}"
        return p

    yield open_probe
    for p in opened:
        p.close()


# --------------------------------------------------------------------------- tests


@pytest.mark.timeout(60, func_only=True)
def test_every_role_is_refused_everywhere_else(login):
    wrong: list[str] = []
    for name, role in ROLES.items():
        probe = login(role.username)
        for topic in TOPICS:
            rc = probe.publish(topic)
            if (rc not in ACCEPTED) if topic in role.publish else (rc != NOT_AUTHORIZED):
                wrong.append(f"{name} publish {topic}: {rc:#x}")
        for topic_filter in FILTERS:
            rc = probe.subscribe(topic_filter)
            if (rc != 1) if topic_filter in role.subscribe else (rc != NOT_AUTHORIZED):
                wrong.append(f"{name} subscribe {topic_filter}: {rc:#x}")
    assert not wrong, "allowed but refused, or not refused with 'Not authorized' (0x87):\n" + "\n".join(wrong)


@pytest.mark.timeout(60, func_only=True)
def test_only_an_account_and_its_own_password_log_in(acl_broker, login):
    for username, password in ((f"agent-{GW}", acl_broker.password(f"publisher-{GW}")),  # the gateway's other account
                               (f"agent-{GW}", acl_broker.password(f"agent-{OTHER}")),  # another gateway's
                               ("siem", "")):  # fmt: skip
        reason = login(username, password=password).connect_reason
        assert reason.is_failure, f"{username} logged in with a wrong password: {reason}"
    assert login(None, client_id="").connect_reason.is_failure, "an anonymous client was accepted"


@pytest.mark.timeout(60, func_only=True)
def test_no_account_can_take_over_another_ones_session(login):
    """An account using another's client id would disconnect it and receive what the broker queued for it."""
    agent_id = client_id_of(f"agent-{GW}")
    for username in ("siem", "monitor", "release", f"publisher-{GW}", f"agent-{OTHER}"):
        reason = login(username, client_id=agent_id).connect_reason
        assert reason.is_failure, f"{username} connected with the agent's client id {agent_id}"
    assert login(f"agent-{GW}", client_id="edge-ids-other").connect_reason.is_failure, "an unbound client id"


@pytest.fixture(scope="module", autouse=True)
def tiny_model_soon() -> Iterator[Future[TinyModel]]:
    """The tiny real int8 model, built in the background from the module's first test on (importing TensorFlow
    takes most of the time; the other tests only wait on the broker meanwhile)."""
    with ThreadPoolExecutor(1) as pool:
        yield pool.submit(tiny_model)


def write_model(model: TinyModel, out: Path) -> Path:
    """The model, with a threshold that makes every flow an alert."""
    out.mkdir(parents=True)
    (out / "model_int8.tflite").write_bytes(model.model)
    (out / "spec.json").write_text(dataclasses.replace(model.spec, threshold=0.001).to_json())
    return out


def record(seq: int, sensor: str) -> bytes:
    """A flow record with the tiny model's features."""
    rec = {f"f{i}": round(0.1 * (i + seq % 5), 2) for i in range(N_FEATURES)}
    return json.dumps({**rec, "Src_IP": f"10.0.0.{seq % 7}", "sensor": sensor, "seq": seq}).encode()


def ident(doc: dict[str, Any], key: str) -> str | None:
    """An alert's ``seq``/``sensor``: under ``alert.metadata`` (EVE, lists of strings) or at the top level."""
    value = (doc.get("alert", {}).get("metadata") or {}).get(key, doc.get(key))
    value = value[0] if isinstance(value, list) else value
    return None if value is None else str(value)


@pytest.mark.timeout(120, func_only=True)
def test_allowed_traffic_flows_end_to_end(tmp_path, acl_broker, login, tiny_model_soon):
    model_dir = write_model(tiny_model_soon.result(timeout=100), tmp_path / "model")
    siem = login("siem")
    assert siem.subscribe(f"{P}/+/alerts") == 1
    monitor = login("monitor")
    assert monitor.subscribe(f"{P}/{GW}/status") == 1
    assert monitor.subscribe(f"{P}/{GW}/verdicts") == 1

    # the real agent, as the gateway's agent account, over TLS with the shipped CA
    cfg = agent_config(tmp_path, port=acl_broker.port, model_dir=model_dir, mqtt__client_id="", mqtt__topic_prefix=P,
                       mqtt__host="localhost", mqtt__username=f"agent-{GW}",
                       mqtt__password_file=str(acl_broker.password_file(f"agent-{GW}")),
                       mqtt__tls={"enabled": True, "ca_file": str(acl_broker.ca)})  # fmt: skip
    agent = AgentProcess(write_config(tmp_path / "agent" / "agent.yaml", cfg), tmp_path / "agent" / "agent.log")
    agent.start()
    try:
        agent.wait_connected()
        # another gateway's publisher tries this gateway's flows: refused, never scored
        assert login(f"publisher-{OTHER}").publish(f"{P}/{GW}/flows", record(0, "intruder")) == NOT_AUTHORIZED
        publisher = login(f"publisher-{GW}")
        n = 20
        for seq in range(n):
            assert publisher.publish(f"{P}/{GW}/flows", record(seq, SENSOR)) in ACCEPTED

        def alerts() -> list[dict[str, Any]]:
            return [json.loads(m.payload) for m in list(siem.messages)]

        wait_until(lambda: {ident(d, "seq") for d in alerts()} >= {str(s) for s in range(n)}, 30,
                   "an alert for every flow at the SIEM", agent.log)  # fmt: skip
        assert {ident(d, "sensor") for d in alerts()} == {SENSOR}, "a refused flow was scored"
        wait_until(lambda: any(m.topic == f"{P}/{GW}/verdicts" for m in monitor.messages), 10, "verdicts (monitor)")
        status = [m.payload for m in monitor.messages if m.topic == f"{P}/{GW}/status"]
        assert status[-1:] == [b"online"], status
        assert agent.alive, agent.log()
    finally:
        agent.kill()

    # the release account publishes a retained bundle, a gateway's agent account reads it, nobody else writes it
    assert login("release").publish(f"{P}/fleet/bundle", b"signed bundle", retain=True) in ACCEPTED
    assert login(f"agent-{GW}").publish(f"{P}/fleet/bundle", b"forged", retain=True) == NOT_AUTHORIZED
    assert login(f"publisher-{GW}").publish(f"{P}/fleet/bundle", b"forged", retain=True) == NOT_AUTHORIZED
    reader = login(f"agent-{OTHER}")
    assert reader.subscribe(f"{P}/fleet/bundle") == 1
    wait_until(lambda: reader.messages, 10, "the retained bundle at a gateway's agent account")
    assert [(m.payload, bool(m.retain)) for m in reader.messages] == [(b"signed bundle", True)]


@pytest.mark.timeout(90, func_only=True)
def test_the_real_flow_meter_publishes_as_its_account(tmp_path, acl_broker, login):
    """The flow meter daemon with its default client id, as publisher-<gw> over TLS: its flows reach the gateway's
    agent account, its retained status (birth, then offline) reaches the monitor account."""
    if not CAPTURE.exists():
        pytest.skip(f"shared capture not found: {CAPTURE}")
    agent = login(f"agent-{GW}")
    assert agent.subscribe(f"{P}/{GW}/flows") == 1
    monitor = login("monitor")
    assert monitor.subscribe(f"{P}/{GW}/flowmeter/{SENSOR}/status") == 1
    cfg = {
        "gateway_id": GW,
        "sensor": SENSOR,
        "state_dir": str(tmp_path / "meter" / "state"),
        "mqtt": {"host": "localhost", "port": acl_broker.port, "topic_prefix": P, "username": f"publisher-{GW}",
                 "password_file": str(acl_broker.password_file(f"publisher-{GW}")),
                 "tls": {"enabled": True, "ca_file": str(acl_broker.ca)}},
        "publish": {"max_wait_ms": 100},
    }  # fmt: skip
    config = write_config(tmp_path / "meter" / "flowmeter.yaml", cfg)
    log = tmp_path / "meter" / "meter.log"
    with open(log, "wb") as out:
        done = subprocess.run([sys.executable, "-m", "flowmeter.cli", str(CAPTURE), "--config", str(config)],
                              cwd=REPO, env=agent_env(), stdout=out, stderr=subprocess.STDOUT, timeout=60)  # fmt: skip
    assert done.returncode == 0, log.read_text()
    records = lambda: [r for m in list(agent.messages) for r in decode(m.payload)]  # noqa: E731
    wait_until(records, 10, "the meter's flows at the agent account", log.read_text)
    assert {r["sensor"] for r in records()} == {SENSOR}
    assert sorted(r["seq"] for r in records()) == list(range(len(records()))), "a flow message was refused"
    status = f"{P}/{GW}/flowmeter/{SENSOR}/status"
    wait_until(lambda: [m.payload for m in monitor.messages if m.topic == status][-1:] == [b"offline"], 10,
               "the meter's offline status at the monitor", log.read_text)  # fmt: skip
    assert next(m.payload for m in monitor.messages if m.topic == status) == b"online"


@pytest.mark.timeout(60, func_only=True)
def test_replay_publishes_as_a_gateways_publisher(tmp_path, acl_broker, login):
    """``iotids-replay`` with the publisher account, its client id and the broker's CA: every flow arrives; with
    another gateway's account it is refused (PUBACK 0x87: the replay waits in vain and fails)."""
    agent = login(f"agent-{GW}")
    assert agent.subscribe(f"{P}/{GW}/flows") == 1
    csv_file = tmp_path / "flows.csv"
    csv_file.write_text("Flow_Duration,Tot_Fwd_Pkts,Label\n" + "".join(f"{i},{i + 1},Normal\n" for i in range(20)))

    def replay(account: str, timeout: float) -> subprocess.CompletedProcess:
        args = [
            sys.executable,
            "-m",
            "flowmeter.replay",
            str(csv_file),
            "--host",
            "localhost",
            "--port",
            str(acl_broker.port),
            "--prefix",
            P,
            "--gateway",
            GW,
            "--sensor",
            SENSOR,
            "--rate",
            "0",
            "--per-message",
            "5",
            "--columnar",
            "--username",
            account,
            "--cafile",
            str(acl_broker.ca),
            "--password-file",
            str(acl_broker.password_file(account)),
            "--client-id",
            client_id_of(account),
        ]
        return subprocess.run(args, cwd=REPO, env=agent_env(), capture_output=True, text=True, timeout=timeout)

    done = replay(f"publisher-{GW}", 30)
    assert done.returncode == 0, done.stdout + done.stderr
    records = lambda: [r for m in list(agent.messages) for r in decode(m.payload)]  # noqa: E731
    wait_until(lambda: len(records()) >= 20, 10, "the replayed flows at the agent account", acl_broker.log)
    assert sorted(r["seq"] for r in records()) == list(range(20)) and {r["sensor"] for r in records()} == {SENSOR}
    before = len(records())
    replay(f"publisher-{OTHER}", 30)  # its exit status is not the point: paho counts a refused PUBACK as an answer
    time.sleep(1.0)
    assert len(records()) == before, "another gateway's publisher got flows into this gateway's topic"
