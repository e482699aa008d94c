"""The measurements: int8-vs-float agreement of every file, then interleaved rounds over every case."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from inference_plan import (
    KERAS_PATHS,
    QUIET,
    REFERENCE,
    SHAPES,
    TFLITE_VARIANTS,
    TFLRT_VARIANTS,
    WEIGHT_SETS,
    Case,
    Plan,
    loadavg,
    model_paths,
    now,
)
from inference_workers import Worker


def bench_cases(with_tflrt: bool) -> list[Case]:
    cases = []
    for t in SHAPES.values():
        for threads in (1, 2):
            cases += [Case("keras", p, t, threads, b256) for p, b256 in KERAS_PATHS.items()]
            cases += [Case("ai_edge_litert", v, t, threads) for v in (*TFLITE_VARIANTS, REFERENCE)]
            if with_tflrt:
                cases += [Case("tflite_runtime", v, t, threads) for v in TFLRT_VARIANTS]
    return cases


def score_agreement(ref: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Label agreement at 0.5 and at the reference's median score, and score differences."""
    med = float(np.median(ref))
    d = np.abs(other.astype(np.float64) - ref)
    return {
        "label_agreement_at_0.5": float(((ref > 0.5) == (other > 0.5)).mean()),
        "label_agreement_at_ref_median": float(((ref > med) == (other > med)).mean()),
        "mean_abs_diff": float(d.mean()),
        "max_abs_diff": float(d.max()),
        "identical_fraction": float((other == ref).mean()),
    }


def measure_agreement(workdir: Path, workers: dict[str, Worker]) -> dict[str, Any]:
    """Scores of every file (both weight sets) on the saved random windows; int8 vs float, float vs Keras."""
    out: dict[str, Any] = {}
    for t in SHAPES.values():
        inputs = str(workdir / f"T{t}" / "eval.npy")
        for weights in WEIGHT_SETS:
            p = model_paths(workdir, t, weights)
            scores = {"keras": np.load(p["keras_scores"])}
            jobs = [("ai_edge_litert-t1", v, v, True) for v in TFLITE_VARIANTS]
            jobs.append(("ai_edge_litert-t1", "int8_per_tensor", REFERENCE, False))
            jobs.append(("ai_edge_litert-t1", "int8_per_tensor_stripped", "int8_per_tensor_stripped", True))
            if "tflite_runtime-t1" in workers:
                jobs.append(("tflite_runtime-t1", "int8_per_tensor", "tflite_runtime_int8_per_tensor", True))
            for worker, variant, name, delegates in jobs:
                dest = p["dir"] / f"scores_{name}.npy"
                ask = {"model": str(p[variant]), "inputs": inputs, "out": str(dest), "delegates": delegates}
                workers[worker].ask(op="score", **ask)
                scores[name] = np.load(dest)
            ref = scores["float"]
            entry: dict[str, Any] = {
                "windows": len(ref),
                "float_score_stats": {
                    "std": float(ref.std()),
                    "min": float(ref.min()),
                    "median": float(np.median(ref)),
                    "max": float(ref.max()),
                },
                "float_tflite_vs_keras": score_agreement(scores["keras"], ref),
                "int8_per_tensor_vs_float": score_agreement(ref, scores["int8_per_tensor"]),
                "int8_per_channel_vs_float": score_agreement(ref, scores["int8_per_channel"]),
            }
            entry["stripped_vs_int8_per_tensor"] = score_agreement(
                scores["int8_per_tensor"], scores["int8_per_tensor_stripped"]
            )
            entry["no_xnnpack_vs_xnnpack_int8_per_tensor"] = score_agreement(
                scores["int8_per_tensor"], scores[REFERENCE]
            )
            if "tflite_runtime_int8_per_tensor" in scores:
                tflrt = scores["tflite_runtime_int8_per_tensor"]
                entry["tflite_runtime_vs_litert_int8_per_tensor"] = score_agreement(scores["int8_per_tensor"], tflrt)
                entry["tflite_runtime_vs_litert_no_xnnpack_int8_per_tensor"] = score_agreement(scores[REFERENCE], tflrt)
            out[f"T{t}:{weights}"] = entry
    return out


def run_rounds(cases: list[Case], workers: dict[str, Worker], plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    """Interleaved rounds; each round visits every case once (order reversed every other round)."""
    lat: dict[str, list[list[float]]] = {c.key: [] for c in cases}
    thr: dict[str, list[dict[str, float]]] = {c.key: [] for c in cases}
    loads = []
    for r in range(plan.rounds):
        start = now()
        for case in cases if r % 2 == 0 else cases[::-1]:
            w = workers[f"{case.runtime}-t{case.threads}"]
            calls = math.ceil(plan.latency_calls[case.T] / plan.rounds)
            lat[case.key].append(
                w.ask(op="latency", variant=case.variant, T=case.T, min_calls=calls, min_seconds=plan.latency_seconds)[
                    "ms"
                ]
            )
            if case.batch256:
                thr[case.key].append(
                    w.ask(op="throughput", variant=case.variant, T=case.T, min_seconds=plan.run_seconds)
                )
        loads.append(loadavg())
        log(f"round {r + 1}/{plan.rounds}: {now() - start:.0f} s, load average {loads[-1]}")
    results: dict[str, Any] = {}
    for case in cases:
        ms = np.concatenate([np.asarray(b) for b in lat[case.key]])
        entry: dict[str, Any] = {
            **asdict(case),
            "batch1_ms": {
                "median": float(np.median(ms)),
                "p99": float(np.percentile(ms, 99)),
                "mean": float(ms.mean()),
                "calls": len(ms),
                "round_medians": [float(np.median(b)) for b in lat[case.key]],
            },
        }
        if case.batch256:
            wps = [run["windows_per_s"] for run in thr[case.key]]
            quiet = [run["windows_per_s"] for run in thr[case.key] if run["others_cpu_share"] <= QUIET]
            entry["batch256_windows_per_s"] = {
                "median": float(np.median(wps)),
                "min": float(min(wps)),
                "max": float(max(wps)),
                "quiet_median": float(np.median(quiet)) if quiet else None,
                "quiet_runs": len(quiet),
                "runs": thr[case.key],
            }
        results[case.key] = entry
    return {"cases": results, "loadavg_after_each_round": loads}
