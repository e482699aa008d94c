#!/usr/bin/env python
"""Inference benchmark: Keras float32 vs float TFLite vs int8 TFLite (LiteRT, tflite-runtime) for Uni-Hybrid.

Usage: ``python bench/inference.py [--quick]`` (results in ``bench/results/inference.{md,json}``; ``--quick``
is a smoke check with few repetitions that writes into its work directory instead).

How it measures, in one process tree:

1. A ``prepare`` child builds the Uni-Hybrid model for the quick (T=1) and paper (T=62) shapes, saves its
   random-init weights, trains a copy for a few epochs on a synthetic rule ("toy" weights: non-zero biases and
   BatchNorm statistics, spread-out scores) and converts both weight sets with the project's own path
   (``trainer.convert.run_conversion``: the ``unroll=True`` twin, float / int8 per-tensor / int8 per-channel).
2. Fresh ``probe`` children report peak RSS (``VmHWM``) of a process that imports only the interpreter wrapper
   and loads the int8 T=62 model, and of one that imports TensorFlow.
3. Long-lived ``worker`` children, one per runtime and thread count (Keras needs a fresh process per thread
   count; tflite-runtime runs in its own venv), load every model; LiteRT also runs the shipped file without
   XNNPACK as a reference. The parent then runs interleaved rounds: in each round every case gets one block
   of batch-1 calls and one batch-256 run of at least ``run_seconds``, one case at a time. Throughput is the
   median over rounds, batch-1 latency the median / p99 over all calls; so ratios are taken side by side. Each
   run also records how much CPU other processes used meanwhile (the machine is shared).

Speed and size are measured on the toy weights (speed does not depend on weight values; size does, see the
report). Int8-vs-float agreement is measured on random windows in [0, 1] for both weight sets.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import JsonLines, vm

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
MODEL = "uni-hybrid"
FEATURES = 62
SHAPES = {"quick": 1, "paper": 62}
BATCH = 256
SEED = 0
QUIET = 0.10  # a run is "quiet" when other processes used at most this share of the machine's CPU meanwhile
TFLRT_PYTHON = "/tmp/venv-tflrt/bin/python"
WEIGHT_SETS = ("random", "toy")
TFLITE_VARIANTS = ("float", "int8_per_tensor", "int8_per_channel")


@dataclass(frozen=True)
class Plan:
    """Repetitions and data sizes of one benchmark run."""

    rounds: int  # interleaved rounds; one throughput run per case per round
    run_seconds: float  # minimum duration of one batch-256 throughput run
    latency_calls: dict[int, int]  # minimum batch-1 calls per case and T, summed over rounds
    latency_seconds: float  # minimum duration of one batch-1 block
    train_windows: int
    train_epochs: int
    eval_windows: int
    representative_windows: int


FULL = Plan(7, 1.0, {1: 200, 62: 50}, 0.25, 4096, 4, 2000, 512)
QUICK = Plan(2, 0.2, {1: 20, 62: 4}, 0.05, 512, 1, 200, 64)


@dataclass(frozen=True)
class Case:
    """One measured configuration: a runtime's model variant at one shape and thread count."""

    runtime: str  # keras | ai_edge_litert | tflite_runtime
    variant: str  # keras call path or TFLite file variant
    T: int
    threads: int
    batch256: bool = True  # False: batch-1 latency only

    @property
    def key(self) -> str:
        return f"{self.runtime}:{self.variant}:T{self.T}:t{self.threads}"


KERAS_PATHS = {"predict_on_batch": True, "predict": True, "call": False}  # path -> measured at batch 256
TFLRT_VARIANTS = ("float", "int8_per_tensor")
REFERENCE = "int8_per_tensor_no_xnnpack"  # the shipped file on LiteRT's builtin kernels (no default delegates)


def _now() -> float:
    return time.perf_counter()


def _loadavg() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def _windows(rng: np.random.Generator, n: int, t: int) -> np.ndarray:
    return rng.random((n, t, FEATURES), dtype=np.float32)


def _paths(workdir: Path, t: int, weights: str) -> dict[str, Path]:
    d = workdir / f"T{t}" / weights
    return {
        "dir": d,
        "weights": d / "weights.npz",
        "keras_scores": d / "keras_scores.npy",
        **{v: d / f"model_{v}.tflite" for v in TFLITE_VARIANTS},
        "int8_per_tensor_stripped": d / "model_int8_per_tensor.stripped.tflite",  # written by _anatomy
    }


# ---------------------------------------------------------------------------------------------------------------
# prepare child: models, weights, conversions (imports TensorFlow)


def _anatomy(path: Path) -> dict[str, Any]:
    """Where the bytes of a .tflite file go: constant buffers by tensor type (``constants``), int8 weight matrices
    stored more than once (same shape; per copy: how many ops use it and their first inputs), bytes of tensor names,
    quantization scale entries, and the file size once ``flatbuffer_utils.strip_strings`` removed the names (the
    stripped file is written beside it)."""
    from tensorflow.lite.python import schema_py_generated as fb
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    type_names = {v: k.lower() for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
    graph = model.subgraphs[0]
    first_inputs: dict[int, list[str]] = {}  # constant tensor -> first inputs of the ops that use it
    for op in graph.operators:
        for i in op.inputs[1:]:
            if i >= 0 and op.inputs[0] >= 0:
                name = graph.tensors[op.inputs[0]].name  # None once names are stripped (as the export does)
                first_inputs.setdefault(int(i), []).append(name.decode() if name else str(op.inputs[0]))
    constants: dict[str, int] = {}
    copies: dict[tuple[int, ...], list[dict[str, Any]]] = {}
    seen: set[int] = set()
    for index, tensor in enumerate(graph.tensors):
        data = model.buffers[tensor.buffer].data
        if data is None or not len(data) or tensor.buffer in seen:
            continue
        seen.add(tensor.buffer)
        kind = type_names[tensor.type]
        constants[kind] = constants.get(kind, 0) + len(data)
        if kind == "int8" and len(tensor.shape) == 2:
            users = first_inputs.get(index, [])
            copies.setdefault(tuple(int(d) for d in tensor.shape), []).append(
                {"bytes": len(data), "users": len(users), "inputs_of_users": sorted(set(users))[:3]}
            )
    quantized = [t for t in graph.tensors if t.quantization is not None and t.quantization.scale is not None]
    per_channel: dict[str, int] = {}
    for t in quantized:
        if len(t.quantization.scale) > 1:
            per_channel[type_names[t.type]] = per_channel.get(type_names[t.type], 0) + 1
    out = {
        "constants": constants,
        "duplicate_int8_weights": [{"shape": list(k), "copies": v} for k, v in copies.items() if len(v) > 1],
        "tensor_name_bytes": sum(len(t.name or b"") for t in graph.tensors),
        "quantization_scales": sum(len(t.quantization.scale) for t in quantized),
        "per_channel_tensors": per_channel,  # by tensor type
    }
    flatbuffer_utils.strip_strings(model)
    stripped = path.with_suffix(".stripped.tflite")
    flatbuffer_utils.write_model(model, str(stripped))
    return {**out, "stripped_bytes": stripped.stat().st_size}


def _toy_rule(x: np.ndarray) -> np.ndarray:
    return (x[:, -1, 0] > 0.5).astype(np.float32)


def _prepare(workdir: Path, plan: Plan) -> dict[str, Any]:
    """Build, toy-train and convert the model for every shape; return sizes and timings."""
    import keras

    from trainer.convert import run_conversion
    from trainer.models import build_model, compile_model

    out: dict[str, Any] = {}
    for t in SHAPES.values():
        info: dict[str, Any] = {}
        rng = np.random.default_rng(SEED + t)
        np.save(workdir / f"T{t}" / "representative.npy", _windows(rng, plan.representative_windows, t))
        evals = _windows(rng, plan.eval_windows, t)
        np.save(workdir / f"T{t}" / "eval.npy", evals)
        keras.utils.set_random_seed(SEED)
        model = build_model(MODEL, (t, FEATURES))
        info["params"] = int(model.count_params())
        for weights in WEIGHT_SETS:
            p = _paths(workdir, t, weights)
            if weights == "toy":  # a few epochs on the rule "the newest flow's feature 0 > 0.5"
                x = _windows(rng, plan.train_windows, t)
                start = _now()
                compile_model(model).fit(x, _toy_rule(x), epochs=plan.train_epochs, batch_size=64, verbose=0)
                info["toy_train_seconds"] = _now() - start
                info["toy_eval_accuracy"] = float(
                    ((model.predict_on_batch(evals)[:, 0] > 0.5) == _toy_rule(evals)).mean()
                )
            np.savez(p["weights"], **{f"w{i}": w for i, w in enumerate(model.get_weights())})
            np.save(p["keras_scores"], model.predict_on_batch(evals)[:, 0])
            start = _now()
            run_conversion(
                {
                    "model": MODEL,
                    "input_shape": [t, FEATURES],
                    "weights": str(p["weights"]),
                    "representative": str(workdir / f"T{t}" / "representative.npy"),
                    "targets": [
                        {"kind": "float", "path": str(p["float"])},
                        {"kind": "int8", "per_channel": False, "path": str(p["int8_per_tensor"])},
                        {"kind": "int8", "per_channel": True, "path": str(p["int8_per_channel"])},
                    ],
                },
                p["dir"],
            )
            info[weights] = {
                "convert_seconds": _now() - start,
                "sizes": {v: p[v].stat().st_size for v in TFLITE_VARIANTS},
                "nonzero_bias_values": int(
                    sum(np.count_nonzero(v.numpy()) for v in model.weights if v.path.endswith("bias"))
                ),
                "anatomy": {v: _anatomy(p[v]) for v in TFLITE_VARIANTS},
            }
        out[str(t)] = info
    return out


# ---------------------------------------------------------------------------------------------------------------
# worker child: loads every model of one runtime at one thread count, answers measurement requests


def _keras_fns(workdir: Path, threads: int) -> dict[tuple[str, int], Callable[[np.ndarray], Any]]:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    from trainer.models import build_model

    fns: dict[tuple[str, int], Callable[[np.ndarray], Any]] = {}
    for t in SHAPES.values():
        model = build_model(MODEL, (t, FEATURES))
        w = np.load(_paths(workdir, t, "toy")["weights"])
        model.set_weights([w[f"w{i}"] for i in range(len(w.files))])
        fns["predict_on_batch", t] = model.predict_on_batch
        fns["predict", t] = lambda x, m=model: m.predict(x, batch_size=BATCH, verbose=0)
        fns["call", t] = lambda x, m=model: np.asarray(m(x, training=False))
    return fns


def _tflite_fns(workdir: Path, runtime: str, threads: int) -> dict[tuple[str, int], Callable[[np.ndarray], Any]]:
    from ids_core.interpreter import TFLiteModel

    variants = (*TFLITE_VARIANTS, REFERENCE) if runtime == "ai_edge_litert" else TFLRT_VARIANTS
    fns: dict[tuple[str, int], Callable[[np.ndarray], Any]] = {}
    for t in SHAPES.values():
        for v in variants:
            path = _paths(workdir, t, "toy")["int8_per_tensor" if v == REFERENCE else v]
            kw = {"num_threads": threads, "runtime": runtime, "use_default_delegates": v != REFERENCE}
            b1, b256 = TFLiteModel(path, **kw), TFLiteModel(path, **kw)  # one per batch size: no resizing
            fns[v, t] = lambda x, b1=b1, b256=b256: (b1 if len(x) == 1 else b256).predict(x)
    return fns


def _score(runtime: str, model: str, inputs: str, out: str, delegates: bool = True) -> None:
    """Scores of a TFLite file (or of Keras weights) for saved windows, written to ``out``."""
    x = np.load(inputs)
    if runtime == "keras":
        from trainer.models import build_model

        keras_model = build_model(MODEL, x.shape[1:])
        w = np.load(model)
        keras_model.set_weights([w[f"w{i}"] for i in range(len(w.files))])
        scores = np.concatenate([keras_model.predict_on_batch(x[s : s + BATCH])[:, 0] for s in range(0, len(x), BATCH)])
    else:
        from ids_core.interpreter import TFLiteModel

        scores = TFLiteModel(model, num_threads=1, runtime=runtime, use_default_delegates=delegates).predict(x)
    np.save(out, scores.astype(np.float32))


def _latency(fn: Callable[[np.ndarray], Any], pool: np.ndarray, min_calls: int, min_seconds: float) -> list[float]:
    """Per-call wall time (ms) of batch-1 calls: at least ``min_calls`` calls and ``min_seconds``."""
    for x in pool[:2]:
        fn(x)
    ms: list[float] = []
    end = _now() + min_seconds
    while len(ms) < min_calls or (_now() < end and len(ms) < 5000):
        x = pool[len(ms) % len(pool)]
        start = time.perf_counter_ns()
        fn(x)
        ms.append((time.perf_counter_ns() - start) / 1e6)
    return ms


def _cpu_seconds() -> tuple[float, float]:
    """(CPU seconds the whole machine was busy, CPU seconds of this process) so far."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(ticks) - ticks[3] - ticks[4]  # minus idle and iowait
    own = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


def _throughput(fn: Callable[[np.ndarray], Any], x: np.ndarray, min_seconds: float) -> dict[str, float]:
    """Windows per second of repeated calls on ``x`` for at least ``min_seconds`` (after one warm-up call), and
    the share of the machine's CPUs that other processes used meanwhile (contention)."""
    fn(x)
    calls, start, (busy0, own0) = 0, _now(), _cpu_seconds()
    while True:
        fn(x)
        calls += 1
        elapsed = _now() - start
        if elapsed >= min_seconds:
            busy1, own1 = _cpu_seconds()
            others = max(0.0, (busy1 - busy0) - (own1 - own0)) / (elapsed * (os.cpu_count() or 1))
            return {
                "windows_per_s": calls * len(x) / elapsed,
                "calls": calls,
                "seconds": elapsed,
                "own_cpu_seconds": own1 - own0,
                "others_cpu_share": others,
            }


def _worker(workdir: Path, runtime: str, threads: int) -> None:
    """Answer one JSON request per stdin line on the original stdout; everything else printed goes to stderr."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    start = _now()
    fns = _keras_fns(workdir, threads) if runtime == "keras" else _tflite_fns(workdir, runtime, threads)
    rng = np.random.default_rng(SEED + 1000)
    inputs = {t: (_windows(rng, 16, t)[:, None], _windows(rng, BATCH, t)) for t in SHAPES.values()}
    versions = {"numpy": np.__version__}
    if runtime == "tflite_runtime":
        import tflite_runtime

        versions["tflite_runtime"] = tflite_runtime.__version__
    proto.write(json.dumps({"ready": True, "load_seconds": _now() - start, "versions": versions}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "quit":
            break
        if req["op"] == "score":
            _score(runtime, req["model"], req["inputs"], req["out"], req.get("delegates", True))
            reply: dict[str, Any] = {"ok": True}
        else:
            fn = fns[req["variant"], req["T"]]
            pool, x256 = inputs[req["T"]]
            if req["op"] == "latency":
                reply = {"ms": _latency(fn, pool, req["min_calls"], req["min_seconds"])}
            else:
                reply = _throughput(fn, x256, req["min_seconds"])
        proto.write(json.dumps(reply) + "\n")


# ---------------------------------------------------------------------------------------------------------------
# probe child: peak RSS of a fresh process


def _probe(workdir: Path, runtime: str) -> dict[str, Any]:
    """VmHWM/VmRSS after each stage: start (python + numpy), import, load int8/Keras T=62, batch 1, batch 256."""
    stages = {"start": vm()}
    rng = np.random.default_rng(SEED)
    x256 = _windows(rng, BATCH, SHAPES["paper"])
    if runtime == "tensorflow":
        import tensorflow  # noqa: F401

        stages["import"] = vm()
        from trainer.models import build_model

        model = build_model(MODEL, (SHAPES["paper"], FEATURES))
        w = np.load(_paths(workdir, SHAPES["paper"], "toy")["weights"])
        model.set_weights([w[f"w{i}"] for i in range(len(w.files))])
        stages["load"] = vm()
        predict: Callable[[np.ndarray], Any] = model.predict_on_batch
    else:
        from ids_core.interpreter import TFLiteModel, load_runtime

        load_runtime(runtime)
        stages["import"] = vm()
        tfl = TFLiteModel(_paths(workdir, SHAPES["paper"], "toy")["int8_per_tensor"], runtime=runtime)
        stages["load"] = vm()
        predict = tfl.predict
    predict(x256[:1])
    stages["batch1"] = vm()
    predict(x256)
    stages["batch256"] = vm()
    heavy = ("tensorflow", "keras", "ai_edge_litert", "tflite_runtime")
    return {"modules": sorted(m for m in heavy if m in sys.modules), "stages_mb": stages}


def _child(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(REPO))
    workdir = Path(args.workdir)
    if args.child == "worker":
        _worker(workdir, args.runtime, args.threads)
        return
    result = (
        _prepare(workdir, QUICK if args.quick else FULL) if args.child == "prepare" else _probe(workdir, args.runtime)
    )
    print("\n" + json.dumps(result))


# ---------------------------------------------------------------------------------------------------------------
# parent: orchestration


class WorkerError(RuntimeError):
    """A worker child died or answered something unexpected."""


class Worker(JsonLines):
    """A long-lived worker child speaking one JSON line per request."""

    def __init__(self, python: str, runtime: str, threads: int, workdir: Path, quick: bool) -> None:
        name = f"{runtime}-t{threads}"
        log_path = workdir / f"worker-{name}.log"
        self._log = log_path.open("w")
        cmd = [python, str(Path(__file__).resolve()), "--child", "worker", "--workdir", str(workdir)]
        cmd += ["--runtime", runtime, "--threads", str(threads)] + (["--quick"] if quick else [])
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, cwd=REPO, env=_child_env()
        )
        super().__init__(proc, name, log_path, WorkerError)
        self.ready = self.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(WorkerError, BrokenPipeError, json.JSONDecodeError):
                self.ask(op="quit")
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


def _child_env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _run_child(python: str, workdir: Path, child: str, *extra: str, timeout: float = 3600) -> dict[str, Any]:
    cmd = [python, str(Path(__file__).resolve()), "--child", child, "--workdir", str(workdir), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=_child_env(), timeout=timeout, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise WorkerError(f"{child} child failed with status {proc.returncode}:\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _machine() -> dict[str, Any]:
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


def _cases(with_tflrt: bool) -> list[Case]:
    cases = []
    for t in SHAPES.values():
        for threads in (1, 2):
            cases += [Case("keras", p, t, threads, b256) for p, b256 in KERAS_PATHS.items()]
            cases += [Case("ai_edge_litert", v, t, threads) for v in (*TFLITE_VARIANTS, REFERENCE)]
            if with_tflrt:
                cases += [Case("tflite_runtime", v, t, threads) for v in TFLRT_VARIANTS]
    return cases


def _agreement(ref: np.ndarray, other: np.ndarray) -> dict[str, float]:
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


def _measure_agreement(workdir: Path, workers: dict[str, Worker]) -> dict[str, Any]:
    """Scores of every file (both weight sets) on the saved random windows; int8 vs float, float vs Keras."""
    out: dict[str, Any] = {}
    for t in SHAPES.values():
        inputs = str(workdir / f"T{t}" / "eval.npy")
        for weights in WEIGHT_SETS:
            p = _paths(workdir, t, weights)
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
                "float_tflite_vs_keras": _agreement(scores["keras"], ref),
                "int8_per_tensor_vs_float": _agreement(ref, scores["int8_per_tensor"]),
                "int8_per_channel_vs_float": _agreement(ref, scores["int8_per_channel"]),
            }
            entry["stripped_vs_int8_per_tensor"] = _agreement(
                scores["int8_per_tensor"], scores["int8_per_tensor_stripped"]
            )
            entry["no_xnnpack_vs_xnnpack_int8_per_tensor"] = _agreement(scores["int8_per_tensor"], scores[REFERENCE])
            if "tflite_runtime_int8_per_tensor" in scores:
                tflrt = scores["tflite_runtime_int8_per_tensor"]
                entry["tflite_runtime_vs_litert_int8_per_tensor"] = _agreement(scores["int8_per_tensor"], tflrt)
                entry["tflite_runtime_vs_litert_no_xnnpack_int8_per_tensor"] = _agreement(scores[REFERENCE], tflrt)
            out[f"T{t}:{weights}"] = entry
    return out


def _rounds(cases: list[Case], workers: dict[str, Worker], plan: Plan, log: Callable[[str], None]) -> dict[str, Any]:
    """Interleaved rounds; each round visits every case once (order reversed every other round)."""
    lat: dict[str, list[list[float]]] = {c.key: [] for c in cases}
    thr: dict[str, list[dict[str, float]]] = {c.key: [] for c in cases}
    loads = []
    for r in range(plan.rounds):
        start = _now()
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
        loads.append(_loadavg())
        log(f"round {r + 1}/{plan.rounds}: {_now() - start:.0f} s, load average {loads[-1]}")
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


# ---------------------------------------------------------------------------------------------------------------
# report


RUNTIME_ROWS = [  # (runtime, variant, label)
    ("keras", "predict_on_batch", "Keras float32 `predict_on_batch`"),
    ("keras", "predict", "Keras float32 `predict`"),
    ("keras", "call", "Keras float32 `model(x, training=False)`"),
    ("ai_edge_litert", "float", "float TFLite, LiteRT"),
    ("ai_edge_litert", "int8_per_tensor", "**int8 per-tensor (shipped), LiteRT**"),
    ("ai_edge_litert", "int8_per_channel", "int8 per-channel, LiteRT"),
    ("ai_edge_litert", REFERENCE, "int8 per-tensor, LiteRT without XNNPACK (builtin kernels)"),
    ("tflite_runtime", "float", "float TFLite, tflite-runtime 2.14"),
    ("tflite_runtime", "int8_per_tensor", "int8 per-tensor, tflite-runtime 2.14"),
]
INT8, FLOAT, KERAS = "ai_edge_litert:int8_per_tensor", "ai_edge_litert:float", "keras:predict_on_batch"
RATIO_ROWS = [  # (label, numerator, denominator) as runtime:variant:b256|b1
    ("int8 LiteRT / Keras `predict_on_batch`, batch 256", f"{INT8}:b256", f"{KERAS}:b256"),
    ("int8 LiteRT / Keras `predict_on_batch`, batch 1", f"{INT8}:b1", f"{KERAS}:b1"),
    ("int8 / float TFLite (LiteRT), batch 256", f"{INT8}:b256", f"{FLOAT}:b256"),
    ("int8 / float TFLite (LiteRT), batch 1", f"{INT8}:b1", f"{FLOAT}:b1"),
    ("int8 per-tensor / per-channel (LiteRT), batch 256", f"{INT8}:b256", "ai_edge_litert:int8_per_channel:b256"),
    ("int8 tflite-runtime / LiteRT, batch 256", "tflite_runtime:int8_per_tensor:b256", f"{INT8}:b256"),
    ("float tflite-runtime / LiteRT, batch 256", "tflite_runtime:float:b256", f"{FLOAT}:b256"),
    ("int8 LiteRT without / with XNNPACK, batch 256", f"ai_edge_litert:{REFERENCE}:b256", f"{INT8}:b256"),
    (
        "int8 tflite-runtime / LiteRT without XNNPACK, batch 256",
        "tflite_runtime:int8_per_tensor:b256",
        f"ai_edge_litert:{REFERENCE}:b256",
    ),
    ("batch 256 / batch 1, int8 LiteRT", f"{INT8}:b256", f"{INT8}:b1"),
    ("batch 256 / batch 1, Keras `predict_on_batch`", f"{KERAS}:b256", f"{KERAS}:b1"),
]
PROBE_LABELS = {
    "ai_edge_litert": "agent interpreter wrapper + ai_edge_litert, int8 per-tensor",
    "tflite_runtime": "agent interpreter wrapper + tflite-runtime 2.14, int8 per-tensor",
    "tensorflow": "`import tensorflow` + Keras float32 model",
}
COLS = [(t, n) for t in SHAPES.values() for n in (1, 2)]


def _k(v: float) -> str:
    return f"{v / 1000:.2f}k" if v >= 1000 else f"{v:.0f}"


def _ms(v: float) -> str:
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def _x(a: float | None, b: float | None, digits: int = 2) -> str:
    return f"{a / b:.{digits}f}×" if a and b else "–"


class _View:
    """Read access to a results dict: speeds by ``runtime:variant:b256|b1`` at (T, threads)."""

    def __init__(self, res: dict[str, Any]) -> None:
        self.res, self.cases = res, res["bench"]["cases"]

    def case(self, rt_variant: str, t: int, n: int) -> dict[str, Any] | None:
        return self.cases.get(f"{rt_variant}:T{t}:t{n}")

    def speed(self, spec: str, t: int, n: int) -> float | None:
        """Windows/s at batch 256 (``…:b256``; ``…:q256`` over quiet runs only) or at batch 1 (``…:b1``, from the
        median latency)."""
        rt_variant, batch = spec.rsplit(":", 1)
        c = self.case(rt_variant, t, n)
        if not c:
            return None
        if batch == "b1":
            return 1000 / c["batch1_ms"]["median"]
        b = c.get("batch256_windows_per_s")
        return (b["quiet_median"] if batch == "q256" else b["median"]) if b else None

    def others_cpu(self) -> list[float]:
        return [
            r["others_cpu_share"]
            for c in self.cases.values()
            for r in c.get("batch256_windows_per_s", {}).get("runs", [])
        ]


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|---" * len(head) + "|", *("| " + " | ".join(r) + " |" for r in rows)]


def _header(res: dict[str, Any], view: _View) -> list[str]:
    m, plan = res["machine"], res["plan"]
    calls = {int(k): v for k, v in plan["latency_calls"].items()}  # JSON turns int keys into strings
    tflrt = res.get("tflite_runtime") or {}
    rt = (
        f"{tflrt['versions']['tflite_runtime']} (numpy {tflrt['versions']['numpy']}) in `{tflrt['python']}`"
        if tflrt.get("versions")
        else f"not measured ({tflrt.get('skipped', 'unknown')})"
    )
    others = view.others_cpu()
    prep = res["prepare"]
    return [
        "# Inference benchmark: Keras float32 vs float TFLite vs int8 TFLite (Uni-Hybrid)",
        "",
        f"- Command: `{res['command']}` — {res['date']}, commit {m['git_commit']}, "
        f"run time {res['seconds'] / 60:.1f} min",
        f"- Machine: {m['cpu']} ({m['hypervisor'] or 'bare-metal'} VM), {m['cores']} cores, AVX-512 VNNI "
        f"{'yes' if m['avx512_vnni'] else 'no'}; Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items()),
        f"- tflite-runtime: {rt}",
        f"- Load average (1/5/15 min): before {res['loadavg_before']}, after {res['loadavg_after']}, highest 1-min "
        f"after a round {max(v[0] for v in res['bench']['loadavg_after_each_round']):.2f}. Other engineers share the "
        f"machine: during the batch-{BATCH} runs other processes used a median {np.median(others):.0%} of its CPU "
        f"(max {max(others):.0%}; per run in the JSON).",
        f"- Method: {plan['rounds']} interleaved rounds, one case at a time, each runtime and thread count in its own "
        f"worker process; per round every case runs a block of batch-1 calls (≥ {plan['latency_seconds']} s; "
        f"≥ {calls[1]} calls in total at T=1, ≥ {calls[62]} at T=62) and one batch-{BATCH} run of "
        f"≥ {plan['run_seconds']} s. Latency: median / p99 over all calls; windows/s: median over rounds. TFLite "
        "is timed through `ids_core.interpreter.TFLiteModel.predict` (float windows in, float scores out, "
        "quantization included). Keras: intra- and inter-op threads both n; TFLite: `num_threads=n`.",
        f'- Weights: "toy" = random init, then {plan["train_epochs"]} epoch(s) on {plan["train_windows"]} random '
        "windows labelled by a synthetic rule (newest flow's feature 0 > 0.5; eval accuracy "
        + ", ".join(f"T={t}: {prep[str(t)]['toy_eval_accuracy']:.2f}" for t in SHAPES.values())
        + "), so biases and BatchNorm statistics are non-zero as in a trained model. All speeds use the toy "
        "weights (speed does not depend on weight values); sizes are given for random-init and toy weights "
        "(size does depend on them). Calibration: "
        f"{plan['representative_windows']} random windows in [0, 1].",
    ]


def _size_section(res: dict[str, Any]) -> list[str]:
    rows, anatomy = [], []
    for t in SHAPES.values():
        prep = res["prepare"][str(t)]
        for w in WEIGHT_SETS:
            s = prep[w]["sizes"]
            pt = s["int8_per_tensor"] / s["float"]
            target = (" ✅ ≤ 0.7" if pt <= 0.7 else " ❌ > 0.7") if t == SHAPES["paper"] else ""
            pc = s["int8_per_channel"] / s["float"]
            rows.append([f"T={t}", w, *(f"{s[v]:,}" for v in TFLITE_VARIANTS), f"**{pt:.3f}**{target}", f"{pc:.3f}"])
            if t != SHAPES["paper"]:
                continue
            for v in TFLITE_VARIANTS:
                a = prep[w]["anatomy"][v]
                weights = sum(n for k, n in a["constants"].items() if k != "int32")
                extra, _ = _extra_copies(a)
                stripped_float = prep[w]["anatomy"]["float"]["stripped_bytes"]
                anatomy.append(
                    [
                        f"T={t}, {w}, {v.replace('_', ' ')}",
                        *(f"{n:,}" for n in (s[v], weights, extra, a["constants"].get("int32", 0))),
                        f"{a['tensor_name_bytes']:,}",
                        f"{a['quantization_scales']:,} ({sum(a['per_channel_tensors'].values())})",
                        f"{a['stripped_bytes']:,}",
                        f"{a['stripped_bytes'] / stripped_float:.3f}",
                        f"{a['stripped_bytes'] / s['float']:.3f}",
                    ]
                )
    head = ["shape", "weights", "float", "int8 per-tensor (shipped)", "int8 per-channel", "per-tensor / float"]
    head += ["per-channel / float"]
    head2 = ["file", "bytes", "weight constants", "of which extra copies", "int32 constants", "tensor names"]
    head2 += ["quantization scales (per-channel tensors)", "names stripped", "stripped / stripped float"]
    head2 += ["stripped / float as converted"]
    params = res["prepare"][str(SHAPES["paper"])]["params"]
    return [
        "",
        "## Model files, bytes (`trainer.convert.run_conversion`: the `unroll=True` twin)",
        "",
        f"{params:,} parameters at both shapes. Target: shipped int8 (per-tensor) at T=62 ≤ 0.7× the float file.",
        "",
        *_table(head, rows),
        "",
        'Where the T=62 bytes go. "Extra copies": int8 weight matrices stored twice; "names stripped": the '
        "same file after `tensorflow.lite.tools.flatbuffer_utils.strip_strings` (tensor names removed; scores "
        "checked identical below).",
        "",
        *_table(head2, anatomy),
    ]


def _speed_sections(view: _View) -> list[str]:
    head = [f"T={t}, {n} thr" for t, n in COLS]
    lat_rows, thr_rows = [], []
    for rt, v, label in RUNTIME_ROWS:
        cs = [view.case(f"{rt}:{v}", t, n) for t, n in COLS]
        if not any(cs):
            continue
        lat_rows.append(
            [label] + [f"{_ms(c['batch1_ms']['median'])} / {_ms(c['batch1_ms']['p99'])}" if c else "–" for c in cs]
        )
        bs = [c.get("batch256_windows_per_s") if c else None for c in cs]
        if any(bs):
            thr_rows.append([label] + [f"{_k(b['median'])} ({_k(b['min'])}–{_k(b['max'])})" if b else "–" for b in bs])
    ratio_rows = [[name] + [_x(view.speed(a, t, n), view.speed(b, t, n)) for t, n in COLS] for name, a, b in RATIO_ROWS]
    thread_rows = [
        [label]
        + [
            _x(view.speed(f"{rt}:{v}:{b}", t, 2), view.speed(f"{rt}:{v}:{b}", t, 1))
            for t in SHAPES.values()
            for b in ("b256", "q256", "b1")
        ]
        for rt, v, label in RUNTIME_ROWS
        if view.case(f"{rt}:{v}", 1, 1)
    ]
    batch_names = {"b256": f"batch {BATCH}", "q256": f"batch {BATCH}, quiet runs", "b1": "batch 1"}
    return [
        "",
        "## Batch-1 latency per window, ms (median / p99)",
        "",
        *_table(["runtime", *head], lat_rows),
        "",
        f"## Throughput at batch {BATCH}, windows/s (median over rounds; min–max)",
        "",
        *_table(["runtime", *head], thr_rows),
        "",
        "## Ratios of windows/s (> 1× means the first is faster)",
        "",
        *_table(["ratio", *head], ratio_rows),
        "",
        f'2 threads / 1 thread (windows/s). "Quiet runs": median over the runs during which other processes used '
        f"≤ {QUIET:.0%} of the CPU (– if there was no such run for 1 or 2 threads).",
        "",
        *_table(["runtime"] + [f"T={t}, {batch_names[b]}" for t in SHAPES.values() for b in batch_names], thread_rows),
    ]


def _memory_section(res: dict[str, Any]) -> list[str]:
    rows = []
    for name, probe in res["memory"].items():
        if "stages_mb" in probe:
            s = probe["stages_mb"]
            rows.append(
                [PROBE_LABELS[name]]
                + [f"{s[k]['VmHWM']:.0f}" for k in ("start", "import", "load", "batch1", "batch256")]
            )
        else:
            rows.append([PROBE_LABELS[name], probe.get("error", "?").splitlines()[0], "", "", "", ""])
    head = ["process", "python + numpy", "+ import", "+ load model", "+ 1 window", f"+ {BATCH} windows"]
    return ["", "## Memory: peak RSS (VmHWM, MB) of a fresh process, T=62 model", "", *_table(head, rows)]


def _agreement_section(res: dict[str, Any]) -> list[str]:
    rows = []
    for key, e in res["agreement"].items():
        t, w = key.split(":")
        for name in ("int8_per_tensor", "int8_per_channel"):
            a = e[f"{name}_vs_float"]
            rows.append(
                [
                    t.replace("T", "T="),
                    w,
                    f"{e['float_score_stats']['std']:.4f}",
                    f"{e['float_tflite_vs_keras']['max_abs_diff']:.1e}",
                    name.replace("_", " "),
                    *(f"{a[k]:.4f}" for k in ("label_agreement_at_0.5", "label_agreement_at_ref_median")),
                    *(f"{a[k]:.4f}" for k in ("mean_abs_diff", "max_abs_diff")),
                ]
            )
    head = ["shape", "weights", "float score std", "float TFLite vs Keras, max abs Δ", "int8 file"]
    head += ["label agreement @0.5", "@float median", "mean abs Δscore", "max abs Δscore"]
    windows = next(iter(res["agreement"].values()))["windows"]
    lines = [
        "",
        f"## Int8 vs float TFLite on {windows:,} random windows in [0, 1]",
        "",
        "Label agreement at 0.5 and at the float file's median score (labels split 50/50, the hardest threshold). "
        "With random-init weights every score sits near 0.5 with a spread at or below the int8 output step "
        "(1/256 ≈ 0.0039), so only the toy rows say something about int8 fidelity.",
        "",
        *_table(head, rows),
    ]
    pairs = {
        "stripped_vs_int8_per_tensor": "names stripped vs as converted, LiteRT",
        "no_xnnpack_vs_xnnpack_int8_per_tensor": "LiteRT without XNNPACK vs LiteRT",
        "tflite_runtime_vs_litert_int8_per_tensor": "tflite-runtime 2.14 vs LiteRT",
        "tflite_runtime_vs_litert_no_xnnpack_int8_per_tensor": "tflite-runtime 2.14 vs LiteRT without XNNPACK",
    }
    rows = [
        [key.replace("T", "T=").replace(":", ", ")]
        + [f"{e[k]['identical_fraction']:.1%} / {e[k]['max_abs_diff']:.4f}" if k in e else "–" for k in pairs]
        for key, e in res["agreement"].items()
    ]
    return [
        *lines,
        "",
        "The same int8 per-tensor file on other kernels: share of identical scores / max abs Δscore (the firmware "
        "self-test demands identical int8 outputs).",
        "",
        *_table(["shape, weights", *pairs.values()], rows),
    ]


def _extra_copies(constants: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    """Bytes of the extra copies of int8 weight matrices (all but the most used copy of each), and those copies."""
    extra = [c for d in constants["duplicate_int8_weights"] for c in sorted(d["copies"], key=lambda c: -c["users"])[1:]]
    return sum(c["bytes"] for c in extra), extra


def _size_note(res: dict[str, Any]) -> str:
    p = SHAPES["paper"]
    prep = res["prepare"][str(p)]
    sizes = {w: prep[w]["sizes"] for w in WEIGHT_SETS}
    ratio = {w: sizes[w]["int8_per_tensor"] / sizes[w]["float"] for w in WEIGHT_SETS}
    a, pc = prep["toy"]["anatomy"]["int8_per_tensor"], prep["toy"]["anatomy"]["int8_per_channel"]
    float_stripped = prep["toy"]["anatomy"]["float"]["stripped_bytes"]
    note = (
        f"- **Size: the target holds with random-init weights ({ratio['random']:.3f}×) but not with the toy-trained "
        f"ones ({ratio['toy']:.3f}×).**"
        if ratio["random"] <= 0.7 < ratio["toy"]
        else f"- **Size.** The shipped int8 file at T={p} is {ratio['toy']:.3f}× float (toy), "
        f"{ratio['random']:.3f}× (random init)."
    )
    dup, copies = _extra_copies(a)
    if dup:
        shapes = ", ".join("×".join(map(str, d["shape"])) for d in a["duplicate_int8_weights"])
        inputs = sorted(
            {
                "/".join(i.rsplit("/", 2)[-2:]) if "/" in i else f"tensor {i}"
                for c in copies
                for i in c["inputs_of_users"]
            }
        )
        note += (
            f" Of the {sizes['toy']['int8_per_tensor'] - sizes['random']['int8_per_tensor']:,} bytes the toy file has "
            f"over the random-init one, {dup:,} are second copies of int8 weight matrices ({shapes}), used by "
            f"{' / '.join(str(c['users']) for c in copies)} op(s) whose input is "
            f"{' / '.join(f'`{i}`' for i in inputs)}, and {a['constants'].get('int32', 0):,} are int32 biases. "
            "The first unrolled step multiplies the zero initial state by the recurrent kernel; that input has an "
            "empty calibrated range, and with a non-zero "
            "recurrent bias (zero at random init) the converter stores a rescaled kernel copy for that one step. "
            "So the ratio depends on training: check it on the real trained model (the export reports it)."
        )
    e = res["agreement"][f"T{p}:toy"]["stripped_vs_int8_per_tensor"]
    note += (
        f" Tensor names take {a['tensor_name_bytes']:,} bytes "
        f"({a['tensor_name_bytes'] / sizes['toy']['int8_per_tensor']:.0%} of the file). With them stripped "
        f"(`flatbuffer_utils.strip_strings`; {e['identical_fraction']:.0%} of the scores identical) the shipped "
        f"file is {a['stripped_bytes'] / sizes['toy']['float']:.3f}× the float file as converted, "
        f"{a['stripped_bytes'] / float_stripped:.3f}× the float file stripped alike"
        + (
            f"; removing the extra copies as well would give ~{(a['stripped_bytes'] - dup) / float_stripped:.2f}×."
            if dup
            else "."
        )
    )
    pc_ratio = sizes["toy"]["int8_per_channel"] / sizes["toy"]["float"]
    note += (
        f" Per-channel is {pc_ratio:.2f}× float (toy): its constants are the same, but "
        f"{pc['per_channel_tensors'].get('int32', 0)} int32 bias tensors of the unrolled steps each "
        f"carry a scale and zero point per channel ({pc['quantization_scales']:,} scale entries against "
        f"{a['quantization_scales']:,} per-tensor)."
    )
    return note


def _threads_note(view: _View) -> str:
    sp, p = view.speed, SHAPES["paper"]
    quiet = [_x(sp(f"{INT8}:q256", t, 2), sp(f"{INT8}:q256", t, 1)) for t in (p, 1)]
    loaded = [_x(sp(f"{INT8}:b256", t, 2), sp(f"{INT8}:b256", t, 1)) for t in (p, 1)]
    note = (
        f"- **A second thread** (int8 LiteRT, batch {BATCH}, T={p} / T=1): {loaded[0]} / {loaded[1]} over all runs, "
        f"while other processes used a median {np.median(view.others_cpu()):.0%} of the CPU"
    )
    if "–" in quiet:
        return note + f"; no run was quiet enough (others ≤ {QUIET:.0%}) for both thread counts to compare."
    note += f"; {quiet[0]} / {quiet[1]} in quiet runs (others ≤ {QUIET:.0%})."
    if sp(f"{INT8}:q256", p, 2) > sp(f"{INT8}:q256", p, 1) and sp(f"{INT8}:b256", p, 2) < sp(f"{INT8}:b256", p, 1):
        note += (
            " A second thread pays only when a core is free: a thread that waits for a busy core holds the whole batch "
            "up. On a gateway that also runs the broker and the agent, 1 thread is the safer default."
        )
    return note


def _notes(res: dict[str, Any], view: _View) -> list[str]:
    """'What this means', written from the numbers so that a re-run cannot leave stale prose behind."""
    p, sp = SHAPES["paper"], view.speed
    mem = {k: v["stages_mb"]["batch256"]["VmHWM"] for k, v in res["memory"].items() if "stages_mb" in v}
    agree = res["agreement"][f"T{p}:toy"]["int8_per_tensor_vs_float"]
    agree1 = res["agreement"]["T1:toy"]["int8_per_tensor_vs_float"]
    lines = [
        "",
        "## What this means",
        "",
        f"- **Batching decides the agent's speed.** int8 LiteRT at T={p}, 1 thread: one window per call gives "
        f"{_k(sp(f'{INT8}:b1', p, 1))} windows/s, batches of {BATCH} give {_k(sp(f'{INT8}:b256', p, 1))} "
        f"({_x(sp(f'{INT8}:b256', p, 1), sp(f'{INT8}:b1', p, 1), 1)}); at T=1 "
        f"{_x(sp(f'{INT8}:b256', 1, 1), sp(f'{INT8}:b1', 1, 1), 1)}. Keras is worse at batch 1: `predict` costs "
        f"{_ms(view.case('keras:predict', p, 1)['batch1_ms']['median'])} ms per call at T={p} and "
        f"{_ms(view.case('keras:predict', 1, 1)['batch1_ms']['median'])} ms at T=1 (per-call set-up), eager "
        f"`model(x)` {_ms(view.case('keras:call', p, 1)['batch1_ms']['median'])} ms at T={p}.",
        f"- **int8 pays.** At T={p}, batch {BATCH}, 1 thread, int8 LiteRT is "
        f"{_x(sp(f'{INT8}:b256', p, 1), sp(f'{FLOAT}:b256', p, 1), 1)} float TFLite and "
        f"{_x(sp(f'{INT8}:b256', p, 1), sp(f'{KERAS}:b256', p, 1), 1)} Keras `predict_on_batch`; at T=1 "
        f"{_x(sp(f'{INT8}:b256', 1, 1), sp(f'{FLOAT}:b256', 1, 1), 1)} and "
        f"{_x(sp(f'{INT8}:b256', 1, 1), sp(f'{KERAS}:b256', 1, 1), 1)}. With the toy weights the shipped int8 "
        f"file agrees with float on {agree['label_agreement_at_0.5']:.1%} of labels at T={p} (mean abs Δscore "
        f"{agree['mean_abs_diff']:.3f}) and {agree1['label_agreement_at_0.5']:.1%} at T=1.",
        _threads_note(view),
    ]
    e = res["agreement"][f"T{p}:toy"]
    if "tflite_runtime_vs_litert_int8_per_tensor" in e and view.case("tflite_runtime:int8_per_tensor", p, 1):
        ref = f"ai_edge_litert:{REFERENCE}:b256"
        same_ref = e["tflite_runtime_vs_litert_no_xnnpack_int8_per_tensor"]["identical_fraction"]
        same = e["tflite_runtime_vs_litert_int8_per_tensor"]["identical_fraction"]
        lines.append(
            f"- **tflite-runtime 2.14 is a slow and numerically different fallback.** Its int8 T={p} file runs at "
            f"{_x(sp('tflite_runtime:int8_per_tensor:b256', p, 1), sp(f'{INT8}:b256', p, 1))} of LiteRT's windows/s "
            f"(float: {_x(sp('tflite_runtime:float:b256', p, 1), sp(f'{FLOAT}:b256', p, 1))}). Its int8 scores "
            f"match LiteRT *without* XNNPACK on {same_ref:.1%} of windows but LiteRT with XNNPACK on only {same:.1%}"
            f", and LiteRT itself drops to {_x(sp(ref, p, 1), sp(f'{INT8}:b256', p, 1))} without XNNPACK: 2.14 "
            "evidently runs this int8 graph on its builtin kernels, not through XNNPACK. Consequence: the bundle "
            "self-test (identical int8 outputs, recorded "
            f"with LiteRT) fails on a tflite-runtime gateway unless every self-test window is among the {same:.0%} "
            "that match. Its process is smaller "
            f"({mem.get('tflite_runtime', 0):.0f} MB peak against {mem.get('ai_edge_litert', 0):.0f} MB)."
        )
    lines += [
        _size_note(res),
        f"- **Memory.** A process with the agent's interpreter wrapper and the int8 T={p} model peaks at "
        f"{mem.get('ai_edge_litert', 0):.0f} MB after a batch of {BATCH}; TensorFlow with the Keras model at "
        f"{mem.get('tensorflow', 0):.0f} MB.",
        "",
    ]
    return lines


def _report(res: dict[str, Any]) -> str:
    view = _View(res)
    sections = [_header(res, view), _size_section(res), _speed_sections(view), _memory_section(res)]
    sections += [_agreement_section(res), _notes(res, view)]
    return "\n".join(line for section in sections for line in section)


def _main(args: argparse.Namespace) -> None:
    plan = QUICK if args.quick else FULL
    started, t0 = datetime.now(UTC), _now()
    command = "python bench/inference.py" + (" --quick" if args.quick else "")
    log = lambda msg: print(f"[{_now() - t0:6.0f} s] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="edge-ids-bench-"))
    for t in SHAPES.values():
        for w in WEIGHT_SETS:
            _paths(workdir, t, w)["dir"].mkdir(parents=True, exist_ok=True)
    out = Path(args.out) if args.out else (workdir if args.quick else RESULTS)
    res: dict[str, Any] = {"command": command, "date": started.strftime("%Y-%m-%d %H:%M UTC"), "plan": asdict(plan)}
    res["machine"], res["loadavg_before"] = _machine(), _loadavg()
    log(f"work directory {workdir}; load average {res['loadavg_before']}")
    py = sys.executable
    res["prepare"] = _run_child(py, workdir, "prepare", *(["--quick"] if args.quick else []))
    log("models built, toy-trained and converted")
    tflrt_py = args.tflite_runtime_python
    with_tflrt = Path(tflrt_py).exists()
    res["tflite_runtime"] = {"python": tflrt_py} if with_tflrt else {"skipped": f"no interpreter at {tflrt_py}"}
    res["memory"] = {}
    for runtime, python in [("ai_edge_litert", py), ("tensorflow", py)] + (
        [("tflite_runtime", tflrt_py)] if with_tflrt else []
    ):
        try:
            res["memory"][runtime] = _run_child(python, workdir, "probe", "--runtime", runtime, timeout=600)
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
        res["agreement"] = _measure_agreement(workdir, workers)
        log("agreement scores done")
        res["bench"] = _rounds(_cases(with_tflrt), workers, plan, log)
    finally:
        for w in workers.values():
            w.close()
    res["loadavg_after"], res["seconds"] = _loadavg(), _now() - t0
    res["workdir"] = str(workdir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "inference.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / "inference.md").write_text(_report(res))
    log(f"wrote {out / 'inference.md'} and {out / 'inference.json'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke check: few repetitions, results in the work directory")
    ap.add_argument("--out", help="results directory (default bench/results; with --quick the work directory)")
    ap.add_argument("--workdir", help="where models and logs go (default: a new temporary directory)")
    ap.add_argument("--tflite-runtime-python", default=TFLRT_PYTHON, help="python of a venv with tflite-runtime")
    ap.add_argument("--render", metavar="JSON", help="only re-render the .md beside an inference.json")
    ap.add_argument("--child", choices=("prepare", "worker", "probe"), help=argparse.SUPPRESS)
    ap.add_argument("--runtime", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args)
    elif args.render:
        Path(args.render).with_suffix(".md").write_text(_report(json.loads(Path(args.render).read_text())))
    else:
        _main(args)


if __name__ == "__main__":
    main()
