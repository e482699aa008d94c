"""The attack-category model's spec: which classes, on which preprocessed input, with which int8 quantization.

The category model is a second, small int8 model that names the attack category (IoTID20 ``Cat``) of a flow
the main model flagged. Its input is the flow's own preprocessed vector — exactly what the main model's spec
makes (:class:`ids_core.preprocess.FeatureTransform`), the newest row of the main model's window — so this spec
does not repeat the transform: it names the features and the sha256 of the main spec's transform, and a
category model is used only beside the main spec it was trained with (:meth:`CategorySpec.check_against`).
Output: one int8 logit per class; the gateway turns them into probabilities with :func:`softmax` (numpy). The model
has no SOFTMAX op because XNNPACK's int8 SOFTMAX rounds differently on arm64 (one int8 step on 25 of 2,000 test
windows under qemu cortex-a72/a76, ``.ci/arm64``), which failed the bit-exact bundle self-test on every arm64
gateway; its FULLY_CONNECTED layers agree bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ids_core.preprocess import FeatureTransform, PreprocessSpec, Quantization, SpecError, read_spec_json

CATEGORY_SPEC_FORMAT = "edge-ids/category-spec/2"  # /2: the model outputs logits (/1: softmax)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities of dequantized logits ``(n, classes)`` (float32)."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return (z / z.sum(axis=-1, keepdims=True)).astype(np.float32)


def transform_sha256(transform: FeatureTransform) -> str:
    """Digest of a feature transform (features, scaler, encoders): the identity of the preprocessed vector."""
    return hashlib.sha256(json.dumps(transform.to_dict(), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class CategorySpec:
    """What the gateway needs besides the category model file (``category.json``)."""

    classes: tuple[str, ...]
    features: tuple[str, ...]
    transform_sha256: str
    model_version: str = "0"
    input_quantization: Quantization | None = None
    output_quantization: Quantization | None = None
    # An alert names the category when its probability reaches this (chosen by the trainer on validation rows);
    # below it the alert says the category is uncertain and still carries the best guess and its probability.
    min_probability: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise SpecError(f"category classes: expected at least 2 distinct names, got {list(self.classes)}")
        if not self.features:
            raise SpecError("category features: expected at least one feature, got none")
        if not (math.isfinite(self.min_probability) and 0.0 <= self.min_probability < 1.0):
            raise SpecError(f"category min_probability: expected a value in [0, 1), got {self.min_probability}")

    @property
    def input_shape(self) -> tuple[int]:
        return (len(self.features),)

    @property
    def output_shape(self) -> tuple[int]:
        return (len(self.classes),)

    def check_against(self, spec: PreprocessSpec) -> None:
        """Raise :class:`SpecError` unless ``spec`` (the main model's) makes this model's input vector."""
        if tuple(spec.features) != self.features:
            raise SpecError("category model: expected the main spec's features, got a different feature list")
        if transform_sha256(spec.transform) != self.transform_sha256:
            raise SpecError("category model: expected the main spec's transform (scaler, encoders), got another one")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": CATEGORY_SPEC_FORMAT,
            "model": {"version": self.model_version},
            "classes": list(self.classes),
            "features": list(self.features),
            "transform_sha256": self.transform_sha256,
            "input": {
                "shape": list(self.input_shape),
                "quantization": asdict(self.input_quantization) if self.input_quantization else None,
            },
            "output": {
                "shape": list(self.output_shape),
                "quantization": asdict(self.output_quantization) if self.output_quantization else None,
            },
            "min_probability": self.min_probability,
            **({"extra": self.extra} if self.extra else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, d: Any) -> CategorySpec:
        if not isinstance(d, dict) or d.get("format") != CATEGORY_SPEC_FORMAT:
            raise SpecError(f"not a category spec (format must be {CATEGORY_SPEC_FORMAT!r})")
        try:
            q_in, q_out = d["input"].get("quantization"), d["output"].get("quantization")
            spec = cls(
                classes=tuple(str(c) for c in d["classes"]),
                features=tuple(str(f) for f in d["features"]),
                transform_sha256=str(d["transform_sha256"]),
                model_version=str(d["model"]["version"]),
                input_quantization=Quantization(**q_in) if q_in else None,
                output_quantization=Quantization(**q_out) if q_out else None,
                min_probability=float(d.get("min_probability", 0.0)),
                extra=dict(d.get("extra", {})),
            )
            shapes = (list(d["input"]["shape"]), list(d["output"]["shape"]))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise SpecError(f"malformed category spec: {e!r}") from e
        if shapes != (list(spec.input_shape), list(spec.output_shape)):
            raise SpecError(f"category spec shapes {shapes} != (#features,), (#classes,)")
        return spec

    @classmethod
    def load(cls, path: str | Path) -> CategorySpec:
        return cls.from_dict(read_spec_json(path))

    @classmethod
    def from_bytes(cls, data: bytes) -> CategorySpec:
        try:
            return cls.from_dict(json.loads(data.decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise SpecError(f"category spec: not JSON: {e}") from e

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())
