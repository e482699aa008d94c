"""Export: float and full-integer int8 TFLite, the preprocessing spec, self-test vectors, int8-vs-float numbers."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ids_core import artifacts
from ids_core.interpreter import TFLiteModel
from ids_core.preprocess import FeatureTransform, PreprocessSpec
from trainer.convert import run_conversion
from trainer.train import TrainedModel
from trainer.windows import SplitWindows

log = logging.getLogger(__name__)

SHIPPED = artifacts.SHIPPED_MODEL


@dataclass
class ExportResult:
    out_dir: Path
    spec: PreprocessSpec
    sizes: dict[str, int]
    comparison: dict[str, Any]
    ops: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)
    shipped_scores: np.ndarray | None = None  # the shipped int8 model's scores on the test split


def load_tflite(path: Path, num_threads: int = 2) -> TFLiteModel:
    """A TFLite model file ready to score windows (the gateway agent's interpreter wrapper)."""
    return TFLiteModel(path, num_threads=num_threads)


def score_tflite(model: TFLiteModel, split: SplitWindows, chunk: int = 4096) -> np.ndarray:
    """Scores of a TFLite model for every window of ``split``, gathered ``chunk`` windows at a time."""
    parts = [model.predict(split.windows(slice(s, s + chunk))) for s in range(0, len(split), chunk)]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.float32)


def export_model(
    trained: TrainedModel,
    *,
    train: SplitWindows,
    test: SplitWindows,
    transform: FeatureTransform,
    window_key: list[str],
    keras_scores: np.ndarray,
    out_dir: Path,
    per_channel: bool,
    representative_windows: int,
    threshold: float,
    selftest_windows: int,
    model_version: str,
    seed: int,
    extra: dict[str, Any] | None = None,
    hoist_input_projections: bool = True,
) -> ExportResult:
    """Convert ``trained`` (float and int8, both int8 weight layouts), check int8 against float, write the spec."""
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / "keras"
    work.mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    rep_sel = np.sort(rng.choice(len(train), size=min(representative_windows, len(train)), replace=False))
    np.save(work / "representative.npy", train.windows(rep_sel))
    np.savez(work / "weights.npz", **{f"w{i}": w for i, w in enumerate(trained.model.get_weights())})
    files = {
        "float": out_dir / artifacts.FLOAT_MODEL,
        "int8_per_tensor": out_dir / "model_int8_per_tensor.tflite",
        "int8_per_channel": out_dir / "model_int8_per_channel.tflite",
    }
    log.info("converting %s to TFLite (float, int8 per-tensor, int8 per-channel) in a child process", trained.name)
    run_conversion(
        {
            "model": trained.name,
            "input_shape": list(train.shape),
            "build_params": trained.build_params,
            "weights": str(work / "weights.npz"),
            "representative": str(work / "representative.npy"),
            "hoist_input_projections": hoist_input_projections,
            "targets": [
                {"kind": "float", "path": str(files["float"])},
                {"kind": "int8", "per_channel": False, "path": str(files["int8_per_tensor"])},
                {"kind": "int8", "per_channel": True, "path": str(files["int8_per_channel"])},
            ],
        },
        work,
    )
    shipped_variant = "int8_per_channel" if per_channel else "int8_per_tensor"
    shipped = out_dir / SHIPPED
    shipped.write_bytes(files[shipped_variant].read_bytes())
    files["shipped"] = shipped

    y = test.y.astype(int)
    keras_pred = keras_scores > threshold
    comparison: dict[str, Any] = {"shipped": shipped_variant, "test_windows": len(test)}
    models, variant_scores = {}, {}
    for variant in ("float", "int8_per_tensor", "int8_per_channel"):
        m = models[variant] = TFLiteModel(files[variant], num_threads=2)
        s = variant_scores[variant] = score_tflite(m, test)
        comparison[variant] = {
            "runtime": m.runtime,
            "size_bytes": files[variant].stat().st_size,
            "accuracy": float(((s > threshold) == y).mean()),
            "label_agreement_with_keras": float(((s > threshold) == keras_pred).mean()),
            "max_abs_score_diff": float(np.abs(s - keras_scores).max()) if len(s) else 0.0,
            "mean_abs_score_diff": float(np.abs(s - keras_scores).mean()) if len(s) else 0.0,
        }
    comparison["keras_accuracy"] = float((keras_pred == y).mean())
    comparison["int8_vs_float_size_ratio"] = (
        comparison[shipped_variant]["size_bytes"] / comparison["float"]["size_bytes"]
    )
    comparison["accuracy_delta_int8_minus_keras"] = (
        comparison[shipped_variant]["accuracy"] - comparison["keras_accuracy"]
    )

    int8 = models[shipped_variant]
    spec = PreprocessSpec(
        transform=transform,
        window_length=train.shape[0],
        window_key=tuple(window_key),
        threshold=threshold,
        model_name=trained.name,
        model_version=model_version,
        input_quantization=int8.input_quantization,
        output_quantization=int8.output_quantization,
        extra=extra or {},
    )
    spec.save(out_dir / artifacts.SPEC)
    files["spec"] = out_dir / artifacts.SPEC

    sel = np.arange(min(selftest_windows, len(test)))
    q_in = int8.quantize(test.windows(sel))
    np.save(out_dir / artifacts.SELFTEST_INPUTS, q_in)
    np.save(out_dir / artifacts.SELFTEST_OUTPUTS, int8.invoke_raw(q_in))
    files["selftest_inputs"] = out_dir / artifacts.SELFTEST_INPUTS
    files["selftest_outputs"] = out_dir / artifacts.SELFTEST_OUTPUTS
    sizes = {k: p.stat().st_size for k, p in files.items()}
    log.info(
        "exported %s: int8 %d B (%.2f× float), label agreement with float %.4f",
        shipped,
        sizes["shipped"],
        comparison["int8_vs_float_size_ratio"],
        comparison[shipped_variant]["label_agreement_with_keras"],
    )
    return ExportResult(out_dir, spec, sizes, comparison, int8.op_summary(), files, variant_scores[shipped_variant])
