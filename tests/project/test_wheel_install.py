"""The wheel works without the source tree: defaults ship inside the packages (importlib.resources).

Builds the wheel, installs it (not editable) into a fresh venv outside the checkout, and runs the console
scripts from another directory. Third-party dependencies come from the test's own environment through a
``.pth`` file, so nothing is downloaded; our own packages come only from the wheel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(argv: list, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", work, REPO], work)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = work.glob("edge_ids-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "agent/defaults/agent.yaml" in names and "trainer/defaults/trainer.yaml" in names, names
    venv = work / "venv"
    assert _run([sys.executable, "-m", "venv", venv], work).returncode == 0
    py = venv / "bin" / "python"
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work).stdout.strip())
    (site / "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # numpy, paho, LiteRT, TF…
    installed = _run([py, "-m", "pip", "install", "--no-deps", "--no-index", wheel], work)
    assert installed.returncode == 0, installed.stderr[-2000:]
    return venv


@pytest.mark.slow
def test_our_packages_come_from_the_wheel(wheel_venv, tmp_path):
    code = "import agent, ids_core, trainer, agent.metrics, flowmeter.metrics; print(agent.__file__)"  # + catalogues
    out = _run([wheel_venv / "bin" / "python", "-c", code], tmp_path)
    assert out.returncode == 0, out.stderr
    assert str(REPO) not in out.stdout and "site-packages" in out.stdout


@pytest.mark.slow
def test_agent_validates_its_config_outside_the_checkout(wheel_venv, tmp_path, quick_run):
    out = _run(
        [
            wheel_venv / "bin" / "iotids-agent",
            "--validate-config",
            "--set",
            f"model.dir={quick_run.out_dir}",
            "--set",
            f"state_dir={tmp_path / 'state'}",
        ],
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "configuration OK" in out.stdout


@pytest.mark.slow
def test_trainer_lists_profiles_and_helps_outside_the_checkout(wheel_venv, tmp_path):
    profiles = _run([wheel_venv / "bin" / "iotids-train", "profiles"], tmp_path)
    assert profiles.returncode == 0, profiles.stderr[-2000:]
    assert {"quick", "paper"} <= set(profiles.stdout.split())
    helped = _run([wheel_venv / "bin" / "iotids-train", "run", "--help"], tmp_path)
    assert helped.returncode == 0 and "--profile" in helped.stdout, helped.stderr[-2000:]
