"""The resumable Table II grid search (trainer/grid.py) on the real sample: 2 cheap combinations, 1 epoch each."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trainer.config import load_profile
from trainer.grid import PARAMS, combinations, combo_key, load_results, run_grid, select

REPO = Path(__file__).resolve().parents[2]
FAST = ["grid.epochs=1", "features.extra_trees_estimators=10"]
# two 1-layer, 1-dense models at batch 256 (adam, then adamax)
ONLY = "learning_rate=0.001,num_layers=1,num_dense_layers=1,batch_size=256"


def _profile(sample_csv: Path):
    return load_profile("quick", overrides=[f"data={sample_csv}", *FAST])


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _table_rows(grid_md: Path) -> list[list[str]]:
    rows = [line for line in grid_md.read_text().splitlines() if line.startswith("| ") and line[2].isdigit()]
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows]


def test_selection() -> None:
    profile = load_profile("quick")
    combos = combinations(profile)
    assert len(combos) == 2 * 3 * 3 * 2 * 4 == 144
    chosen = select(combos, ONLY, limit=2)
    assert [c["optimizer"] for c in chosen] == ["adam", "adamax"]
    assert all(c["batch_size"] == 256 and c["num_layers"] == 1 for c in chosen)
    assert combo_key(chosen[0]) == "learning_rate=0.001,optimizer=adam,num_layers=1,num_dense_layers=1,batch_size=256"
    assert len(select(combos, "optimizer=nadam")) == 48
    with pytest.raises(ValueError, match="unknown parameter"):
        select(combos, "epochs=3")


@pytest.fixture(scope="module")
def two_combo_grid(sample_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("grid")
    return out, run_grid(_profile(sample_csv), out, limit=2, only=ONLY)


def test_two_combination_grid(two_combo_grid: tuple[Path, list[dict]]) -> None:
    out, ranked = two_combo_grid
    assert len(ranked) == 2
    assert {r["params"]["optimizer"] for r in ranked} == {"adam", "adamax"}
    assert [r["val_accuracy"] for r in ranked] == sorted((r["val_accuracy"] for r in ranked), reverse=True)
    for r in ranked:
        assert len(r["history"]["loss"]) == 1  # grid.epochs=1, no early stopping
        assert 0.5 < r["val_accuracy"] <= 1.0 and 0.5 < r["test"]["accuracy"] <= 1.0
        assert r["validation"]["n"] == 1600 and r["test"]["n"] == 2000
    assert sorted(load_results(out / "grid.jsonl")) == sorted(r["key"] for r in ranked)
    rows = _table_rows(out / "grid.md")
    assert [row[0] for row in rows] == ["1", "2"]
    assert [row[1 + PARAMS.index("optimizer")] for row in rows] == [r["params"]["optimizer"] for r in ranked]
    assert rows[0][1 + len(PARAMS)] == f"{ranked[0]['val_accuracy']:.4f}"


def test_torn_last_line_is_ignored_and_not_glued(
    two_combo_grid: tuple[Path, list[dict]], sample_csv: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A kill mid-write leaves a torn line: it is ignored, that combination runs again and its line stays whole."""
    src, _ = two_combo_grid
    first, second = _lines(src / "grid.jsonl")
    assert json.loads(first)["params"]["optimizer"] == "adam"
    path = tmp_path / "grid.jsonl"
    path.write_text(first + "\n" + second[:60])  # the adamax line cut mid-write, no newline
    assert sorted(load_results(path)) == [json.loads(first)["key"]]
    with caplog.at_level(logging.INFO, logger="trainer.grid"):
        ranked = run_grid(_profile(sample_csv), tmp_path, limit=2, only=ONLY)
    assert "grid.jsonl:2: ignoring an incomplete result line" in caplog.text
    assert "2 selected, 1 already finished (skipped), 1 to run" in caplog.text
    assert len(ranked) == 2
    lines = _lines(path)
    assert lines[0] == first and lines[1] == second[:60]
    assert json.loads(lines[2])["params"]["optimizer"] == "adamax"
    # what a later restart sees: both combinations finished
    assert sorted(load_results(path)) == sorted(r["key"] for r in ranked)


def _grid_cmd(sample_csv: Path, out: Path) -> list[str]:
    sets = [*FAST, "grid.batch_size=[256,32]"]  # the second combination (batch 32) takes longer: time to kill
    return [
        sys.executable,
        "-m",
        "trainer.cli",
        "grid",
        "--data",
        str(sample_csv),
        *[a for s in sets for a in ("--set", s)],
        "--only",
        "learning_rate=0.001,optimizer=adam,num_layers=1,num_dense_layers=1",
        "--limit",
        "2",
        "--out",
        str(out),
    ]


@pytest.mark.timeout(600)
def test_killed_grid_resumes(sample_csv: Path, tmp_path: Path) -> None:
    """SIGKILL the CLI once one combination is recorded; the rerun skips it and finishes the other."""
    out = tmp_path / "grid"
    results = out / "grid.jsonl"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(
        _grid_cmd(sample_csv, out), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 240
        while not (results.exists() and results.read_text().endswith("\n")):
            assert proc.poll() is None, f"grid exited early ({proc.returncode}): {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "no combination finished within 240 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    first_run = _lines(results)
    assert len(first_run) == 1, "the second combination finished before the kill; the test needs it unfinished"
    assert json.loads(first_run[0])["params"]["batch_size"] == 256

    rerun = subprocess.run(
        _grid_cmd(sample_csv, out), cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "grid: 2 selected, 1 already finished (skipped), 1 to run" in rerun.stderr
    lines = _lines(results)
    assert len(lines) == 2 and lines[0] == first_run[0]
    assert json.loads(lines[1])["params"]["batch_size"] == 32
    rows = _table_rows(out / "grid.md")
    assert [row[0] for row in rows] == ["1", "2"]
    assert sorted(row[1 + PARAMS.index("batch_size")] for row in rows) == ["256", "32"]
    val = [float(row[1 + len(PARAMS)]) for row in rows]
    assert val == sorted(val, reverse=True)
    assert "| 1 | 0.001 | adam | 1 | 1 |" in rerun.stdout  # the ranked table is printed too
