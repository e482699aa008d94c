"""One whole run: prepare the models, every shape, the RSS probe; writes ``agent.json`` and ``agent.md``."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent_footprint import install_sizes
from agent_plan import DRAIN_LIMIT, FULL, PACE, QUICK, REPO, RESULTS, SHAPES
from agent_processes import BenchError, Children, child_cmd, child_env, loadavg
from agent_report import render
from agent_search import run_shape
from agent_trial import Bench


def _machine() -> dict[str, Any]:
    from importlib import metadata

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    fld = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in lscpu.splitlines())}
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO, check=False)
    mosq = subprocess.run(
        [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-h"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    return {
        "cpu": fld.get("Model name", platform.processor()),
        "cores": os.cpu_count(),
        "hypervisor": fld.get("Hypervisor vendor"),
        "python": platform.python_version(),
        "git_commit": git.stdout.strip(),
        "bench_uncommitted": bool(  # this benchmark's own files changed since that commit
            subprocess.run(
                ["git", "status", "--porcelain", "bench/"], capture_output=True, text=True, cwd=REPO, check=False
            ).stdout.strip()
        ),
        "mosquitto": mosq[0] if mosq else "?",
        "packages": {
            p: metadata.version(p)
            for p in ("ai-edge-litert", "numpy", "paho-mqtt", "orjson", "tensorflow-cpu", "keras")
        },
    }


def _child_json(mode: str, workdir: Path, *extra: str) -> dict[str, Any] | str:
    """Run the ``--child mode`` program to its end: the JSON of its last output line, or its stderr if it failed."""
    done = subprocess.run(child_cmd(mode, "--workdir", str(workdir), *extra), capture_output=True, text=True, cwd=REPO,
                          env=child_env(), check=False)  # fmt: skip
    if done.returncode != 0:
        return f"exit status {done.returncode}: {done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool, out: str | None, workdir_arg: str | None, log: Callable[[str], None]) -> Path:
    """The whole benchmark (``--quick``: the short plan, results in the work directory unless ``out`` is given);
    returns the directory ``agent.json`` and ``agent.md`` were written to."""
    plan = QUICK if quick else FULL
    started = time.time()
    workdir = Path(workdir_arg) if workdir_arg else Path(tempfile.mkdtemp(prefix="agent-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    out_dir = Path(out) if out else (workdir if quick else RESULTS)
    res: dict[str, Any] = {
        "command": "python bench/agent.py" + (" --quick" if quick else ""),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "plan": asdict(plan),
        "drain_limit_s": DRAIN_LIMIT,
        "pace": PACE,
        "machine": _machine(),
        "loadavg_before": loadavg(),
        "workdir": str(workdir),
    }
    log(f"work directory {workdir}; load average {res['loadavg_before']}")
    prep = _child_json("prepare", workdir, *(["--quick"] if quick else []))
    if isinstance(prep, str):
        raise BenchError(f"prepare failed:\n{prep[-3000:]}")
    res["prepare"] = prep
    log(f"models converted: {json.dumps({k: v for k, v in res['prepare'].items() if k.startswith('T')})}")
    children = Children()
    bench = None
    try:
        bench = Bench(workdir, plan, children, log)
        res["cores"] = {"agents_and_raw": bench.agent_core, "broker_publisher_subscriber": bench.driver_cores}
        res["raw_runtime"] = bench.raw.ready["runtime"]
        res["shapes"] = {}
        for t in sorted(SHAPES.values()):
            res["shapes"][str(t)] = run_shape(bench, t)
        for mode, key in (("rss", "rss_probe"), ("tf-rss", "tf_rss_probe")):
            probe = _child_json(mode, workdir)
            res[key] = None if isinstance(probe, str) else probe
            if isinstance(probe, str):
                log(f"{mode} probe failed: {probe[-1500:]}")
        res["install_mb"] = install_sizes()
    finally:
        if bench is not None:
            with contextlib.suppress(Exception):
                bench.pub.close()
        children.close()
    res["loadavg_after"] = loadavg()
    res["wall_seconds"] = time.time() - started
    res = json.loads(json.dumps(res))  # the report reads what the .json holds (string keys)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "agent.json").write_text(json.dumps(res, indent=1) + "\n")
    (out_dir / "agent.md").write_text(render(res))
    log(f"done in {res['wall_seconds'] / 60:.1f} min: {out_dir / 'agent.md'}")
    return out_dir
