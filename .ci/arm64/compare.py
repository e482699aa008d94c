"""The shipped int8 model's raw outputs on x86 and on arm64, compared byte for byte.

    compare.py inputs RUN DATA OUT       host (x86, trainer installed): int8 input sets of RUN (trained on DATA,
                                         as ``iotids-train run --data``) → OUT/inputs.npz
    compare.py score MODEL INPUTS OUT    any machine (numpy + ids_core only; runs inside the arm64 rootfs):
                                         raw int8 outputs of MODEL on every set, with XNNPACK (the agent's
                                         interpreter) and with the reference kernels → OUT (.npz + .json)
    compare.py diff X86 OTHER LABEL      every XNNPACK output of OTHER must equal X86's byte for byte; prints
                                         where and by how much they differ; exit 1 if any does (the reference
                                         kernels' outputs are compared too, for information only)

Input sets: ``selftest`` (the run's selftest_inputs.npy, what a bundle install checks), ``test`` (the whole test
split's windows, from ``trainer.pipeline.prepare`` of the run's profile, quantized by the model) and
``representative`` (the run's calibration windows); with a category model in the run also ``category_selftest``
and ``category_test`` (its inputs on the test split, made by its spec). ``score`` also checks the self-test
outputs against the run's expected ones when it finds them beside MODEL.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

CATEGORY_MODEL = "category_int8.tflite"  # ids_core.artifacts.CATEGORY_MODEL (this file also runs without the repo)


def make_inputs(run: Path, data: str, out: Path) -> int:
    """int8 input sets of a training run (host only: imports the trainer)."""
    from ids_core.interpreter import TFLiteModel
    from ids_core.preprocess import PreprocessSpec
    from trainer.config import load_profile
    from trainer.pipeline import prepare

    model = TFLiteModel(run / "model_int8.tflite")
    spec = PreprocessSpec.load(run / "spec.json")
    profile = load_profile("quick", overrides=[f"data={data}"])
    prep = prepare(profile, out / "prepare")
    if prep.selection.transform.features != spec.transform.features:
        raise SystemExit("prepare() selected other features than the run: not the run's test split")
    windows = prep.test.windows()
    sets = {
        "selftest": np.load(run / "selftest_inputs.npy"),
        "test": model.quantize(windows),
        "representative": model.quantize(np.load(run / "keras" / "representative.npy")),
    }
    if (run / CATEGORY_MODEL).exists():  # the optional attack-category model: its vectors and the test split
        from ids_core.category import CategorySpec
        from trainer.category import newest_raw, newest_vectors

        category = TFLiteModel(run / CATEGORY_MODEL)
        category_spec = CategorySpec.load(run / "category.json")  # its input: main vector + class codes of raw values
        raw = newest_raw(prep.test_frame, prep.test, prep.selection.transform)
        sets["category_selftest"] = np.load(run / "category_selftest_inputs.npy")
        sets["category_test"] = category.quantize(category_spec.model_input(newest_vectors(prep.test), raw))
    np.savez(out / "inputs.npz", **sets)
    print("input sets: " + ", ".join(f"{k} {v.shape}" for k, v in sets.items()))
    return 0


def score(model_path: Path, inputs: Path, out: Path) -> int:
    """Raw outputs with XNNPACK and with the reference kernels, and the time XNNPACK took per set. Sets named
    ``category_*`` run on the category model beside MODEL."""
    import platform

    from ids_core.interpreter import TFLiteModel

    sets = dict(np.load(inputs))
    models = {}
    for kind, path in (("main", model_path), ("category", model_path.parent / CATEGORY_MODEL)):
        if kind == "main" or path.exists():
            models[kind] = (TFLiteModel(path, max_batch=256), TFLiteModel(path, use_default_delegates=False))
    outputs, info = {}, {"machine": platform.machine(), "python": platform.python_version(), "sets": {}}
    for name, x in sets.items():
        xnn, ref = models["category" if name.startswith("category_") else "main"]
        start = time.perf_counter()
        outputs[name] = xnn.invoke_raw(x)
        seconds = time.perf_counter() - start
        outputs[f"{name}.reference"] = ref.invoke_raw(x)
        diff = np.abs(outputs[name].astype(np.int32) - outputs[f"{name}.reference"].astype(np.int32))
        info["sets"][name] = {
            "windows": len(x),
            "xnnpack_seconds": round(seconds, 4),
            "reference_kernels_differ": int(np.count_nonzero(diff.reshape(len(x), -1).any(axis=1))),
            "reference_kernels_max_steps": int(diff.max(initial=0)),
        }
    expected = model_path.parent / "selftest_outputs.npy"
    if expected.exists() and "selftest" in outputs:
        info["selftest_equals_shipped_outputs"] = bool(np.array_equal(outputs["selftest"], np.load(expected)))
    expected = model_path.parent / "category_selftest_outputs.npy"
    if expected.exists() and "category_selftest" in outputs:
        same = np.array_equal(outputs["category_selftest"], np.load(expected))
        info["category_selftest_equals_shipped_outputs"] = bool(same)
    np.savez(out.with_suffix(".npz"), **outputs)
    out.with_suffix(".json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info))
    return 0


def diff(x86_path: Path, other_path: Path, label: str) -> int:
    """Byte-for-byte comparison of the XNNPACK outputs; where and how much they differ."""
    x86, other = dict(np.load(x86_path)), dict(np.load(other_path))
    failed = 0
    for name in sorted(k for k in x86 if not k.endswith(".reference")):
        a, b = x86[name], other.get(name)
        if b is None or a.shape != b.shape or a.dtype != b.dtype:
            print(f"{label} {name}: expected {a.dtype} {a.shape}, got {None if b is None else (b.dtype, b.shape)}")
            failed += 1
            continue
        if a.tobytes() == b.tobytes():
            print(f"{label} {name}: {len(a)} windows, every output byte equal to x86")
            continue
        d = np.abs(a.astype(np.int32) - b.astype(np.int32)).reshape(len(a), -1)
        rows = np.flatnonzero(d.any(axis=1))
        hist = {int(s): int(np.count_nonzero(d.max(axis=1) == s)) for s in np.unique(d.max(axis=1)) if s}
        print(
            f"{label} {name}: {len(rows)} of {len(a)} windows differ from x86, max {int(d.max())} int8 steps, "
            f"windows by max steps {hist}, first rows {rows[:10].tolist()}"
        )
        failed += 1
    for name in sorted(k for k in x86 if k.endswith(".reference") and k in other):
        d = np.abs(x86[name].astype(np.int32) - other[name].astype(np.int32)).reshape(len(x86[name]), -1)
        print(
            f"{label} {name} (informational; LiteRT without XNNPACK): {int(np.count_nonzero(d.any(axis=1)))} of "
            f"{len(d)} windows differ from x86's reference kernels, max {int(d.max(initial=0))} int8 steps"
        )
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["inputs"] and len(argv) == 4:
        return make_inputs(Path(argv[1]), argv[2], Path(argv[3]))
    if argv[:1] == ["score"] and len(argv) == 4:
        return score(Path(argv[1]), Path(argv[2]), Path(argv[3]))
    if argv[:1] == ["diff"] and len(argv) == 4:
        return diff(Path(argv[1]), Path(argv[2]), argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
