"""The trainer end to end on the real sample (``quick_run``), and the agent reproducing its model input exactly."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split
from trained import QuickRun

from agent.records import parse_flows
from ids_core.columns import IDENTIFIER_COLUMNS, LABEL_COLUMNS, NUMERIC_COLUMNS
from ids_core.preprocess import PreprocessSpec, StreamWindows

MAIN = "uni-hybrid"
# Table V of the paper (percent), typed in from the paper, independently of trainer/report.py.
PAPER = {
    "uni-hybrid": ("99.973%", "99.985%", "99.986%", "99.998%"),
    "bi-hybrid": ("99.970%", "99.974%", "99.993%", "99.998%"),
    "ullah-cnn": ("99.910%", "99.870%", "99.380%", "99.620%"),
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- helpers: the publisher and the agent


def publisher_records(csv_path: Path) -> list[dict[str, Any]]:
    """Every row of ``csv_path`` as the JSON flow record a publisher would send: raw CSV values keyed by the
    IoTID20 column names (numbers as JSON numbers, identifiers as strings, no label columns); ``inf``/``NaN``
    cells (a zero-duration flow) become floats, which ``json.dumps`` writes as the Infinity/NaN literals."""
    with csv_path.open(newline="") as f:
        header, *body = list(csv.reader(f))
    text_cols = set(IDENTIFIER_COLUMNS)
    skip = {*LABEL_COLUMNS, "Target"}
    out = []
    for row in body:
        rec: dict[str, Any] = {}
        for col, tok in zip(header, row, strict=True):
            if col in skip:
                continue
            if col in text_cols:
                rec[col] = tok
                continue
            try:
                rec[col] = json.loads(tok)
            except json.JSONDecodeError:
                rec[col] = float(tok)  # "inf", "NaN"
        out.append(rec)
    return out


def split_flows_in_stream_order(prep: Any, csv_path: Path, profile: Any) -> list[dict[str, Any]]:
    """The test split's flows as publisher records, in the trainer's stream order (mapping checked, not assumed)."""
    records = publisher_records(csv_path)
    frame = prep.table.frame
    assert len(records) == len(frame)
    raw = np.array([[r[c] for c in NUMERIC_COLUMNS] for r in records], dtype=np.float64)
    np.testing.assert_array_equal(raw, frame[list(NUMERIC_COLUMNS)].to_numpy())
    _, test_idx = train_test_split(
        np.arange(len(frame)), test_size=profile.split.test_size, stratify=frame["y"], random_state=profile.seed
    )
    test_pos = np.sort(test_idx)
    pd.testing.assert_frame_equal(frame.iloc[test_pos].reset_index(drop=True), prep.test_frame)
    return [records[test_pos[r]] for r in prep.test.rows]


def agent_windows(records: list[dict[str, Any]], spec: PreprocessSpec, chunk: int) -> np.ndarray:
    """What the gateway does: parse MQTT messages of ``chunk`` records, apply the spec, window the stream."""
    sw = StreamWindows(spec.window_length, len(spec.features))
    categorical = tuple(spec.transform.encoders)
    parts = []
    for start in range(0, len(records), chunk):
        payload = json.dumps(records[start : start + chunk]).encode()
        accepted, rejected = parse_flows(payload, spec.features, categorical=categorical, key_columns=spec.window_key)
        assert not rejected, [r.to_dict() for r in rejected[:3]]
        raw = np.stack([r.values for r in accepted])
        for name, enc in spec.transform.encoders.items():
            raw[:, spec.features.index(name)] = enc.transform([r.categories[name] for r in accepted])
        parts.append(sw.push([r.key for r in accepted], spec.transform.transform(raw)))
    assert sw.evicted == 0
    return np.concatenate(parts)


def litert_scores(model_path: Path, windows: np.ndarray) -> tuple[np.ndarray, dict, dict]:
    """Float scores of an int8 model via ``ai_edge_litert`` directly (quantization read from the file)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(model_path), num_threads=2)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.resize_tensor_input(inp["index"], [len(windows), *windows.shape[1:]])
    it.allocate_tensors()
    scale, zp = inp["quantization"]
    it.set_tensor(inp["index"], np.clip(np.round(windows / scale + zp), -128, 127).astype(np.int8))
    it.invoke()
    o_scale, o_zp = out["quantization"]
    raw = it.get_tensor(out["index"])
    return (raw.astype(np.float32) - o_zp).reshape(-1) * np.float32(o_scale), inp, out


# --------------------------------------------------------------------------- accuracy


def test_quick_uni_hybrid_accuracy(quick_run: QuickRun, record_property) -> None:
    s = quick_run.summary
    models = s["results"]["models"]
    float_acc = models[MAIN]["test"]["accuracy"]
    int8_acc = models[f"{MAIN} int8"]["test"]["accuracy"]
    record_property("float_accuracy", float_acc)
    record_property("int8_accuracy", int8_acc)
    print(f"quick uni-hybrid test accuracy: float {float_acc:.4f}, int8 {int8_acc:.4f}; run {quick_run.seconds:.0f} s")
    # the stratified test split of the 10,000 cleaned rows (the zero-duration row kept): 2,000 windows, 1,600 malicious
    assert s["split"] == {"train": 8000, "test": 2000, "train_malicious": 6400, "test_malicious": 1600}
    assert s["window"]["shape"] == [1, 62]
    assert models[MAIN]["test"]["n"] == 2000
    assert float_acc >= 0.97
    assert int8_acc >= 0.965 and abs(int8_acc - float_acc) <= 0.005
    assert models[MAIN]["test"]["majority_class_accuracy"] == pytest.approx(0.8)
    # recomputed from the labels and the report's confusion matrix
    c = models[MAIN]["test"]["confusion"]
    assert (c["tp"] + c["fn"], c["tn"] + c["fp"]) == (1600, 400)
    assert (c["tp"] + c["tn"]) / 2000 == float_acc


# --------------------------------------------------------------------------- the int8 artifact


def test_int8_model_is_builtin_int8_only(quick_run: QuickRun) -> None:
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter

    from ids_core.interpreter import TFLiteModel

    it = Interpreter(model_path=str(quick_run.model_path))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    assert inp["dtype"] == np.int8 and out["dtype"] == np.int8
    assert list(inp["shape"]) == [1, 1, 62] and list(out["shape"]) == [1, 1]
    dtypes = {np.dtype(t["dtype"]).name for t in it.get_tensor_details()}
    assert dtypes <= {"int8", "int32"}, dtypes

    # every operator code in the flatbuffer is a builtin (no CUSTOM / Flex op), one subgraph (no WHILE body)
    buf = quick_run.model_path.read_bytes()
    m = schema.Model.GetRootAsModel(buf, 0)
    assert m.SubgraphsLength() == 1
    for i in range(m.OperatorCodesLength()):
        oc = m.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        assert code != schema.BuiltinOperator.CUSTOM and oc.CustomCode() is None
        assert code != schema.BuiltinOperator.WHILE
    for t in range(m.Subgraphs(0).TensorsLength()):
        assert m.Subgraphs(0).Tensors(t).Type() in (schema.TensorType.INT8, schema.TensorType.INT32)

    ops = TFLiteModel(quick_run.model_path).op_summary()
    assert ops["float_tensors"] == []
    assert "FULLY_CONNECTED" in ops["ops"] and "WHILE" not in ops["ops"]
    assert all(set(d) <= {"int8", "int32"} for d in ops["tensor_dtypes"].values())
    assert quick_run.summary["export"]["ops"] == ops
    report = (quick_run.out_dir / "report.md").read_text()
    for op, n in ops["ops"].items():
        assert re.search(rf"^\| {op} \| {n} \| ", report, re.M), f"report.md does not list {op} × {n}"
    assert "Float tensors in the shipped graph: none." in report


def test_int8_smaller_than_float(quick_run: QuickRun) -> None:
    int8 = quick_run.model_path.stat().st_size
    flt = quick_run.float_model_path.stat().st_size
    assert int8 < 0.5 * flt, (int8, flt)
    cmp_ = quick_run.summary["export"]["comparison"]
    assert cmp_["shipped"] == "int8_per_tensor"
    assert quick_run.model_path.read_bytes() == (quick_run.out_dir / "model_int8_per_tensor.tflite").read_bytes()
    assert cmp_[cmp_["shipped"]]["size_bytes"] == int8 and cmp_["float"]["size_bytes"] == flt


def test_int8_agrees_with_keras_float(quick_run: QuickRun, record_property) -> None:
    """≥ 99.5 % label agreement: from report.json, and recomputed here from the saved models and the windows."""
    import keras

    cmp_ = json.loads((quick_run.out_dir / "report.json").read_text())["export"]["comparison"]
    reported = cmp_["int8_per_tensor"]["label_agreement_with_keras"]
    assert reported >= 0.995

    prep, threshold = quick_run.prep, quick_run.summary["profile"]["export"]["threshold"]
    x, y = prep.test.windows(), prep.test.y.astype(int)
    model = keras.saving.load_model(quick_run.out_dir / "keras" / f"{MAIN}.best.keras")
    keras_pred = model.predict(x, batch_size=1024, verbose=0).reshape(-1) > threshold
    int8_scores, _, _ = litert_scores(quick_run.model_path, x)
    int8_pred = int8_scores > threshold
    agreement = float((keras_pred == int8_pred).mean())
    record_property("int8_keras_agreement", agreement)
    print(f"int8/Keras label agreement: {agreement:.4f} (report {reported:.4f})")
    assert agreement >= 0.995
    # the checkpoint is the exported model, and the numbers are the report's (one window of slack each)
    assert abs(float((keras_pred == y).mean()) - cmp_["keras_accuracy"]) <= 1 / len(y)
    assert abs(float((int8_pred == y).mean()) - cmp_["int8_per_tensor"]["accuracy"]) <= 1 / len(y)
    assert abs(agreement - reported) <= 1 / len(y)


def test_selftest_vectors(quick_run: QuickRun) -> None:
    """selftest_inputs are the first test windows quantized; selftest_outputs are what the shipped model gives."""
    from ids_core.interpreter import TFLiteModel

    q_in = np.load(quick_run.out_dir / "selftest_inputs.npy")
    q_out = np.load(quick_run.out_dir / "selftest_outputs.npy")
    assert q_in.dtype == np.int8 and q_in.shape == (32, 1, 62)
    assert q_out.dtype == np.int8 and q_out.shape == (32, 1)
    spec = quick_run.spec()
    np.testing.assert_array_equal(q_in, spec.input_quantization.quantize(quick_run.prep.test.windows(slice(0, 32))))
    model = TFLiteModel(quick_run.model_path)
    np.testing.assert_array_equal(model.invoke_raw(q_in), q_out)
    assert spec.input_quantization == model.input_quantization
    assert spec.output_quantization == model.output_quantization


# --------------------------------------------------------------------------- report


def test_report_files_table_v_and_real_data(quick_run: QuickRun) -> None:
    out = quick_run.out_dir
    report = (out / "report.md").read_text()
    summary = json.loads((out / "report.json").read_text())
    assert summary["results"] == json.loads(json.dumps(quick_run.summary["results"]))

    # the data was real, and says so
    assert summary["data"]["synthetic"] is False and summary["data"]["layout"] == "sample"
    assert "**Data: real IoTID20 data:" in report and "SYNTHETIC" not in report
    assert quick_run.spec().extra["synthetic"] is False
    assert "kept: 10,000 (8,000 malicious / 2,000 benign)" in report
    # the zero-duration row is kept and counted per column, and the report says the paper dropped it
    cleaning = summary["data"]["cleaning"]
    assert cleaning["nonfinite_rows"] == 1 and set(cleaning["nonfinite_by_column"]) == {"Flow_Byts/s", "Flow_Pkts/s"}
    assert "Rows with a non-finite value" in report and "1 (1 malicious), **kept**" in report
    assert "`Flow_Byts/s` 1 +inf; `Flow_Pkts/s` 1 +inf" in report and "**The paper dropped them**" in report

    # plots: every one exists, is a PNG and is linked from the report
    expected = {f"history_{m}.png" for m in PAPER} | {"confusion.png", "roc.png", "pr.png"}
    assert set(summary["plots"].values()) == expected
    for name in expected:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name
        assert f"]({name})" in report

    # Table V: ours beside the paper's numbers, one row per model
    table = report.split("## Table V", 1)[1].split("\n\n### ", 1)[0]
    for name, paper_cells in PAPER.items():
        row = re.search(rf"^\| {re.escape(name)} \|(.*)\|$", table, re.M)
        assert row, f"Table V has no row for {name}"
        cells = [c.strip() for c in row.group(1).split("|")]
        assert tuple(cells[6:10]) == paper_cells
        ours = summary["results"]["models"][name]["test"]
        assert cells[0] == f"{100 * ours['accuracy']:.3f}%"
        assert cells[3] == f"{100 * ours['f1']:.3f}%"
        assert 0.9 < ours["accuracy"] <= 1.0
    for name in ("report.md", "report.json", "spec.json", "model_float.tflite", "model_int8.tflite"):
        assert (out / name).stat().st_size > 0


# --------------------------------------------------------------------------- the agent reproduces the model input


def test_prepare_is_deterministic(quick_run: QuickRun) -> None:
    """The fixture re-prepares the data; it must be what the run trained and exported with."""
    spec = quick_run.spec()
    tf = quick_run.prep.selection.transform
    assert list(spec.features) == quick_run.summary["features"]["selected"] == list(tf.features)
    assert spec.transform.to_dict() == tf.to_dict()
    assert spec.window_length == 1 and spec.window_key == () and spec.model_version == "test-quick"


@pytest.mark.parametrize("chunk", [1, 7, 100, 400])  # 400 records ≈ 0.8 MB, under the 1 MiB message limit
def test_agent_reproduces_trainer_input_exactly(quick_run: QuickRun, chunk: int) -> None:
    """Publisher JSON → parse_flows → spec.json's transform → StreamWindows == the trainer's test windows."""
    spec = PreprocessSpec.load(quick_run.spec_path)
    prep = quick_run.prep
    records = split_flows_in_stream_order(prep, Path(prep.table.source), quick_run.profile)
    got = agent_windows(records, spec, chunk)
    expected = prep.test.windows()
    assert got.dtype == expected.dtype == np.float32
    assert got.shape == expected.shape == (2000, 1, 62)
    assert np.array_equal(got, expected)


@pytest.fixture(scope="module")
def synthetic_keyed(tmp_path_factory: pytest.TempPathFactory):
    """Prepared synthetic full-layout data with T=4 windows keyed by Src_IP (no training)."""
    from trainer.config import load_profile
    from trainer.pipeline import prepare

    overrides = [
        "data=synthetic",
        "synthetic_rows=4000",
        "window.length=4",
        "window.key=[Src_IP]",
        "features.top_k=80",
        "features.include_identifiers=[Dst_IP]",
        "features.extra_trees_estimators=10",
    ]
    profile = load_profile("quick", overrides=overrides)
    prep = prepare(profile, tmp_path_factory.mktemp("synthetic_keyed"))
    return profile, prep


def test_agent_reproduces_keyed_windows_on_synthetic_data(synthetic_keyed, tmp_path: Path) -> None:
    """T=4, key [Src_IP], a label-encoded identifier feature: padding, interleaved streams and encoders."""
    profile, prep = synthetic_keyed
    assert prep.table.synthetic and prep.table.layout == "full"
    tf = prep.selection.transform
    assert "Dst_IP" in tf.encoders and len(tf.features) == 80
    PreprocessSpec(tf, window_length=4, window_key=("Src_IP",), model_version="synthetic").save(tmp_path / "spec.json")
    spec = PreprocessSpec.load(tmp_path / "spec.json")
    idx = prep.test.idx
    # the case is not trivial: several streams, padded and full windows, streams interleaved in time
    assert len(set(prep.test.keys)) > 5
    assert (idx[:, 0] == -1).any() and (idx[:, 0] >= 0).any()
    assert (np.diff(idx[idx[:, 0] >= 0], axis=1) > 1).any()
    records = split_flows_in_stream_order(prep, Path(prep.table.source), profile)
    expected = prep.test.windows()
    for chunk in (1, 13, 400):
        got = agent_windows(records, spec, chunk)
        assert got.shape == expected.shape == (len(prep.test), 4, 80)
        assert np.array_equal(got, expected), f"chunk {chunk}"
