"""The ``worker`` child (loads every model of one runtime at one thread count, answers measurement requests) and
the ``probe`` child (peak RSS of a fresh process)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import vm
from inference_plan import (
    BATCH,
    FEATURES,
    MODEL,
    REFERENCE,
    SEED,
    SHAPES,
    TFLITE_VARIANTS,
    TFLRT_VARIANTS,
    model_paths,
    now,
    random_windows,
)


def _keras_fns(workdir: Path, threads: int) -> dict[tuple[str, int], Callable[[np.ndarray], Any]]:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    from trainer.models import build_model

    fns: dict[tuple[str, int], Callable[[np.ndarray], Any]] = {}
    for t in SHAPES.values():
        model = build_model(MODEL, (t, FEATURES))
        w = np.load(model_paths(workdir, t, "toy")["weights"])
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
            path = model_paths(workdir, t, "toy")["int8_per_tensor" if v == REFERENCE else v]
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
    end = now() + min_seconds
    while len(ms) < min_calls or (now() < end and len(ms) < 5000):
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
    calls, start, (busy0, own0) = 0, now(), _cpu_seconds()
    while True:
        fn(x)
        calls += 1
        elapsed = now() - start
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


def worker(workdir: Path, runtime: str, threads: int) -> None:
    """Answer one JSON request per stdin line on the original stdout; everything else printed goes to stderr."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    start = now()
    fns = _keras_fns(workdir, threads) if runtime == "keras" else _tflite_fns(workdir, runtime, threads)
    rng = np.random.default_rng(SEED + 1000)
    inputs = {t: (random_windows(rng, 16, t)[:, None], random_windows(rng, BATCH, t)) for t in SHAPES.values()}
    versions = {"numpy": np.__version__}
    if runtime == "tflite_runtime":
        import tflite_runtime

        versions["tflite_runtime"] = tflite_runtime.__version__
    proto.write(json.dumps({"ready": True, "load_seconds": now() - start, "versions": versions}) + "\n")
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


def probe(workdir: Path, runtime: str) -> dict[str, Any]:
    """VmHWM/VmRSS after each stage: start (python + numpy), import, load int8/Keras T=62, batch 1, batch 256."""
    stages = {"start": vm()}
    rng = np.random.default_rng(SEED)
    x256 = random_windows(rng, BATCH, SHAPES["paper"])
    if runtime == "tensorflow":
        import tensorflow  # noqa: F401

        stages["import"] = vm()
        from trainer.models import build_model

        model = build_model(MODEL, (SHAPES["paper"], FEATURES))
        w = np.load(model_paths(workdir, SHAPES["paper"], "toy")["weights"])
        model.set_weights([w[f"w{i}"] for i in range(len(w.files))])
        stages["load"] = vm()
        predict: Callable[[np.ndarray], Any] = model.predict_on_batch
    else:
        from ids_core.interpreter import TFLiteModel, load_runtime

        load_runtime(runtime)
        stages["import"] = vm()
        tfl = TFLiteModel(model_paths(workdir, SHAPES["paper"], "toy")["int8_per_tensor"], runtime=runtime)
        stages["load"] = vm()
        predict = tfl.predict
    predict(x256[:1])
    stages["batch1"] = vm()
    predict(x256)
    stages["batch256"] = vm()
    heavy = ("tensorflow", "keras", "ai_edge_litert", "tflite_runtime")
    return {"modules": sorted(m for m in heavy if m in sys.modules), "stages_mb": stages}
