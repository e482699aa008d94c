"""The search for the highest zero-loss rate and the run of one shape: warm-up, probes, interleaved searches with
raw-interpreter rounds, saturated bursts, latency at half of the max, the steady agent, the agents' counters and
RSS."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from agent_plan import COLUMNAR, RECORD, STEADY, WAIT_MS, Plan, search_key
from agent_processes import loadavg, start_agent
from agent_trial import Bench
from benchlib import vm


@dataclass
class Search:
    """Highest rate that passes: start from a probe, step geometrically, then bisect."""

    variant: str
    per_message: int
    fmt: str
    t: int
    next_rate: float = 0.0
    lo: float | None = None  # highest passing rate
    hi: float | None = None  # lowest failing rate
    publisher_limited: bool = False
    done: bool = False
    probe: dict[str, Any] = field(default_factory=dict)
    trials: list[dict[str, Any]] = field(default_factory=list)
    bursts: list[dict[str, Any]] = field(default_factory=list)  # the probe and the saturation runs

    @property
    def key(self) -> str:
        return search_key(self.t, self.variant, self.per_message, self.fmt)

    def record(self, trial: dict[str, Any], plan: Plan) -> None:
        self.trials.append(trial)
        rate = trial["rate"]
        if trial["passed"]:
            self.lo = max(self.lo or 0.0, rate)
        elif rate < (self.hi or math.inf):
            self.hi = rate
            self.publisher_limited = not trial["pace_ok"]  # the driver, not the agent, failed: a lower bound
        if len(self.trials) >= plan.max_trials:
            self.done = True
        elif self.lo and self.hi:
            self.done = self.hi / self.lo <= plan.resolution or self.lo >= self.hi
            self.next_rate = math.sqrt(self.lo * self.hi)
        elif self.lo:
            self.next_rate = self.lo * 1.15
        else:
            self.next_rate = (self.hi or rate) * 0.8
        self.next_rate = float(f"{self.next_rate:.3g}")

    def summary(self) -> dict[str, Any]:
        best = max((t for t in self.trials if t["passed"]), key=lambda t: t["rate"], default=None)
        per_cpu = [b["flows_per_agent_cpu_s"] for b in self.bursts if b["flows_per_agent_cpu_s"]]
        return {
            "saturated": {
                "flows_per_agent_cpu_s_median": float(np.median(per_cpu)) if per_cpu else None,
                "flows_per_agent_cpu_s_each": per_cpu,
                "mean_batch_each": [b["mean_batch"] for b in self.bursts],
                "flows_per_s_each": [b.get("probe_rate") for b in self.bursts],
            },
            "variant": self.variant,
            "per_message": self.per_message,
            "format": self.fmt,
            "T": self.t,
            "max_zero_loss_flows_per_s": self.lo,
            "lowest_failing_rate": self.hi,
            "publisher_limited": self.publisher_limited,
            "probe_rate": self.probe.get("probe_rate"),
            "at_max": {
                k: best[k]
                for k in (
                    "agent_cpu_share",
                    "flows_per_agent_cpu_s",
                    "agent_core_others_share",
                    "agent_core_steal_share",
                    "mean_batch",
                    "latency_ms",
                    "drain_s",
                )
            }
            if best
            else None,
            "trials": [
                {k: t[k] for k in ("rate", "passed", "pace_ok", "missing", "drain_s", "achieved_rate")}
                for t in self.trials
            ],
        }


def run_shape(bench: Bench, t: int) -> dict[str, Any]:
    """Every search, the latency runs and the RSS of one shape, with its own agents."""
    plan, log = bench.plan, bench.log
    agents = {
        v: start_agent(bench.children, bench.workdir, v, t, bench.port, str(bench.agent_core)) for v in plan.variants
    }
    out: dict[str, Any] = {"raw_rounds": [], "trials": []}
    try:
        bench.wait_online(list(agents.values()))
        log(f"T={t}: agents online: {', '.join(agents)}")
        for v, a in agents.items():  # warm-up: every message shape, varied batch sizes (no burst for the steady one)
            if v != STEADY:
                bench.trial(a, 32, COLUMNAR, "warmup", flows=plan.probe_flows[t] // 4)
            bench.trial(a, 1, RECORD, "warmup", rate=200, seconds=0.5)
        out["raw_rounds"].append(bench.raw_round(t))
        searches = [Search(v, m, f, t) for v, m, f in plan.searches]
        bursts_only = [Search(v, m, f, t, done=True) for v, m, f in plan.bursts_only]
        for s in searches + bursts_only:
            s.probe = bench.trial(agents[s.variant], s.per_message, s.fmt, "probe", flows=plan.probe_flows[t])
            s.bursts.append(s.probe)
            # the agent cannot beat its interpreter: start no higher than that
            start = min(s.probe["probe_rate"], 1.1 * out["raw_rounds"][-1]["windows_per_s"])
            s.next_rate = float(f"{0.9 * start:.3g}")
            log(f"T={t} {s.key}: probe {s.probe['probe_rate']:,.0f} flows/s")
        rnd = 0
        while not all(s.done for s in searches):
            rnd += 1
            active = [s for s in searches if not s.done]
            for s in active if rnd % 2 else active[::-1]:
                tr = bench.trial(
                    agents[s.variant], s.per_message, s.fmt, "search", rate=s.next_rate, seconds=plan.trial_seconds[t]
                )
                out["trials"].append(tr)
                s.record(tr, plan)
                log(
                    f"T={t} {s.key}: {tr['rate']:,.0f} flows/s {'pass' if tr['passed'] else 'FAIL'} "
                    f"(missing {tr['missing']}, drain {tr['drain_s']:.2f} s, achieved {tr['achieved_rate']:,.0f}, "
                    f"agent CPU {tr['agent_cpu_share']:.0%}, others on its core {tr['agent_core_others_share']:.0%})"
                )
            out["raw_rounds"].append(bench.raw_round(t))
            log(f"T={t}: raw {out['raw_rounds'][-1]['windows_per_s']:,.0f} windows/s; load {loadavg()}")
        for _ in range(plan.saturation_runs):  # CPU cost per flow with full batches, insensitive to contention
            for s in searches + bursts_only:
                b = bench.trial(agents[s.variant], s.per_message, s.fmt, "probe", flows=plan.probe_flows[t])
                s.bursts.append(b)
        for s in searches + bursts_only:
            b = s.bursts
            log(
                f"T={t} {s.key}: saturated {np.median([x['flows_per_agent_cpu_s'] for x in b]):,.0f} flows per agent "
                f"CPU-s (mean batch {np.mean([x['mean_batch'] for x in b]):.0f}, {len(b)} bursts)"
            )
        out["searches"] = {s.key: s.summary() for s in searches + bursts_only}
        out["alert_fraction"] = {
            v: max((tr["malicious_fraction"] for tr in out["trials"] if tr["variant"] == v), default=None)
            for v in agents
        }
        # the issue: "p99 at half of the max rate" — the max of the default agent at one record per message
        base = next(s for s in searches if s.variant == "int8" and s.fmt == RECORD)
        rate = float(f"{0.5 * (base.lo or base.probe['probe_rate'] * 0.5):.3g}")
        out["latency_rates"] = {v: rate for v in plan.latency_variants}
        lat: dict[str, list[dict[str, Any]]] = {v: [] for v in plan.latency_variants}
        for rep in range(plan.latency_reps):
            for v in plan.latency_variants if rep % 2 == 0 else plan.latency_variants[::-1]:
                tr = bench.trial(agents[v], 1, RECORD, "latency", rate=rate, seconds=plan.latency_seconds[t])
                lat[v].append(tr)
                log(
                    f"T={t} latency {v} at {rate:,.0f} flows/s: p50 {tr['latency_ms']['p50']:.1f} ms, "
                    f"p99 {tr['latency_ms']['p99']:.1f} ms, batch {tr['mean_batch']:.1f}, missing {tr['missing']}"
                )
        out["latency"] = {v: _latency_summary(runs, WAIT_MS[v]) for v, runs in lat.items()}
        out["raw_rounds"].append(bench.raw_round(t))
        steady = []  # the steady agent: both searched message shapes at half of their max, never more
        for per_message, fmt in ((1, RECORD), (32, COLUMNAR)):
            half = 0.5 * (out["searches"][search_key(t, "int8", per_message, fmt)]["max_zero_loss_flows_per_s"] or 0)
            if half:
                tr = bench.trial(agents[STEADY], per_message, fmt, "steady", rate=half, seconds=plan.latency_seconds[t])
                keep = ("per_message", "format", "rate", "passed", "missing", "latency_ms", "mean_batch", "max_batch")
                steady.append({k: tr[k] for k in keep})
        out["steady_trials"] = steady
        time.sleep(1.5)  # one more stats message from every agent
        out["agent_stats"] = {v: bench.sub.ask(cmd="last_stats", gateway=a.gateway) for v, a in agents.items()}
        out["rss_mb"] = {v: vm(a.proc.pid) for v, a in agents.items()}
        out["agent_logs_warnings"] = {v: _warnings(a.log) for v, a in agents.items()}
    finally:
        for a in agents.values():
            bench.children.stop(a.proc)
    wps = [r["windows_per_s"] for r in out["raw_rounds"]]
    cps = [r["windows_per_cpu_s"] for r in out["raw_rounds"]]
    out["raw"] = {
        "windows_per_s_median": float(np.median(wps)),
        "min": min(wps),
        "max": max(wps),
        "windows_per_cpu_s_median": float(np.median(cps)),
        "rounds": len(wps),
    }
    return out


def _latency_summary(runs: list[dict[str, Any]], wait_ms: float) -> dict[str, Any]:
    med = lambda k: float(np.median([r["latency_ms"][k] for r in runs]))  # noqa: E731
    return {
        "max_wait_ms": wait_ms,
        "rate": runs[0]["rate"],
        "reps": len(runs),
        "p50_ms": med("p50"),
        "p99_ms": med("p99"),
        "max_ms": med("max"),
        "p99_ms_each": [r["latency_ms"]["p99"] for r in runs],
        "mean_batch": float(np.median([r["mean_batch"] for r in runs])),
        "agent_cpu_share": float(np.median([r["agent_cpu_share"] for r in runs])),
        "flows_per_agent_cpu_s": float(np.median([r["flows_per_agent_cpu_s"] for r in runs])),
        "agent_core_others_share": float(np.median([r["agent_core_others_share"] for r in runs])),
        "in_agent_p50_ms": _median_of([r["in_agent_ms"]["p50_median"] for r in runs]),
        "in_agent_p99_ms": _median_of([r["in_agent_ms"]["p99_median"] for r in runs]),
        "driver_core_busy_share": float(np.median([r["driver_core_busy_share"] for r in runs])),
        "missing": sum(r["missing"] for r in runs),
        "all_passed": all(r["passed"] for r in runs),
    }


def _median_of(values: list[float | None]) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.median(v)) if v else None


def _warnings(log: Path) -> list[str]:
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return [ln[:300] for ln in lines if " WARNING " in ln or " ERROR " in ln or "Traceback" in ln][:20]
