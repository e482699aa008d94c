#!/usr/bin/env python
"""Attack category on the flows the shipped model flags: the shipped int8 category model, the previous one, the
forests, and the ceiling the data allows — per seed, on the real sample's quick-profile split.

Usage: ``python bench/category.py [--seeds 42 1 2] [--cache DIR] [--out bench/results/category.md]``

Per seed (``trainer.pipeline.prepare``, quick profile, the sample in ``../shared/data/iotid20/``):

1. The shipped main model (quick Uni-Hybrid, trained and exported int8 as the trainer does) decides which test
   flows are flagged (score > threshold). ``--cache DIR`` keeps its test scores per seed (``main_<seed>.npz``) so a
   rerun measures only the category models.
2. Category accuracy on the flagged attack flows of:
   - the shipped category model (``trainer.category.train_category``: main vector + class codes of the ports and
     protocol, int8, softmax in numpy as on the gateway);
   - the same model without class codes (the main vector only: what shipped before, spec format /2);
   - a random forest (200 trees) on all 79 numeric columns (the detector's baseline, fitted on the malicious
     training flows to predict the category);
   - gradient-boosted trees (scikit-learn ``HistGradientBoostingClassifier``) on the 79 columns: the strongest
     per-flow classifier measured here, the practical ceiling;
   - the forest without ``Src_Port``/``Dst_Port``/``Protocol``: where the information is.
3. The exact-duplicate bound: over the sample's malicious flows, feature vectors (all 79 columns; the shipped
   model's int8 input) that occur with more than one category; no per-flow classifier can be right on more than
   the majority category of each such vector.
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SAMPLE = REPO.parent / "shared" / "data" / "iotid20" / "iotid20_2000.csv"
PORTS = ("Src_Port", "Dst_Port", "Protocol")


def main_scores(prep: Any, profile: Any, seed: int, cache: Path | None) -> np.ndarray:
    """The shipped (int8) main model's scores on the test split; trained and exported as the trainer does."""
    from trainer.export import export_model
    from trainer.train import predict, train_model

    path = cache / f"main_{seed}.npz" if cache else None
    if path is not None and path.exists():
        got = np.load(path)
        if np.array_equal(got["rows"], prep.test.rows):
            return got["scores"]
    with tempfile.TemporaryDirectory() as tmp:
        trained = train_model(profile.model.name, prep.train, profile.train, Path(tmp) / "keras", seed=seed, verbose=0)
        ex = profile.export
        exported = export_model(
            trained, train=prep.train, test=prep.test, transform=prep.selection.transform,
            window_key=profile.window.key, keras_scores=predict(trained.model, prep.test), out_dir=Path(tmp),
            per_channel=ex.per_channel, hoist_input_projections=ex.hoist_input_projections,
            representative_windows=ex.representative_windows, threshold=ex.threshold,
            selftest_windows=ex.selftest_windows, model_version="bench", seed=seed, extra={},
        )  # fmt: skip
    scores = exported.shipped_scores
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, scores=scores, rows=prep.test.rows)
    return scores


def trees(prep: Any, seed: int, columns: list[str], kind: str) -> np.ndarray:
    """Predicted category of every test window's newest flow by a tree ensemble fitted on the malicious rows."""
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

    from ids_core.preprocess import finite_range, replace_nonfinite

    mal = prep.train.y == 1
    x = prep.train_frame.iloc[prep.train.rows[mal]][columns].to_numpy(np.float64)
    lo, hi = finite_range(x)
    model = (
        RandomForestClassifier(200, random_state=seed, n_jobs=1)
        if kind == "forest"
        else HistGradientBoostingClassifier(random_state=seed)
    )
    model.fit(replace_nonfinite(x, lo, hi), prep.train.category[mal].astype(str))
    xt = prep.test_frame.iloc[prep.test.rows][columns].to_numpy(np.float64)
    return model.predict(replace_nonfinite(xt, lo, hi))


def duplicate_bound(keys: list[bytes], category: np.ndarray) -> dict[str, Any]:
    """Vectors seen with more than one category: rows in them, and the best any per-flow classifier can do."""
    df = pd.DataFrame({"k": keys, "c": category})
    per = df.groupby("k")["c"]
    mixed = per.nunique() > 1
    rows = df["k"].isin(mixed[mixed].index)
    majority = int(per.agg(lambda s: s.value_counts().iloc[0]).sum())
    return {
        "distinct": int(df["k"].nunique()),
        "rows": len(df),
        "mixed_rows": int(rows.sum()),
        "mixed_by_category": {str(k): int(v) for k, v in df[rows]["c"].value_counts().items()},
        "bound": majority / len(df),
    }


def one_seed(seed: int, cache: Path | None) -> dict[str, Any]:
    from ids_core import artifacts
    from ids_core.category import CategorySpec
    from ids_core.columns import NUMERIC_COLUMNS
    from ids_core.interpreter import TFLiteModel
    from trainer.category import newest_raw, newest_vectors, probabilities, train_category
    from trainer.config import load_profile
    from trainer.pipeline import prepare

    profile = load_profile("quick", overrides=[f"data={SAMPLE}", f"seed={seed}"])
    out: dict[str, Any] = {"seed": seed}
    with tempfile.TemporaryDirectory() as tmp:
        prep = prepare(profile, Path(tmp) / "data")
        scores = main_scores(prep, profile, seed, cache)
        threshold = profile.export.threshold
        truth = prep.test.category.astype(str)
        flagged = (scores > threshold) & (prep.test.y == 1)
        out["flagged_attacks"], out["malicious"] = int(flagged.sum()), int((prep.test.y == 1).sum())
        classes = sorted(set(truth[prep.test.y == 1]))
        raw = newest_raw(prep.test_frame, prep.test, prep.selection.transform)
        preds: dict[str, np.ndarray] = {}
        for name, columns in (("shipped", None), ("no class codes (before)", ())):
            d = Path(tmp) / name.split()[0]
            d.mkdir()
            kw = {} if columns is None else {"code_columns": columns}
            t0 = time.perf_counter()
            summary = train_category(
                prep.train, prep.test, train_frame=prep.train_frame, test_frame=prep.test_frame,
                transform=prep.selection.transform, out_dir=d, main_scores=scores, threshold=threshold,
                model_version="bench", seed=seed, **kw,
            )  # fmt: skip
            out[name] = {
                "seconds": round(time.perf_counter() - t0, 1),
                "size_bytes": summary["size_bytes"],
                "us_per_flow_batch_256": summary["speed"]["category_us_per_flow_batch_256"],
                "confident_accuracy": summary["flagged"]["confident_accuracy"],
                "confident_coverage": summary["flagged"]["confident_coverage"],
                "min_probability": summary["min_probability"],
            }
            spec = CategorySpec.load(d / artifacts.CATEGORY_SPEC)
            model = TFLiteModel(d / artifacts.CATEGORY_MODEL, num_threads=1)
            x = spec.model_input(newest_vectors(prep.test), raw)
            preds[name] = np.asarray(spec.classes, dtype=object)[probabilities(model, x).argmax(1)]
            if name == "shipped":
                shipped, shipped_model, shipped_inputs = spec, model, model.quantize(x)
        cols79 = list(NUMERIC_COLUMNS)
        preds["random forest, 79 columns"] = trees(prep, seed, cols79, "forest")
        preds["gradient-boosted trees, 79 columns"] = trees(prep, seed, cols79, "hgb")
        no_ports = [c for c in cols79 if c not in PORTS]
        preds["random forest, 76 columns (no ports, no protocol)"] = trees(prep, seed, no_ports, "forest")
        out["accuracy"] = {k: float((p[flagged] == truth[flagged]).mean()) for k, p in preds.items()}
        out["confusion"] = {
            k: pd.crosstab(pd.Categorical(truth[flagged], classes), pd.Categorical(p[flagged], classes), dropna=False)
            .to_numpy()
            .tolist()
            for k, p in preds.items()
            if k in ("shipped", "no class codes (before)", "random forest, 79 columns",
                     "gradient-boosted trees, 79 columns")
        }  # fmt: skip
        out["classes"] = classes
        # exact duplicates of the shipped model's int8 input among the flagged test flows and the training flows
        mal = prep.train.y == 1
        rows = np.flatnonzero(mal)
        train_in = shipped.model_input(
            newest_vectors(prep.train, rows), newest_raw(prep.train_frame, prep.train, prep.selection.transform, rows)
        )
        train_keys = [r.tobytes() for r in shipped_model.quantize(train_in)]
        test_keys = [r.tobytes() for r in shipped_inputs[flagged]]
        out["int8_input_duplicates"] = duplicate_bound(
            train_keys + test_keys,
            np.concatenate([prep.train.category[mal].astype(str), truth[flagged]]),
        )
    return out


def sample_duplicates() -> dict[str, Any]:
    """Exact duplicates over the sample's malicious flows: all 79 columns, and without the source port."""
    frame = pd.read_csv(SAMPLE)
    mal = frame[frame["Target"] != "Normal"]
    cols = [c for c in frame.columns if c != "Target"]
    out = {}
    for name, use in (("all 79 columns", cols), ("without Src_Port", [c for c in cols if c != "Src_Port"])):
        keys = [r.tobytes() for r in mal[use].to_numpy(np.float64)]
        out[name] = duplicate_bound(keys, mal["Target"].to_numpy())
    return out


def fmt_matrix(classes: list[str], m: list[list[int]]) -> list[str]:
    lines = ["| true \\ predicted | " + " | ".join(classes) + " |", "|---" * (len(classes) + 1) + "|"]
    lines += [f"| {c} | " + " | ".join(f"{v:,}" for v in row) + " |" for c, row in zip(classes, m, strict=True)]
    return lines


def report(results: list[dict[str, Any]], dups: dict[str, Any], command: str) -> list[str]:
    seeds = [r["seed"] for r in results]
    names = list(results[0]["accuracy"])
    lines = [
        "# Attack category on the flows the shipped model flags",
        "",
        f"Command: `{command}`; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {platform.platform()}, 2 cores shared with "
        "other work (times are upper bounds). Real IoTID20 sample (10,000 flows, 2,000 per category; it has no "
        "`Sub_Cat`, so sub-categories cannot be measured here), quick-profile split (8,000 / 2,000 flows), the "
        "test split's attack flows that the shipped int8 Uni-Hybrid flags (score > 0.5): "
        + ", ".join(f"{r['flagged_attacks']:,} of {r['malicious']:,} (seed {r['seed']})" for r in results)
        + ". Category models are fitted on the malicious training flows only.",
        "",
        "## Accuracy on the flagged attack flows",
        "",
        "| model | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± sd |",
        "|---" * (len(seeds) + 2) + "|",
    ]
    for n in names:
        acc = np.array([r["accuracy"][n] for r in results])
        shown = f"**{n}**" if n == "shipped" else n
        lines.append(f"| {shown} | " + " | ".join(f"{a:.4f}" for a in acc) + f" | {acc.mean():.4f} ± {acc.std():.4f} |")
    lines += [
        "",
        "*shipped*: int8 category model (dense 256 → 128, logits, FULLY_CONNECTED only), input = the main spec's "
        "62-feature vector + class codes of Src_Port, Dst_Port, Protocol (spec format /3). *no class codes "
        "(before)*: the same model on the main vector only (what shipped before, format /2).",
        "",
        "| shipped model, per seed | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "|---" * (len(seeds) + 1) + "|",
    ]
    for key, label in (
        ("confident_accuracy", "accuracy with probability ≥ min_probability (named plainly in the alert)"),
        ("confident_coverage", "share of flagged attacks named plainly"),
        ("min_probability", "min_probability (chosen on held-out training rows)"),
        ("size_bytes", "size (bytes)"),
        ("us_per_flow_batch_256", "µs per flow, LiteRT 1 thread, batch 256"),
        ("seconds", "training + export + evaluation (s)"),
    ):
        vals = [r["shipped"][key] for r in results]
        lines.append(
            f"| {label} | "
            + " | ".join(f"{v:.4f}" if isinstance(v, float) and v < 1 else f"{v:,}" for v in vals)
            + " |"
        )
    before = [r["no class codes (before)"] for r in results]
    lines += [
        "| before (no class codes): confident accuracy / coverage | "
        + " | ".join(f"{b['confident_accuracy']:.4f} / {b['confident_coverage']:.4f}" for b in before)
        + " |",
        "",
        "## Confusion on the flagged attack flows (sum over the seeds; rows: true, columns: predicted)",
        "",
    ]
    classes = results[0]["classes"]
    for n in results[0]["confusion"]:
        total = np.sum([r["confusion"][n] for r in results], axis=0).tolist()
        lines += [f"**{n}**", "", *fmt_matrix(classes, total), ""]
    lines += [
        "## The ceiling",
        "",
        "Exact duplicates over the sample's 8,000 malicious flows (a per-flow classifier gives one answer per "
        "vector, so at most the majority category of each vector can be right):",
        "",
        "| vector | distinct | flows in vectors with > 1 category | bound |",
        "|---|---|---|---|",
    ]
    for name, d in dups.items():
        lines.append(
            f"| {name} | {d['distinct']:,} | {d['mixed_rows']:,} {d['mixed_by_category']} | {d['bound']:.4f} |"
        )
    for r in results:
        d = r["int8_input_duplicates"]
        lines.append(
            f"| shipped model's int8 input, malicious training + flagged test flows (seed {r['seed']}) | "
            f"{d['distinct']:,} of {d['rows']:,} | {d['mixed_rows']:,} {d['mixed_by_category']} | {d['bound']:.4f} |"
        )
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    ap.add_argument("--cache", type=Path, default=None, help="keep/reuse the main model's test scores here")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "category.md")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results = [one_seed(s, args.cache) for s in args.seeds]
    command = "python bench/category.py --seeds " + " ".join(map(str, args.seeds))
    lines = report(results, sample_duplicates(), command)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
