"""TFLite conversion, run as a child process: ``python -m trainer.convert REQUEST.json``.

The TFLite converter and its int8 calibrator can crash the interpreter process (a segfault with
plain Keras RNNs); in a child process such a crash is an error message for the trainer, not its end.

The trained (loop) model's weights are loaded into the same architecture built with ``unroll=True``,
which converts to builtin ops only: no WHILE loop, no Flex ops, zero float ops with int8 I/O. Recurrent models
are rebuilt by ``trainer.hoisted`` instead (request key ``hoist_input_projections``, default true): the same
maths with each layer's input projection computed for all steps in one op, only the recurrence unrolled. Tensor
names are stripped from every file (``strip_names``): at T=62 they are ~30 % of the int8 file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np


class ConversionError(RuntimeError):
    """The converter failed or crashed; the message carries its exit status and last output."""


def run_conversion(request: dict[str, Any], workdir: Path, timeout: float = 3600) -> dict[str, Any]:
    """Run the conversion described by ``request`` in a child process and return its summary."""
    req_path = workdir / "convert_request.json"
    req_path.write_text(json.dumps(request))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, "-m", "trainer.convert", str(req_path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise ConversionError(f"TFLite conversion failed ({how}):\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _convert(request: dict[str, Any]) -> dict[str, Any]:
    import tensorflow as tf

    from trainer.models import build_model

    shape = tuple(request["input_shape"])
    weights = np.load(request["weights"])
    hoisted = _hoisted_graph(request, shape, [weights[f"w{i}"] for i in range(len(weights.files))])
    if hoisted is None:
        model = build_model(request["model"], shape, unroll=True, **request.get("build_params", {}))
        model.set_weights([weights[f"w{i}"] for i in range(len(weights.files))])
    rep = np.load(request["representative"]).astype(np.float32)

    def representative():
        for i in range(len(rep)):
            yield [rep[i : i + 1]]

    summary: dict[str, Any] = {"graph": "unrolled" if hoisted is None else "hoisted"}
    for target in request["targets"]:
        if hoisted is None:
            conv = tf.lite.TFLiteConverter.from_keras_model(model)
        else:
            conv = tf.lite.TFLiteConverter.from_concrete_functions([hoisted.concrete], hoisted)
        if target["kind"] == "int8":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = representative
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
            conv._experimental_disable_per_channel = not target.get("per_channel", False)
        else:
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        data = conv.convert()
        if request.get("strip_names", True):
            data = _strip_names(data)
        Path(target["path"]).write_bytes(data)
        summary[target["path"]] = len(data)
    return summary


def _hoisted_graph(request: dict[str, Any], shape: tuple[int, ...], weights: list[np.ndarray]) -> Any:
    """The hoisted-projection graph (``trainer.hoisted``) when requested and the model has recurrent layers."""
    if not request.get("hoist_input_projections", True):
        return None
    from trainer import hoisted
    from trainer.models import build_model

    model = build_model(request["model"], shape, unroll=False, **request.get("build_params", {}))
    model.set_weights(weights)
    try:
        return hoisted.build_hoisted(model)
    except hoisted.UnsupportedModel:
        return None


def _strip_names(data: bytes) -> bytes:
    """Drop tensor and subgraph names (a third of an unrolled T=62 graph); the agent addresses tensors by index."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    flatbuffer_utils.strip_strings(model)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


if __name__ == "__main__":
    print(json.dumps(_convert(json.loads(Path(sys.argv[1]).read_text()))))
