"""The SYNTHETIC IoTID20 generator: real-file schema, consistency, quirks, time structure, learnability."""

from __future__ import annotations

import ipaddress
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.model_selection import train_test_split

from ids_core import columns as schema
from trainer.synthetic import (
    COLUMNS,
    IDENTIFIER_COLUMNS,
    INF_FRACTION,
    LABEL_COLUMNS,
    NUMERIC_COLUMNS,
    ClassMixError,
    default_class_mix,
    generate,
    main,
    write_csv,
)

REPO = Path(__file__).resolve().parents[2]
TIMESTAMP_RE = re.compile(r"^\d{2}/\d{2}/\d{4} (0[1-9]|1[0-2]):[0-5]\d:[0-5]\d (AM|PM)$")
FLOW_ID_RE = re.compile(r"^(\d+\.\d+\.\d+\.\d+)-(\d+\.\d+\.\d+\.\d+)-(\d+)-(\d+)-(\d+)$")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate(20_000, seed=0)


def binary(df: pd.DataFrame) -> np.ndarray:
    return (df["Label"] != schema.LABEL_NORMAL).to_numpy().astype(int)


def invariants(df: pd.DataFrame) -> dict[str, pd.Series]:
    """CICFlowMeter relations between columns (finite rows); they hold on every real row we have."""
    d = df[np.isfinite(df["Flow_Byts/s"])]
    npk = d["Tot_Fwd_Pkts"] + d["Tot_Bwd_Pkts"]
    byts = d["TotLen_Fwd_Pkts"] + d["TotLen_Bwd_Pkts"]
    first = d["Pkt_Size_Avg"] * npk - byts  # CICFlowMeter counts the first packet twice

    def close(a: pd.Series, b: pd.Series | np.ndarray) -> pd.Series:
        return pd.Series(np.isclose(a, b, rtol=1e-5, atol=1e-3), index=d.index)

    downup = np.where(d["Tot_Fwd_Pkts"] > 0, d["Tot_Bwd_Pkts"] // d["Tot_Fwd_Pkts"].clip(lower=1), 0)
    return {
        "iat_mean": close(d["Flow_IAT_Mean"] * (npk - 1), d["Flow_Duration"]),
        "flow_byts_s": close(d["Flow_Byts/s"], byts / d["Flow_Duration"] * 1e6),
        "flow_pkts_s": close(d["Flow_Pkts/s"], npk / d["Flow_Duration"] * 1e6),
        "fwd_pkts_s": close(d["Fwd_Pkts/s"], d["Tot_Fwd_Pkts"] / d["Flow_Duration"] * 1e6),
        "bwd_pkts_s": close(d["Bwd_Pkts/s"], d["Tot_Bwd_Pkts"] / d["Flow_Duration"] * 1e6),
        "first_pkt_in_range": (first >= d["Pkt_Len_Min"] - 1e-3) & (first <= d["Pkt_Len_Max"] + 1e-3),
        "pkt_len_mean": close(d["Pkt_Len_Mean"] * (npk + 1), byts + first),
        "pkt_len_var": close(d["Pkt_Len_Std"] ** 2, d["Pkt_Len_Var"]),
        "down_up": close(d["Down/Up_Ratio"], downup),
        "subflows": (d["Subflow_Fwd_Pkts"] == d["Tot_Fwd_Pkts"])
        & (d["Subflow_Bwd_Pkts"] == d["Tot_Bwd_Pkts"])
        & (d["Subflow_Fwd_Byts"] == d["TotLen_Fwd_Pkts"])
        & (d["Subflow_Bwd_Byts"] == d["TotLen_Bwd_Pkts"]),
        "seg_avg": close(d["Fwd_Seg_Size_Avg"], d["Fwd_Pkt_Len_Mean"])
        & close(d["Bwd_Seg_Size_Avg"], d["Bwd_Pkt_Len_Mean"]),
        "totlen": close(d["TotLen_Fwd_Pkts"], d["Fwd_Pkt_Len_Mean"] * d["Tot_Fwd_Pkts"])
        & close(d["TotLen_Bwd_Pkts"], d["Bwd_Pkt_Len_Mean"] * d["Tot_Bwd_Pkts"]),
        "iat_tot": (d["Fwd_IAT_Tot"] <= d["Flow_Duration"]) & (d["Bwd_IAT_Tot"] <= d["Flow_Duration"]),
        "act_data": d["Fwd_Act_Data_Pkts"] <= d["Tot_Fwd_Pkts"],
    }


# --------------------------------------------------------------------------- schema


def test_columns_are_the_real_full_file_header(fullschema_csv: Path) -> None:
    header = tuple(pd.read_csv(fullschema_csv, nrows=0).columns)
    assert header == COLUMNS and len(COLUMNS) == 86
    assert IDENTIFIER_COLUMNS == ("Flow_ID", "Src_IP", "Dst_IP", "Timestamp")
    assert LABEL_COLUMNS == ("Label", "Cat", "Sub_Cat") == header[-3:]
    assert tuple(c for c in header if c not in IDENTIFIER_COLUMNS + LABEL_COLUMNS) == NUMERIC_COLUMNS


def test_numeric_columns_are_the_real_sample_header(sample_csv: Path) -> None:
    header = tuple(pd.read_csv(sample_csv, nrows=0).columns)
    assert header[-1] == "Target"
    assert header[:-1] == NUMERIC_COLUMNS and len(NUMERIC_COLUMNS) == 79


def test_dtypes_match_the_real_files(frame: pd.DataFrame, fullschema_csv: Path, sample_csv: Path) -> None:
    full = pd.read_csv(fullschema_csv)
    sample = pd.read_csv(sample_csv, nrows=500)
    assert frame.dtypes.to_dict() == full.dtypes.to_dict()
    assert frame[list(NUMERIC_COLUMNS)].dtypes.to_dict() == sample[list(NUMERIC_COLUMNS)].dtypes.to_dict()
    assert set(frame.select_dtypes("int64").columns) == set(schema.INT_COLUMNS)
    assert frame.notna().all().all()


def test_empty_and_tiny_frames_keep_the_schema() -> None:
    empty = generate(0)
    tiny = generate(7, seed=3)
    assert len(empty) == 0 and len(tiny) == 7
    assert tuple(empty.columns) == tuple(tiny.columns) == COLUMNS
    assert empty.dtypes.to_dict() == tiny.dtypes.to_dict()


# --------------------------------------------------------------------------- determinism and labels


def test_same_seed_same_frame_other_seed_other_frame() -> None:
    a, b, c = generate(3000, seed=11), generate(3000, seed=11), generate(3000, seed=12)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_label_values_spellings_and_default_mix(frame: pd.DataFrame) -> None:
    assert set(frame["Label"]) == {"Normal", "Anomaly"}
    assert set(frame["Cat"]) == {"Mirai", "Scan", "DoS", "Normal", "MITM ARP Spoofing"}
    assert set(frame["Sub_Cat"]) == set(schema.SUB_CAT_COUNTS)
    assert "Mirai-Hostbruteforceg" in set(frame["Sub_Cat"])
    assert (frame["Sub_Cat"].map(schema.SUB_CAT_TO_CAT) == frame["Cat"]).all()
    assert ((frame["Label"] == "Normal") == (frame["Cat"] == "Normal")).all()
    shares = frame["Sub_Cat"].value_counts(normalize=True)
    for sub_cat, share in default_class_mix().items():
        assert shares[sub_cat] == pytest.approx(share, abs=1 / len(frame))


def test_class_mix_controls_the_rows() -> None:
    df = generate(2000, seed=1, class_mix={"Normal": 1.0, "DoS-Synflooding": 3.0})
    assert df["Sub_Cat"].value_counts().to_dict() == {"DoS-Synflooding": 1500, "Normal": 500}
    with pytest.raises(ClassMixError, match="expected class_mix keys"):
        generate(10, class_mix={"Mirai-Hostbruteforce": 1.0})
    with pytest.raises(ClassMixError, match="positive sum"):
        generate(10, class_mix={"Normal": 0.0})


# --------------------------------------------------------------------------- values and quirks


def test_constant_columns_are_constant(frame: pd.DataFrame) -> None:
    for column, value in schema.CONSTANT_COLUMNS.items():
        assert (frame[column] == value).all(), column
    assert (frame["Init_Fwd_Win_Byts"] == -1).all()
    varying = [c for c in NUMERIC_COLUMNS if c not in schema.CONSTANT_COLUMNS]
    assert all(frame[c].nunique() > 1 for c in varying)


def test_inf_rows_are_the_iotid20_quirk(frame: pd.DataFrame) -> None:
    numeric = frame[list(NUMERIC_COLUMNS)]
    inf = np.isinf(numeric.to_numpy())
    inf_cols = set(numeric.columns[inf.any(axis=0)])
    assert inf_cols == set(schema.INF_COLUMNS)
    rows = np.isinf(frame["Flow_Byts/s"])
    assert rows.sum() == round(len(frame) * INF_FRACTION) == 10
    assert (rows == np.isinf(frame["Flow_Pkts/s"])).all()
    assert (frame.loc[rows, "Label"] == "Anomaly").all()
    assert (frame.loc[rows, "Flow_Duration"] == 0).all()
    assert (frame.loc[~rows, "Flow_Duration"] > 0).all()


def test_exact_duplicates_present(frame: pd.DataFrame) -> None:
    assert 0.15 < frame.duplicated().mean() < 0.35  # the real file: 26.2 %


def test_cicflowmeter_relations_hold_as_in_the_real_rows(frame: pd.DataFrame, sample_csv: Path) -> None:
    real = pd.read_csv(sample_csv)
    for name, ok in invariants(real).items():  # anchors the relations on the real data
        assert ok.all(), f"real sample violates {name}"
    for name, ok in invariants(frame).items():
        assert ok.all(), f"synthetic rows violate {name}: {int((~ok).sum())} rows"


def test_value_ranges_like_the_real_file(frame: pd.DataFrame) -> None:
    assert frame["Flow_Duration"].between(0, 99_999).all()
    assert set(frame["Protocol"]) <= {0, 6, 17} and {6, 17} <= set(frame["Protocol"])
    assert frame["Src_Port"].between(0, 65_535).all() and frame["Dst_Port"].between(0, 65_535).all()
    assert (frame["Tot_Bwd_Pkts"] >= 1).all() and (frame["Tot_Fwd_Pkts"] == 0).any()
    assert (frame["Init_Bwd_Win_Byts"] >= -1).all() and (frame["Init_Bwd_Win_Byts"] <= 65_535).all()
    for column in ("Fwd_Pkt_Len_Max", "Bwd_Pkt_Len_Max", "Pkt_Len_Max"):
        assert frame[column].between(0, 1464).all()
    udp = frame["Protocol"] == 17
    assert (frame.loc[udp, "Init_Bwd_Win_Byts"] == -1).all()
    assert (frame.loc[udp, ["SYN_Flag_Cnt", "ACK_Flag_Cnt"]] == 0).all().all()


def test_identifiers_are_well_formed(frame: pd.DataFrame) -> None:
    assert frame["Timestamp"].str.match(TIMESTAMP_RE).all()
    for column in ("Src_IP", "Dst_IP"):
        for ip in frame[column].unique():
            ipaddress.IPv4Address(ip)
    parts = frame["Flow_ID"].str.extract(FLOW_ID_RE)
    assert parts.notna().all().all()
    ip_a, ip_b, port_a, port_b, proto = (parts[i] for i in range(5))
    src, dst = frame["Src_IP"], frame["Dst_IP"]
    sport, dport = frame["Src_Port"].astype(str), frame["Dst_Port"].astype(str)
    forward = (ip_a == src) & (ip_b == dst) & (port_a == sport) & (port_b == dport)
    backward = (ip_a == dst) & (ip_b == src) & (port_a == dport) & (port_b == sport)
    assert (forward | backward).all()
    assert (proto == frame["Protocol"].astype(str)).all()
    assert (src != dst).all()


# --------------------------------------------------------------------------- time structure


def test_rows_in_time_order_over_months(frame: pd.DataFrame) -> None:
    ts = pd.to_datetime(frame["Timestamp"], format=schema.TIMESTAMP_FORMAT)
    assert ts.is_monotonic_increasing
    assert ts.min() >= pd.Timestamp("2019-05-20") and ts.max() <= pd.Timestamp("2019-09-11")
    assert (ts.max() - ts.min()).days >= 100
    assert ts.dt.normalize().nunique() >= 10  # capture days with gaps between them


def test_src_ip_windows_carry_information(frame: pd.DataFrame) -> None:
    def agreement(df: pd.DataFrame) -> float:
        previous = df.groupby("Src_IP", sort=False)["Sub_Cat"].shift()
        known = previous.notna()
        return float((previous[known] == df.loc[known, "Sub_Cat"]).mean())

    lab = frame[frame["Src_IP"].str.startswith("192.168.0.")]
    assert lab["Src_IP"].nunique() >= 4
    mixed = lab.groupby("Src_IP")["Label"].nunique()
    assert (mixed > 1).sum() >= 2  # devices emit both benign and attack flows (e.g. Mirai bots)
    in_order = agreement(frame)
    shuffled = agreement(frame.sample(frac=1.0, random_state=0))
    assert in_order > 0.95 and in_order - shuffled > 0.3


# --------------------------------------------------------------------------- learnability


def test_learnable_but_not_trivial() -> None:
    df = generate(30_000, seed=5)
    df = df[np.isfinite(df[list(NUMERIC_COLUMNS)].to_numpy()).all(axis=1)]
    x, y = df[list(NUMERIC_COLUMNS)].to_numpy(), binary(df)

    def score(labels: np.ndarray) -> tuple[float, float]:
        x_tr, x_te, y_tr, y_te = train_test_split(x, labels, test_size=0.2, stratify=labels, random_state=0)
        model = ExtraTreesClassifier(n_estimators=100, n_jobs=-1, random_state=0).fit(x_tr, y_tr)
        pred = model.predict(x_te)
        return accuracy_score(y_te, pred), balanced_accuracy_score(y_te, pred)

    acc, bal = score(y)
    assert 0.90 <= acc <= 0.995, acc
    assert bal > 0.85, bal
    majority = max(y.mean(), 1 - y.mean())
    acc_shuffled, bal_shuffled = score(np.random.default_rng(0).permutation(y))
    assert acc_shuffled <= majority + 0.005, (acc_shuffled, majority)
    assert abs(bal_shuffled - 0.5) < 0.05, bal_shuffled


def test_no_real_row_is_reproduced(frame: pd.DataFrame, sample_csv: Path) -> None:
    real = pd.read_csv(sample_csv)[list(NUMERIC_COLUMNS)].drop_duplicates()
    both = frame[list(NUMERIC_COLUMNS)].drop_duplicates().merge(real, how="inner")
    # only trivial payload-free flows (e.g. protocol 0, all-zero lengths) may coincide by chance
    assert len(both) <= 5
    assert (both["TotLen_Fwd_Pkts"] + both["TotLen_Bwd_Pkts"] == 0).all()


# --------------------------------------------------------------------------- files and CLI


def test_write_csv_round_trips_like_the_real_file(tmp_path: Path, fullschema_csv: Path) -> None:
    path = write_csv(tmp_path, 3000, seed=2)
    assert path == tmp_path / "SYNTHETIC-iotid20-3000.csv"
    lines = path.read_text().splitlines()
    assert lines[0] == fullschema_csv.read_text().splitlines()[0]
    assert len(lines) == 3001
    assert any(",inf,inf," in line for line in lines[1:])
    back = pd.read_csv(path)
    pd.testing.assert_frame_equal(back, generate(3000, seed=2))
    named = write_csv(tmp_path / "sub" / "demo.csv", 50)
    assert named == tmp_path / "sub" / "demo.csv" and len(pd.read_csv(named)) == 50


def test_main_writes_into_a_new_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--rows", "500", "--seed", "1", "--out", str(tmp_path / "x")]) == 0
    path = tmp_path / "x" / "SYNTHETIC-iotid20-500.csv"
    assert capsys.readouterr().out.strip() == str(path)
    assert len(pd.read_csv(path)) == 500


def test_runs_as_a_module(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "trainer.synthetic", "--rows", "200", "--out", str(tmp_path)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert len(pd.read_csv(tmp_path / "SYNTHETIC-iotid20-200.csv")) == 200
