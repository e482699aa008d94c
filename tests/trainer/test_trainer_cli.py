"""``iotids-train``: help, errors naming the key, ``estimate`` at the paper's shape, a paper-profile smoke run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trainer.cli import main

REPO = Path(__file__).resolve().parents[2]
SUBCOMMANDS = {
    "run": ["--profile", "--set", "--out", "--model-version", "--data"],
    "grid": ["--limit", "--only", "--set", "--out"],
    "estimate": ["--rows", "--steps", "--profile"],
    "synth": ["--rows", "--seed", "--out"],
}


def _env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _cli(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trainer.cli", *args],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_console_script_help() -> None:
    exe = shutil.which("iotids-train", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if exe is None:
        pytest.skip("the iotids-train console script is not installed (pip install -e '.[train]')")
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: iotids-train")
    for sub in SUBCOMMANDS:
        assert sub in proc.stdout
    assert "iotids-train estimate --profile paper" in proc.stdout  # the examples epilog


@pytest.mark.parametrize("sub", sorted(SUBCOMMANDS))
def test_subcommand_help(sub: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([sub, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: iotids-train {sub}")
    for flag in SUBCOMMANDS[sub]:
        assert flag in out


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochz=3", r"train: unknown key\(s\) \['epochz'\]; allowed: .*'epochs'"),
        ("bogus=1", r"unknown key\(s\) \['bogus'\]"),
        ("train.epochs=0", r"train\.epochs: 0 is out of range; allowed: >= 1"),
        ("train.epochs=many", r"train\.epochs: expected int, got str 'many'"),
        ("window.order=sideways", r"window\.order: 'sideways' is not allowed; allowed: auto, timestamp, shuffle, file"),
        ("compare=[cnn]", r"compare: 'cnn' is not allowed; allowed: uni-hybrid, bi-hybrid, ullah-cnn"),
        ("nokey", r"override: expected key\.path=value"),  # the item is not echoed: it may be a misplaced secret
        ("train.epochs=[1", r"override train\.epochs: value is not valid YAML"),
    ],
)
def test_bad_set_exits_2_naming_the_key(override: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("iotids-train: error: ")
    assert re.search(message, err), err


def test_bad_set_in_a_real_process() -> None:
    proc = _cli("grid", "--set", "grid.optimizer=[sgd]", timeout=120)
    assert proc.returncode == 2
    assert "grid.optimizer: 'sgd' is not allowed; allowed: adam, adamax, nadam" in proc.stderr
    proc = _cli("run", "--profile", "nope", timeout=120)
    assert proc.returncode == 2 and "no profile 'nope'" in proc.stderr and "'paper'" in proc.stderr


@pytest.mark.timeout(600)
def test_estimate_paper_shape_runs() -> None:
    """The paper profile's (62, 62) input builds and trains a step here; the estimate prints hours."""
    proc = _cli("estimate", "--profile", "paper", "--steps", "1", timeout=540)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "profile paper: input (62, 62), 625,415 rows → 400,266 windows per training epoch" in out
    for name in ("uni-hybrid", "bi-hybrid", "ullah-cnn"):
        m = re.search(rf"{name}: (\d+) ms/step at batch 256 .* ≤ ([\d.]+) h for 50 epochs", out)
        assert m, out
        assert int(m.group(1)) > 0 and float(m.group(2)) > 0
    for batch in (32, 64, 128, 256):
        assert re.search(rf"grid, batch {batch}: \d+ ms/step", out)
    m = re.search(r"grid search \(144 combinations × 3 epochs\): ≤ ([\d.]+) h", out)
    assert m and float(m.group(1)) > 0


@pytest.mark.timeout(900)
def test_paper_profile_runs_end_to_end_on_synthetic_data(tmp_path: Path) -> None:
    """``run --profile paper`` (T=62 windows per Src_IP in Timestamp order) on SYNTHETIC data, capped to 2 steps."""
    out = tmp_path / "paper"
    proc = _cli(
        "run",
        "--profile",
        "paper",
        "--data",
        "synthetic",
        "--set",
        "train.epochs=1",
        "--set",
        "train.steps_per_epoch=2",
        "--set",
        "synthetic_rows=3000",
        "--set",
        "compare=[]",
        "--out",
        str(out),
        "--model-version",
        "paper-smoke",
        timeout=840,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SYNTHETIC data" in proc.stdout
    assert re.search(r"uni-hybrid: test accuracy [\d.]+ \(Keras float\), [\d.]+ \(int8 TFLite\)", proc.stdout)
    summary = json.loads((out / "report.json").read_text())
    assert summary["data"]["synthetic"] is True and summary["data"]["layout"] == "full"
    assert summary["window"] == {"shape": [62, 62], "key": ["Src_IP"], "order": "auto"}
    assert summary["training"]["uni-hybrid"]["epochs_run"] == 1
    assert list(summary["results"]["models"]) == ["uni-hybrid", "uni-hybrid int8"]
    assert "> **SYNTHETIC DATA.**" in (out / "report.md").read_text()
    spec = json.loads((out / "spec.json").read_text())
    assert spec["window"]["length"] == 62 and spec["window"]["key"] == ["Src_IP"]
    assert spec["input"]["shape"] == [62, 62] and spec["model"]["version"] == "paper-smoke"
    assert spec["scaler"]["kind"] == "minmax"  # as published
    q_in = np.load(out / "selftest_inputs.npy")
    assert q_in.dtype == np.int8 and q_in.shape[1:] == (62, 62)
    from ids_core.interpreter import TFLiteModel

    model = TFLiteModel(out / "model_int8.tflite")
    assert model.is_int8 and model.input_shape == (62, 62)
    assert model.op_summary()["float_tensors"] == []
    np.testing.assert_array_equal(model.invoke_raw(q_in), np.load(out / "selftest_outputs.npy"))
