"""The ``prepare`` child: builds, toy-trains and converts the models; where the bytes of a file go (imports
TensorFlow)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from inference_plan import (
    FEATURES,
    MODEL,
    SEED,
    SHAPES,
    TFLITE_VARIANTS,
    WEIGHT_SETS,
    Plan,
    model_paths,
    now,
    random_windows,
)


def anatomy(path: Path) -> dict[str, Any]:
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


def prepare(workdir: Path, plan: Plan) -> dict[str, Any]:
    """Build, toy-train and convert the model for every shape; return sizes and timings."""
    import keras

    from trainer.convert import run_conversion
    from trainer.models import build_model, compile_model

    out: dict[str, Any] = {}
    for t in SHAPES.values():
        info: dict[str, Any] = {}
        rng = np.random.default_rng(SEED + t)
        np.save(workdir / f"T{t}" / "representative.npy", random_windows(rng, plan.representative_windows, t))
        evals = random_windows(rng, plan.eval_windows, t)
        np.save(workdir / f"T{t}" / "eval.npy", evals)
        keras.utils.set_random_seed(SEED)
        model = build_model(MODEL, (t, FEATURES))
        info["params"] = int(model.count_params())
        for weights in WEIGHT_SETS:
            p = model_paths(workdir, t, weights)
            if weights == "toy":  # a few epochs on the rule "the newest flow's feature 0 > 0.5"
                x = random_windows(rng, plan.train_windows, t)
                start = now()
                compile_model(model).fit(x, _toy_rule(x), epochs=plan.train_epochs, batch_size=64, verbose=0)
                info["toy_train_seconds"] = now() - start
                info["toy_eval_accuracy"] = float(
                    ((model.predict_on_batch(evals)[:, 0] > 0.5) == _toy_rule(evals)).mean()
                )
            np.savez(p["weights"], **{f"w{i}": w for i, w in enumerate(model.get_weights())})
            np.save(p["keras_scores"], model.predict_on_batch(evals)[:, 0])
            start = now()
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
                "convert_seconds": now() - start,
                "sizes": {v: p[v].stat().st_size for v in TFLITE_VARIANTS},
                "nonzero_bias_values": int(
                    sum(np.count_nonzero(v.numpy()) for v in model.weights if v.path.endswith("bias"))
                ),
                "anatomy": {v: anatomy(p[v]) for v in TFLITE_VARIANTS},
            }
        out[str(t)] = info
    return out
