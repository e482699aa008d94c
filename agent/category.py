"""The attack-category model on the gateway: names the category of the flows the main model flagged.

Optional: a model directory (a trainer run, a bundle slot) without ``category_int8.tflite`` has no category
model and its alerts carry no category. When the files are there they must be complete and consistent with the
main spec (same features and transform), else the directory does not load (like a bad main model).
Input: the flow's own preprocessed vector, made by the main spec's transform, followed by the class codes of its
raw port and protocol values when the spec has them (:meth:`ids_core.category.CategorySpec.model_input`); one
interpreter call per batch, only for the flows over the threshold.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ids_core import artifacts
from ids_core.category import CategorySpec, softmax
from ids_core.interpreter import ModelLoadError, TFLiteModel
from ids_core.preprocess import PreprocessSpec, SpecError

log = logging.getLogger(__name__)


UNCERTAIN = "(uncertain)"  # appended to a category below the spec's min_probability


class CategoryMismatchError(ValueError):
    """The category model, its spec and the main spec disagree (shape, dtype, quantization, features)."""


@dataclass(frozen=True)
class Category:
    """One flow's category: the most probable class, its probability, and whether it reaches the spec's bar."""

    name: str
    probability: float
    confident: bool

    @property
    def alert_attack(self) -> tuple[str, float]:
        """What an alert carries: ``(name, probability)``; below the spec's bar the name says it is a guess."""
        return (self.name if self.confident else f"{self.name} {UNCERTAIN}", self.probability)


@dataclass
class CategoryModel:
    model: TFLiteModel
    spec: CategorySpec

    def __post_init__(self) -> None:
        m, s = self.model, self.spec
        if not m.is_int8 or m.output_dtype != np.int8:
            raise CategoryMismatchError(f"expected a full-integer int8 category model, got input {m.input_dtype.name}")
        if tuple(m.input_shape) != s.input_shape or tuple(m.output_shape) != s.output_shape:
            raise CategoryMismatchError(
                f"category model shapes {m.input_shape} → {m.output_shape} != spec {s.input_shape} → {s.output_shape}"
            )
        for side in ("input", "output"):
            got, want = getattr(m, f"{side}_quantization"), getattr(s, f"{side}_quantization")
            if want is not None and (
                got is None or got.zero_point != want.zero_point or abs(got.scale - want.scale) > 1e-6 * want.scale
            ):
                raise CategoryMismatchError(f"category model {side} quantization {got} != spec {want}")

    @classmethod
    def load(cls, directory: str | Path, main: PreprocessSpec, *, runtime: str = "auto") -> CategoryModel | None:
        """The category model of ``directory``, checked against the main spec; None when the directory has none."""
        directory = Path(directory)
        present = [n for n in artifacts.CATEGORY_FILES[:2] if (directory / n).exists()]
        if not present:
            return None
        if len(present) < 2:
            missing = sorted(set(artifacts.CATEGORY_FILES[:2]) - set(present))
            raise ModelLoadError(f"{directory}: category model incomplete: {', '.join(missing)} missing")
        try:
            spec = CategorySpec.load(directory / artifacts.CATEGORY_SPEC)
            spec.check_against(main)
        except SpecError as e:
            raise SpecError(f"{directory / artifacts.CATEGORY_SPEC}: {e}") from None
        model = TFLiteModel(directory / artifacts.CATEGORY_MODEL, num_threads=1, runtime=runtime)
        try:
            loaded = cls(model, spec)
        except CategoryMismatchError as e:
            raise CategoryMismatchError(f"{directory / artifacts.CATEGORY_MODEL}: {e}") from None
        log.info("category model (%s) loaded from %s", ", ".join(spec.classes), directory)
        return loaded

    def classify(self, vectors: np.ndarray, raw: np.ndarray | None = None) -> list[Category]:
        """Preprocessed float vectors ``(n, F)`` (the main transform's output) and the same flows' raw matrix (the
        main spec's columns; needed when the spec has class codes) → one :class:`Category` each."""
        if not len(vectors):
            return []
        x = self.spec.model_input(vectors, raw)
        prob = softmax(self.model.dequantize(self.model.invoke_raw(self.model.quantize(x))))
        best = prob.argmax(axis=1)
        bar = self.spec.min_probability
        return [
            Category(self.spec.classes[i], round(float(p[i]), 6), float(p[i]) >= bar)
            for i, p in zip(best.tolist(), prob, strict=True)
        ]
