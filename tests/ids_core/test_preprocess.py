"""The shared numpy core (ids_core/preprocess.py): windows, streaming windows, the transform and the spec.

No TensorFlow here: these run in milliseconds and pin down the definitions the trainer and the agent share.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ids_core.preprocess import (
    NONFINITE_RULE,
    SPEC_FORMAT,
    CategoryEncoder,
    FeatureTransform,
    PreprocessSpec,
    Quantization,
    SpecError,
    StreamWindows,
    finite_range,
    gather_windows,
    nonfinite_counts,
    replace_nonfinite,
    window_indices,
    window_key,
)

REPO = Path(__file__).resolve().parents[2]


def test_importing_the_core_stays_light() -> None:
    """The agent imports this module on the gateway: no TensorFlow, pandas or scikit-learn."""
    code = (
        "import sys, ids_core.preprocess; heavy = {'tensorflow', 'keras', 'pandas', 'sklearn'} & set(sys.modules); "
        "print(sorted(heavy)); sys.exit(1 if heavy else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------------------------------------- window_indices / gather_windows


def test_window_indices_keys_and_padding() -> None:
    idx = window_indices(["a", "b", "a", "a", "b"], 3)
    assert idx.dtype == np.int32
    np.testing.assert_array_equal(
        idx,
        [
            [-1, -1, 0],  # a: first of its stream
            [-1, -1, 1],  # b: first of its stream
            [-1, 0, 2],  # a: one earlier a
            [0, 2, 3],  # a: full window, oldest first
            [-1, 1, 4],  # b: one earlier b
        ],
    )


def test_window_indices_one_stream_and_t1() -> None:
    np.testing.assert_array_equal(window_indices([""] * 4, 2), [[-1, 0], [0, 1], [1, 2], [2, 3]])
    np.testing.assert_array_equal(window_indices(["x", "y", "x"], 1), [[0], [1], [2]])
    # a window longer than the stream is all padding but the flow itself
    np.testing.assert_array_equal(window_indices(["k", "k"], 4), [[-1, -1, -1, 0], [-1, -1, 0, 1]])
    assert window_indices([], 3).shape == (0, 3)
    with pytest.raises(ValueError, match=">= 1"):
        window_indices(["a"], 0)


def test_window_indices_keys_compare_as_text() -> None:
    """Keys are compared as text: 80 and "80" are one stream (window_key normalises 80.0 first)."""
    np.testing.assert_array_equal(window_indices([80, "80", 81], 2), [[-1, 0], [0, 1], [-1, 2]])


def test_gather_windows_pads_with_zeros() -> None:
    vectors = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.float32)
    out = gather_windows(vectors, np.array([[-1, 0], [0, 2], [-1, -1]]))
    assert out.dtype == np.float32 and out.shape == (3, 2, 2)
    np.testing.assert_array_equal(out, [[[0, 0], [1, 2]], [[1, 2], [5, 6]], [[0, 0], [0, 0]]])


# --------------------------------------------------------------------------- StreamWindows


def _distinct_vectors(n: int, f: int) -> np.ndarray:
    """Rows that differ from each other and from padding (so a wrong index cannot go unnoticed)."""
    return (np.arange(n * f, dtype=np.float32).reshape(n, f) + 1) / (n * f + 1)


def _chunks(n: int, sizes: list[int]) -> list[slice]:
    out, start, i = [], 0, 0
    while start < n:
        size = sizes[i % len(sizes)] if sizes else n
        out.append(slice(start, min(n, start + size)))
        start += size
        i += 1
    return out


@settings(max_examples=200, deadline=None)
@given(
    keys=st.lists(st.sampled_from(["a", "b", "c", "10.0.0.1", ""]), max_size=40),
    length=st.integers(1, 6),
    sizes=st.lists(st.integers(1, 9), max_size=6),
    empty_pushes=st.booleans(),
    max_keys=st.sampled_from([None, 5, 100]),
)
def test_stream_windows_equal_batch_windows(
    keys: list[str], length: int, sizes: list[int], empty_pushes: bool, max_keys: int | None
) -> None:
    """Any chunking of a stream (with no eviction) gives exactly the windows of the whole stream."""
    f = 3
    vectors = _distinct_vectors(len(keys), f)
    expected = gather_windows(vectors, window_indices(keys, length))
    sw = StreamWindows(length, f, max_keys=max_keys)
    parts = []
    for sl in _chunks(len(keys), sizes):
        if empty_pushes:
            assert sw.push([], np.empty((0, f), np.float32)).shape == (0, length, f)
        parts.append(sw.push(keys[sl], vectors[sl]))
    got = np.concatenate(parts) if parts else np.empty((0, length, f), np.float32)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    assert sw.evicted == 0
    if length > 1:
        assert len(sw) == len(set(keys))


def test_stream_windows_lru_eviction_restarts_with_padding() -> None:
    t, f = 3, 2
    sw = StreamWindows(t, f, max_keys=2)
    v = {name: np.full((1, f), val, np.float32) for name, val in [("a1", 1), ("b1", 2), ("c1", 3), ("b2", 4)]}
    for k in ("a", "b", "c"):
        sw.push([k], v[f"{k}1"])
    assert sw.evicted == 1 and len(sw) == 2  # a, the least recently seen, is gone
    out = sw.push(["b"], v["b2"])  # b is remembered
    np.testing.assert_array_equal(out[0], [[0, 0], [2, 2], [4, 4]])
    out = sw.push(["a"], np.full((1, f), 5, np.float32))  # a starts again with padding; evicts c
    np.testing.assert_array_equal(out[0], [[0, 0], [0, 0], [5, 5]])
    assert sw.evicted == 2
    out = sw.push(["c"], np.full((1, f), 6, np.float32))
    np.testing.assert_array_equal(out[0], [[0, 0], [0, 0], [6, 6]])
    assert sw.evicted == 3 and len(sw) == 2


def test_stream_windows_lru_is_least_recently_seen_and_batch_is_complete() -> None:
    t, f = 3, 1
    sw = StreamWindows(t, f, max_keys=2)
    sw.push(["a", "b"], np.array([[1], [2]], np.float32))
    sw.push(["a"], np.array([[3]], np.float32))  # a seen again: b is now the oldest
    sw.push(["c"], np.array([[4]], np.float32))
    assert sw.evicted == 1
    np.testing.assert_array_equal(sw.push(["a"], np.array([[5]], np.float32))[0, :, 0], [1, 3, 5])
    # eviction happens after a batch: windows inside one batch are complete even with max_keys=1
    sw = StreamWindows(t, f, max_keys=1)
    keys = ["x", "y", "x", "x"]
    vec = np.array([[1], [2], [3], [4]], np.float32)
    np.testing.assert_array_equal(sw.push(keys, vec), gather_windows(vec, window_indices(keys, t)))
    assert sw.evicted == 1 and len(sw) == 1
    np.testing.assert_array_equal(sw.push(["y"], np.array([[9]], np.float32))[0, :, 0], [0, 0, 9])
    sw.reset()
    assert len(sw) == 0


def test_stream_windows_checks_shapes() -> None:
    sw = StreamWindows(2, 3)
    with pytest.raises(ValueError, match=r"expected \(2, 3\) vectors"):
        sw.push(["a", "b"], np.zeros((2, 4)))
    with pytest.raises(ValueError, match=">= 1"):
        StreamWindows(0, 3)


# --------------------------------------------------------------------------- window_key


def test_window_key() -> None:
    assert window_key({"Dst_Port": 80.0}, ["Dst_Port"]) == window_key({"Dst_Port": 80}, ["Dst_Port"]) == "80"
    assert window_key({"Src_IP": "10.0.0.1", "Dst_Port": 443.0}, ["Src_IP", "Dst_Port"]) == "10.0.0.1|443"
    assert window_key({"Src_IP": None}, ["Src_IP", "Dst_Port"]) == "|"
    assert window_key({"Flow_Duration": 80.5}, ["Flow_Duration"]) == "80.5"
    assert window_key({"Src_IP": "10.0.0.1"}, []) == ""


# --------------------------------------------------------------------------- FeatureTransform


def test_feature_transform_fit_minmax_constant_and_clip() -> None:
    raw = np.array([[0.0, 7.0, -2.0], [5.0, 7.0, 2.0], [10.0, 7.0, 0.0]])
    tf = FeatureTransform.fit(["a", "const", "b"], raw)
    np.testing.assert_array_equal(tf.data_min, [0.0, 7.0, -2.0])
    np.testing.assert_array_equal(tf.scale, [0.1, 1.0, 0.25])  # a constant column gets scale 1
    out = tf.transform(raw)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array([[0, 0, 0], [0.5, 0, 1], [1, 0, 0.5]], np.float32))
    # beyond the training range saturates at 0 / 1 (and a constant column's new value too)
    np.testing.assert_array_equal(tf.transform([[-5.0, 9.0, 6.0], [20.0, 6.0, -3.0]]), [[0, 1, 1], [1, 0, 0]])
    with pytest.raises(ValueError, match=r"expected \(n, 3\) raw features"):
        tf.transform(np.zeros((2, 2)))


def test_feature_transform_log_minmax() -> None:
    e = math.e
    raw = np.array([[-(e - 1)], [0.0], [e - 1], [e**3 - 1]])  # signed log1p: -1, 0, 1, 3
    tf = FeatureTransform.fit(["rate"], raw, log_scale=True)
    assert tf.log_scale
    np.testing.assert_allclose(tf.data_min, [-1.0])
    np.testing.assert_allclose(tf.scale, [0.25])
    np.testing.assert_allclose(tf.transform(raw)[:, 0], [0.0, 0.25, 0.5, 1.0], atol=1e-7)
    # plain Min-Max on the same column squeezes the small values together
    plain = FeatureTransform.fit(["rate"], raw).transform(raw)[:, 0]
    assert plain[2] - plain[1] < 0.1


# --------------------------------------------------------------------------- the non-finite rule

INF, NAN = math.inf, math.nan


def test_finite_range_ignores_non_finite_values() -> None:
    x = np.array([[1.0, INF, NAN, NAN], [3.0, 5.0, -INF, NAN], [2.0, -1.0, 4.0, NAN]])
    lo, hi = finite_range(x)
    np.testing.assert_array_equal(lo, [1.0, -1.0, 4.0, 0.0])  # a column with no finite value: 0
    np.testing.assert_array_equal(hi, [3.0, 5.0, 4.0, 0.0])
    lo, hi = finite_range(np.empty((0, 2)))
    assert lo.tolist() == hi.tolist() == [0.0, 0.0]


def test_replace_nonfinite_is_the_rule() -> None:
    x = np.array([[INF, -INF, NAN], [1.0, 2.0, 3.0]])
    out = replace_nonfinite(x, np.array([-5.0, -6.0, -7.0]), np.array([5.0, 6.0, 7.0]))
    np.testing.assert_array_equal(out, [[5.0, -6.0, 0.0], [1.0, 2.0, 3.0]])
    assert np.isnan(x[0, 2])  # the input is not modified
    finite = np.ones((2, 3))
    assert replace_nonfinite(finite, np.zeros(3), np.ones(3)) is finite  # nothing to do: no copy


def test_nonfinite_counts() -> None:
    x = np.array([[INF, 1.0, NAN], [INF, -INF, 2.0], [1.0, 2.0, 3.0]])
    assert nonfinite_counts(x, ["a", "b", "c"]) == {
        "a": {"+inf": 2, "-inf": 0, "nan": 0},
        "b": {"+inf": 0, "-inf": 1, "nan": 0},
        "c": {"+inf": 0, "-inf": 0, "nan": 1},
    }
    assert nonfinite_counts(np.ones((2, 2)), ["a", "b"]) == {}


@pytest.mark.parametrize("log_scale", [False, True], ids=["minmax", "log-minmax"])
def test_transform_applies_the_nonfinite_rule(log_scale: bool) -> None:
    """+inf → the training maximum, -inf → the minimum, NaN → 0, then the normal transform; fit on finite values."""
    finite_rows = np.array([[10.0, -4.0, 3.0], [1000.0, 2.0, 9.0], [55.0, 8.0, 5.0]])
    with_nonfinite = np.vstack([finite_rows, [[INF, -INF, NAN], [NAN, INF, -INF]]])
    tf = FeatureTransform.fit(["rate", "b", "c"], with_nonfinite, log_scale=log_scale)
    ref = FeatureTransform.fit(["rate", "b", "c"], finite_rows, log_scale=log_scale)
    np.testing.assert_array_equal(tf.data_min, ref.data_min)
    np.testing.assert_array_equal(tf.data_max, ref.data_max)
    np.testing.assert_array_equal(tf.scale, ref.scale)
    assert np.isfinite(tf.data_min).all() and np.isfinite(tf.data_max).all()
    lo_row, hi_row = finite_rows.min(axis=0), finite_rows.max(axis=0)
    got = tf.transform(np.array([[INF, INF, INF], [-INF, -INF, -INF], [NAN, NAN, NAN]]))
    np.testing.assert_array_equal(got[0], tf.transform(hi_row[None])[0])  # = 1 for every non-constant column
    np.testing.assert_array_equal(got[0], [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(got[1], tf.transform(lo_row[None])[0])
    np.testing.assert_array_equal(got[1], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(got[2], tf.transform(np.zeros((1, 3)))[0])  # NaN is 0 (b: 0 is inside the range)
    assert 0.0 < got[2, 1] < 1.0
    assert got.dtype == np.float32 and np.isfinite(got).all()


def test_nonfinite_rule_on_a_constant_column_is_its_training_value() -> None:
    tf = FeatureTransform.fit(["const"], np.array([[7.0], [7.0], [INF]]))
    np.testing.assert_array_equal(tf.data_max, [7.0])
    np.testing.assert_array_equal(tf.transform(np.array([[INF], [-INF], [7.0], [9.0]]))[:, 0], [0, 0, 0, 1])


def test_category_encoder_and_encode_columns() -> None:
    enc = CategoryEncoder.fit(["10.0.0.2", "10.0.0.1", "10.0.0.2"])
    assert enc.classes == ("10.0.0.1", "10.0.0.2")
    np.testing.assert_array_equal(enc.transform(["10.0.0.2", "192.0.2.9"]), [1.0, -1.0])
    tf = FeatureTransform(("Src_IP", "n"), np.array([-1.0, 0.0]), np.array([0.5, 1.0]), {"Src_IP": enc})
    raw = tf.encode_columns({"Src_IP": ["10.0.0.1", "nope"], "n": [3, 0.5]})
    np.testing.assert_array_equal(raw, [[0.0, 3.0], [-1.0, 0.5]])
    np.testing.assert_array_equal(tf.transform(raw), np.array([[0.5, 1.0], [0.0, 0.5]], np.float32))


def test_feature_transform_rejects_inconsistent_fields() -> None:
    with pytest.raises(SpecError, match="for 2 features"):
        FeatureTransform(("a", "b"), np.zeros(3), np.ones(2))
    with pytest.raises(SpecError, match="not features"):
        FeatureTransform(("a",), np.zeros(1), np.ones(1), {"Src_IP": CategoryEncoder(("x",))})


# --------------------------------------------------------------------------- PreprocessSpec


def _spec() -> PreprocessSpec:
    raw = np.array([[0.0, 1.0, 100.0], [1.0, 3.0, 1e7]])
    tf = FeatureTransform.fit(
        ["Src_IP", "Flow_Duration", "Flow_Byts/s"], raw, {"Src_IP": CategoryEncoder(("10.0.0.1", "10.0.0.2"))}
    )
    tf = FeatureTransform(tf.features, tf.data_min, tf.scale, tf.encoders, log_scale=True)
    return PreprocessSpec(
        transform=tf,
        window_length=4,
        window_key=("Src_IP",),
        threshold=0.7,
        model_name="uni-hybrid",
        model_version="v-test",
        input_quantization=Quantization(0.00392, -128),
        output_quantization=Quantization(0.00390625, -128),
        extra={"data": "real IoTID20 data"},
    )


def test_spec_json_round_trip(tmp_path: Path) -> None:
    spec = _spec()
    path = tmp_path / "spec.json"
    spec.save(path)
    back = PreprocessSpec.load(path)
    assert back.to_json() == spec.to_json() == path.read_text()
    assert back.sha256 == spec.sha256
    assert back.features == ("Src_IP", "Flow_Duration", "Flow_Byts/s") and back.input_shape == (4, 3)
    assert back.window_key == ("Src_IP",) and back.threshold == 0.7 and back.transform.log_scale
    assert back.transform.encoders["Src_IP"].classes == ("10.0.0.1", "10.0.0.2")
    assert back.input_quantization == Quantization(0.00392, -128)
    assert back.output_quantization == Quantization(0.00390625, -128)
    assert back.extra == {"data": "real IoTID20 data"}
    np.testing.assert_array_equal(back.transform.data_min, spec.transform.data_min)
    np.testing.assert_array_equal(back.transform.scale, spec.transform.scale)
    raw = np.array([[1.0, 2.0, 5e4]])
    np.testing.assert_array_equal(back.transform.transform(raw), spec.transform.transform(raw))
    d = json.loads(path.read_text())
    assert d["format"] == SPEC_FORMAT and d["scaler"]["kind"] == "log-minmax" and d["input"]["shape"] == [4, 3]
    assert d["scaler"]["nonfinite"] == NONFINITE_RULE and d["scaler"]["data_max"] == spec.transform.data_max.tolist()
    np.testing.assert_array_equal(back.transform.data_max, spec.transform.data_max)
    inf_row = np.array([[1.0, math.inf, math.nan]])
    np.testing.assert_array_equal(back.transform.transform(inf_row), spec.transform.transform(inf_row))


def test_spec_without_data_max_saturates_infinity_at_the_top() -> None:
    """A spec written before data_max existed: +inf clips to 1 like any value above the range."""
    d = json.loads(_spec().to_json())
    del d["scaler"]["data_max"], d["scaler"]["nonfinite"]
    tf = PreprocessSpec.from_dict(d).transform
    np.testing.assert_allclose(tf.data_max, tf.data_min + 1 / tf.scale)
    np.testing.assert_array_equal(tf.transform(np.array([[0.0, math.inf, -math.inf]]))[0, 1:], [1.0, 0.0])


def test_quantization_round_trip() -> None:
    q = Quantization(1 / 255, -128)
    x = np.array([0.0, 100 / 255, 1.0, 2.0, -1.0], np.float32)
    np.testing.assert_array_equal(q.quantize(x), np.array([-128, -28, 127, 127, -128], np.int8))
    np.testing.assert_allclose(q.dequantize(q.quantize(x[:3])), x[:3], atol=1e-6)


def _mutated(change) -> dict:
    d = json.loads(_spec().to_json())
    change(d)
    return d


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="edge-ids/preprocess-spec/0"), "not a preprocessing spec"),
        (lambda d: d.pop("window"), "malformed"),
        (lambda d: d["scaler"].update(kind="zscore"), "malformed"),
        (lambda d: d["scaler"].update(data_min=[0.0]), "malformed"),
        (lambda d: d["input"].update(quantization={"scale": 0.1}), "malformed"),
        (lambda d: d.update(threshold=1.0), "threshold"),
        (lambda d: d["window"].update(length=0), "window.length"),
        (lambda d: d["input"].update(shape=[62, 3]), r"input.shape \[62, 3\]"),
        (lambda d: d["scaler"].update(nonfinite={"+inf": "drop"}), "scaler.nonfinite"),
        (lambda d: d["scaler"].update(data_max=[0.0, 1.0]), "data_max"),
        (lambda d: d["scaler"].update(data_min=[0.0, float("inf"), 1.0]), "finite"),
        (lambda d: d["scaler"].update(scale=[1.0, 0.0, 1.0]), "scale > 0"),
    ],
)
def test_spec_errors(change, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        PreprocessSpec.from_dict(_mutated(change))


def test_spec_error_on_non_json(tmp_path: Path) -> None:
    path = tmp_path / "spec.json"
    path.write_text("{not json")
    with pytest.raises(SpecError, match="not JSON"):
        PreprocessSpec.load(path)
    with pytest.raises(SpecError, match="not a preprocessing spec"):
        PreprocessSpec.from_dict([])  # type: ignore[arg-type]
