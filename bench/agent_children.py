"""What runs inside the benchmark's children: the raw-interpreter worker, the RSS probe and the verdict subscriber
(each started as ``python bench/agent.py --child <mode>``)."""

from __future__ import annotations

import array
import gc
import json
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from agent_plan import MAX_RECORDS, PREFIX, SHAPES
from benchlib import vm


def reply(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def raw_worker(workdir: Path) -> None:
    """``TFLiteModel.predict`` at batch 256 on pre-built windows, one thread; answers ``{"T", "seconds"}``."""
    from ids_core.interpreter import TFLiteModel

    models = {t: TFLiteModel(workdir / f"T{t}" / "int8" / "model_int8.tflite", num_threads=1) for t in SHAPES.values()}
    windows = {t: np.load(workdir / f"T{t}" / "raw_windows.npy") for t in SHAPES.values()}
    reply({"ready": True, "runtime": {t: m.runtime for t, m in models.items()}})
    for line in sys.stdin:
        req = json.loads(line)
        m, x = models[req["T"]], windows[req["T"]]
        m.predict(x[:MAX_RECORDS])
        chunks = [x[i : i + MAX_RECORDS] for i in range(0, len(x) - MAX_RECORDS + 1, MAX_RECORDS)]
        n, cpu0, start = 0, time.process_time(), time.perf_counter()
        while time.perf_counter() - start < req["seconds"]:
            m.predict(chunks[(n // MAX_RECORDS) % len(chunks)])
            n += MAX_RECORDS
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
        reply(
            {"windows": n, "seconds": wall, "cpu_seconds": cpu, "windows_per_s": n / wall, "windows_per_cpu_s": n / cpu}
        )


def rss_probe(workdir: Path) -> dict[str, dict[str, float]]:
    """VmHWM/VmRSS of a fresh process after each step the T=62 agent takes: imports, model load, batch 256 (in
    the interpreter calls of the agent's default ``model.max_batch``; bundles off, the default)."""
    stages = {"python + numpy": vm()}
    from ids_core.interpreter import TFLiteModel

    stages["+ interpreter import"] = vm()
    import agent.daemon  # noqa: F401  (paho, sqlite, the pipeline)
    from agent.config import AgentConfig

    stages["+ agent modules"] = vm()
    max_batch = AgentConfig().model.max_batch
    m = TFLiteModel(workdir / "T62" / "int8" / "model_int8.tflite", num_threads=1, max_batch=max_batch)
    stages["+ T=62 int8 model loaded (XNNPACK)"] = vm()
    x = np.array(np.load(workdir / "T62" / "raw_windows.npy", mmap_mode="r")[:MAX_RECORDS])
    m.predict(x[:1])
    stages["+ batch 1"] = vm()
    m.predict(x)
    stages["+ batch 256"] = vm()
    return stages


STATS_KEYS = ("flow_latency", "inference_latency", "flows_scored", "alerts_out", "alerts_suppressed")


def subscriber(port: int) -> None:
    """Records the arrival time of every verdict (by sensor and seq) and the agents' status; answers commands."""
    import paho.mqtt.client as mqtt

    try:  # the subscriber shares the driver's core with Mosquitto and the publisher: decode verdicts cheaply
        from orjson import loads
    except ImportError:
        loads = json.loads

    lock = threading.Lock()
    # flat arrays, not lists of tuples: no per-verdict objects kept alive for the whole run
    arrivals: dict[str, tuple[array.array, array.array]] = defaultdict(lambda: (array.array("q"), array.array("d")))
    batches: dict[str, list[int]] = defaultdict(list)
    malicious: dict[str, int] = defaultdict(int)
    status: dict[str, str] = {}
    stats: dict[str, list[tuple[float, dict[str, Any]]]] = defaultdict(list)

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        t = time.monotonic()
        gateway = msg.topic.split("/")[-2]
        if msg.topic.endswith("/status"):
            status[gateway] = msg.payload.decode()
            return
        if msg.topic.endswith("/stats"):
            doc = json.loads(msg.payload)
            with lock:
                stats[gateway].append((t, {k: doc.get(k) for k in STATS_KEYS}))
            return
        verdicts = loads(msg.payload)["verdicts"]
        with lock:
            for v in verdicts:
                seqs, times = arrivals[v["sensor"]]
                seqs.append(v["seq"])
                times.append(t)
                malicious[v["sensor"]] += v["verdict"] == "malicious"
            if verdicts:
                batches[verdicts[0]["sensor"]].append(len(verdicts))

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edge-ids-bench-sub", protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.subscribe([(f"{PREFIX}/+/verdicts", 1), (f"{PREFIX}/+/status", 1), (f"{PREFIX}/+/stats", 0)])
    gc.disable()  # an instrument: its collector pauses would be charged to the agent as latency

    def serve() -> None:  # requests from the driver; paho's loop keeps the main thread
        for line in sys.stdin:
            req = json.loads(line)
            if req["cmd"] == "count":
                with lock:
                    reply({"n": len(arrivals[req["sensor"]][0]) if req["sensor"] in arrivals else 0})
            elif req["cmd"] == "status":
                reply(dict(status))
            elif req["cmd"] == "stats":
                with lock:
                    docs = [d for t, d in stats.get(req["gateway"], []) if req["since"] <= t <= req["until"]]
                reply({"stats": docs})
            elif req["cmd"] == "last_stats":
                with lock:
                    docs = stats.get(req["gateway"], [])
                reply(docs[-1][1] if docs else {})
            elif req["cmd"] == "take":
                with lock:
                    seqs, times = arrivals.pop(req["sensor"], (array.array("q"), array.array("d")))
                    sizes = batches.pop(req["sensor"], [])
                    bad = malicious.pop(req["sensor"], 0)
                np.savez(req["path"], seq=np.frombuffer(seqs, dtype=np.int64),
                         t=np.frombuffer(times, dtype=np.float64), batches=np.array(sizes, dtype=np.int64))  # fmt: skip
                reply({"n": len(seqs), "malicious": bad})
        client.disconnect()

    threading.Thread(target=serve, name="requests", daemon=True).start()
    reply({"ready": True})
    client.loop_forever()
