"""The ``prepare`` child (TensorFlow): SYNTHETIC flows, the transform, random-init int8 models and specs per
shape, written into the work directory."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from agent_plan import ALERT_ALL_THRESHOLD, FEATURES, MODEL, NO_ALERT_THRESHOLD, SEED, SHAPES, Plan
from agent_processes import BenchError, now


def prepare(workdir: Path, plan: Plan) -> dict[str, Any]:
    """SYNTHETIC flows → records (as flowmeter.replay) → transform → random-init int8 models + specs per shape."""
    import keras

    from flowmeter.replay import read_flows, records
    from ids_core.columns import CONSTANT_COLUMNS, NUMERIC_COLUMNS
    from ids_core.interpreter import TFLiteModel
    from ids_core.preprocess import FeatureTransform, PreprocessSpec, gather_windows, window_indices
    from trainer.convert import run_conversion
    from trainer.models import build_model
    from trainer.synthetic import write_csv

    csv_path = write_csv(workdir / f"SYNTHETIC-iotid20-{plan.flow_rows}.csv", plan.flow_rows, seed=SEED)
    recs = [rec for rec, _ in records(read_flows(csv_path), "bench")]
    head = json.dumps({k: v for k, v in recs[0].items() if k not in ("seq", "sensor")}, separators=(",", ":"))
    if json.dumps(recs[0], separators=(",", ":")) != head[:-1] + ',"seq":0,"sensor":"bench"}':  # see Flows.record
        raise BenchError("flowmeter.replay's record layout changed: seq and sensor are no longer the last keys")
    finite = [r for r in recs if all(type(v) is not float or math.isfinite(v) for v in r.values())]
    for r in finite:  # seq and sensor are set per trial (same key order as flowmeter.replay.records)
        del r["seq"], r["sensor"]
    (workdir / "flows.jsonl").write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in finite))
    features = [c for c in NUMERIC_COLUMNS if c not in CONSTANT_COLUMNS][:FEATURES]
    raw = np.array([[r[c] for c in features] for r in finite], dtype=np.float64)
    transform = FeatureTransform.fit(features, raw, log_scale=True)
    vectors = transform.transform(raw)
    keys = [r["Src_IP"] for r in finite]
    info: dict[str, Any] = {
        "flows": len(recs),
        "flows_dropped_nonfinite": len(recs) - len(finite),
        "src_ips": len(set(keys)),
        "mean_record_bytes": float(np.mean([len(json.dumps(r, separators=(",", ":"))) for r in finite[:2000]])),
        "features": features,
    }
    for t in SHAPES.values():
        d = workdir / f"T{t}"
        (d / "int8").mkdir(parents=True, exist_ok=True)
        windows = gather_windows(vectors, window_indices(keys if t > 1 else [""] * len(keys), t))
        rng = np.random.default_rng(SEED + t)
        np.save(d / "representative.npy", windows[np.sort(rng.choice(len(windows), 256, replace=False))])
        np.save(d / "raw_windows.npy", windows[:2048])
        keras.utils.set_random_seed(SEED)
        model = build_model(MODEL, (t, FEATURES))
        np.savez(d / "weights.npz", **{f"w{i}": w for i, w in enumerate(model.get_weights())})
        start = now()
        conversion = run_conversion(
            {
                "model": MODEL,
                "input_shape": [t, FEATURES],
                "weights": str(d / "weights.npz"),
                "representative": str(d / "representative.npy"),
                "targets": [{"kind": "int8", "per_channel": False, "path": str(d / "int8" / "model_int8.tflite")}],
            },
            d,
        )
        convert_seconds = now() - start
        m = TFLiteModel(d / "int8" / "model_int8.tflite", num_threads=1)
        scores = m.predict(windows[:2048])
        ops = m.op_summary()
        for variant, threshold in (("int8", NO_ALERT_THRESHOLD), ("int8-alerts", ALERT_ALL_THRESHOLD)):
            vd = d / variant
            vd.mkdir(exist_ok=True)
            if variant != "int8":
                shutil.copy(d / "int8" / "model_int8.tflite", vd / "model_int8.tflite")
            PreprocessSpec(
                transform=transform,
                window_length=t,
                window_key=("Src_IP",) if t > 1 else (),
                threshold=threshold,
                model_name=MODEL,
                model_version=f"bench-random-init-T{t}",
                input_quantization=m.input_quantization,
                output_quantization=m.output_quantization,
                extra={"note": "random-init weights and SYNTHETIC flows: for speed measurements only"},
            ).save(vd / "spec.json")
        info[f"T{t}"] = {
            "params": int(model.count_params()),
            "graph": conversion.get("graph"),  # trainer.convert's default: the hoisted graph (trainer.hoisted)
            "convert_seconds": convert_seconds,
            "int8_bytes": (d / "int8" / "model_int8.tflite").stat().st_size,
            "float_ops": ops["float_tensors"],
            "input_quantization": asdict(m.input_quantization) if m.input_quantization else None,
            "score_percentiles_0_50_100": [float(v) for v in np.percentile(scores, [0, 50, 100])],
            f"alert_fraction_at_{NO_ALERT_THRESHOLD}": float((scores > NO_ALERT_THRESHOLD).mean()),
            f"alert_fraction_at_{ALERT_ALL_THRESHOLD}": float((scores > ALERT_ALL_THRESHOLD).mean()),
        }
    return info
