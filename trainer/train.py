"""Algorithm 1: compile, early stopping on val_accuracy (best weights restored), best-model checkpoint, fit."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from trainer.config import Train
from trainer.models import build_model, compile_model
from trainer.windows import SplitWindows, WindowBatches

log = logging.getLogger(__name__)

MATERIALISE_LIMIT_BYTES = 2 << 30  # above this, windows are gathered per batch instead of held in memory


@dataclass
class TrainedModel:
    name: str
    model: keras.Model
    history: dict[str, list[float]]
    best_epoch: int
    stopped_epoch: int
    seconds: float
    build_params: dict[str, Any]


def validation_split(train: SplitWindows, fraction: float, seed: int = 0) -> tuple[SplitWindows, SplitWindows]:
    """A seeded random ``fraction`` of the training windows for validation.

    The paper used Keras' ``validation_split`` (the last fraction of the arrays) on arrays that
    ``train_test_split`` had shuffled, i.e. a random fraction. Our training windows are in stream
    (time) order, where the last fraction can be a single class; so we draw it at random, as they had.
    """
    order = np.random.default_rng(seed).permutation(len(train))
    cut = round(len(train) * (1.0 - fraction))
    return train.subset(np.sort(order[:cut])), train.subset(np.sort(order[cut:]))


def _inputs(split: SplitWindows, batch_size: int, *, shuffle: bool, seed: int) -> dict[str, Any]:
    t, f = split.shape
    if len(split) * t * f * 4 <= MATERIALISE_LIMIT_BYTES:
        out = {"x": split.windows(), "y": split.y, "batch_size": batch_size, "shuffle": shuffle}
        if split.weight is not None:
            out["sample_weight"] = split.weight
        return out
    return {"x": WindowBatches(split, batch_size, shuffle=shuffle, seed=seed)}


def _validation_data(val: dict[str, Any]) -> Any:
    if "y" not in val:
        return val["x"]
    return (val["x"], val["y"], val["sample_weight"]) if "sample_weight" in val else (val["x"], val["y"])


def train_model(
    name: str,
    train: SplitWindows,
    cfg: Train,
    out_dir: Path,
    *,
    seed: int = 42,
    verbose: int = 2,
    early_stopping: bool = True,
    extra_callbacks: tuple[keras.callbacks.Callback, ...] = (),
    **hp: Any,
) -> TrainedModel:
    """Train ``name`` on ``train`` per Algorithm 1; the best checkpoint is kept in ``out_dir``.

    ``early_stopping=False`` trains exactly ``cfg.epochs`` epochs without callbacks (the grid search);
    ``extra_callbacks`` are added either way (the grid reports each epoch to Ray Tune with one).
    """
    keras.utils.set_random_seed(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    fit_part, val_part = validation_split(train, cfg.validation_split, seed)
    model = compile_model(build_model(name, train.shape, **hp), cfg.optimizer, cfg.learning_rate)
    checkpoint = out_dir / f"{name}.best.keras"
    callbacks = (
        [
            keras.callbacks.EarlyStopping(
                monitor=cfg.monitor, patience=cfg.patience, restore_best_weights=True, verbose=1
            ),
            keras.callbacks.ModelCheckpoint(checkpoint, monitor=cfg.monitor, save_best_only=True),
        ]
        if early_stopping
        else []
    )
    if early_stopping and cfg.reduce_lr_patience:
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.5, patience=cfg.reduce_lr_patience, min_lr=1e-5
            )
        )
    val = _inputs(val_part, cfg.batch_size, shuffle=False, seed=seed)
    log.info(
        "training %s on %d windows of %s (validation %d), batch %d, up to %d epochs",
        name,
        len(fit_part),
        train.shape,
        len(val_part),
        cfg.batch_size,
        cfg.epochs,
    )
    start = time.perf_counter()
    hist = model.fit(
        **_inputs(fit_part, cfg.batch_size, shuffle=True, seed=seed),
        validation_data=_validation_data(val),
        epochs=cfg.epochs,
        steps_per_epoch=cfg.steps_per_epoch,
        callbacks=[*callbacks, *extra_callbacks],
        verbose=verbose,
    )
    seconds = time.perf_counter() - start
    history = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
    watched = history[cfg.monitor]
    best_epoch = int(np.argmin(watched) if cfg.monitor == "val_loss" else np.argmax(watched)) + 1
    log.info(
        "%s: best epoch %d by %s (val_accuracy %.4f) of %d (%.0f s)",
        name,
        best_epoch,
        cfg.monitor,
        history["val_accuracy"][best_epoch - 1],
        len(history["loss"]),
        seconds,
    )
    if early_stopping:
        (out_dir / f"{name}.history.json").write_text(json.dumps(history))
    return TrainedModel(name, model, history, best_epoch, len(history["loss"]), seconds, dict(hp))


def predict(model: keras.Model, split: SplitWindows, batch_size: int = 1024) -> np.ndarray:
    """Float scores of a Keras model for every window of ``split``."""
    t, f = split.shape
    if len(split) * t * f * 4 <= MATERIALISE_LIMIT_BYTES:
        return model.predict(split.windows(), batch_size=batch_size, verbose=0).reshape(-1)
    return model.predict(WindowBatches(split, batch_size, shuffle=False), verbose=0).reshape(-1)
