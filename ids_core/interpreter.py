"""One small interface over the TFLite interpreters the gateway can run.

``ai_edge_litert`` (LiteRT) is the default; ``tflite_runtime`` is the fallback for platforms without
LiteRT wheels. The rest of the agent only sees :class:`TFLiteModel`: float windows in, float scores
out. Quantization parameters always come from the model file, never from configuration.
"""

from __future__ import annotations

import collections
import hashlib
import importlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ids_core.preprocess import Quantization

log = logging.getLogger(__name__)

RUNTIMES = ("ai_edge_litert", "tflite_runtime")


class ModelLoadError(RuntimeError):
    """The model file cannot be loaded by any available runtime."""


def load_runtime(preferred: str = "auto") -> tuple[str, Any]:
    """Return ``(name, module)`` of the interpreter module: LiteRT first, then tflite-runtime."""
    names = RUNTIMES if preferred == "auto" else (preferred,)
    errors = []
    for name in names:
        if name not in RUNTIMES:
            raise ValueError(f"unknown runtime {name!r}; allowed: auto, {', '.join(RUNTIMES)}")
        try:
            return name, importlib.import_module(f"{name}.interpreter")
        except ImportError as e:
            errors.append(f"{name}: {e}")
    raise ModelLoadError("no TFLite runtime available (pip install ai-edge-litert): " + "; ".join(errors))


def _quant(detail: dict[str, Any]) -> Quantization | None:
    scale, zero_point = detail["quantization"]
    return Quantization(float(scale), int(zero_point)) if scale else None


AUTO_BATCH_STEPS = 2048  # ``max_batch`` 0: at most this many window steps per interpreter call


def auto_batch(input_shape: tuple[int, ...]) -> int:
    """Windows per interpreter call for ``max_batch`` 0: ⌊2048 / T⌋, at most 256 (256 at T=1, 33 at T=62). The
    activations grow with batch × T; at T=62 a batch of ~32 is as fast per window as 256 and ~30 MB smaller."""
    steps = input_shape[0] if len(input_shape) >= 2 else 1
    return max(1, min(256, AUTO_BATCH_STEPS // steps))


class TFLiteModel:
    """A loaded ``.tflite`` model that scores batches of windows ``(n, T, F)`` → scores ``(n,)``; a bigger batch
    than ``max_batch`` (0: :func:`auto_batch`) is run in chunks."""

    def __init__(
        self,
        model: str | Path | bytes,
        *,
        num_threads: int = 1,
        runtime: str = "auto",
        max_batch: int = 256,
        use_default_delegates: bool = True,
    ) -> None:
        self.content = model if isinstance(model, bytes) else Path(model).read_bytes()
        source = "" if isinstance(model, bytes) else f"{model}: "
        self.sha256 = hashlib.sha256(self.content).hexdigest()
        self.runtime, module = load_runtime(runtime)
        kwargs: dict[str, Any] = {"model_content": self.content, "num_threads": num_threads}
        if not use_default_delegates:
            kwargs["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            self._it = module.Interpreter(**kwargs)
            self._it.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelLoadError(f"{source}cannot load model ({self.runtime}): {e}") from e
        inp, out = self._it.get_input_details()[0], self._it.get_output_details()[0]
        self._in_index, self._out_index = inp["index"], out["index"]
        self.input_dtype, self.output_dtype = np.dtype(inp["dtype"]), np.dtype(out["dtype"])
        self.input_shape = tuple(int(d) for d in inp["shape"][1:])  # without the batch dimension
        self.output_shape = tuple(int(d) for d in out["shape"][1:])
        self.input_quantization, self.output_quantization = _quant(inp), _quant(out)
        self.max_batch = max_batch or auto_batch(self.input_shape)
        self._batch = int(inp["shape"][0])

    @property
    def is_int8(self) -> bool:
        return self.input_dtype == np.int8

    def quantize(self, windows: np.ndarray) -> np.ndarray:
        """Float windows → the model's input dtype (int8 with the file's scale and zero point)."""
        if self.input_quantization is None or not self.is_int8:
            return np.asarray(windows, dtype=self.input_dtype)
        return self.input_quantization.quantize(windows)

    def dequantize(self, raw: np.ndarray) -> np.ndarray:
        if self.output_quantization is None or self.output_dtype != np.int8:
            return raw.astype(np.float32)
        return self.output_quantization.dequantize(raw)

    def invoke_raw(self, inputs: np.ndarray) -> np.ndarray:
        """Run already-quantized inputs ``(n, *input_shape)``; returns raw outputs ``(n, *output_shape)``."""
        if inputs.shape[1:] != self.input_shape:
            raise ValueError(f"expected windows of shape {self.input_shape}, got {inputs.shape[1:]}")
        n = len(inputs)
        if n == 0:
            return np.empty((0, *self.output_shape), dtype=self.output_dtype)
        # equal chunks (the last one padded), so a batch costs at most one resize: a resize re-plans the graph
        size = -(-n // -(-n // self.max_batch))
        if size != self._batch:
            self._it.resize_tensor_input(self._in_index, [size, *self.input_shape])
            self._it.allocate_tensors()
            self._batch = size
        outs = []
        for start in range(0, n, size):
            chunk = np.ascontiguousarray(inputs[start : start + size], dtype=self.input_dtype)
            if len(chunk) < size:  # rows are scored independently: padding changes no other row's output
                chunk = np.concatenate([chunk, np.zeros((size - len(chunk), *self.input_shape), self.input_dtype)])
            self._it.set_tensor(self._in_index, chunk)
            self._it.invoke()
            outs.append(self._it.get_tensor(self._out_index).copy())
        return np.concatenate(outs)[:n]

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """Float windows ``(n, T, F)`` → float scores ``(n,)``."""
        return self.scores(self.quantize(windows))

    def scores(self, inputs: np.ndarray) -> np.ndarray:
        """Already-quantized windows ``(n, T, F)`` → float scores ``(n,)``."""
        return self.dequantize(self.invoke_raw(inputs)).reshape(len(inputs), -1)[:, 0]

    def op_summary(self) -> dict[str, Any]:
        """Ops of the graph (without delegates) with counts, and the dtypes of every tensor they touch."""
        _, module = load_runtime(self.runtime)
        it = module.Interpreter(
            model_content=self.content,
            experimental_op_resolver_type=module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        it.allocate_tensors()
        tensors = {t["index"]: np.dtype(t["dtype"]).name for t in it.get_tensor_details()}
        ops = it._get_ops_details()
        dtypes: dict[str, set[str]] = collections.defaultdict(set)
        for op in ops:
            for i in [*op["inputs"], *op["outputs"]]:
                if i >= 0 and i in tensors:
                    dtypes[op["op_name"]].add(tensors[i])
        counts = collections.Counter(op["op_name"] for op in ops)
        return {
            "ops": dict(sorted(counts.items())),
            "tensor_dtypes": {k: sorted(v) for k, v in sorted(dtypes.items())},
            "float_tensors": sorted(k for k, v in dtypes.items() if v & {"float32", "float16", "float64"}),
        }
