"""The verifier's default ``inspect_model``: a model's input/output shapes per the LiteRT interpreter."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def _interpreter_class() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise ImportError(
                "expected ai-edge-litert or tflite-runtime to inspect models, got neither installed"
            ) from None
    return Interpreter


def inspect_model(model: bytes) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Load ``model`` (TFLite flatbuffer bytes) and return its first input's and first output's shapes
    without the batch dimension, e.g. ``((4, 6), (1,))``. Raises whatever the interpreter raises for a
    model it cannot load."""
    interpreter = _interpreter_class()(model_content=bytes(model))
    interpreter.allocate_tensors()  # also proves every op resolves on this runtime
    in_shape = tuple(int(d) for d in interpreter.get_input_details()[0]["shape"][1:])
    out_shape = tuple(int(d) for d in interpreter.get_output_details()[0]["shape"][1:])
    log.debug("model shapes: input %s, output %s", in_shape, out_shape)
    return in_shape, out_shape
