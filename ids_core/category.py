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

Class codes (format ``/3``): the main vector codes a port or the protocol as its share of *malicious* flows, which
is about 1 for every attack's ports and so tells the categories nothing. A category spec may add, for such columns,
one number per class: the value's smoothed share of each category among the malicious training flows
(:class:`ClassCodes`, fitted by the trainer, computed from the flow's raw value on the gateway). The model input
is then the main vector followed by those codes (:meth:`CategorySpec.model_input`). Measured on the sample:
0.82 → 0.957 category accuracy on flagged attack flows, 3 seeds (``bench/results/category.md``).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ids_core.preprocess import (
    FeatureTransform,
    PreprocessSpec,
    Quantization,
    SpecError,
    code_lookup,
    read_spec_json,
    smoothed_shares,
)

CATEGORY_SPEC_FORMAT = "edge-ids/category-spec/2"  # /2: the model outputs logits (/1: softmax, refused)
CATEGORY_SPEC_FORMAT_CODES = "edge-ids/category-spec/3"  # /3: /2 + class codes; written only when there are some
CATEGORY_SPEC_FORMATS = (CATEGORY_SPEC_FORMAT, CATEGORY_SPEC_FORMAT_CODES)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities of dequantized logits ``(n, classes)`` (float32)."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return (z / z.sum(axis=-1, keepdims=True)).astype(np.float32)


def transform_sha256(transform: FeatureTransform) -> str:
    """Digest of a feature transform (features, scaler, encoders): the identity of the preprocessed vector."""
    return hashlib.sha256(json.dumps(transform.to_dict(), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True, eq=False)
class ClassCodes:
    """A numeric column whose values are categories (a port, the protocol) → one number per attack class.

    Fitted on the malicious training flows: a value seen in at least ``min_count`` of them gets, per class, the
    share of its flows in that class, smoothed toward the class's overall share ``default``:
    ``(flows of the class + smoothing * default) / (count + smoothing)``. Rarer, unseen and non-finite values get
    ``default``. Codes are rounded to 6 decimals when fitted, so the trainer uses exactly what the spec carries.
    """

    values: np.ndarray  # (v,) ascending, finite
    codes: np.ndarray  # (v, classes)
    default: np.ndarray  # (classes,)

    def __post_init__(self) -> None:
        v, c, d = (np.asarray(a, dtype=np.float64) for a in (self.values, self.codes, self.default))
        if v.ndim != 1 or d.ndim != 1 or c.shape != (len(v), len(d)):
            raise SpecError(f"class codes: expected (values,), (values, classes), (classes,), got {v.shape}, "
                            f"{c.shape}, {d.shape}")  # fmt: skip
        if not (np.isfinite(v).all() and np.isfinite(c).all() and np.isfinite(d).all()):
            raise SpecError("class codes: values, codes and default must be finite")
        if (np.diff(v) <= 0).any():
            raise SpecError("class codes: values must be strictly ascending")
        for name, a in (("values", v), ("codes", c), ("default", d)):
            object.__setattr__(self, name, a)

    @property
    def n_classes(self) -> int:
        return len(self.default)

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, n_classes: int, *, min_count: int, smoothing: float) -> ClassCodes:
        """Codes for the values of ``x`` (one raw column) from the class indexes ``y`` of the same rows."""
        y = np.asarray(y, dtype=np.int64)
        prior = np.bincount(y, minlength=n_classes) / max(len(y), 1)
        one_hot = np.eye(n_classes)[y]
        values, codes = smoothed_shares(x, one_hot, prior, min_count=min_count, smoothing=smoothing)
        return cls(values, np.round(codes, 6), np.round(prior, 6))

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Raw values ``(n,)`` → codes ``(n, classes)`` (float64)."""
        return code_lookup(self.values, self.codes, self.default, x)

    def to_dict(self) -> dict[str, Any]:
        return {"values": self.values.tolist(), "codes": self.codes.tolist(), "default": self.default.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassCodes:
        codes = np.asarray(d["codes"], dtype=np.float64)
        default = np.asarray(d["default"], dtype=np.float64)
        if codes.size == 0:
            codes = codes.reshape(0, len(default))
        return cls(np.asarray(d["values"], dtype=np.float64), codes, default)


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
    # class codes of some main features (ports, protocol): appended to the main vector, in feature order
    class_codes: dict[str, ClassCodes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise SpecError(f"category classes: expected at least 2 distinct names, got {list(self.classes)}")
        if not self.features:
            raise SpecError("category features: expected at least one feature, got none")
        if not (math.isfinite(self.min_probability) and 0.0 <= self.min_probability < 1.0):
            raise SpecError(f"category min_probability: expected a value in [0, 1), got {self.min_probability}")
        unknown = sorted(set(self.class_codes) - set(self.features))
        if unknown:
            raise SpecError(f"category class codes: expected columns among the features, got {unknown}")
        for name, codes in self.class_codes.items():
            if codes.n_classes != len(self.classes):
                raise SpecError(f"category class codes of {name}: expected {len(self.classes)} classes, "
                                f"got {codes.n_classes}")  # fmt: skip

    @property
    def coded_columns(self) -> tuple[str, ...]:
        """The columns with class codes, in feature order (the order of their blocks in the model input)."""
        return tuple(f for f in self.features if f in self.class_codes)

    @property
    def input_shape(self) -> tuple[int]:
        return (len(self.features) + len(self.class_codes) * len(self.classes),)

    def model_input(self, vectors: np.ndarray, raw: np.ndarray | None = None) -> np.ndarray:
        """The model's float input ``(n, input_shape)``: the main transform's vectors ``(n, F)``, then the class
        codes of the coded columns' raw values (``raw``: the main spec's raw matrix of the same flows, needed only
        when the spec has class codes)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != len(self.features):
            raise ValueError(f"expected (n, {len(self.features)}) vectors, got {vectors.shape}")
        if not self.class_codes:
            return vectors
        if raw is None:
            raise ValueError("this category model needs the flows' raw values (class codes)")
        raw = np.asarray(raw, dtype=np.float64)
        if raw.shape != vectors.shape:
            raise ValueError(f"expected raw values of shape {vectors.shape}, got {raw.shape}")
        blocks = [self.class_codes[c].transform(raw[:, self.features.index(c)]) for c in self.coded_columns]
        return np.hstack([vectors, *(b.astype(np.float32) for b in blocks)])

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
        codes = {"class_codes": {k: v.to_dict() for k, v in self.class_codes.items()}} if self.class_codes else {}
        return {
            "format": CATEGORY_SPEC_FORMAT_CODES if self.class_codes else CATEGORY_SPEC_FORMAT,
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
            **codes,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, d: Any) -> CategorySpec:
        if not isinstance(d, dict) or d.get("format") not in CATEGORY_SPEC_FORMATS:
            got = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise SpecError(f"not a category spec this gateway reads (format must be one of {CATEGORY_SPEC_FORMATS}, "
                            f"got {got!r})")  # fmt: skip
        if ("class_codes" in d) != (d["format"] == CATEGORY_SPEC_FORMAT_CODES):
            raise SpecError(f"category spec: class codes belong to format {CATEGORY_SPEC_FORMAT_CODES!r} only")
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
                class_codes={str(k): ClassCodes.from_dict(v) for k, v in d.get("class_codes", {}).items()},
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
