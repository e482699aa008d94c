"""Estimate a profile's full cost from measured training-step times at its real input shape."""

from __future__ import annotations

import math
import time

import numpy as np

from trainer.config import Profile
from trainer.models import build_model, compile_model


def step_seconds(name: str, shape: tuple[int, int], batch: int, steps: int, **hp) -> float:
    """Median seconds per training step (after one warm-up step) on random windows."""
    model = compile_model(build_model(name, shape, **hp))
    rng = np.random.default_rng(0)
    x = rng.random((batch, *shape), dtype=np.float32)
    y = rng.integers(0, 2, size=(batch, 1)).astype(np.float32)
    model.train_on_batch(x, y)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def estimate(profile: Profile, *, rows: int, steps: int = 5) -> dict[str, float]:
    """Print and return the estimated hours of training and of the grid search on ``rows`` cleaned rows."""
    shape = (profile.window.length, profile.features.top_k)
    fit_rows = rows * (1 - profile.split.test_size) * (1 - profile.train.validation_split)
    out: dict[str, float] = {}
    print(f"profile {profile.name}: input {shape}, {rows:,} rows → {fit_rows:,.0f} windows per training epoch")
    for name in dict.fromkeys([profile.model.name, *profile.compare]):
        sec = step_seconds(name, shape, profile.train.batch_size, steps)
        per_epoch = math.ceil(fit_rows / profile.train.batch_size) * sec
        out[f"train_{name}_hours"] = per_epoch * profile.train.epochs / 3600
        print(
            f"  {name}: {sec * 1000:.0f} ms/step at batch {profile.train.batch_size} → {per_epoch / 60:.1f} min/epoch,"
            f" ≤ {out[f'train_{name}_hours']:.1f} h for {profile.train.epochs} epochs (early stopping ends sooner)"
        )
    g = profile.grid
    grid_sec = 0.0
    for batch in g.batch_size:
        sec = step_seconds(profile.model.name, shape, batch, steps)
        combos = len(g.learning_rate) * len(g.optimizer) * len(g.num_layers) * len(g.num_dense_layers)
        grid_sec += combos * g.epochs * math.ceil(fit_rows / batch) * sec
        print(f"  grid, batch {batch}: {sec * 1000:.0f} ms/step (3 recurrent layers, an upper bound)")
    out["grid_hours"] = grid_sec / 3600
    print(f"  grid search ({len(g.batch_size) * combos} combinations × {g.epochs} epochs): ≤ {out['grid_hours']:.1f} h")
    return out
