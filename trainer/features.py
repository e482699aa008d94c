"""Feature engineering (paper step 4): Extra-Trees importance ranking, keep the top k; then Min-Max.

Optionally (``features.value_codes``, the quick profile) ports and protocol are treated as categories, not
magnitudes: each value is replaced by its smoothed training share of malicious flows (``ids_core.preprocess.
ValueCodes``, part of the spec, so the gateway computes the same input).

Both are fitted on the training split only. (The paper selects and normalises before splitting,
which lets test rows shape the scaler; the report says so.) Rows with inf/NaN take part in both, by
the shared non-finite rule; Min-Max is fitted on the finite values.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import ExtraTreesClassifier

from ids_core.columns import IDENTIFIER_COLUMNS, NUMERIC_COLUMNS
from ids_core.preprocess import CategoryEncoder, FeatureTransform, ValueCodes, finite_range, replace_nonfinite
from trainer.windows import raw_features

log = logging.getLogger(__name__)


@dataclass
class Selection:
    transform: FeatureTransform  # the top-k features, Min-Max fitted on the training split
    importances: list[tuple[str, float]]  # every candidate, most important first


def select_features(
    train: pd.DataFrame,
    *,
    top_k: int,
    include_identifiers: list[str],
    n_estimators: int,
    seed: int,
    log_scale: bool = False,
    value_codes: list[str] | None = None,
    code_min_count: int = 20,
    code_smoothing: float = 10.0,
) -> Selection:
    """Rank candidate columns with Extra-Trees on the training split; fit Min-Max on the top ``top_k``."""
    bad = [c for c in include_identifiers if c not in IDENTIFIER_COLUMNS or c not in train.columns]
    if bad:
        raise ValueError(f"features.include_identifiers: {bad} not identifier columns of this data")
    candidates = [*NUMERIC_COLUMNS, *include_identifiers]
    encoders = {c: CategoryEncoder.fit(train[c].astype(str)) for c in include_identifiers}
    ranking_transform = FeatureTransform(
        tuple(candidates), np.zeros(len(candidates)), np.ones(len(candidates)), encoders
    )
    raw = raw_features(train, ranking_transform)
    log.info(
        "ranking %d candidate features with Extra-Trees (%d trees) on %d rows",
        len(candidates),
        n_estimators,
        len(raw),
    )
    trees = ExtraTreesClassifier(n_estimators=n_estimators, random_state=seed, n_jobs=-1)
    trees.fit(replace_nonfinite(raw, *finite_range(raw)), train["y"].to_numpy())  # the non-finite rule, raw scale
    order = np.argsort(-trees.feature_importances_, kind="stable")
    importances = [(candidates[i], float(trees.feature_importances_[i])) for i in order]
    if top_k > len(candidates):
        raise ValueError(f"features.top_k={top_k} but only {len(candidates)} candidate columns")
    keep = order[:top_k]
    names = [candidates[i] for i in keep]
    y = train["y"].to_numpy()
    codes = {
        c: ValueCodes.fit(train[c].to_numpy(), y, min_count=code_min_count, smoothing=code_smoothing)
        for c in value_codes or []
        if c in names
    }
    for c, vc in codes.items():
        log.info("%s: %d values with a code of their own (≥ %d training flows)", c, len(vc.values), code_min_count)
    if set(value_codes or []) - set(codes):
        log.info(
            "value codes for %s unused: not among the top-%d features", sorted(set(value_codes) - set(codes)), top_k
        )
    transform = FeatureTransform.fit(
        names, raw[:, keep], {c: e for c, e in encoders.items() if c in names}, log_scale=log_scale, value_codes=codes
    )
    zero_importance = [n for n, imp in importances[:top_k] if imp == 0.0]
    if zero_importance:
        log.info(
            "%d of the top-%d features carry no importance (constant in training): %s",
            len(zero_importance),
            top_k,
            zero_importance,
        )
    return Selection(transform, importances)
