"""The random-forest baseline: fitted on the run's own split, scored per test window, printed beside Table V."""

from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn.model_selection import train_test_split
from trained import QuickRun

from trainer.baseline import BASELINE_NAME, random_forest
from trainer.data import load_csv


@pytest.fixture(scope="module")
def sample_split(sample_csv):
    frame = load_csv(sample_csv).frame
    train_idx, test_idx = train_test_split(np.arange(len(frame)), test_size=0.2, stratify=frame["y"], random_state=42)
    return frame.iloc[np.sort(train_idx)].reset_index(drop=True), frame.iloc[np.sort(test_idx)].reset_index(drop=True)


def test_forest_scores_follow_the_test_rows_it_is_given(sample_split) -> None:
    train, test = sample_split
    rows = np.random.default_rng(0).permutation(len(test))
    in_order = random_forest(train, test, np.arange(len(test)), seed=42, n_estimators=20)
    shuffled = random_forest(train, test, rows, seed=42, n_estimators=20)
    np.testing.assert_array_equal(shuffled.scores, in_order.scores[rows])
    accuracy = ((in_order.scores > 0.5) == test["y"].to_numpy()).mean()
    assert accuracy > 0.95, accuracy  # a forest on the sample: ~0.985 with 200 trees (MEASUREMENTS.md)
    assert in_order.params["features"] == 79


def test_report_prints_the_forest_beside_table_v(quick_run: QuickRun) -> None:
    base = quick_run.summary["baseline"]
    y = quick_run.prep.test.y
    m = base["test"]
    assert base["name"] == BASELINE_NAME and base["params"]["n_estimators"] == 200
    assert m["n"] == len(y)
    c = m["confusion"]
    assert c["fp"] + c["tn"] == int((y == 0).sum()) and m["benign_fpr"] == pytest.approx(c["fp"] / (c["fp"] + c["tn"]))
    report = (quick_run.out_dir / "report.md").read_text()
    table_v = report.index("## Table V")
    section = report.index("### Beside a random forest")
    assert table_v < section < report.index("### Confusion matrices")
    row = re.search(rf"^\| {BASELINE_NAME} \(baseline\) \| ([\d.]+)% \| ([\d.]+)% \|", report, re.M)
    assert row, report[section : section + 1500]
    assert float(row.group(1)) == pytest.approx(100 * m["accuracy"], abs=5e-4)
    assert float(row.group(2)) == pytest.approx(100 * m["benign_fpr"], abs=5e-4)
    shipped = quick_run.summary["results"]["models"]["uni-hybrid int8"]["test"]
    assert re.search(
        rf"^\| uni-hybrid int8 \| {100 * shipped['accuracy']:.3f}% \| {100 * shipped['benign_fpr']:.3f}%", report, re.M
    )
