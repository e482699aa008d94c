"""A loaded model with its preprocessing: parsed flow records in, one score per flow out."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.category import Category, CategoryModel
from agent.records import FlowRecord
from ids_core import artifacts
from ids_core.interpreter import ModelLoadError, TFLiteModel
from ids_core.preprocess import PreprocessSpec, Quantization, SpecError, StreamWindows

log = logging.getLogger(__name__)

MODEL_FILES = artifacts.MODEL_FILES  # a trainer's output directory, a bundle slot
SPEC_FILE = artifacts.SPEC


class ModelMismatchError(ValueError):
    """The model file and its spec disagree (input shape, dtype, quantization), or the model is not int8."""


@dataclass
class Scorer:
    """The int8 model, its spec, and the per-stream window state the spec defines."""

    model: TFLiteModel
    spec: PreprocessSpec
    windows: StreamWindows
    source: str = ""
    category: CategoryModel | None = None  # the optional attack-category model (agent.category)
    categorical: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        if not self.model.is_int8 or self.model.input_quantization is None:
            raise ModelMismatchError(
                f"expected a full-integer int8 model, got input dtype {self.model.input_dtype.name}"
                + ("" if self.model.input_quantization else " without quantization")
            )
        for side in ("input", "output"):
            in_model, in_spec = getattr(self.model, f"{side}_quantization"), getattr(self.spec, f"{side}_quantization")
            if in_spec is not None and not _same_quantization(in_model, in_spec):
                raise ModelMismatchError(f"model {side} quantization {in_model} != spec {side} quantization {in_spec}")
        if tuple(self.model.input_shape) != self.spec.input_shape:
            raise ModelMismatchError(
                f"model input shape {self.model.input_shape} != spec input shape {self.spec.input_shape}"
            )
        if tuple(self.model.output_shape) != (1,):
            raise ModelMismatchError(f"model output shape {self.model.output_shape} != (1,)")
        self.categorical = tuple(self.spec.transform.encoders)

    @classmethod
    def load(
        cls,
        directory: str | Path,
        *,
        runtime: str = "auto",
        threads: int = 1,
        max_keys: int = 4096,
        max_batch: int = 256,
    ) -> Scorer:
        """Load the model (``model_int8.tflite``, or ``model.tflite`` in a bundle slot) and ``spec.json``."""
        directory = Path(directory)
        if not directory.is_dir():
            raise ModelLoadError(f"{directory}: not a directory")
        try:
            spec = PreprocessSpec.load(directory / SPEC_FILE)
        except SpecError as e:
            raise SpecError(e if str(directory) in str(e) else f"{directory / SPEC_FILE}: {e}") from None
        model_path = next((directory / n for n in MODEL_FILES if (directory / n).exists()), directory / MODEL_FILES[0])
        model = TFLiteModel(model_path, num_threads=threads, runtime=runtime, max_batch=max_batch)
        pad = model.quantize(np.zeros(1, dtype=np.float32))[0]  # a padding row is the input's encoding of 0.0
        windows = StreamWindows(
            spec.window_length, len(spec.features), max_keys=max_keys, dtype=model.input_dtype, pad=pad
        )
        category = CategoryModel.load(directory, spec, runtime=runtime)
        try:
            scorer = cls(model, spec, windows, source=str(directory), category=category)
        except ModelMismatchError as e:
            raise ModelMismatchError(f"{model_path} and {SPEC_FILE}: {e}") from None
        log.info(
            "model %s %s (sha256 %s…, %s, input %s) loaded from %s",
            spec.model_name, spec.model_version, model.sha256[:12], model.runtime, spec.input_shape, directory,
        )  # fmt: skip
        return scorer

    @property
    def identity(self) -> dict[str, Any]:
        """Name, version and sha256 of the model, as carried in every alert."""
        return {"name": self.spec.model_name, "version": self.spec.model_version, "sha256": self.model.sha256}

    def same_preprocessing(self, other: Scorer) -> bool:
        """True when ``other`` builds windows the same way (so stream history can carry over)."""
        a, b = self.spec.to_dict(), other.spec.to_dict()
        keys = ("features", "scaler", "encoders", "window", "input")  # input: quantization of the kept history
        return all(a.get(k) == b.get(k) for k in keys)

    def adopt_windows(self, previous: Scorer) -> None:
        """Keep ``previous``'s stream history when the preprocessing is identical (a model hot swap)."""
        if self.same_preprocessing(previous):
            self.windows = previous.windows
        else:
            log.info("new model preprocesses differently: window history starts afresh")

    def raw_matrix(self, records: Sequence[FlowRecord]) -> np.ndarray:
        """Raw feature matrix of ``records``, categorical columns label-encoded with the spec's classes."""
        raw = np.stack([r.values for r in records]) if records else np.empty((0, len(self.spec.features)))
        if self.categorical:
            raw = raw.copy()
            feats = self.spec.features
            for name in self.categorical:
                j = feats.index(name)
                raw[:, j] = self.spec.transform.encoders[name].transform([r.categories.get(name, "") for r in records])
        return raw

    def model_inputs(self, records: Sequence[FlowRecord]) -> np.ndarray:
        """Model-ready windows ``(n, T, F)`` for ``records`` in arrival order; advances the stream state.

        Each flow's vector is quantized once and the windows are gathered from quantized history.
        """
        vectors = self.model.quantize(self.spec.transform.transform(self.raw_matrix(records)))
        return self.windows.push([r.key for r in records], vectors)

    def score(self, records: Sequence[FlowRecord]) -> np.ndarray:
        """One score in [0, 1] per record."""
        return self.infer(records)[1]

    def categorize(self, records: Sequence[FlowRecord]) -> list[Category] | None:
        """The attack category of each of ``records`` (flows over the threshold); None without a category model."""
        if self.category is None:
            return None
        raw = self.raw_matrix(records)
        return self.category.classify(self.spec.transform.transform(raw), raw)

    def infer(self, records: Sequence[FlowRecord]) -> tuple[np.ndarray, np.ndarray]:
        """The model inputs ``(n, T, F)`` built for ``records`` and one score in [0, 1] per record."""
        if not records:
            return np.empty((0, *self.spec.input_shape), dtype=self.model.input_dtype), np.empty(0, dtype=np.float32)
        inputs = self.model_inputs(records)
        return inputs, self.model.scores(inputs)


def _same_quantization(a: Quantization | None, b: Quantization) -> bool:
    """Equal zero points and scales (the spec's scale is the model's float32 scale written as JSON)."""
    return a is not None and a.zero_point == b.zero_point and abs(a.scale - b.scale) <= 1e-6 * abs(b.scale)
