"""Value codes: ports and protocol as categories (a learned number per value), carried by the spec."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ids_core.preprocess import (
    SPEC_FORMAT,
    SPEC_FORMAT_VALUE_CODES,
    FeatureTransform,
    PreprocessSpec,
    SpecError,
    ValueCodes,
)


def test_codes_are_smoothed_malicious_shares_and_rare_or_unseen_values_get_the_overall_share() -> None:
    x = np.array([80] * 30 + [443] * 10 + [22] * 2 + [np.nan, np.inf], dtype=float)
    y = np.array([1] * 30 + [0] * 10 + [1, 1] + [0, 1])
    vc = ValueCodes.fit(x, y, min_count=5, smoothing=4.0)
    prior = y.mean()
    assert vc.values == (80.0, 443.0) and vc.default == pytest.approx(prior)
    assert vc.codes == pytest.approx(((30 + 4 * prior) / 34, (0 + 4 * prior) / 14))
    out = vc.transform(np.array([443, 80, 22, 8080, np.nan, -np.inf, np.inf]))
    np.testing.assert_allclose(out, [vc.codes[1], vc.codes[0], *[prior] * 5])


def test_transform_codes_the_column_before_min_max_and_the_spec_carries_the_codes() -> None:
    rng = np.random.default_rng(0)
    port = rng.choice([80.0, 443.0, 49784.0], size=300)
    y = (port == 80).astype(int)
    raw = np.column_stack([port, rng.exponential(1e6, size=300)])
    codes = {"Dst_Port": ValueCodes.fit(port, y, min_count=10, smoothing=0.0)}
    tf = FeatureTransform.fit(("Dst_Port", "Flow_Byts/s"), raw, log_scale=True, value_codes=codes)
    x = tf.transform(raw)
    assert x[port == 80, 0].min() == pytest.approx(1.0) and x[port != 80, 0].max() == pytest.approx(0.0)
    # 443 and 49784 are both benign here: the same code, however far apart their numbers
    assert np.unique(x[port != 80, 0]).size == 1
    spec = PreprocessSpec(tf, window_length=1)
    d = json.loads(spec.to_json())
    assert d["format"] == SPEC_FORMAT_VALUE_CODES and d["scaler"]["value_codes"]["Dst_Port"]["values"] == [
        80.0,
        443.0,
        49784.0,
    ]
    again = PreprocessSpec.from_dict(d)
    np.testing.assert_array_equal(again.transform.transform(raw), x)
    d["format"] = SPEC_FORMAT  # a gateway that knows only format 1 would feed raw ports: such a spec is refused
    with pytest.raises(SpecError, match="value codes need format"):
        PreprocessSpec.from_dict(d)


def test_without_codes_the_spec_keeps_format_1() -> None:
    tf = FeatureTransform.fit(("a",), np.array([[1.0], [2.0]]))
    assert json.loads(PreprocessSpec(tf, window_length=1).to_json())["format"] == SPEC_FORMAT


def test_codes_must_be_consistent() -> None:
    with pytest.raises(SpecError, match="ascending"):
        ValueCodes((443.0, 80.0), (0.1, 0.2), 0.5)
    with pytest.raises(SpecError, match="not numeric features"):
        FeatureTransform(("a",), np.zeros(1), np.ones(1), value_codes={"b": ValueCodes((1.0,), (0.5,), 0.5)})
