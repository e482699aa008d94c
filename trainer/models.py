"""The paper's models (Section III-C) and the benchmark CNN of Ullah et al., as Keras builders.

Every builder takes ``unroll``: the loop form trains fast, the unrolled twin (same weights) is what
converts to a full-integer int8 TFLite graph with builtin ops only (a Keras GRU/LSTM otherwise
becomes a WHILE loop that the int8 converter cannot handle).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import layers

RECURRENT_TYPES = ("gru", "lstm", "gru")  # the hybrid pattern: GRU → LSTM → GRU
DEFAULT_UNITS = (256, 128, 64)


def _recurrent(kind: str, units: int, *, last: bool, unroll: bool, bidirectional: bool) -> layers.Layer:
    cls = layers.GRU if kind == "gru" else layers.LSTM
    layer = cls(units, return_sequences=not last, unroll=unroll)
    return layers.Bidirectional(layer) if bidirectional else layer


def hybrid_rnn(
    input_shape: tuple[int, int],
    *,
    units: Sequence[int] = DEFAULT_UNITS,
    num_layers: int = 3,
    dense: Sequence[int] = (128, 64),
    dropout: float = 0.2,
    bidirectional: bool = False,
    unroll: bool = False,
    name: str = "uni_hybrid",
) -> keras.Model:
    """Uni-Hybrid (or Bi-Hybrid) RNN: GRU256 → LSTM128 → GRU64, Dropout 0.2 after each, BatchNorm after
    the first two, Dense 128 relu → Dense 64 relu → Dense 1 sigmoid. ``num_layers`` and ``dense``
    shrink it for the grid search (Table II)."""
    inputs = keras.Input(shape=input_shape, name="window")
    x = inputs
    for i in range(num_layers):
        last = i == num_layers - 1
        x = _recurrent(RECURRENT_TYPES[i], units[i], last=last, unroll=unroll, bidirectional=bidirectional)(x)
        if i < 2 and not last:
            x = layers.BatchNormalization()(x)
        x = layers.Dropout(dropout)(x)
    for width in dense:
        x = layers.Dense(width, activation="relu")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="score")(x)
    return keras.Model(inputs, outputs, name=name)


def ullah_cnn(input_shape: tuple[int, int], *, unroll: bool = False, name: str = "ullah_cnn") -> keras.Model:
    """The benchmark of Ullah et al.: two convolutional layers and three dense layers.

    The window's flows are laid end to end as one feature sequence for the 1-D convolutions.
    """
    del unroll  # no recurrent layers
    inputs = keras.Input(shape=input_shape, name="window")
    x = layers.Reshape((input_shape[0] * input_shape[1], 1))(inputs)
    x = layers.Conv1D(32, 3, activation="relu", padding="same")(x)
    x = layers.Conv1D(64, 3, activation="relu", padding="same")(x)
    x = layers.MaxPooling1D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.2)(x)
    x = layers.Dense(64, activation="relu")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="score")(x)
    return keras.Model(inputs, outputs, name=name)


def build_model(name: str, input_shape: tuple[int, int], *, unroll: bool = False, **hp: Any) -> keras.Model:
    """Build a model by its profile name: ``uni-hybrid``, ``bi-hybrid`` or ``ullah-cnn``."""
    if name == "uni-hybrid":
        return hybrid_rnn(input_shape, unroll=unroll, **hp)
    if name == "bi-hybrid":
        return hybrid_rnn(input_shape, unroll=unroll, bidirectional=True, name="bi_hybrid", **hp)
    if name == "ullah-cnn":
        return ullah_cnn(input_shape, unroll=unroll)
    raise ValueError(f"unknown model {name!r}")


def randomize_normalization(model: keras.Model, seed: int, bias_std: float) -> None:
    """Random but fixed biases and BatchNorm statistics (kernels keep their initialiser's values): an untrained model
    whose exported graph computes something non-trivial, for export benchmarks and tests."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for w in layer.weights:
            if "bias" in w.path or "beta" in w.path or "mean" in w.path:
                w.assign(rng.normal(0, bias_std, w.shape).astype(np.float32))
            elif "variance" in w.path or "gamma" in w.path:
                w.assign(rng.uniform(0.5, 1.5, w.shape).astype(np.float32))


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    return {
        "adam": keras.optimizers.Adam,
        "adamax": keras.optimizers.Adamax,
        "nadam": keras.optimizers.Nadam,
    }[name](learning_rate=learning_rate)


def compile_model(model: keras.Model, optimizer: str = "adam", learning_rate: float = 1e-3) -> keras.Model:
    """Algorithm 1, step 1: binary cross-entropy; accuracy, precision, recall and AUC tracked."""
    model.compile(
        optimizer=make_optimizer(optimizer, learning_rate),
        loss="binary_crossentropy",
        metrics=[
            "accuracy",
            keras.metrics.Precision(name="precision"),
            keras.metrics.Recall(name="recall"),
            keras.metrics.AUC(name="auc"),
        ],
    )
    return model
