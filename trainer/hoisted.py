"""The export graph with hoisted input projections: a trained Keras RNN rebuilt from builtin ops.

The unrolled Keras twin multiplies every step's input by the layer's input kernel, so the TFLite graph holds one
fully-connected op per step and gate group, and XNNPACK packs that kernel once per op (T times). Here each
recurrent layer's input projection ``x_t·W + b`` is computed for all T steps at once (one FULLY_CONNECTED on the
``(batch·T, features)`` tensor); only the recurrent half ``h_{t-1}·U`` stays in the unrolled loop. Same maths:

- GRU (Keras ``reset_after=True``, gates z, r, h): ``z, r = σ(x·W_zr + b_zr + b'_zr + h·U_zr)``,
  ``hh = tanh(x·W_h + b_h + r ⊙ (h·U_h + b'_h))``, ``h ← hh + z ⊙ (h − hh)``. The recurrent bias of z and r joins
  the input bias (a sum either way); that of hh stays inside the reset product.
- LSTM (gates i, f, c, o): ``i, f, o = σ(x·W + h·U + b)``, ``g = tanh(…)``, ``c ← f ⊙ c + i ⊙ g``,
  ``h = o ⊙ tanh(c)``. Sigmoid gates are regrouped (i, f, o) so one LOGISTIC covers them.
- The zero initial state is used symbolically: step 0 has no recurrent product at all (at T = 1 the recurrent
  kernels are not in the graph).
- BatchNormalization between recurrent layers (inference statistics) is folded into the next input projection;
  Dropout is the identity at inference.

``build_hoisted(model)`` returns a ``tf.Module`` whose ``serve`` concrete function takes ``(batch, T, F)`` float
windows and returns ``(batch, 1)`` scores; ``trainer.convert`` turns it into TFLite with the same converter
settings as the Keras path. Supported: the Uni-/Bi-Hybrid models of ``trainer.models`` (GRU, LSTM,
Bidirectional, BatchNormalization, Dropout, Dense); anything else raises ``UnsupportedModel``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class UnsupportedModel(ValueError):
    """The model has a layer the hoisted graph does not rebuild (use the unrolled Keras twin)."""


def _affine_fold(w: np.ndarray, b: np.ndarray, affine: tuple[np.ndarray, np.ndarray] | None):
    """``(x·s + t)·W + b`` as ``x·W' + b'``."""
    if affine is None:
        return w, b
    scale, shift = affine
    return scale[:, None] * w, b + shift @ w


def _bn_affine(layer: Any, value: Callable[[Any], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Inference BatchNormalization as ``x·scale + shift`` (float64)."""
    mean = value(layer.moving_mean).astype(np.float64)
    var = value(layer.moving_variance).astype(np.float64)
    gamma = value(layer.gamma).astype(np.float64) if layer.scale else np.ones_like(mean)
    beta = value(layer.beta).astype(np.float64) if layer.center else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + layer.epsilon)
    return scale, beta - mean * scale


class _Builder:
    """Accumulates the graph's constants; ``run`` emits TF ops for one input batch."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.T = int(model.input_shape[1])
        self.F = int(model.input_shape[2])
        self._values = {id(v): np.asarray(v.numpy()) for v in model.weights}  # read eagerly, before tracing

    def value(self, variable: Any) -> np.ndarray:
        return self._values[id(variable)]

    # -- recurrent layers -------------------------------------------------------------------------------------
    def _project(self, tf: Any, seq: Any, width: int, w: np.ndarray, b: np.ndarray, groups: list[int]) -> list[Any]:
        """One FULLY_CONNECTED over all steps, ``(B, T, width) → (B, T, K)``; returns per gate group a function of
        the step giving that group's ``(B, k)`` slice. Slices, not SPLIT + UNPACK: those would hold two more copies
        of the whole projection in the arena (+15 MB at batch 256, T = 62)."""
        flat = tf.reshape(seq, [-1, width])
        y = tf.matmul(flat, tf.constant(w, tf.float32)) + tf.constant(b, tf.float32)
        k = int(w.shape[1])
        y = tf.reshape(y, [-1, self.T * k])  # 2-D slices (no shrink axis): XNNPACK takes them
        bounds = [int(v) for v in np.cumsum([0, *groups])]
        return [(lambda t, lo=lo, hi=hi: y[:, t * k + lo : t * k + hi]) for lo, hi in itertools.pairwise(bounds)]

    @staticmethod
    def _recur(tf: Any, h: Any, u: Any, b: Any | None, groups: list[int]) -> list[Any]:
        """The recurrent half of one step: one FULLY_CONNECTED ``h·U (+ b)`` split into gate groups."""
        m = tf.matmul(h, u)
        return tf.split(m if b is None else m + b, groups, axis=-1)

    def _gru(self, tf, cell, seq, width, affine, order: list[int]) -> list[Any]:
        if not cell.reset_after:
            raise UnsupportedModel("GRU with reset_after=False")
        _check_activations(cell, "tanh", "sigmoid")
        u = cell.units
        kernel, rec = self.value(cell.kernel).astype(np.float64), self.value(cell.recurrent_kernel)
        bias = self.value(cell.bias).astype(np.float64) if cell.use_bias else np.zeros((2, 3 * u))
        b_in, b_rec = bias[0], bias[1]
        # z and r: input and recurrent bias summed in the projection; hh: the recurrent bias stays in the product
        w, b = _affine_fold(kernel, np.r_[b_in[: 2 * u] + b_rec[: 2 * u], b_in[2 * u :]], affine)
        x_zr, x_h = self._project(tf, seq, width, w, b, [2 * u, u])
        u_all = tf.constant(rec)
        b_r = tf.constant(np.r_[np.zeros(2 * u), b_rec[2 * u :]].astype(np.float32))
        b_rec_h = tf.constant(b_rec[2 * u :].astype(np.float32))
        h, out = None, [None] * self.T
        for t in order:
            if h is None:
                z, r = tf.split(tf.sigmoid(x_zr(t)), 2, axis=-1)
                hh = tf.tanh(x_h(t) + r * b_rec_h)
                h = hh - z * hh
            else:
                m_zr, m_h = self._recur(tf, h, u_all, b_r, [2 * u, u])
                z, r = tf.split(tf.sigmoid(x_zr(t) + m_zr), 2, axis=-1)
                hh = tf.tanh(x_h(t) + r * m_h)
                h = hh + z * (h - hh)
            out[t] = h
        return out

    def _lstm(self, tf, cell, seq, width, affine, order: list[int]) -> list[Any]:
        _check_activations(cell, "tanh", "sigmoid")
        u = cell.units
        kernel, rec = self.value(cell.kernel).astype(np.float64), self.value(cell.recurrent_kernel)
        bias = self.value(cell.bias).astype(np.float64) if cell.use_bias else np.zeros(4 * u)
        cols = np.r_[0 : 2 * u, 3 * u : 4 * u, 2 * u : 3 * u]  # Keras gate order i, f, c, o → i, f, o | c
        w, b = _affine_fold(kernel[:, cols], bias[cols], affine)
        x_ifo, x_c = self._project(tf, seq, width, w, b, [3 * u, u])
        u_all = tf.constant(rec[:, cols])
        h = c = None
        out = [None] * self.T
        for t in order:
            if h is None:  # f is not needed (c starts at 0); slices, since a split's unused output gets no int8 range
                gates = tf.sigmoid(x_ifo(t))
                i, o = gates[:, :u], gates[:, 2 * u :]
                c = i * tf.tanh(x_c(t))
            else:
                m_ifo, m_c = self._recur(tf, h, u_all, None, [3 * u, u])
                i, f, o = tf.split(tf.sigmoid(x_ifo(t) + m_ifo), 3, axis=-1)
                c = f * c + i * tf.tanh(x_c(t) + m_c)
            h = o * tf.tanh(c)
            out[t] = h
        return out

    def _recurrent(self, tf, layer, seq, width, affine) -> tuple[list[Any], int, bool]:
        """Run one (possibly bidirectional) recurrent layer; returns per-step outputs (time order) or [last]."""
        import keras

        if isinstance(layer, keras.layers.Bidirectional):
            if layer.merge_mode != "concat":
                raise UnsupportedModel(f"Bidirectional merge_mode {layer.merge_mode!r}")
            fwd = self._recurrent_one(tf, layer.forward_layer, seq, width, affine, backward=False)
            bwd = self._recurrent_one(tf, layer.backward_layer, seq, width, affine, backward=True)
            units = layer.forward_layer.cell.units + layer.backward_layer.cell.units
            seqs = layer.forward_layer.return_sequences
            return [tf.concat([a, b], axis=-1) for a, b in zip(fwd, bwd, strict=True)], units, seqs
        return (
            self._recurrent_one(tf, layer, seq, width, affine, backward=bool(layer.go_backwards)),
            layer.cell.units,
            layer.return_sequences,
        )

    def _recurrent_one(self, tf, layer, seq, width, affine, *, backward: bool) -> list[Any]:
        import keras

        if getattr(layer, "stateful", False):
            raise UnsupportedModel("stateful RNN")
        order = list(range(self.T))[::-1] if backward else list(range(self.T))
        cell = layer.cell
        if isinstance(cell, keras.layers.GRUCell):
            out = self._gru(tf, cell, seq, width, affine, order)
        elif isinstance(cell, keras.layers.LSTMCell):
            out = self._lstm(tf, cell, seq, width, affine, order)
        else:
            raise UnsupportedModel(f"recurrent cell {type(cell).__name__}")
        if layer.return_sequences:
            return out  # Bidirectional aligns the backward outputs with the input's time order, as here
        return [out[order[-1]]]

    # -- the whole model --------------------------------------------------------------------------------------
    def run(self, tf: Any, x: Any) -> Any:
        import keras

        seq, width = x, self.F  # a (B, T, width) tensor while it is a sequence
        vec = None  # a (B, width) tensor after the last recurrent layer
        affine: tuple[np.ndarray, np.ndarray] | None = None
        for layer in self.model.layers:
            if isinstance(layer, keras.layers.InputLayer | keras.layers.Dropout):
                continue
            if isinstance(layer, keras.layers.BatchNormalization):
                if vec is not None or affine is not None:
                    raise UnsupportedModel("BatchNormalization outside the recurrent stack")
                affine = _bn_affine(layer, self.value)
                continue
            if isinstance(layer, keras.layers.GRU | keras.layers.LSTM | keras.layers.Bidirectional):
                if vec is not None:
                    raise UnsupportedModel("a recurrent layer after the sequence was reduced")
                outs, width, sequences = self._recurrent(tf, layer, seq, width, affine)
                affine = None
                if sequences:
                    seq = tf.stack(outs, axis=1)
                else:
                    vec = outs[0]
                continue
            if isinstance(layer, keras.layers.Dense):
                if vec is None or affine is not None:
                    raise UnsupportedModel("Dense on a sequence")
                w, b = self.value(layer.kernel), self.value(layer.bias) if layer.use_bias else None
                vec = tf.matmul(vec, tf.constant(w))
                if b is not None:
                    vec = vec + tf.constant(b)
                vec = _activation(tf, layer.activation)(vec)
                continue
            raise UnsupportedModel(f"layer {type(layer).__name__}")
        if vec is None:
            raise UnsupportedModel("the model does not reduce the sequence to a score")
        return vec


def _check_activations(cell: Any, act: str, rec: str) -> None:
    names = (getattr(cell.activation, "__name__", ""), getattr(cell.recurrent_activation, "__name__", ""))
    if names != (act, rec):
        raise UnsupportedModel(f"{type(cell).__name__} activations {names}, expected ({act!r}, {rec!r})")


def _activation(tf: Any, fn: Callable) -> Callable:
    name = getattr(fn, "__name__", "")
    table = {"relu": tf.nn.relu, "sigmoid": tf.sigmoid, "tanh": tf.tanh, "linear": lambda v: v}
    if name not in table:
        raise UnsupportedModel(f"Dense activation {name!r}")
    return table[name]


def supports(model: Any) -> bool:
    """Whether ``build_hoisted`` can rebuild ``model`` (a recurrent model of ``trainer.models``)."""
    import keras

    recurrent = keras.layers.GRU | keras.layers.LSTM | keras.layers.Bidirectional
    if not any(isinstance(layer, recurrent) for layer in model.layers):
        return False
    try:
        build_hoisted(model)
    except UnsupportedModel as err:
        log.info("hoisted graph not available: %s", err)
        return False
    return True


def build_hoisted(model: Any) -> Any:
    """A ``tf.Module`` whose ``serve`` (concrete function, input ``(None, T, F)`` float32) scores like ``model``."""
    import tensorflow as tf

    builder = _Builder(model)

    class Hoisted(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, builder.T, builder.F], tf.float32, name="window")])
        def serve(self, window):
            return builder.run(tf, window)

    module = Hoisted()
    module.concrete = module.serve.get_concrete_function()
    return module


def predict(module: Any, windows: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Float scores of the hoisted graph (TensorFlow), for checks against the Keras model."""
    parts: Iterable[Any] = (
        module.concrete(windows[s : s + chunk].astype(np.float32)).numpy() for s in range(0, len(windows), chunk)
    )
    return np.concatenate(list(parts)) if len(windows) else np.empty((0, 1), np.float32)
