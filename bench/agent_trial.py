"""The driver of a run (broker, subscriber, raw worker, publisher) and one trial: publish at a rate or in a burst,
collect every verdict, measure latency, the agent's CPU and the contention on its core."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from agent_load import Flows, Publisher
from agent_plan import DRAIN_LIMIT, PACE, Plan
from agent_processes import (
    AgentProc,
    BenchError,
    Children,
    LineChild,
    child_cmd,
    core_times,
    loadavg,
    now,
    split_cores,
    start_broker,
)
from benchlib import tail


def _ms(seconds: np.ndarray, q: float) -> float | None:
    """The ``q``-th percentile of ``seconds`` in milliseconds (None when empty)."""
    return float(np.percentile(seconds, q)) * 1e3 if len(seconds) else None


class Bench:
    """Shared state of the driver: broker port, subscriber, publisher, raw worker, logging."""

    def __init__(self, workdir: Path, plan: Plan, children: Children, log: Callable[[str], None]) -> None:
        self.workdir, self.plan, self.children, self.log = workdir, plan, children, log
        self.agent_core, driver = split_cores()
        self.driver_core_ids = sorted(driver)
        self.driver_cores = ",".join(map(str, self.driver_core_ids))
        os.sched_setaffinity(0, driver)  # this process (the publisher) and the subscriber child
        self.port, self.broker = start_broker(children, workdir, self.driver_cores)
        self.sub = LineChild(
            children, "subscriber", child_cmd("subscriber", "--port", str(self.port)), workdir / "subscriber.log"
        )
        self.raw = LineChild(
            children,
            "raw",
            ["taskset", "-c", str(self.agent_core), *child_cmd("raw", "--workdir", str(workdir))],
            workdir / "raw.log",
        )
        self.pub = Publisher(self.port)
        self.flows = Flows(workdir / "flows.jsonl")
        self._trial_no = 0

    def wait_online(self, agents: list[AgentProc], timeout: float = 180.0) -> None:
        deadline = now() + timeout
        while now() < deadline:
            for a in agents:
                if a.proc.poll() is not None:
                    raise BenchError(f"agent {a.gateway} exited ({a.proc.returncode}):\n{tail(a.log)}")
            status = self.sub.ask(cmd="status")
            if all(status.get(a.gateway) == "online" for a in agents):
                return
            time.sleep(0.2)
        raise BenchError(f"agents not online after {timeout:.0f} s: {self.sub.ask(cmd='status')}")

    def trial(
        self,
        agent: AgentProc,
        per_message: int,
        fmt: str,
        kind: str,
        *,
        rate: float = 0.0,
        seconds: float = 0.0,
        flows: int = 0,
    ) -> dict[str, Any]:
        """Publish ``rate`` flows/s for ``seconds`` (or a burst of ``flows`` as fast as possible) in messages of
        ``per_message`` flows in format ``fmt``, then wait for every verdict; returns pass/fail, latency
        percentiles, the agent's CPU use and the contention on its core."""
        self._trial_no += 1
        sensor = f"s{self._trial_no}"
        n_msg = max(1, round((rate * seconds if rate > 0 else flows) / per_message))
        n = n_msg * per_message
        offsets = np.arange(n_msg) * per_message / rate if rate > 0 else np.zeros(n_msg)
        cpu0, core0, t0 = agent.cpu(), core_times(self.agent_core), now()
        drv0 = [core_times(c) for c in self.driver_core_ids]
        build = self.flows.message
        sent = self.pub.run(agent.flows_topic, lambda k: build(k, per_message, sensor, fmt), n_msg, offsets)
        pub_end = float(sent[-1])
        hard = pub_end + max(60.0, 6 * seconds)
        got, last_change, seen = 0, now(), 0
        while got < n and now() < hard and now() - last_change < 20:
            time.sleep(0.02)
            got = self.sub.ask(cmd="count", sensor=sensor)["n"]
            if got != seen:
                seen, last_change = got, now()
            if agent.proc.poll() is not None:
                raise BenchError(f"agent {agent.gateway} exited:\n{tail(agent.log)}")
        t1, cpu1, core1 = now(), agent.cpu(), core_times(self.agent_core)
        drv1 = [core_times(c) for c in self.driver_core_ids]
        path = self.workdir / "trials" / f"{sensor}.npz"
        path.parent.mkdir(exist_ok=True)
        taken = self.sub.ask(cmd="take", sensor=sensor, path=str(path))
        data = dict(np.load(path))
        np.savez(path, **data, sent=sent, per_message=per_message)  # kept for a look at latency over time
        seq, arrival = data["seq"], data["t"]
        order = np.argsort(arrival, kind="stable")
        uniq, first = np.unique(seq[order], return_index=True)
        first_arrival = arrival[order][first]
        ok = (uniq >= 0) & (uniq < n)
        uniq, first_arrival = uniq[ok], first_arrival[ok]
        lat = first_arrival - sent[uniq // per_message]
        pub_seconds = pub_end - float(sent[0])
        achieved = (n - per_message) / pub_seconds if pub_seconds > 0 else math.inf  # n_msg - 1 intervals
        drain = float(arrival.max() - pub_end) if len(arrival) else math.inf
        pace_ok = rate <= 0 or n_msg < 2 or achieved >= PACE * rate
        wall = t1 - t0
        busy = core1["busy"] - core0["busy"]
        half = len(lat) // 2
        result = {
            "kind": kind,
            "variant": agent.variant,
            "T": agent.t,
            "per_message": per_message,
            "format": fmt,
            "rate": rate,
            "seconds": seconds,
            "flows": n,
            "messages": n_msg,
            "received": len(uniq),
            "missing": n - len(uniq),
            "duplicates": len(seq) - len(uniq),
            "publish_seconds": pub_seconds,
            "achieved_rate": achieved,
            "pace_ok": bool(pace_ok),
            "drain_s": drain,
            "passed": bool(len(uniq) == n and drain <= DRAIN_LIMIT and pace_ok),
            "latency_ms": {
                "p50": _ms(lat, 50),
                "p90": _ms(lat, 90),
                "p99": _ms(lat, 99),
                "max": _ms(lat, 100),
                "p99_first_half": _ms(lat[:half], 99),
                "p99_second_half": _ms(lat[half:], 99),
            },
            "mean_batch": float(data["batches"].mean()) if len(data["batches"]) else None,
            "max_batch": int(data["batches"].max()) if len(data["batches"]) else None,
            "malicious_fraction": taken["malicious"] / max(1, len(seq)),
            "agent_cpu_s": cpu1 - cpu0,
            "agent_cpu_share": (cpu1 - cpu0) / wall,
            "flows_per_agent_cpu_s": n / (cpu1 - cpu0) if cpu1 > cpu0 else None,
            "agent_core_others_share": max(0.0, busy - (cpu1 - cpu0)) / wall,
            "agent_core_steal_share": (core1["steal"] - core0["steal"]) / wall,
            "driver_core_busy_share": sum(b["busy"] - a["busy"] for a, b in zip(drv0, drv1, strict=True))
            / (wall * len(drv0)),
            "loadavg": loadavg(),
        }
        if kind == "latency":  # the agent's own view: message arrival → batch committed to the outbox
            docs = self.sub.ask(cmd="stats", gateway=agent.gateway, since=t0 + 1.0, until=pub_end + 0.5)["stats"]
            p50 = [d["flow_latency"]["p50_ms"] for d in docs if d["flow_latency"]["p50_ms"] is not None]
            p99 = [d["flow_latency"]["p99_ms"] for d in docs if d["flow_latency"]["p99_ms"] is not None]
            result["in_agent_ms"] = {
                "p50_median": float(np.median(p50)) if p50 else None,
                "p99_median": float(np.median(p99)) if p99 else None,
                "p99_max": max(p99) if p99 else None,
                "stats_messages": len(docs),
            }
        if kind == "probe" and len(arrival):
            # verdicts arrive a batch at a time: the flows after the first batch, over the time after it
            first, last = arrival.min(), arrival.max()
            after = int((arrival > first).sum())
            result["probe_rate"] = after / (last - first) if after else n / max(1e-3, last - float(sent[0]))
        time.sleep(0.3)  # let the agent go idle before the next trial
        return result

    def raw_round(self, t: int) -> dict[str, Any]:
        r = self.raw.ask(T=t, seconds=self.plan.raw_seconds)
        r["loadavg"] = loadavg()
        return r
