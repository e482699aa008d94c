"""Windows must not leak labels through their context.

The sample has no Timestamp and is sorted by class. With the default order (a seeded shuffle) a window's
older flows are unrelated to its newest flow, so a model that sees only the context (newest flow blanked)
can do no better than the majority class. The control trains on windows in FILE order, where the context
shares the newest flow's class: there the same blanking still scores far above the majority class, which
shows that the test detects a leak when there is one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

T = 4
SLACK = 0.01
OVERRIDES = [
    f"window.length={T}",
    "compare=[]",
    "train.epochs=8",
    "train.patience=8",
    "train.batch_size=128",
    "features.extra_trees_estimators=25",
]


@dataclass
class LeakResult:
    order: str
    accuracy: float  # intact test windows
    blanked_accuracy: float  # newest flow of every test window set to 0
    majority: float
    stream_rows: np.ndarray


def _train_and_blank(sample_csv: Path, workdir: Path, order: str) -> LeakResult:
    from trainer.config import load_profile
    from trainer.pipeline import prepare
    from trainer.train import train_model

    profile = load_profile("quick", overrides=[f"data={sample_csv}", f"window.order={order}", *OVERRIDES])
    prep = prepare(profile, workdir / "data")
    assert prep.train.shape == (T, 62)
    trained = train_model(
        profile.model.name, prep.train, profile.train, workdir / "keras", seed=profile.seed, verbose=0
    )
    x, y = prep.test.windows(), prep.test.y.astype(int)
    assert (x[:, -1, :] != 0).any(axis=1).all(), "every newest flow has a non-zero feature"
    assert (x[:, :-1, :] != 0).any(axis=(1, 2)).mean() > 0.99, "nearly every window has context"
    intact = trained.model.predict(x, batch_size=1024, verbose=0).reshape(-1) > 0.5
    x[:, -1, :] = 0
    blanked = trained.model.predict(x, batch_size=1024, verbose=0).reshape(-1) > 0.5
    result = LeakResult(
        order=order,
        accuracy=float((intact == y).mean()),
        blanked_accuracy=float((blanked == y).mean()),
        majority=float(max(y.mean(), 1 - y.mean())),
        stream_rows=prep.test.rows,
    )
    print(
        f"order={order}: accuracy {result.accuracy:.4f}, newest flow blanked {result.blanked_accuracy:.4f}, "
        f"majority {result.majority:.4f}"
    )
    return result


def test_context_alone_carries_no_label(sample_csv: Path, tmp_path: Path, record_property) -> None:
    """Default order on the sample (seeded shuffle): blanking the newest flow leaves majority-class accuracy."""
    r = _train_and_blank(sample_csv, tmp_path, "auto")
    record_property("shuffle_accuracy", r.accuracy)
    record_property("shuffle_blanked_accuracy", r.blanked_accuracy)
    assert not np.all(np.diff(r.stream_rows) > 0), "auto order on data without Timestamp must shuffle"
    assert r.majority == pytest.approx(0.8)
    assert r.accuracy >= r.majority + 0.1, "the model must have learned from the newest flow (measured 0.964)"
    assert r.blanked_accuracy <= r.majority + SLACK


def test_file_order_control_leaks(sample_csv: Path, tmp_path: Path, record_property) -> None:
    """Control: windows in file order (sorted by class) carry the label in their context, and the test sees it."""
    r = _train_and_blank(sample_csv, tmp_path, "file")
    record_property("file_order_blanked_accuracy", r.blanked_accuracy)
    np.testing.assert_array_equal(r.stream_rows, np.arange(len(r.stream_rows)))
    assert r.blanked_accuracy > r.majority + 0.1  # measured 0.986 vs majority 0.800
