#!/usr/bin/env python
"""Side measurements on a finished ``bench/agent.py`` run's models: T=62 settings side by side.

Usage: ``python bench/agent_side.py WORKDIR WHAT [--rounds N] [--values A,B,C] [--rate R] [--into JSON]``

``WORKDIR`` is the ``--workdir`` of a full ``bench/agent.py`` run (its SYNTHETIC flows and random-init models);
Mosquitto, the publisher and the subscriber are that benchmark's own (``agent_trial.Bench``). ``WHAT``:

- ``max-records``: T=62 agents with ``batch.max_records`` 256 (shipped), 64 and 32 on the agents' core; saturating
  bursts (columnar batches of 32, then one record per message), interleaved: flows per agent CPU-s and VmHWM.
- ``max-batch``: the same with ``model.max_batch`` 256, 64 and 0 (auto: 33 windows per interpreter call at T=62)
  and ``batch.max_records`` 256.
- ``malloc-arenas``: the same with glibc's ``MALLOC_ARENA_MAX`` unset (0), 2 and 1 in the daemon's environment.
- ``threads``: T=62 agents with ``model.threads`` 1 (on the agents' core) and 2 (on every core), max_wait 5 ms, one
  record per message at ``--rate`` for 10 s, interleaved: publish → verdict latency.

``--into`` adds the result (command, date, git, load, Markdown lines) under ``side`` in an ``agent.json`` and
re-renders the ``.md`` beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics as st
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:] = [str(BENCH.parent), *(p for p in sys.path if Path(p or ".").resolve() != BENCH), str(BENCH)]

import yaml  # noqa: E402
from agent_plan import COLUMNAR, QUICK, RECORD, REPO  # noqa: E402
from agent_processes import AgentProc, Children, _agent_config, loadavg  # noqa: E402
from agent_report import render  # noqa: E402
from agent_targets import table  # noqa: E402
from agent_trial import Bench  # noqa: E402
from benchlib import vm  # noqa: E402


def _agent(b: Bench, gateway: str, cores: str, wait_ms: float, **settings: tuple[str, int]) -> AgentProc:
    cfg = _agent_config(b.workdir, gateway, b.workdir / "T62" / "int8", b.port, wait_ms, False)
    doc = yaml.safe_load(cfg.read_text())
    env = []
    for section, (key, value) in settings.items():
        if section == "env":  # an environment variable of the daemon (0: unset)
            env += [f"{key}={value}"] if value else []
        else:
            doc[section][key] = value
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    log = cfg.parent / "agent.log"
    cmd = ["env", *env, "taskset", "-c", cores, sys.executable, "-m", "agent.daemon", "--config", str(cfg)]
    return AgentProc("int8", 62, gateway, b.children.start(gateway, cmd, log), log)


def _interleaved(keys: list[Any], rounds: int) -> list[Any]:
    return [k for r in range(rounds) for k in (keys if r % 2 == 0 else keys[::-1])]


def side_by_side(b: Bench, rounds: int, section: str, key: str, values: tuple[int, ...]) -> list[str]:
    """T=62 agents differing in ``section.key`` (the first value is the baseline), saturated side by side."""
    agents = {n: _agent(b, f"T62-{key}-{n}", str(b.agent_core), 20.0, **{section: (key, n)}) for n in values}
    b.wait_online(list(agents.values()))
    idle = {n: vm(a.proc.pid)["VmHWM"] for n, a in agents.items()}
    col: dict[int, list[dict[str, Any]]] = {n: [] for n in agents}
    one: dict[int, list[dict[str, Any]]] = {n: [] for n in agents}
    for n in _interleaved(list(agents), rounds):
        col[n].append(b.trial(agents[n], 32, COLUMNAR, "probe", flows=4096))
    for n in _interleaved(list(agents), rounds):
        one[n].append(b.trial(agents[n], 1, RECORD, "probe", flows=2048))
    rows = []
    base = st.median(r["flows_per_agent_cpu_s"] for r in col[values[0]])
    for n, a in agents.items():
        c = st.median(r["flows_per_agent_cpu_s"] for r in col[n])
        o = st.median(r["flows_per_agent_cpu_s"] for r in one[n])
        rows.append(
            [str(n), f"{c:,.0f} ({c / base:.2f}×)", f"{o:,.0f}", f"{idle[n]:.1f}", f"{vm(a.proc.pid)['VmHWM']:.1f}"]
        )
    setting = f"env {key}" if section == "env" else f"{section}.{key}"
    head = [setting, f"flows per agent CPU-s, columnar 32 (÷ {values[0]})", "one record/msg", "VmHWM idle MB",
            "VmHWM after"]  # fmt: skip
    return [
        f"T=62 agents side by side, saturating bursts ({rounds} rounds interleaved: 4,096 flows in columnar batches of "
        "32, then 2,048 flows one record per message), all on the agents' core:",
        "",
        *table(head, rows),
    ]


def threads(b: Bench, rounds: int, rate: float) -> list[str]:
    agents = {
        n: _agent(b, f"T62-threads-{n}", cores, 5.0, model=("threads", n))
        for n, cores in (
            (1, str(b.agent_core)),
            (2, ",".join(map(str, sorted(os.sched_getaffinity(0) | {b.agent_core})))),
        )
    }
    b.wait_online(list(agents.values()))
    for a in agents.values():
        b.trial(a, 1, RECORD, "warmup", rate=200, seconds=0.5)
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in agents}
    for n in _interleaved(list(agents), rounds):
        runs[n].append(b.trial(agents[n], 1, RECORD, "latency", rate=rate, seconds=10.0))
    rows = []
    for n, rs in runs.items():
        p99 = [r["latency_ms"]["p99"] for r in rs]
        rows.append([
            str(n), f"{st.median(r['latency_ms']['p50'] for r in rs):.1f}", f"{st.median(p99):.1f}",
            ", ".join(f"{v:.0f}" for v in p99), f"{st.median(r['in_agent_ms']['p99_median'] or 0 for r in rs):.1f}",
            f"{st.median(r['mean_batch'] for r in rs):.0f}",
            f"{st.median(1e6 / r['flows_per_agent_cpu_s'] for r in rs):.0f}",
            str(sum(r["missing"] for r in rs)),
        ])  # fmt: skip
    head = ["model.threads", "p50 ms", "p99 ms", "p99 per run", "in agent p99 ms", "mean batch",
            "µs agent CPU per flow", "lost"]  # fmt: skip
    return [
        f"T=62, max_wait 5 ms, one record per message at {rate:,.0f} flows/s for 10 s, {rounds} runs each "
        "interleaved; `model.threads: 2` may use both cores, which it shares with Mosquitto, the publisher and the "
        "other helpers' work (this VM has 2 cores, the target gateway 4):",
        "",
        *table(head, rows),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("what", choices=("max-records", "max-batch", "malloc-arenas", "threads"))
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--values", help="the settings compared, e.g. 256,32,16 (default 256,64,32 / 256,64,0)")
    ap.add_argument("--rate", type=float, default=1720.0, help="flows/s for 'threads' (half of the T=62 max)")
    ap.add_argument("--into", type=Path, help="an agent.json to add the result to (its .md is re-rendered)")
    args = ap.parse_args()
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout
    doc = {
        "command": "python bench/agent_side.py WORKDIR " + " ".join(sys.argv[2:]).replace(str(args.into), "…"),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git.strip(),
        "loadavg": loadavg(),
    }
    children = Children()
    try:
        b = Bench(args.workdir, QUICK, children, lambda m: print(m, file=sys.stderr, flush=True))
        values = tuple(int(v) for v in args.values.split(",")) if args.values else None
        if args.what == "max-records":
            doc["lines"] = side_by_side(b, args.rounds, "batch", "max_records", values or (256, 64, 32))
        elif args.what == "max-batch":
            doc["lines"] = side_by_side(b, args.rounds, "model", "max_batch", values or (256, 64, 0))
        elif args.what == "malloc-arenas":
            doc["lines"] = side_by_side(b, args.rounds, "env", "MALLOC_ARENA_MAX", values or (0, 2, 1))
        else:
            doc["lines"] = threads(b, args.rounds, args.rate)
        b.pub.close()
    finally:
        children.close()
    doc["loadavg_after"] = loadavg()
    print("\n".join(doc["lines"]))
    if args.into:
        res = json.loads(args.into.read_text())
        res.setdefault("side", {})[args.what + (f" {args.values}" if args.values else "")] = doc
        args.into.write_text(json.dumps(res, indent=1) + "\n")
        args.into.with_suffix(".md").write_text(render(res))


if __name__ == "__main__":
    main()
