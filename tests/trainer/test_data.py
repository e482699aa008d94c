"""Loading and cleaning IoTID20 tables (trainer/data.py): the real sample, the full-schema head, synthetic files."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from flow_quirks import write_cicflowmeter_csv, zero_duration

from ids_core.columns import COLUMNS, IDENTIFIER_COLUMNS, NUMERIC_COLUMNS
from trainer import data as data_mod
from trainer.data import DataError, load_csv, resolve_source
from trainer.synthetic import write_csv


def _raw_tokens(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


# --------------------------------------------------------------------------- the real 80-column sample


def test_sample_counts(sample_csv: Path) -> None:
    table = load_csv(sample_csv)
    c = table.counts
    assert table.layout == "sample"
    assert not table.synthetic
    assert not table.has_timestamp and table.identifiers == []
    assert c["raw_rows"] == 10_000
    assert c["dropped_non_numeric"] == 0 and c["non_numeric_values"] == 0
    assert c["dropped_no_label"] == 0 and c["dropped_bad_timestamp"] == 0
    # the one zero-duration row (Flow_Byts/s = Flow_Pkts/s = inf, a Mirai flow per SOURCE.txt) is kept and counted
    assert c["rows"] == len(table.frame) == 10_000
    assert c["nonfinite_rows"] == 1 and c["nonfinite_malicious"] == 1
    assert c["nonfinite_by_column"] == {
        "Flow_Byts/s": {"+inf": 1, "-inf": 0, "nan": 0},
        "Flow_Pkts/s": {"+inf": 1, "-inf": 0, "nan": 0},
    }
    assert (c["malicious"], c["benign"]) == (8_000, 2_000)
    assert c["categories"] == {"DoS": 2000, "MITM ARP Spoofing": 2000, "Mirai": 2000, "Normal": 2000, "Scan": 2000}
    # 4 feature vectors occur twice with different Targets (SOURCE.txt)
    assert c["duplicate_feature_rows"] == 4
    assert "real IoTID20 data" in table.describe() and "10,000 rows" in table.describe()


def test_sample_values_and_labels_match_the_file(sample_csv: Path) -> None:
    """Kept rows are all the file's rows, in file order, with the file's values (inf too); y = (Target != Normal)."""
    table = load_csv(sample_csv)
    header, body = _raw_tokens(sample_csv)
    cols = [header.index(c) for c in NUMERIC_COLUMNS]
    raw = np.array([[float(r[j]) for j in cols] for r in body])
    finite = np.isfinite(raw).all(axis=1)
    assert int((~finite).sum()) == 1
    bad = body[int(np.flatnonzero(~finite)[0])]
    assert bad[header.index("Target")] == "Mirai"
    assert bad[header.index("Flow_Byts/s")].lower() == bad[header.index("Flow_Pkts/s")].lower() == "inf"
    np.testing.assert_array_equal(table.frame[list(NUMERIC_COLUMNS)].to_numpy(), raw)
    target = np.array([r[header.index("Target")] for r in body])
    np.testing.assert_array_equal(table.frame["category"].to_numpy(dtype=str), target)
    np.testing.assert_array_equal(table.frame["y"].to_numpy(), (target != "Normal").astype(np.int8))
    assert table.frame["y"].dtype == np.int8


# --------------------------------------------------------------------------- the full 86-column layout


def test_fullschema_head(fullschema_csv: Path) -> None:
    table = load_csv(fullschema_csv)
    f = table.frame
    assert table.layout == "full"
    assert table.identifiers == list(IDENTIFIER_COLUMNS) and table.has_timestamp
    assert table.counts["rows"] == 5 and table.counts["raw_rows"] == 5
    assert table.counts["label_cat_mismatch"] == 0
    assert f["Src_IP"].tolist() == ["192.168.0.13", "222.160.179.132", "192.168.0.16", "192.168.0.16", "192.168.0.1"]
    assert f["Flow_ID"][0] == "192.168.0.13-192.168.0.16-10000-10101-17"
    assert f["Dst_IP"][4] == "239.255.255.250"
    # Timestamp parsed with %d/%m/%Y %I:%M:%S %p (the PM row becomes 22:11)
    assert f["timestamp"][0] == pd.Timestamp("2019-07-25 03:25:53")
    assert f["timestamp"][1] == pd.Timestamp("2019-05-26 22:11:06")
    assert f["Timestamp"][1] == "26/05/2019 10:11:06 PM"
    assert f["category"].tolist() == ["Mirai", "DoS", "Scan", "Mirai", "Mirai"]
    assert f["sub_category"].tolist() == [
        "Mirai-Ackflooding",
        "DoS-Synflooding",
        "Scan Port OS",
        "Mirai-Hostbruteforceg",
        "Mirai-Hostbruteforceg",
    ]
    assert f["y"].tolist() == [1, 1, 1, 1, 1]
    assert f["Flow_Byts/s"][0] == 32_160_000.0 and f["Dst_Port"][4] == 1900


def test_full_layout_labels_and_bad_rows(fullschema_csv: Path, tmp_path: Path) -> None:
    """Label/Cat → y (Normal → 0), a Label/Cat disagreement counted, bad Timestamp and empty cell dropped, inf kept."""
    raw = pd.read_csv(fullschema_csv, dtype=str)
    raw.loc[0, ["Label", "Cat", "Sub_Cat"]] = ["Normal", "Normal", "Normal"]
    raw.loc[1, "Label"] = "Normal"  # Cat stays DoS: a mismatch, Cat wins
    raw.loc[2, "Timestamp"] = "2019-07-11T01:24:48"  # not the IoTID20 format
    raw.loc[3, "Flow_Pkts/s"] = "inf"
    raw.loc[4, "Idle_Min"] = ""  # an empty cell: a damaged row, not a NaN from 0/0
    path = tmp_path / "edited.csv"
    raw.to_csv(path, index=False)
    table = load_csv(path)
    c = table.counts
    assert (c["raw_rows"], c["rows"]) == (5, 3)
    assert c["dropped_bad_timestamp"] == 1 and c["dropped_non_numeric"] == 1 and c["non_numeric_values"] == 1
    assert c["nonfinite_rows"] == 1 and c["nonfinite_by_column"] == {"Flow_Pkts/s": {"+inf": 1, "-inf": 0, "nan": 0}}
    assert c["label_cat_mismatch"] == 1
    assert table.frame["category"].tolist() == ["Normal", "DoS", "Mirai"]
    assert table.frame["Flow_Pkts/s"].tolist()[2] == np.inf
    assert table.frame["y"].tolist() == [0, 1, 1]
    assert (c["malicious"], c["benign"]) == (2, 1)


def test_cleaning_keeps_and_counts_zero_duration_flows(sample_csv: Path, tmp_path: Path) -> None:
    """Attack rows turned into zero-duration flows, written with Java's Infinity/NaN: all kept, counted per column."""
    raw = pd.read_csv(sample_csv)
    attacks = raw[raw["Target"] != "Normal"].groupby("Target").head(5)
    zero = zero_duration(attacks)
    n_nan = int(zero["Flow_Byts/s"].isna().sum())
    assert 0 < n_nan < len(zero)  # both kinds: with and without payload
    path = write_cicflowmeter_csv(zero, tmp_path / "zero.csv")
    assert ",Infinity," in path.read_text() and ",NaN," in path.read_text()
    table = load_csv(path)
    c = table.counts
    assert c["rows"] == c["raw_rows"] == len(zero) == 20 and c["malicious"] == 20
    assert c["dropped_non_numeric"] == 0 and c["nonfinite_rows"] == 20 and c["nonfinite_malicious"] == 20
    assert c["nonfinite_by_column"] == {
        "Flow_Byts/s": {"+inf": len(zero) - n_nan, "-inf": 0, "nan": n_nan},
        "Flow_Pkts/s": {"+inf": len(zero), "-inf": 0, "nan": 0},
    }
    got = table.frame[list(NUMERIC_COLUMNS)].to_numpy()
    np.testing.assert_array_equal(got, zero[list(NUMERIC_COLUMNS)].to_numpy(dtype=float))  # NaN == NaN here


# --------------------------------------------------------------------------- synthetic files


def test_synthetic_csv_loads_as_full_layout(tmp_path: Path) -> None:
    path = write_csv(tmp_path, 3000, seed=1)
    assert path.name == "SYNTHETIC-iotid20-3000.csv"
    raw = pd.read_csv(path)
    assert list(raw.columns) == list(COLUMNS)
    n_inf = int((~np.isfinite(raw[list(NUMERIC_COLUMNS)].to_numpy())).any(axis=1).sum())
    assert n_inf >= 1, "the generator writes a few +inf rows (the IoTID20 quirk)"
    table = load_csv(path, synthetic=True)
    assert table.layout == "full" and table.synthetic
    assert table.counts["raw_rows"] == 3000
    assert table.counts["nonfinite_rows"] == n_inf  # kept (issue 8)
    assert table.counts["rows"] == len(table.frame) == 3000
    assert table.counts["malicious"] == int((raw["Label"] != "Normal").sum())
    assert table.identifiers == list(IDENTIFIER_COLUMNS) and table.frame["timestamp"].notna().all()
    assert "SYNTHETIC" in table.describe()
    # a path given by name is marked synthetic by its file name
    assert resolve_source(str(path), synthetic_rows=100, seed=0, workdir=tmp_path).synthetic


# --------------------------------------------------------------------------- bad input


def test_missing_columns_is_a_data_error(sample_csv: Path, tmp_path: Path) -> None:
    raw = pd.read_csv(sample_csv, nrows=20)
    path = tmp_path / "cut.csv"
    raw.drop(columns=["Flow_Duration", "Idle_Min", "Pkt_Len_Var"]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"3 numeric columns missing") as e:
        load_csv(path)
    for name in ("Flow_Duration", "Idle_Min", "Pkt_Len_Var"):
        assert name in str(e.value)


def test_missing_label_and_missing_file(sample_csv: Path, tmp_path: Path) -> None:
    path = tmp_path / "nolabel.csv"
    pd.read_csv(sample_csv, nrows=5).drop(columns=["Target"]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"no label column.*Target"):
        load_csv(path)
    with pytest.raises(DataError, match="no such file"):
        load_csv(tmp_path / "absent.csv")


# --------------------------------------------------------------------------- choosing the source


def test_auto_picks_the_real_sample(sample_csv: Path, tmp_path: Path) -> None:
    if data_mod.default_sample_path().resolve() != sample_csv.resolve():
        pytest.skip("IOTID20_DATA_DIR points away from the trainer's default sample location")
    table = resolve_source("auto", synthetic_rows=100, seed=0, workdir=tmp_path)
    assert table.source == str(data_mod.default_sample_path())
    assert table.layout == "sample" and not table.synthetic and len(table.frame) == 10_000
    assert list(tmp_path.iterdir()) == [], "no synthetic file is written when the sample is there"


def test_auto_falls_back_to_synthetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_mod, "default_sample_path", lambda: tmp_path / "absent.csv")
    table = resolve_source("auto", synthetic_rows=500, seed=3, workdir=tmp_path / "work")
    assert table.synthetic and table.layout == "full" and table.counts["raw_rows"] == 500
    assert Path(table.source).name == "SYNTHETIC-iotid20-500.csv"
