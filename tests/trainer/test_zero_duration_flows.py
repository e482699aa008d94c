"""Zero-duration flows (issue 8): CICFlowMeter writes ``Infinity`` rates for them (``NaN`` for 0/0). The trainer's
offline pipeline and the gateway agent score them with one rule, so their int8 scores are identical."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from flow_quirks import write_cicflowmeter_csv, zero_duration
from trained import QuickRun

from agent.records import parse_flows
from agent.scorer import Scorer
from flowmeter.replay import read_flows
from ids_core.columns import INF_COLUMNS
from ids_core.interpreter import TFLiteModel
from trainer.data import load_csv
from trainer.windows import build_split

PER_CATEGORY = 5  # attack rows of each of the sample's 4 attack categories


def test_agent_scores_zero_duration_attacks_exactly_like_the_trainer(
    quick_run: QuickRun, sample_csv: Path, tmp_path: Path, record_property
) -> None:
    raw = pd.read_csv(sample_csv)
    attacks = raw[raw["Target"] != "Normal"].groupby("Target").head(PER_CATEGORY)
    zero = zero_duration(attacks)
    path = write_cicflowmeter_csv(zero, tmp_path / "zero_duration.csv")
    spec = quick_run.spec()
    assert set(INF_COLUMNS) & set(spec.features), "the model does not read the rates: nothing to test"

    # The trainer: cleaning keeps the rows, the training transform and the windows, the shipped int8 model.
    table = load_csv(path)
    assert table.counts["rows"] == table.counts["nonfinite_rows"] == 4 * PER_CATEGORY
    nan_rows = int(zero["Flow_Byts/s"].isna().sum())
    assert 0 < nan_rows < len(zero)  # both kinds: Infinity, and NaN from 0/0
    transform = quick_run.prep.selection.transform
    p = quick_run.profile.window
    split = build_split(table.frame, transform, length=p.length, key=p.key, order="file", seed=0)
    model = TFLiteModel(quick_run.model_path)
    trainer_inputs = model.quantize(split.windows())
    trainer_int8 = model.invoke_raw(trainer_inputs)

    # The agent: the JSON the flow meter publishes (Infinity / NaN literals), its parser and its scorer.
    records = [{k: v for k, v in r.items() if k != "Target"} for r in read_flows(path)]
    payload = json.dumps(records).encode()
    assert b"Infinity" in payload and b"NaN" in payload
    accepted, rejected = parse_flows(
        payload, spec.features, categorical=tuple(spec.transform.encoders), key_columns=spec.window_key
    )
    assert rejected == [] and len(accepted) == len(zero)
    rates_read = len(set(INF_COLUMNS) & set(spec.features))
    assert all(a.nonfinite == rates_read for a in accepted)
    scorer = Scorer.load(quick_run.out_dir)
    agent_inputs = scorer.model_inputs(accepted)
    np.testing.assert_array_equal(agent_inputs, trainer_inputs)
    np.testing.assert_array_equal(scorer.model.invoke_raw(agent_inputs), trainer_int8)
    scores = Scorer.load(quick_run.out_dir).score(accepted)  # the agent's whole scoring call
    np.testing.assert_array_equal(scores, model.dequantize(trainer_int8).reshape(-1))

    # The rule, visible in the int8 input: +Infinity is the training maximum (1.0), NaN is the transform of 0.
    zero_vector = transform.transform(np.zeros((1, len(spec.features))))[0]
    for name in set(INF_COLUMNS) & set(spec.features):
        j = spec.features.index(name)
        expected = np.where(zero[name].isna(), zero_vector[j], 1.0).astype(np.float32)
        np.testing.assert_array_equal(agent_inputs[:, -1, j], spec.input_quantization.quantize(expected))
    alerts = int((scores > spec.threshold).sum())
    record_property("zero_duration_alerts", f"{alerts}/{len(scores)}")
    print(f"zero-duration attack flows: {alerts} of {len(scores)} alert (threshold {spec.threshold})")
    assert alerts > 0  # scored, not silently dropped: most of them are flagged
