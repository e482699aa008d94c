"""One whole run: prepare child, memory probes, workers, agreement, rounds; writes ``inference.{json,md}``."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inference_plan import FULL, QUICK, REPO, RESULTS, SHAPES, WEIGHT_SETS, loadavg, model_paths, now
from inference_report import render
from inference_rounds import bench_cases, measure_agreement, run_rounds
from inference_workers import Worker, WorkerError, run_child


def machine() -> dict[str, Any]:
    from importlib import metadata

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    field = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in lscpu.splitlines())}
    flags = field.get("Flags", "").split()
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO, check=False)
    return {
        "cpu": field.get("Model name", platform.processor()),
        "cores": os.cpu_count(),
        "hypervisor": field.get("Hypervisor vendor"),
        "avx512_vnni": "avx512_vnni" in flags,
        "python": platform.python_version(),
        "git_commit": git.stdout.strip(),
        "packages": {p: metadata.version(p) for p in ("tensorflow-cpu", "keras", "ai-edge-litert", "numpy")},
    }


def run(args: argparse.Namespace) -> None:
    plan = QUICK if args.quick else FULL
    started, t0 = datetime.now(UTC), now()
    command = "python bench/inference.py" + (" --quick" if args.quick else "")
    log = lambda msg: print(f"[{now() - t0:6.0f} s] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="edge-ids-bench-"))
    for t in SHAPES.values():
        for w in WEIGHT_SETS:
            model_paths(workdir, t, w)["dir"].mkdir(parents=True, exist_ok=True)
    out = Path(args.out) if args.out else (workdir if args.quick else RESULTS)
    res: dict[str, Any] = {"command": command, "date": started.strftime("%Y-%m-%d %H:%M UTC"), "plan": asdict(plan)}
    res["machine"], res["loadavg_before"] = machine(), loadavg()
    log(f"work directory {workdir}; load average {res['loadavg_before']}")
    py = sys.executable
    res["prepare"] = run_child(py, workdir, "prepare", *(["--quick"] if args.quick else []))
    log("models built, toy-trained and converted")
    tflrt_py = args.tflite_runtime_python
    with_tflrt = Path(tflrt_py).exists()
    res["tflite_runtime"] = {"python": tflrt_py} if with_tflrt else {"skipped": f"no interpreter at {tflrt_py}"}
    res["memory"] = {}
    for runtime, python in [("ai_edge_litert", py), ("tensorflow", py)] + (
        [("tflite_runtime", tflrt_py)] if with_tflrt else []
    ):
        try:
            res["memory"][runtime] = run_child(python, workdir, "probe", "--runtime", runtime, timeout=600)
        except WorkerError as e:
            res["memory"][runtime] = {"error": str(e)}
    log("memory probes done")
    workers: dict[str, Worker] = {}
    try:
        for runtime, python in [("keras", py), ("ai_edge_litert", py)] + (
            [("tflite_runtime", tflrt_py)] if with_tflrt else []
        ):
            for threads in (1, 2):
                try:
                    w = Worker(python, runtime, threads, workdir, args.quick)
                except WorkerError as e:
                    if runtime != "tflite_runtime":
                        raise
                    res["tflite_runtime"] = {"python": tflrt_py, "skipped": str(e)}
                    with_tflrt = False
                    break
                workers[w.name] = w
                if runtime == "tflite_runtime":
                    res["tflite_runtime"]["versions"] = w.ready["versions"]
        log(f"workers ready: {', '.join(workers)}")
        res["agreement"] = measure_agreement(workdir, workers)
        log("agreement scores done")
        res["bench"] = run_rounds(bench_cases(with_tflrt), workers, plan, log)
    finally:
        for w in workers.values():
            w.close()
    res["loadavg_after"], res["seconds"] = loadavg(), now() - t0
    res["workdir"] = str(workdir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "inference.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / "inference.md").write_text(render(res))
    log(f"wrote {out / 'inference.md'} and {out / 'inference.json'}")
