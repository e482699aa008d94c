"""Probation of a freshly activated model: inference errors, non-finite or constant scores mean roll back."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Probation:
    """Health of a freshly activated model; a failure means: roll back."""

    version: int
    until: float  # wall clock
    min_windows: int
    windows: int = 0
    lo: float = np.inf
    hi: float = -np.inf
    distinct: set[int] = field(default_factory=set)  # hashes of the different input windows seen

    def observe(self, scores: np.ndarray, error: Exception | None, inputs: np.ndarray | None = None) -> str | None:
        """Feed one batch; returns the reason to roll back, or None.

        A constant score fails the model only once it was seen for ``min_windows`` *different* input windows:
        a flood of identical flows legitimately gets one score.
        """
        if error is not None:
            return f"inference error: {error}"
        if len(scores) and not np.all(np.isfinite(scores)):
            return "model produced non-finite scores"
        self.windows += len(scores)
        if len(scores):
            self.lo, self.hi = min(self.lo, float(scores.min())), max(self.hi, float(scores.max()))
            if inputs is not None and len(self.distinct) < self.min_windows:
                self.distinct.update(hash(w.tobytes()) for w in inputs)
        evidence = len(self.distinct) if inputs is not None else self.windows
        if evidence >= self.min_windows and self.hi - self.lo == 0.0:
            return f"health check: constant score {self.hi} over {evidence} different windows"
        return None

    def passed(self, now: float) -> bool:
        return now >= self.until
