"""Operating points: the report's table of threshold → false-positive rate, recall, precision on the test split.

The unit tests check the table and the marked thresholds on hand-made and random scores (no training). The run
test reads the quick run's ``report.md``, checks the shipped int8 model's saved test-split scores are the scores
LiteRT gives for the test windows, and recomputes every number of the table from them with plain numpy.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from ids_core.interpreter import TFLiteModel
from ids_core.preprocess import Quantization
from trainer import cli
from trainer.operating_points import (
    PLOT,
    TEST_SCORES,
    lowest_threshold_for,
    operating_points,
    save_test_scores,
)

OUTPUT = Quantization(scale=1 / 256, zero_point=-128)  # a sigmoid's int8 output: scores k/256, k = 0…255


def fpr(y: np.ndarray, s: np.ndarray, t: float) -> float:
    return float(np.mean(s[y == 0] > t))


def assert_lowest(y: np.ndarray, s: np.ndarray, t: float, target: float) -> None:
    """``t`` reaches ``target`` and no lower threshold does: below the score value just under ``t`` (the start of
    the interval of thresholds flagging what ``t`` flags), one more window is flagged and the rate is over."""
    assert fpr(y, s, t) <= target, (t, fpr(y, s, t))
    lower = s[s < t]
    if lower.size and lower.max() > 0:
        below = float(np.nextafter(lower.max(), 0))
        assert fpr(y, s, below) > target, f"threshold {below} < {t} also reaches {target}"


def test_table_by_hand():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
    table = operating_points(y, s, model_threshold=0.5, thresholds=(0.25, 0.65), fpr_targets=(0.25, 0.01))
    rows = {p["threshold"]: p for p in table["points"]}
    assert [p["threshold"] for p in table["points"]] == sorted(rows)
    assert (rows[0.25]["fpr"], rows[0.25]["recall"], rows[0.25]["precision"]) == (0.5, 1.0, 4 / 6)
    assert (rows[0.5]["fpr"], rows[0.5]["recall"], rows[0.5]["precision"]) == (0.25, 0.75, 0.75)
    assert (rows[0.65]["fpr"], rows[0.65]["recall"], rows[0.65]["precision"]) == (0.0, 0.75, 1.0)
    assert rows[0.5]["marks"][0] == "model's threshold"
    # one benign of four may be above it: any threshold in [0.3, 0.4); none may: [0.6, 0.7) (shortest decimals inside)
    assert table["targets"] == {"25%": 0.35, "1%": 0.65}
    assert rows[0.35]["marks"] == ["lowest for FPR ≤ 25%"] and rows[0.65]["marks"] == ["lowest for FPR ≤ 1%"]
    assert (table["n_benign"], table["n_malicious"], table["fpr_step"]) == (4, 4, 0.25)


def test_alert_means_score_above_the_threshold():
    """As in the agent: a score equal to the threshold does not alert."""
    y, s = np.array([0, 1, 1]), np.array([0.5, 0.5, 0.75])
    (row,) = [p for p in operating_points(y, s, thresholds=())["points"] if p["threshold"] == 0.5]
    assert (row["tp"], row["fp"], row["fn"], row["tn"]) == (1, 0, 1, 1)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("target", [0.05, 0.01, 0.001])
def test_marked_threshold_is_the_lowest_reaching_the_target(seed, target):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 3000))
    y = (rng.random(n) < rng.uniform(0.2, 0.9)).astype(int)
    s = OUTPUT.dequantize(OUTPUT.quantize(np.clip(rng.normal(0.35 + 0.4 * y, 0.2), 0, 1)))
    t = lowest_threshold_for(y, s, target)
    assert t is not None and 0 < t < 1
    assert fpr(y, s, t) <= target
    assert_lowest(y, s, t, target)
    assert not np.any(s == t), "a threshold between two score values (no score sits on it)"


def test_unreachable_targets_are_none():
    assert lowest_threshold_for(np.array([1, 1]), np.array([0.2, 0.9]), 0.01) is None  # no benign windows
    assert lowest_threshold_for(np.array([0, 1]), np.array([1.0, 1.0]), 0.01) is None  # no threshold below 1
    assert 0 < lowest_threshold_for(np.array([0, 1]), np.array([0.0, 0.5]), 0.01) < 0.5  # 0 itself is not allowed


def test_saved_scores_must_be_the_int8_models(tmp_path):
    y = np.array([0, 1])
    save_test_scores(tmp_path / "a.npz", y, np.array([3 / 256, 200 / 256], dtype=np.float32), OUTPUT)
    with np.load(tmp_path / "a.npz") as z:
        assert z["scores_int8"].tolist() == [-125, 72] and z["y_true"].tolist() == [0, 1]
    with pytest.raises(ValueError, match="quantization steps"):
        save_test_scores(tmp_path / "b.npz", y, np.array([0.1, 0.9], dtype=np.float32), OUTPUT)


# --------------------------------------------------------------------------- the quick run's report

ROW = re.compile(r"^\| (\*\*)?(?P<t>[0-9.e-]+)(\*\*)? \| (?P<fpr>[0-9.]+) % \| (?P<rec>[0-9.]+|–)( %)? \| "
                 r"(?P<prec>[0-9.]+|–)( %)? \| (?P<fp>[0-9,]+) \| (?P<fn>[0-9,]+) \| (?P<marks>[^|]*) \|$")  # fmt: skip


def report_table(report: str) -> list[dict]:
    section = report.split("## Operating points", 1)[1].split("\n## ", 1)[0]
    rows = [m.groupdict() for m in map(ROW.match, section.splitlines()) if m]
    assert rows, f"no operating-point rows in:\n{section}"
    return rows


def test_report_operating_points_recomputed_from_saved_scores(quick_run, capsys):
    out = quick_run.out_dir
    with np.load(out / TEST_SCORES) as z:
        y, s, raw = z["y_true"].astype(int), z["scores"].astype(np.float64), z["scores_int8"]
        quant = Quantization(float(z["output_scale"]), int(z["output_zero_point"]))
    # the saved scores are the shipped model's on the test split, as LiteRT (the agent's interpreter) gives them
    model = TFLiteModel(quick_run.model_path)
    assert np.array_equal(y, quick_run.prep.test.y.astype(int))
    assert np.array_equal(model.scores(model.quantize(quick_run.prep.test.windows())), s.astype(np.float32))
    assert np.array_equal(quant.dequantize(raw), s.astype(np.float32))
    spec = quick_run.spec()
    summary = json.loads((out / "report.json").read_text())
    conf = summary["results"]["models"][f"{spec.model_name} int8"]["test"]["confusion"]
    assert conf["fp"] == int(np.sum((s > spec.threshold) & (y == 0))) and conf["tp"] == int(
        np.sum((s > spec.threshold) & (y == 1))
    )

    rows = report_table((out / "report.md").read_text())
    benign, malicious = s[y == 0], s[y == 1]
    for r in rows:
        t = float(r["t"])
        fp, tp = int(np.sum(benign > t)), int(np.sum(malicious > t))
        assert int(r["fp"].replace(",", "")) == fp and int(r["fn"].replace(",", "")) == len(malicious) - tp, r
        assert float(r["fpr"]) == pytest.approx(round(100 * fp / len(benign), 2), abs=1e-9), r
        assert float(r["rec"]) == pytest.approx(round(100 * tp / len(malicious), 2), abs=1e-9), r
        if tp + fp:
            assert float(r["prec"]) == pytest.approx(round(100 * tp / (tp + fp), 2), abs=1e-9), r
    marked = {m: float(r["t"]) for r in rows for m in r["marks"].split("; ") if m.strip()}
    assert marked["model's threshold"] == spec.threshold
    for target, name in ((0.01, "1%"), (0.001, "0.1%")):
        assert_lowest(y, s, marked[f"lowest for FPR ≤ {name}"], target)
    assert (out / PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"]({PLOT})" in (out / "report.md").read_text()

    # iotids-train thresholds prints the same table for the run
    assert cli.main(["thresholds", str(out)]) == 0
    printed = capsys.readouterr().out
    assert all(re.search(rf"^\s*{re.escape(r['t'])}\s", printed, re.M) for r in rows), printed
