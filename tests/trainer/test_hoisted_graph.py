"""The hoisted-projection export graph (``trainer.hoisted``): the Keras model's maths, and the same int8 contract.

Float: the graph rebuilt from a tiny Uni-/Bi-Hybrid (non-trivial biases and BatchNorm statistics) gives the Keras
model's scores to float rounding. Int8: converted by the trainer's own child-process conversion, it has zero float
ops, int8 I/O with the unrolled twin's input/output quantization, and agrees with the float model's labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

T, F = 7, 5
TINY = {"units": (12, 8, 6), "dense": (8,)}


def _tiny_model(name: str, seed: int):
    import keras

    from trainer.models import build_model, randomize_normalization

    keras.utils.set_random_seed(seed)
    model = build_model(name, (T, F), **TINY)
    randomize_normalization(model, seed, bias_std=0.3)
    return model


@pytest.mark.parametrize("name", ["uni-hybrid", "bi-hybrid"])
def test_float_graph_reproduces_keras(name: str) -> None:
    from trainer.hoisted import build_hoisted, predict

    model = _tiny_model(name, seed=3)
    x = np.random.default_rng(0).random((64, T, F), dtype=np.float32)
    x[:8, :3] = 0  # zero-padded stream starts, as the trainer's windows have
    want = model.predict(x, verbose=0)
    got = predict(build_hoisted(model), x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=2e-6, rtol=0)


def test_unsupported_model_is_refused() -> None:
    from trainer.hoisted import supports
    from trainer.models import build_model

    assert not supports(build_model("ullah-cnn", (T, F)))


def _train_tiny(seed: int):
    """Uni-Hybrid on a learnable rule (newest flow's feature 0 plus an older flow's feature 1), a few epochs."""
    import keras

    from trainer.models import build_model

    keras.utils.set_random_seed(seed)
    model = build_model("uni-hybrid", (T, F), **TINY)
    rng = np.random.default_rng(seed)
    x = rng.random((1024, T, F), dtype=np.float32)
    y = ((x[:, -1, 0] + 0.5 * x[:, 2, 1]) > 0.75).astype(np.float32)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy")
    model.fit(x, y, epochs=6, batch_size=64, verbose=0)
    return model


def _convert(model, workdir: Path, hoist: bool) -> Path:
    from trainer.convert import run_conversion

    path = workdir / f"int8_{'hoisted' if hoist else 'unrolled'}.tflite"
    summary = run_conversion(
        {
            "model": "uni-hybrid",
            "input_shape": [T, F],
            "build_params": TINY,
            "weights": str(workdir / "weights.npz"),
            "representative": str(workdir / "rep.npy"),
            "hoist_input_projections": hoist,
            "targets": [{"kind": "int8", "per_channel": False, "path": str(path)}],
        },
        workdir,
    )
    assert summary["graph"] == ("hoisted" if hoist else "unrolled")
    return path


def test_int8_hoisted_graph_keeps_the_contract(tmp_path: Path) -> None:
    from ids_core.interpreter import TFLiteModel, auto_batch

    model = _train_tiny(seed=5)
    np.savez(tmp_path / "weights.npz", **{f"w{i}": w for i, w in enumerate(model.get_weights())})
    np.save(tmp_path / "rep.npy", np.random.default_rng(1).random((128, T, F), dtype=np.float32))
    hoisted = TFLiteModel(_convert(model, tmp_path, hoist=True))
    unrolled = TFLiteModel(_convert(model, tmp_path, hoist=False))

    ops = hoisted.op_summary()
    assert ops["float_tensors"] == []
    assert hoisted.is_int8 and hoisted.output_dtype == np.int8
    assert hoisted.input_shape == unrolled.input_shape == (T, F)
    assert hoisted.output_shape == unrolled.output_shape
    assert hoisted.input_quantization == unrolled.input_quantization
    assert hoisted.output_quantization == unrolled.output_quantization
    # the input projections are out of the loop: per recurrent layer one fully-connected op for all T steps and
    # one per step after the first (h_0 = 0), against two per step unrolled; plus the two Dense layers
    assert ops["ops"]["FULLY_CONNECTED"] == 3 * (1 + T - 1) + 2
    assert unrolled.op_summary()["ops"]["FULLY_CONNECTED"] == 3 * 2 * T + 2

    x = np.random.default_rng(9).random((2000, T, F), dtype=np.float32)
    keras_labels = model.predict(x, verbose=0)[:, 0] > 0.5
    assert 0.2 < keras_labels.mean() < 0.8  # the check below means something only if both labels occur
    agreement = float(((hoisted.predict(x) > 0.5) == keras_labels).mean())
    assert agreement >= 0.99, agreement

    # the agent's default max_batch 0: at most 2048 window steps per call, chunk by chunk the same bytes
    chunked = TFLiteModel(hoisted.content, max_batch=0)
    assert chunked.max_batch == auto_batch((T, F)) == 256 and auto_batch((62, 62)) == 33 and auto_batch((1, 62)) == 256
    chunked.max_batch = 33
    for n in (301, 20, 1):  # equal chunks of 31 (the last padded), one chunk, one window
        q = hoisted.quantize(x[:n])
        assert np.array_equal(chunked.invoke_raw(q), hoisted.invoke_raw(q)), n
