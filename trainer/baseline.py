"""The random-forest baseline: what the shipped network has to beat, on the same split with the same seed.

scikit-learn's ``RandomForestClassifier`` (200 trees) on every numeric IoTID20 column (all 79, ports and
protocol included, raw values: a forest needs no scaling), fitted on the training split's flows and scored on
each test window's newest flow. Non-finite values follow the shared rule (``+inf`` → the training maximum,
``-inf`` → the minimum, ``NaN`` → 0). Training weights of the network's windows (site adaptation) weigh the
forest's rows too. The report prints it beside Table V with accuracy and the false-positive rate on benign flows.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

from ids_core.columns import NUMERIC_COLUMNS
from ids_core.preprocess import finite_range, replace_nonfinite
from trainer.evaluate import binary_metrics, per_category
from trainer.windows import SplitWindows

log = logging.getLogger(__name__)

FOREST_TREES = 200
BASELINE_NAME = "random-forest"
FOREST_THRESHOLD = 0.5  # a forest's own operating point: the majority vote of its trees


@dataclass
class BaselineScores:
    name: str
    scores: np.ndarray  # probability of "malicious" for every test window (its newest flow), in window order
    seconds: float
    params: dict[str, Any]


def random_forest(
    train_frame: pd.DataFrame,
    test_frame: pd.DataFrame,
    test_rows: np.ndarray,
    *,
    seed: int,
    n_estimators: int = FOREST_TREES,
    sample_weight: np.ndarray | None = None,
) -> BaselineScores:
    """Fit the forest on ``train_frame``'s flows and score ``test_frame.iloc[test_rows]`` (one score per row)."""
    start = time.perf_counter()
    cols = list(NUMERIC_COLUMNS)
    x_train = train_frame[cols].to_numpy(dtype=np.float64)
    lo, hi = finite_range(x_train)
    y_train = train_frame["y"].to_numpy().astype(int)
    forest = RandomForestClassifier(n_estimators=n_estimators, random_state=seed, n_jobs=-1)
    forest.fit(replace_nonfinite(x_train, lo, hi), y_train, sample_weight=sample_weight)
    x_test = replace_nonfinite(test_frame.iloc[test_rows][cols].to_numpy(dtype=np.float64), lo, hi)
    proba = forest.predict_proba(x_test)
    malicious = list(forest.classes_).index(1) if 1 in forest.classes_ else None
    scores = proba[:, malicious] if malicious is not None else np.zeros(len(x_test))
    seconds = time.perf_counter() - start
    log.info(
        "random forest (%d trees, %d columns): %d train rows, %.1f s", n_estimators, len(cols), len(x_train), seconds
    )
    params = {"n_estimators": n_estimators, "features": len(cols), "seed": seed, "library": "scikit-learn"}
    return BaselineScores(BASELINE_NAME, scores.astype(np.float64), seconds, params)


def frame_weights(n_rows: int, window_rows: np.ndarray, window_weight: np.ndarray | None) -> np.ndarray | None:
    """Per-row weights of a split's frame from its windows' weights (each window weighs its newest flow)."""
    if window_weight is None:
        return None
    w = np.ones(n_rows)
    w[window_rows] = window_weight
    return w


def forest_summary(
    train_frame: pd.DataFrame, test_frame: pd.DataFrame, train: SplitWindows, test: SplitWindows, *, seed: int
) -> dict[str, Any]:
    """The forest fitted and scored on a run's split, as the report shows it (threshold 0.5, its own)."""
    forest = random_forest(
        train_frame,
        test_frame,
        test.rows,
        seed=seed,
        sample_weight=frame_weights(len(train_frame), train.rows, train.weight),
    )
    return {
        "name": forest.name,
        "params": forest.params,
        "seconds": round(forest.seconds, 1),
        "threshold": FOREST_THRESHOLD,
        "test": binary_metrics(test.y, forest.scores, FOREST_THRESHOLD),
        "per_category": per_category(test.category, test.y, forest.scores, FOREST_THRESHOLD),
    }
