"""The real agent (any architecture) against a Mosquitto on the host's loopback: bundle installs, then a replay.

    agent_run.py prepare RUN KEYS OUT    OUT/factory (the run's per-channel int8 model: what the agent starts on),
                                         OUT/good.bundle (the run, signed, version 2: ``iotids-bundle build``),
                                         OUT/perturbed.bundle (the same with one expected self-test output one
                                         int8 step off, version 1); KEYS/fleet.pub.pem verifies them
    agent_run.py run --label L --agent CMD [--env K=V …] --root ROOT --work DIR --factory DIR --pubkey PEM \
                     --perturbed BUNDLE --good BUNDLE [--main-only BUNDLE] --flows CSV --out JSON
    agent_run.py diff X86_JSON OTHER_JSON

``run``: a broker on a free port; the agent (``CMD --config …``, e.g. ``chroot <rootfs> …/iotids-agent``) starts on
the model in ``--factory`` with bundles enabled; the bundle with a perturbed self-test vector must be rejected
(``selftest_failed``) and the good one verified, self-tested and activated; then ``iotids-replay`` (on the host)
sends every flow of ``--flows``; every flow must get exactly one verdict, from the good bundle's model. Files the
agent reads live under ``--work``, which the agent sees at its path relative to ``--root``. ``diff``: the two runs'
scores must be equal flow for flow. If the good bundle is refused and ``--main-only`` is given, that
bundle (v3, the run without its category model) is installed instead so the replay still runs; the run then
still fails. Runs on the host (x86 venv with the project installed).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml

from flowmeter.replay import read_flows
from ids_core import waiting

PREFIX = "edge-ids-arm64ci"
GATEWAY = "gw1"
START_TIMEOUT = 300.0  # an emulated agent imports numpy and LiteRT under qemu: tens of seconds
FLOWS_TIMEOUT = 600.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout: float, what: str, context=lambda: "") -> Any:
    """Poll ``pred``; a timeout ends the check (``FAILED: …``)."""
    return waiting.wait_until(pred, timeout, what, context, every=0.1, error=lambda m: SystemExit(f"FAILED: {m}"))


class Broker:
    """Mosquitto on 127.0.0.1:<free port>, its files in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port, self.workdir = free_port(), workdir
        conf = workdir / "mosquitto.conf"
        lines = [
            "user root" if os.geteuid() == 0 else "",
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "max_queued_messages 0",
            "message_size_limit 0",
            f"log_dest file {workdir}/mosquitto.log",
        ]
        conf.write_text("\n".join(line for line in lines if line) + "\n")
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

        def listening() -> bool:
            if self.proc.poll() is not None:
                raise SystemExit(f"FAILED: mosquitto exited: {(workdir / 'mosquitto.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_until(listening, 10, "mosquitto to listen")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Collector:
    """Every message on ``<prefix>/<gateway>/#``, per leaf topic."""

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.by_leaf: dict[str, list[Any]] = defaultdict(list)
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *_a: c.subscribe(f"{PREFIX}/{GATEWAY}/#", qos=1)
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        wait_until(self.subscribed.is_set, 10, "the collector's subscription")

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        leaf = msg.topic.split("/", 2)[-1]
        leaf = leaf.split("/", 1)[0] if leaf.split("/", 1)[0] in ("stats", "status") else leaf
        with self.lock:
            self.by_leaf[leaf].append(msg.payload)

    def docs(self, leaf: str) -> list[Any]:
        with self.lock:
            payloads = list(self.by_leaf[leaf])
        out = []
        for p in payloads:
            try:
                out.append(json.loads(p))
            except ValueError:
                out.append(p.decode(errors="replace"))
        return out

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish(port: int, topic: str, payload: bytes) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        info = c.publish(topic, payload, qos=1, retain=True)
        info.wait_for_publish(30)
    finally:
        c.disconnect()
        c.loop_stop()


def bundle_model_sha(path: Path) -> str:
    with tarfile.open(path) as tar:
        member = tar.extractfile("model.tflite")
        assert member is not None
        return hashlib.sha256(member.read()).hexdigest()


def inside(path: Path, root: Path) -> str:
    """``path`` as the agent sees it (its root directory is ``root``)."""
    return "/" + str(path.resolve().relative_to(root.resolve()))


def prepare(run_dir: Path, keys: Path, out: Path) -> int:
    import numpy as np

    from ids_core.interpreter import TFLiteModel
    from ids_core.preprocess import PreprocessSpec

    bundle_cli = [sys.executable, "-m", "firmware_bundle.cli"]
    subprocess.run([*bundle_cli, "keygen", "--out", str(keys), "--name", "fleet"], check=True, capture_output=True)
    key = str(keys / "fleet.key.pem")
    factory = out / "factory"
    factory.mkdir(parents=True)
    model = TFLiteModel(run_dir / "model_int8_per_channel.tflite")
    spec = PreprocessSpec.load(run_dir / "spec.json")
    spec = dataclasses.replace(
        spec, input_quantization=model.input_quantization, output_quantization=model.output_quantization
    )
    shutil.copy(run_dir / "model_int8_per_channel.tflite", factory / "model_int8.tflite")
    spec.save(factory / "spec.json")
    perturbed = out / "perturbed-run"
    perturbed.mkdir()
    for name in ("model_int8.tflite", "spec.json", "selftest_inputs.npy"):
        shutil.copy(run_dir / name, perturbed / name)
    y = np.load(run_dir / "selftest_outputs.npy")
    y[0, 0] = y[0, 0] - 1 if y[0, 0] > -128 else y[0, 0] + 1
    np.save(perturbed / "selftest_outputs.npy", y)
    builds = [(perturbed, 1, "perturbed.bundle"), (run_dir, 2, "good.bundle")]
    if (run_dir / "category_int8.tflite").exists():  # also the main model alone, in case v2 is refused
        main_only = out / "main-only-run"
        main_only.mkdir()
        for name in ("model_int8.tflite", "spec.json", "selftest_inputs.npy", "selftest_outputs.npy"):
            shutil.copy(run_dir / name, main_only / name)
        builds.append((main_only, 3, "main-only.bundle"))
    for src, version, name in builds:
        build = [*bundle_cli, "build", str(src), "--version", str(version), "--sign-key", key, "-o", str(out / name)]
        subprocess.run(build, check=True, capture_output=True)
    print(f"factory model {model.sha256[:12]} (per-channel), bundles: perturbed v1, good v2 (model "
          f"{bundle_model_sha(out / 'good.bundle')[:12]})")  # fmt: skip
    return 0


def run(a: argparse.Namespace) -> int:
    work, root = Path(a.work), Path(a.root)
    work.mkdir(parents=True, exist_ok=True)
    broker = Broker(work / "broker")
    collector = Collector(broker.port)
    cfg = {
        "gateway_id": GATEWAY,
        "state_dir": inside(work / "state", root),
        "model": {"dir": inside(Path(a.factory), root)},
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "topic_prefix": PREFIX, "client_id": f"arm64ci-{a.label}"},
        "alerts": {"publish_verdicts": True, "rate_limit": {"max_alerts": 0}},
        "bundle": {"enabled": True, "public_keys": [inside(Path(a.pubkey), root)], "probation_seconds": 0},
        "stats_interval": 5,
    }
    (work / "agent.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    env |= dict(kv.split("=", 1) for kv in a.env)
    log_path = work / "agent.log"
    cmd = [*shlex.split(a.agent), "--config", inside(work / "agent.yaml", root)]
    result: dict[str, Any] = {"label": a.label, "agent": cmd, "env": a.env}
    t0 = time.monotonic()
    with open(log_path, "wb") as log:
        agent = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)

    def context() -> str:
        return f"bundle status: {collector.docs('bundle/status')}\n--- {log_path} ---\n{log_path.read_text()[-4000:]}"

    def final_status(after: int) -> dict[str, Any] | None:
        if agent.poll() is not None:
            raise SystemExit(f"FAILED: agent exited with {agent.returncode}\n{context()}")
        done = [d for d in collector.docs("bundle/status")[after:] if d.get("event") in ("rejected", "activated")]
        return done[0] if done else None

    try:

        def online() -> bool:
            if agent.poll() is not None:
                raise SystemExit(f"FAILED: agent exited with {agent.returncode}\n{context()}")
            return "online" in collector.docs("status")

        wait_until(online, START_TIMEOUT, "the agent's online status", context)
        result["start_seconds"] = round(time.monotonic() - t0, 1)
        print(f"[{a.label}] agent online after {result['start_seconds']} s")

        fleet = f"{PREFIX}/fleet/bundle"
        t1 = time.monotonic()
        publish(broker.port, fleet, Path(a.perturbed).read_bytes())
        doc = wait_until(lambda: final_status(0), 300, "the perturbed bundle's verdict", context)
        result["perturbed"] = doc
        print(f"[{a.label}] perturbed bundle: {doc.get('event')} {doc.get('reason')}: {doc.get('detail')}")
        if (doc.get("event"), doc.get("reason")) != ("rejected", "selftest_failed"):
            raise SystemExit(f"FAILED: the perturbed bundle was not rejected by its self-test\n{context()}")
        seen = len(collector.docs("bundle/status"))
        publish(broker.port, fleet, Path(a.good).read_bytes())
        doc = wait_until(lambda: final_status(seen), 300, "the good bundle's verdict", context)
        events = [d.get("event") for d in collector.docs("bundle/status")[seen:]]
        result["good"] = {"final": doc, "events": events, "seconds": round(time.monotonic() - t1, 1)}
        print(f"[{a.label}] good bundle: {' → '.join(events)}")
        failures = []
        if doc.get("event") != "activated" or "verified" not in events:
            failures.append(f"the good bundle was not verified and activated: {doc}")
            if not a.main_only:
                raise SystemExit(f"FAILED: {failures[0]}\n{context()}")
            print(f"[{a.label}] FAILED: {failures[0]}\n{context()}")
            seen = len(collector.docs("bundle/status"))
            publish(broker.port, fleet, Path(a.main_only).read_bytes())
            doc = wait_until(lambda: final_status(seen), 300, "the main-only bundle's verdict", context)
            events = [d.get("event") for d in collector.docs("bundle/status")[seen:]]
            result["main_only"] = {"final": doc, "events": events}
            print(f"[{a.label}] the same bundle without its category model (v3): {' → '.join(events)}")
            if doc.get("event") != "activated":
                raise SystemExit(f"FAILED: the main-only bundle was not activated\n{context()}")

        n = len(read_flows(Path(a.flows)))
        t2 = time.monotonic()
        replay = [sys.executable, "-m", "flowmeter.replay", a.flows, "--port", str(broker.port), "--prefix", PREFIX,
                  "--gateway", GATEWAY, "--rate", "0", "--per-message", "20", "--sensor", "replay"]  # fmt: skip
        subprocess.run(replay, check=True, capture_output=True, timeout=FLOWS_TIMEOUT)

        def verdicts() -> list[dict[str, Any]]:
            return [v | {"model": d["model"]["sha256"]} for d in collector.docs("verdicts") for v in d["verdicts"]]

        def all_answered() -> bool:
            if agent.poll() is not None:
                raise SystemExit(f"FAILED: agent exited with {agent.returncode}\n{context()}")
            return len({v["seq"] for v in verdicts()}) >= n

        wait_until(all_answered, FLOWS_TIMEOUT, f"verdicts for all {n} flows",
                   lambda: f"deadletters: {collector.docs('deadletter')[:3]}\n{context()}")  # fmt: skip
        time.sleep(1.0)  # a second verdict for a flow would arrive now
        result["replay_seconds"] = round(time.monotonic() - t2, 1)
        got = verdicts()
        counts = Counter(v["seq"] for v in got)
        twice = sorted(s for s, c in counts.items() if c > 1)
        want_sha = bundle_model_sha(Path(a.good))
        other_model = [v["seq"] for v in got if v["model"] != want_sha]
        result["verdicts"] = {str(v["seq"]): v["score"] for v in got}
        result["flows"], result["deadletters"] = n, len(collector.docs("deadletter"))
        print(f"[{a.label}] {len(counts)} of {n} flows answered in {result['replay_seconds']} s, "
              f"{len(twice)} more than once, {len(other_model)} by another model")  # fmt: skip
        Path(a.out).write_text(json.dumps(result, indent=1))
        if sorted(counts) != list(range(n)) or twice or other_model or result["deadletters"]:
            raise SystemExit(f"FAILED: not every flow got exactly one verdict from the bundle's model\n{context()}")
        for failure in failures:
            print(f"[{a.label}] FAILED: {failure}")
        return 1 if failures else 0
    finally:
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(60)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait(10)
        collector.stop()
        broker.stop()


def diff(x86_path: Path, other_path: Path) -> int:
    x86, other = json.loads(x86_path.read_text()), json.loads(other_path.read_text())
    a, b = x86["verdicts"], other["verdicts"]
    differ = sorted((int(s) for s in a if a[s] != b.get(s)), key=int)
    label = other["label"]
    if not differ and a.keys() == b.keys():
        print(f"{label} agent: {len(a)} verdict scores equal to x86's")
        return 0
    worst = max((abs(a[str(s)] - b.get(str(s), float("nan"))) for s in differ), default=0.0)
    print(f"{label} agent: {len(differ)} of {len(a)} verdict scores differ from x86's (max {worst}), seqs {differ[:9]}")
    return 1


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    for name in ("label", "agent", "root", "work", "factory", "pubkey", "perturbed", "good", "flows", "out"):
        r.add_argument(f"--{name}", required=True)
    r.add_argument("--env", action="append", default=[], help="K=V for the agent's environment")
    r.add_argument("--main-only", help="bundle v3 (the main model alone) to install if the good bundle is refused")
    d = sub.add_parser("diff")
    d.add_argument("x86")
    d.add_argument("other")
    pr = sub.add_parser("prepare")
    for name in ("run_dir", "keys", "out"):
        pr.add_argument(name, type=Path)
    a = p.parse_args(argv)
    if a.cmd == "prepare":
        return prepare(a.run_dir, a.keys, a.out)
    return run(a) if a.cmd == "run" else diff(Path(a.x86), Path(a.other))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
