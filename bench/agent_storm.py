#!/usr/bin/env python
"""Alert storm in-process: what ``Pipeline.process`` costs per flow when no flow alerts vs when every flow alerts.

Usage: ``python bench/agent_storm.py --model DIR [--model-t62 DIR] [--rounds N] [--json OUT]``

A :class:`agent.pipeline.Pipeline` is built as the daemon builds it (``load_config`` + ``Scorer.load`` + an on-disk
:class:`ids_core.outbox.Outbox` in a temporary directory, ``alerts.publish_verdicts`` on, no broker). Messages of 32
or 256 real IoTID20 records (``/work/shared/data/iotid20``, as ``flowmeter.replay`` sends them, fresh ``seq``
numbers every round, ``SOURCES`` Src_IPs, one Dst_IP, Flow_ID and a Timestamp per
``FLOWS_PER_SECOND`` flows added) are parsed into one batch,
then ``process`` runs on it. Trials:

- ``benign``: ``alerts.threshold`` 0.999999 (no flow alerts); ``storm``: 0.000001 (every flow with a score > 0 alerts);
- rate limiting ``off`` (``max_alerts`` 0) and ``on`` (as shipped: 20 per 60 s per source).

CPU time of this thread (``time.thread_time``; the machine is shared, so not wall time), rounds interleaved across
trials, medians reported; parse (``Pipeline._add``) and ``process`` separately. Then the forwarder's side of each
outbox row: ``Outbox.pending`` + ``Outbox.ack`` per message (what :mod:`ids_core.forwarder` does around paho).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:] = [str(BENCH.parent), *(p for p in sys.path if Path(p or ".").resolve() != BENCH)]

from agent.config import load_config  # noqa: E402
from agent.mqtt import Inbound  # noqa: E402
from agent.pipeline import Batch, Pipeline  # noqa: E402
from agent.scorer import Scorer  # noqa: E402
from agent.stats import Stats  # noqa: E402
from flowmeter.replay import read_flows, records  # noqa: E402
from ids_core.outbox import Outbox  # noqa: E402

SAMPLE = Path("/work/shared/data/iotid20/iotid20_2000.csv")
THRESHOLDS = {"benign": 0.999999, "storm": 0.000001}
RATE_LIMITS = {"off": 0, "on": 20}
FLOWS_PER_SECOND = 100  # flows whose Timestamp (whole seconds) is the same text: a storm is thousands a second
SOURCES = 50  # distinct Src_IPs in the flows (each source's first 20 alerts pass with rate limiting on)


class Trial:
    """One pipeline (own outbox and config) for one (kind, rate limit, batch size, model)."""

    def __init__(self, model_dir: Path, work: Path, kind: str, limit: str, batch: int, rows: list[dict[str, Any]]):
        self.name = f"{kind}/rl-{limit}"
        self.batch_size = batch
        state = work / f"{model_dir.name}-{kind}-{limit}-{batch}"
        cfg = load_config(
            overrides=[
                f"model.dir={model_dir}",
                f"state_dir={state}",
                f"alerts.threshold={THRESHOLDS[kind]:.6f}",
                "alerts.publish_verdicts=true",
                f"alerts.rate_limit.max_alerts={RATE_LIMITS[limit]}",
                f"batch.max_records={batch}",
                "bundle.enabled=false",
            ],
            environ={},
        )
        state.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(state / "outbox.sqlite", 10_000_000)
        self.stats = Stats()
        scorer = Scorer.load(model_dir, threads=1, max_batch=batch)
        self.pipeline = Pipeline(cfg, scorer, self.outbox, self.stats)
        self.rows = rows
        self.seq = 0
        self.topic = cfg.topic("flows")
        self.parse_cpu: list[float] = []
        self.process_cpu: list[float] = []
        self.drain_cpu: list[float] = []
        self.alerts = self.flows = self.messages = 0

    def payload(self, n: int) -> bytes:
        recs = []
        for _ in range(n):
            rec, _truth = next(records([self.rows[self.seq % len(self.rows)]], "bench"))
            # the sample has no identifiers: SOURCES attackers, one victim, IoTID20's own Flow_ID/Timestamp forms
            src = f"10.0.{self.seq % SOURCES // 250}.{self.seq % SOURCES % 250 + 1}"
            sport, dport, proto = rec["Src_Port"], rec["Dst_Port"], rec["Protocol"]
            second = self.seq // FLOWS_PER_SECOND
            ident = {
                "Flow_ID": f"{src}-192.168.0.16-{sport}-{dport}-{proto}",
                "Src_IP": src,
                "Dst_IP": "192.168.0.16",
                "Timestamp": f"25/07/2019 03:{second // 60 % 60:02d}:{second % 60:02d} AM",
            }
            rec = {**ident, **rec, "seq": self.seq}
            recs.append(rec)
            self.seq += 1
        return json.dumps(recs).encode()

    def round(self, messages: int, per_message: int) -> None:
        payloads = [self.payload(per_message) for _ in range(messages)]
        inbound = [Inbound(self.topic, p, i, 1, False, 0, time.monotonic()) for i, p in enumerate(payloads)]
        t0 = time.thread_time()
        batch = Batch()
        for m in inbound:
            self.pipeline._add(batch, m)
        t1 = time.thread_time()
        self.pipeline.process(batch)
        t2 = time.thread_time()
        # the forwarder's outbox work for what this batch stored: read the rows, delete them once acknowledged
        rows = self.outbox.pending(100_000)
        self.outbox.ack([r.id for r in rows])
        t3 = time.thread_time()
        self.parse_cpu.append((t1 - t0) / len(batch.records))
        self.process_cpu.append((t2 - t1) / len(batch.records))
        self.drain_cpu.append((t3 - t2) / len(batch.records))
        self.flows += len(batch.records)
        self.messages += len(rows)

    def result(self) -> dict[str, Any]:
        snap = self.stats.snapshot()
        med = {k: statistics.median(v) * 1e6 for k, v in
               (("parse", self.parse_cpu), ("process", self.process_cpu), ("drain", self.drain_cpu))}  # fmt: skip
        return {
            "trial": self.name,
            "batch": self.batch_size,
            "flows": self.flows,
            "alerts_out": snap.get("alerts_out"),
            "alerts_suppressed": snap.get("alerts_suppressed"),
            "outbox_rows": self.messages,
            "us_per_flow": {k: round(v, 2) for k, v in med.items()},
            "us_per_flow_total": round(sum(med.values()), 2),
        }


def run(model_dir: Path, rounds: int, rows: list[dict[str, Any]], work: Path) -> list[dict[str, Any]]:
    trials = [
        Trial(model_dir, work, kind, limit, batch, rows)
        for batch in (32, 256)
        for kind in THRESHOLDS
        for limit in RATE_LIMITS
    ]
    for t in trials:  # warm-up (interpreter, sqlite pages, rate limiter windows), not counted
        t.round(1 if t.batch_size == 32 else 8, 32)
        t.parse_cpu.clear(), t.process_cpu.clear(), t.drain_cpu.clear()
        t.flows = t.messages = 0
    for _ in range(rounds):
        for t in trials:
            t.round(1 if t.batch_size == 32 else 8, 32)  # 32 flows per message
    for t in trials:
        t.outbox.close()
    return [t.result() for t in trials]


def table(label: str, results: list[dict[str, Any]]) -> str:
    lines = [
        f"### {label}",
        "",
        "| batch | trial | µs/flow parse | process | outbox drain | total | flows/CPU-s | ÷ benign (same rate limit) "
        "| alerts out / suppressed | outbox rows |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    by = {(r["batch"], r["trial"]): r for r in results}
    for r in results:
        benign = by[(r["batch"], r["trial"].replace("storm", "benign"))]
        ratio = benign["us_per_flow_total"] / r["us_per_flow_total"]
        u = r["us_per_flow"]
        lines.append(
            f"| {r['batch']} | {r['trial']} | {u['parse']:.1f} | {u['process']:.1f} | {u['drain']:.1f} "
            f"| {r['us_per_flow_total']:.1f} | {1e6 / r['us_per_flow_total']:,.0f} | {ratio:.2f} "
            f"| {r['alerts_out']} / {r['alerts_suppressed']} | {r['outbox_rows']} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="a model directory (quick profile run output)")
    ap.add_argument("--model-t62", type=Path, help="optionally a T = 62 model directory")
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = read_flows(SAMPLE)
    out: dict[str, Any] = {"command": " ".join(sys.argv), "load_before": os.getloadavg(), "started": time.time()}
    with tempfile.TemporaryDirectory() as tmp:
        for key, model in (("model", args.model), ("model_t62", args.model_t62)):
            if model is not None:
                out[key] = {"dir": str(model), "results": run(model, args.rounds, rows, Path(tmp))}
                print(table(f"{key} ({model})", out[key]["results"]), flush=True)
    out["load_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
