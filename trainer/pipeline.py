"""The whole trainer run: data → clean → split → Extra-Trees top-k → Min-Max → windows → train → evaluate → export."""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from ids_core.columns import IDENTIFIER_COLUMNS, INT_COLUMNS, NUMERIC_COLUMNS
from trainer.baseline import forest_summary
from trainer.category import train_category
from trainer.config import Profile
from trainer.data import FlowTable, resolve_source
from trainer.evaluate import (
    binary_metrics,
    per_category,
    plot_confusion,
    plot_curves,
    plot_history,
    unseen_in_train,
)
from trainer.export import ExportResult, export_model
from trainer.features import Selection, select_features
from trainer.operating_points import write_run_operating_points
from trainer.train import TrainedModel, predict, train_model
from trainer.windows import SplitWindows, build_split

log = logging.getLogger(__name__)

TEST_FLOWS = "test_flows.csv"


@dataclass
class Prepared:
    """Everything up to the model input: the cleaned table, the split, the transform and the windows."""

    table: FlowTable
    train_frame: pd.DataFrame
    test_frame: pd.DataFrame
    selection: Selection
    train: SplitWindows
    test: SplitWindows


IOTID20_SOURCE = "iotid20"


def prepare(
    profile: Profile, workdir: Path, *, extra_train: pd.DataFrame | None = None, extra_share: float = 0.5
) -> Prepared:
    """Load and clean the data, split it (stratified), select and scale features, build windows.

    ``extra_train``: cleaned rows from elsewhere (a site's benign flows, a lab's labelled attacks) with a
    ``source`` column; they join the training split after the IoTID20 split, so feature selection and
    Min-Max are fitted on both. Windows are built per source (no window mixes sources), and inside each
    class the extra rows carry ``extra_share`` of the class's training weight (see :func:`source_weights`).
    """
    table = resolve_source(profile.data, synthetic_rows=profile.synthetic_rows, seed=profile.seed, workdir=workdir)
    log.info("%s", table.describe())
    frame = table.frame
    train_idx, test_idx = train_test_split(
        np.arange(len(frame)),
        test_size=profile.split.test_size,
        stratify=frame["y"],
        random_state=profile.seed,
    )
    train_frame = frame.iloc[np.sort(train_idx)].reset_index(drop=True)
    test_frame = frame.iloc[np.sort(test_idx)].reset_index(drop=True)
    if extra_train is not None:
        if "source" not in extra_train.columns or (extra_train["source"] == IOTID20_SOURCE).any():
            raise ValueError(f"extra training rows need a source column other than {IOTID20_SOURCE!r}")
        train_frame = pd.concat([train_frame.assign(source=IOTID20_SOURCE), extra_train], ignore_index=True)
        log.info(
            "training split: %d IoTID20 rows + %d extra rows", len(train_frame) - len(extra_train), len(extra_train)
        )
    selection = select_features(
        train_frame,
        top_k=profile.features.top_k,
        include_identifiers=profile.features.include_identifiers,
        n_estimators=profile.features.extra_trees_estimators,
        seed=profile.seed,
        log_scale=profile.features.scaling == "log-minmax",
        value_codes=profile.features.value_codes,
        code_min_count=profile.features.value_code_min_count,
        code_smoothing=profile.features.value_code_smoothing,
    )
    w = profile.window
    kw = {"length": w.length, "key": w.key, "order": w.order}
    if extra_train is None:
        train = build_split(train_frame, selection.transform, seed=profile.seed, **kw)
    else:
        train = build_by_source(train_frame, selection.transform, seed=profile.seed, **kw)
        train.weight = source_weights(train_frame, extra_share)[train.rows].astype(np.float32)
    test = build_split(test_frame, selection.transform, seed=profile.seed + 1, **kw)
    log.info("windows %s: %d train, %d test", train.shape, len(train), len(test))
    return Prepared(table, train_frame, test_frame, selection, train, test)


def build_by_source(frame: pd.DataFrame, transform: Any, *, seed: int, **kw: Any) -> SplitWindows:
    """Windows of each ``source`` built on their own (streams never cross sources), side by side."""
    parts, maps = [], []
    for i, src in enumerate(pd.unique(frame["source"])):
        pos = np.flatnonzero((frame["source"] == src).to_numpy())
        part = frame.iloc[pos].reset_index(drop=True)
        absent = [c for c in ("timestamp", *IDENTIFIER_COLUMNS) if c in part.columns and part[c].isna().all()]
        parts.append(build_split(part.drop(columns=absent), transform, seed=seed + 1000 * i, **kw))
        maps.append(pos)
    return SplitWindows.concat(parts, maps)


def source_weights(frame: pd.DataFrame, extra_share: float) -> np.ndarray:
    """Training weight per row: inside each class, rows not from IoTID20 carry ``extra_share`` of its weight.

    Each class keeps its total weight (= its row count), so the benign/malicious balance and the mean
    weight (1) are those of the rows; only the split between IoTID20 and the extra sources changes.
    A class with rows from one side only keeps weight 1 per row.
    """
    if not 0.0 < extra_share < 1.0:
        raise ValueError(f"extra_share must be in (0, 1), got {extra_share}")
    y = frame["y"].to_numpy()
    extra = (frame["source"] != IOTID20_SOURCE).to_numpy()
    w = np.ones(len(frame))
    for cls in np.unique(y):
        ext, base = (y == cls) & extra, (y == cls) & ~extra
        if ext.any() and base.any():
            total = ext.sum() + base.sum()
            w[ext] = extra_share * total / ext.sum()
            w[base] = (1.0 - extra_share) * total / base.sum()
    return w


def run(
    profile: Profile,
    out_dir: Path,
    *,
    model_version: str | None = None,
    verbose: int = 2,
    extra_train: pd.DataFrame | None = None,
    extra_share: float = 0.5,
    spec_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the profile end to end; writes the artifacts and the report into ``out_dir``.

    ``extra_train``/``extra_share``: see :func:`prepare`; ``spec_extra`` is recorded in the spec's ``extra``.
    """
    from trainer.report import write_report  # matplotlib-heavy; imported when a report is written

    started = time.time()
    out_dir.mkdir(parents=True, exist_ok=True)
    prep = prepare(profile, out_dir / "data", extra_train=extra_train, extra_share=extra_share)
    save_test_flows(prep, out_dir / TEST_FLOWS)
    threshold = profile.export.threshold
    trained: dict[str, TrainedModel] = {}
    scores: dict[str, np.ndarray] = {}
    for name in dict.fromkeys([profile.model.name, *profile.compare]):
        trained[name] = train_model(
            name, prep.train, profile.train, out_dir / "keras", seed=profile.seed, verbose=verbose
        )
        scores[name] = predict(trained[name].model, prep.test)

    main = profile.model.name
    version = model_version or f"{profile.name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    exported = export_model(
        trained[main],
        train=prep.train,
        test=prep.test,
        transform=prep.selection.transform,
        window_key=profile.window.key,
        keras_scores=scores[main],
        out_dir=out_dir,
        per_channel=profile.export.per_channel,
        hoist_input_projections=profile.export.hoist_input_projections,
        representative_windows=profile.export.representative_windows,
        threshold=threshold,
        selftest_windows=profile.export.selftest_windows,
        model_version=version,
        seed=profile.seed,
        extra={
            "profile": profile.name,
            "data": prep.table.describe(),
            "synthetic": prep.table.synthetic,
            **(spec_extra or {}),
        },
    )
    scores[f"{main} int8"] = exported.shipped_scores
    assert exported.spec.output_quantization is not None, "the shipped model is int8"
    operating = write_run_operating_points(out_dir, prep.test.y, exported.shipped_scores, model=f"{main} int8",
                                           output=exported.spec.output_quantization, model_threshold=threshold,
                                           category=prep.test.category)  # fmt: skip
    results = evaluate_all(prep, scores, threshold)
    category = train_category(prep.train, prep.test, train_frame=prep.train_frame, test_frame=prep.test_frame,
                              transform=prep.selection.transform, out_dir=out_dir,
                              main_scores=exported.shipped_scores, threshold=threshold, model_version=version,
                              seed=profile.seed, main_model=exported.files["shipped"])  # fmt: skip
    baseline = forest_summary(prep.train_frame, prep.test_frame, prep.train, prep.test, seed=profile.seed)
    plots = make_plots(prep.test, trained, scores, results, out_dir)
    summary = {
        "profile": asdict(profile),
        "data": {
            "source": prep.table.source,
            "synthetic": prep.table.synthetic,
            "layout": prep.table.layout,
            "description": prep.table.describe(),
            "cleaning": prep.table.counts,
        },
        "split": {
            "train": len(prep.train),
            "test": len(prep.test),
            "train_malicious": int(prep.train.y.sum()),
            "test_malicious": int(prep.test.y.sum()),
        },
        "window": {"shape": list(prep.train.shape), "key": profile.window.key, "order": profile.window.order},
        "features": {
            "selected": list(prep.selection.transform.features),
            "importances": prep.selection.importances,
        },
        "training": {
            n: {
                "best_epoch": t.best_epoch,
                "epochs_run": t.stopped_epoch,
                "seconds": round(t.seconds, 1),
                "history": t.history,
            }
            for n, t in trained.items()
        },
        "results": results,
        "baseline": baseline,
        "operating_points": operating,
        "export": export_summary(exported),
        "category": category,
        "plots": {k: p.name for k, p in plots.items()},
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "seconds": round(time.time() - started, 1),
    }
    (out_dir / "report.json").write_text(json.dumps(summary, indent=1, default=str))
    write_report(summary, out_dir / "report.md")
    log.info("report: %s", out_dir / "report.md")
    return summary


def save_test_flows(prep: Prepared, path: Path) -> Path:
    """The held-out test flows in stream order, as an IoTID20-style CSV (for replaying them to an agent)."""
    frame = prep.test_frame.iloc[prep.test.rows]
    ids = [c for c in IDENTIFIER_COLUMNS if c in frame.columns]
    out = frame[[*ids, *NUMERIC_COLUMNS]].copy()
    for c in INT_COLUMNS:
        if np.isfinite(out[c].to_numpy()).all():
            out[c] = out[c].astype("int64")
    out["Cat"] = frame["category"].to_numpy()
    out.to_csv(path, index=False, na_rep="NaN")  # inf → "inf", NaN → "NaN": the replay sends them as JSON literals
    return path


def evaluate_all(prep: Prepared, scores: dict[str, np.ndarray], threshold: float) -> dict[str, Any]:
    """Metrics of every model on the test split, on its never-seen-in-training part, and per category."""
    unseen = unseen_in_train(prep.train_frame, prep.test_frame, prep.test.rows)
    y = prep.test.y
    out: dict[str, Any] = {"unseen_test_windows": int(unseen.sum()), "test_windows": len(y), "models": {}}
    for name, s in scores.items():
        out["models"][name] = {
            "test": binary_metrics(y, s, threshold),
            "test_unseen": binary_metrics(y[unseen], s[unseen], threshold),
            "per_category": per_category(prep.test.category, y, s, threshold),
        }
    return out


def make_plots(
    test: SplitWindows,
    trained: dict[str, TrainedModel],
    scores: dict[str, np.ndarray],
    results: dict,
    out: Path,
) -> dict[str, Path]:
    plots = {
        f"history_{n}": plot_history(t.history, t.best_epoch, f"{n}: training and validation", out / f"history_{n}.png")
        for n, t in trained.items()
    }
    plots["confusion"] = plot_confusion({n: r["test"] for n, r in results["models"].items()}, out / "confusion.png")
    plots["roc"] = plot_curves(test.y, scores, "roc", out / "roc.png")
    plots["pr"] = plot_curves(test.y, scores, "pr", out / "pr.png")
    return plots


def export_summary(e: ExportResult) -> dict[str, Any]:
    return {
        "files": {k: p.name for k, p in e.files.items()},
        "sizes": e.sizes,
        "comparison": e.comparison,
        "ops": e.ops,
        "spec_sha256": e.spec.sha256,
        "model_version": e.spec.model_version,
        "input_quantization": asdict(e.spec.input_quantization) if e.spec.input_quantization else None,
        "output_quantization": asdict(e.spec.output_quantization) if e.spec.output_quantization else None,
    }
