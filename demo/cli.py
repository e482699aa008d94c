"""``iotids-demo``: the whole story on one machine.

Train the quick model (the real IoTID20 sample when present, else SYNTHETIC flows), start a broker
(Mosquitto when installed, else the pure-Python amqtt on loopback), start the gateway agent on the
int8 model, replay the held-out test flows at a set rate, show alerts live, and finish with a summary
scored against the ground truth: confusion matrix, flows/s, latency.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from ids_core import artifacts
from ids_core.eve import documents_in, read_alert
from ids_core.flowmessage import decode as flow_records

log = logging.getLogger("demo")
GATEWAY = "demo-gw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port}")


def start_broker(workdir: Path, port: int, kind: str = "auto") -> tuple[subprocess.Popen, str]:
    """Mosquitto if installed (MQTT 5), else amqtt (pure Python, MQTT 3.1.1). Returns (process, protocol)."""
    exe = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).exists()), None)
    if kind == "mosquitto" and not exe:
        raise RuntimeError("--broker mosquitto: mosquitto is not installed (apt-get install mosquitto)")
    if kind == "amqtt":
        exe = None
    log_file = open(workdir / "broker.log", "w")  # noqa: SIM115 (kept open for the broker's lifetime)
    if exe:
        conf = workdir / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 0\n")
        proc = subprocess.Popen([exe, "-c", str(conf)], stdout=log_file, stderr=subprocess.STDOUT)
        wait_port(port, proc, "mosquitto")
        return proc, "5"
    conf = workdir / "amqtt.yaml"
    conf.write_text(
        f"listeners:\n  default:\n    type: tcp\n    bind: 127.0.0.1:{port}\n"
        "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n"
    )
    code = (
        "import asyncio, sys, yaml\nfrom amqtt.broker import Broker\n"
        "async def main():\n    b = Broker(yaml.safe_load(open(sys.argv[1])))\n    await b.start()\n"
        "    await asyncio.Event().wait()\nasyncio.run(main())\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(conf)], stdout=log_file, stderr=subprocess.STDOUT)
    wait_port(port, proc, "amqtt broker")
    log.warning("Mosquitto is not installed: using the pure-Python amqtt broker (MQTT 3.1.1, slower)")
    return proc, "3.1.1"


class Watcher:
    """Subscribes to the agent's topics, prints alerts live and keeps every verdict."""

    def __init__(self, port: int, protocol: str, show: int) -> None:
        self.verdicts: dict[int, float] = {}
        self.counts: collections.Counter[str] = collections.Counter()
        self.dead: list[dict[str, Any]] = []
        self.stats: dict[str, Any] = {}
        self.flows: set[int] = set()  # seqs of the records seen on the flows topic (the --pcap run)
        self.pairs: collections.Counter[str] = collections.Counter()  # alerts per source → destination:port
        self.show = show
        self.lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311
        )
        self.client.on_message = self.on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"edge-ids/{GATEWAY}/#", qos=1)
        self.client.loop_start()

    def on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        leaf = msg.topic.removeprefix(f"edge-ids/{GATEWAY}/")  # flowmeter/<sensor>/{status,stats} keep their path
        if leaf.endswith("status"):
            with self.lock:
                self.counts["status"] += 1
            return
        for doc in documents_in(msg.payload) if leaf == "alerts" else [json.loads(msg.payload)]:  # alerts: 1 or lines
            self._document(leaf, doc, msg.payload)

    def _document(self, leaf: str, doc: Any, payload: bytes) -> None:
        with self.lock:
            self.counts[leaf] += 1
            if leaf == "flows":
                self.flows.update(r["seq"] for r in flow_records(payload))
            elif leaf == "verdicts":
                for v in doc["verdicts"]:
                    self.verdicts[v["seq"]] = v["score"]
            elif leaf == "deadletter":
                self.dead.append(doc)
            elif leaf == "stats":
                self.stats = doc
            elif leaf == "alerts" and "src_ip" in doc:
                self.pairs[f"{doc['src_ip']} → {doc.get('dest_ip', '?')}:{doc.get('dest_port', '?')}"] += 1
        if leaf == "alerts" and self.counts["alerts"] <= self.show:
            a = read_alert(doc)
            print(
                f"  ALERT seq={a.seq} {doc.get('src_ip', '?')}:{doc.get('src_port', '?')} → "
                f"{doc.get('dest_ip', '?')}:{doc.get('dest_port', '?')} {doc.get('proto', '')} score={a.score}"
                + (f" attack={a.attack_category}" if a.attack_category else "")
            )
        elif leaf == "deadletter" and "ident" in doc:
            print(f"  DEAD-LETTER seq={doc['ident'].get('seq')}: {doc['reason']} — {doc['detail']}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def summarise(truth: list[dict[str, Any]], w: Watcher, threshold: float, seconds: float) -> dict[str, Any]:
    tp = tn = fp = fn = 0
    dead_seqs = {d.get("ident", {}).get("seq") for d in w.dead} - {None}
    for t in truth:
        score = w.verdicts.get(t["seq"])
        if score is None:
            continue
        pred = score > threshold
        tp += pred and t["malicious"]
        tn += (not pred) and (not t["malicious"])
        fp += pred and not t["malicious"]
        fn += (not pred) and t["malicious"]
    n = tp + tn + fp + fn
    missing = [t["seq"] for t in truth if t["seq"] not in w.verdicts and t["seq"] not in dead_seqs]
    return {
        "flows_published": len(truth),
        "verdicts": len(w.verdicts),
        "dead_lettered": len(dead_seqs),
        "missing": len(missing),
        "alerts": w.counts["alerts"],
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        "accuracy": (tp + tn) / n if n else None,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "end_to_end_flows_per_s": len(w.verdicts) / seconds if seconds else None,
        "agent_flow_latency_ms": w.stats.get("flow_latency"),
        "agent_inference_latency_ms_per_batch": w.stats.get("inference_latency"),
        "agent_batch_size_mean": w.stats.get("batch_size_mean"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="iotids-demo", description=__doc__)
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="training output and demo summary")
    p.add_argument("--data", default="auto", help="auto | sample | synthetic | path to an IoTID20 CSV")
    p.add_argument("--rate", type=float, default=2000.0, help="replayed flows per second")
    p.add_argument("--skip-training", action="store_true", help="reuse the model already in --out")
    p.add_argument(
        "--broker", choices=("auto", "mosquitto", "amqtt"), default="auto", help="auto: Mosquitto if installed"
    )
    p.add_argument("--show-alerts", type=int, default=10, help="alerts printed live (the rest are counted)")
    p.add_argument(
        "--pcap",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="instead of replaying CSV flows: pcap/pcapng files → flow meter → broker → agent → alerts",
    )
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    print("== 1/4 training the quick model ==")
    if not args.skip_training:
        train = [sys.executable, "-m", "trainer.cli", "run", "--profile", "quick", "--data", args.data]
        rc = subprocess.run([*train, "--out", str(out), "--model-version", "demo"]).returncode
        if rc:
            return rc
    report = json.loads((out / "report.json").read_text())
    data_note = report["data"]["description"]
    spec = json.loads((out / artifacts.SPEC).read_text())

    work = Path(tempfile.mkdtemp(prefix="iotids-demo-"))
    procs: list[subprocess.Popen] = []
    try:
        print("== 2/4 starting the broker and the agent ==")
        port = free_port()
        broker, protocol = start_broker(work, port, args.broker)
        procs.append(broker)
        agent_log = open(work / "agent.log", "w")  # noqa: SIM115
        agent = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent.daemon",
                "--set",
                f"gateway_id={GATEWAY}",
                "--set",
                f"model.dir={out.resolve()}",
                "--set",
                f"state_dir={work / 'agent-state'}",
                "--set",
                f"mqtt.port={port}",
                "--set",
                f"mqtt.protocol={protocol!r}",
                "--set",
                "alerts.publish_verdicts=true",
                "--set",
                "stats_interval=1",
            ],
            stdout=agent_log,
            stderr=subprocess.STDOUT,
        )
        procs.append(agent)
        watcher = Watcher(port, protocol, args.show_alerts)
        deadline = time.monotonic() + 60
        while watcher.counts["status"] == 0:
            if agent.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"agent did not come up; log:\n{(work / 'agent.log').read_text()[-3000:]}")
            time.sleep(0.1)

        if protocol != "5":
            log.warning("MQTT 3.1.1 broker: the agent runs with mqtt.protocol 3.1.1")
        if args.pcap:
            return demo_pcap(args, watcher, port, protocol, work, spec["threshold"])
        print(f"== 3/4 replaying the held-out test flows at {args.rate:,.0f}/s ({data_note}) ==")
        start = time.monotonic()
        truth_path = out / "demo_truth.jsonl"
        replay = [sys.executable, "-m", "flowmeter.replay", str(out / "test_flows.csv"), "--port", str(port)]
        replay += ["--gateway", GATEWAY, "--rate", str(args.rate), "--truth", str(truth_path)]
        if subprocess.run([*replay, "--protocol", protocol]).returncode:
            raise RuntimeError("the replay failed")
        published = len(truth_path.read_text().splitlines())
        deadline = time.monotonic() + 60
        while len(watcher.verdicts) + len(watcher.dead) < published and time.monotonic() < deadline:
            time.sleep(0.05)
        seconds = time.monotonic() - start
        time.sleep(1.2)  # one more stats message
        truth = [json.loads(line) for line in truth_path.read_text().splitlines()]
        summary = summarise(truth, watcher, spec["threshold"], seconds)
        summary["data"] = data_note
        summary["broker"] = "mosquitto" if protocol == "5" else "amqtt"
        watcher.close()
        print("== 4/4 summary (agent verdicts vs ground truth) ==")
        print_summary(summary)
        (out / "demo_summary.json").write_text(json.dumps(summary, indent=1))
        print(f"\nsaved: {out / 'demo_summary.json'}, training report: {out / 'report.md'}")
        return 0 if summary["missing"] == 0 else 1
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()


def demo_pcap(args: argparse.Namespace, w: Watcher, port: int, protocol: str, work: Path, threshold: float) -> int:
    """pcap files → the flow meter (its own process) → broker → the agent; every record must get a verdict."""
    print(f"== 3/4 metering {', '.join(p.name for p in args.pcap)} (IoTID20 timeouts) and publishing the flows ==")
    start = time.monotonic()
    meter = [sys.executable, "-m", "flowmeter", *map(str, args.pcap), "--mqtt", "--set", f"gateway_id={GATEWAY}"]
    meter += ["--set", f"mqtt.port={port}", "--set", f"mqtt.protocol={protocol!r}"]
    if subprocess.run([*meter, "--set", f"state_dir={work / 'meter-state'}"]).returncode:
        raise RuntimeError("the flow meter failed")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with w.lock:
            answered = set(w.verdicts) | {d.get("ident", {}).get("seq") for d in w.dead}
            if w.flows and w.flows <= answered:
                break
        time.sleep(0.05)
    time.sleep(1.2)  # one more stats message
    w.close()
    missing = len(w.flows - set(w.verdicts) - {d.get("ident", {}).get("seq") for d in w.dead})
    flagged = sum(score > threshold for score in w.verdicts.values())
    summary = {
        "pcaps": [str(p) for p in args.pcap],
        "flows_published": len(w.flows),
        "verdicts": len(w.verdicts),
        "dead_lettered": len(w.dead),
        "missing": missing,
        "flagged_malicious": flagged,
        "alerts": w.counts["alerts"],
        "top_alerting": w.pairs.most_common(5),
        "seconds": round(time.monotonic() - start, 1),
        "agent_flow_latency_ms": w.stats.get("flow_latency"),
    }
    print("== 4/4 summary (no ground truth for a capture: what the agent said) ==")
    print(
        f"flows metered and published {summary['flows_published']:,} · verdicts {summary['verdicts']:,} · "
        f"dead-lettered {summary['dead_lettered']} · missing {missing} · called malicious {flagged:,} "
        f"({flagged / max(len(w.verdicts), 1):.1%}) · alerts {summary['alerts']:,}"
    )
    for pair, n in summary["top_alerting"]:
        print(f"  {n:>6,} alerts  {pair}")
    print("A model trained on IoTID20 alone calls most real traffic malicious: see `iotids-train adapt` (README).")
    (args.out / "demo_pcap_summary.json").write_text(json.dumps(summary, indent=1))
    return 0 if missing == 0 else 1


def print_summary(s: dict[str, Any]) -> None:
    c = s["confusion"]
    print(f"data: {s['data']}  (broker: {s['broker']})")
    print(
        f"flows published {s['flows_published']:,} · verdicts {s['verdicts']:,} · dead-lettered {s['dead_lettered']}"
        f" · missing {s['missing']} · alerts {s['alerts']:,}"
    )
    print("                 predicted benign  predicted malicious")
    print(f"actual benign    {c['tn']:>16,}  {c['fp']:>19,}")
    print(f"actual malicious {c['fn']:>16,}  {c['tp']:>19,}")
    fmt = lambda v: "–" if v is None else f"{v:.4f}"  # noqa: E731
    print(f"accuracy {fmt(s['accuracy'])} · precision {fmt(s['precision'])} · recall {fmt(s['recall'])}")
    lat = s["agent_flow_latency_ms"] or {}
    print(
        f"end-to-end {s['end_to_end_flows_per_s'] or 0:,.0f} flows/s (replay-bound) · agent latency per flow "
        f"p50 {lat.get('p50_ms')} ms, p99 {lat.get('p99_ms')} ms · mean batch {s['agent_batch_size_mean']}"
    )


if __name__ == "__main__":
    sys.exit(main())
