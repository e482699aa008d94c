"""Session fixture ``quick_run``: the README's main job, trained once per test session and shared.

It runs ``trainer.pipeline.run(load_profile("quick", overrides=["data=<real sample>"]), out_dir,
model_version="test-quick")`` (Uni-Hybrid plus the Bi-Hybrid and Ullah-CNN comparison, float and int8
export, report) on the real IoTID20 sample: about 2 minutes on 2 cores. Without the sample it skips.

Interface (other test modules rely on it; keep it stable):

``quick_run.out_dir``
    The run's output directory: ``model_int8.tflite`` (shipped), ``model_float.tflite``, ``spec.json``,
    ``selftest_inputs.npy`` / ``selftest_outputs.npy``, the attack-category model (``category_int8.tflite``,
    ``category.json`` and its self-test vectors: ``ids_core.artifacts.CATEGORY_FILES``), ``report.md``,
    ``report.json``, ``*.png``, ``keras/``.
    Treat it as read-only: it is shared by every test of the session.
``quick_run.summary``
    The dict ``run`` returned (what ``report.json`` holds).
``quick_run.prep``
    ``trainer.pipeline.Prepared`` of the same profile (``prep.test.windows()`` is the test split's model
    input, ``prep.test.y`` its labels). ``run`` does not return it, so the fixture calls ``prepare`` again;
    that is deterministic, and the fixture checks it against ``spec.json`` and the summary.
``quick_run.profile``
    The ``trainer.config.Profile`` used.
``quick_run.model_path`` / ``float_model_path`` / ``spec_path``, ``quick_run.spec()``
    Shortcuts for the artifacts (``spec()`` loads ``ids_core.preprocess.PreprocessSpec``).

Heavy imports (TensorFlow, via the trainer) happen only when the fixture is first used, so importing this
module from ``conftest.py`` keeps agent-only test runs light.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

if TYPE_CHECKING:
    from ids_core.preprocess import PreprocessSpec
    from trainer.config import Profile
    from trainer.pipeline import Prepared

log = logging.getLogger(__name__)

MODEL_VERSION = "test-quick"


@dataclass(frozen=True)
class QuickRun:
    """The shared result of the quick profile's run on the real sample (see the module docstring)."""

    out_dir: Path
    summary: dict[str, Any]
    prep: Prepared
    profile: Profile
    seconds: float

    @property
    def model_path(self) -> Path:
        return self.out_dir / "model_int8.tflite"

    @property
    def float_model_path(self) -> Path:
        return self.out_dir / "model_float.tflite"

    @property
    def category_model_path(self) -> Path:
        return self.out_dir / "category_int8.tflite"

    @property
    def spec_path(self) -> Path:
        return self.out_dir / "spec.json"

    def spec(self) -> PreprocessSpec:
        from ids_core.preprocess import PreprocessSpec

        return PreprocessSpec.load(self.spec_path)


def _check_prepared_matches(run: QuickRun) -> None:
    """``prepare`` again must give what ``run`` used: same features, scaler and split sizes."""
    spec = run.spec()
    tf = run.prep.selection.transform
    same = (
        spec.transform.features == tf.features
        and np.array_equal(spec.transform.data_min, tf.data_min)
        and np.array_equal(spec.transform.scale, tf.scale)
        and run.summary["split"]["test"] == len(run.prep.test)
        and run.summary["split"]["test_malicious"] == int(run.prep.test.y.sum())
    )
    if not same:
        raise RuntimeError("trainer.pipeline.prepare is not deterministic: re-prepared data differ from the run's")


@pytest.fixture(scope="session")
def quick_run(sample_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> QuickRun:
    """Train the quick profile on the real sample once per session (skips without the sample)."""
    from trainer.config import load_profile
    from trainer.pipeline import prepare, run

    profile = load_profile("quick", overrides=[f"data={sample_csv}"])
    out_dir = tmp_path_factory.mktemp("quick_run")
    start = time.perf_counter()
    summary = run(profile, out_dir, model_version=MODEL_VERSION, verbose=0)
    seconds = time.perf_counter() - start
    log.info("quick_run: trained and exported in %.0f s into %s", seconds, out_dir)
    prep = prepare(profile, tmp_path_factory.mktemp("quick_run_prepare"))
    result = QuickRun(out_dir=out_dir, summary=summary, prep=prep, profile=profile, seconds=seconds)
    _check_prepared_matches(result)
    return result
