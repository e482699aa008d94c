#!/usr/bin/env python
"""Attack category on the flows the shipped model flags: the shipped int8 category model, the previous one, the
forests, and the ceiling the data allows — per seed, on the real sample's quick-profile split.

Usage: ``python bench/category.py [--seeds 42 1 2] [--sweep] [--cache DIR] [--out bench/results/category.md]``

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
3. ``--sweep``: the shipped model with one setting changed at a time (learning rate, smoothing, minimum count,
   folds, width, one more coded column): how sensitive the choice is.
4. The exact-duplicate bound: over the sample's malicious flows, feature vectors (all 79 columns; the shipped
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
HGB = "gradient-boosted trees, 79 columns"
SWEEP: dict[str, dict[str, Any]] = {
    "learning rate 3e-3 (before)": {"learning_rate": 3e-3},
    "smoothing 2": {"code_smoothing": 2.0},
    "minimum count 2": {"code_min_count": 2},
    "10 folds": {"code_folds": 10},
    "dense 512 → 256": {"hidden": (512, 256)},
    "+ class codes of Init_Bwd_Win_Byts": {"code_columns": (*PORTS, "Init_Bwd_Win_Byts")},
}


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


def one_seed(seed: int, cache: Path | None, sweep: bool) -> dict[str, Any]:
    from ids_core import artifacts
    from ids_core.category import CategorySpec
    from ids_core.columns import NUMERIC_COLUMNS
    from ids_core.interpreter import TFLiteModel
    from trainer.category import CategorySettings, newest_raw, newest_vectors, probabilities, train_category
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
        runs = {"shipped": {}, "no class codes (before)": {"code_columns": ()}} | (SWEEP if sweep else {})
        for i, (name, changed) in enumerate(runs.items()):
            d = Path(tmp) / f"category_{i}"
            d.mkdir()
            t0 = time.perf_counter()
            summary = train_category(
                prep.train, prep.test, train_frame=prep.train_frame, test_frame=prep.test_frame,
                transform=prep.selection.transform, out_dir=d, main_scores=scores, threshold=threshold,
                model_version="bench", seed=seed, settings=CategorySettings(**changed),
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
        preds[HGB] = trees(prep, seed, cols79, "hgb")
        no_ports = [c for c in cols79 if c not in PORTS]
        preds["random forest, 76 columns (no ports, no protocol)"] = trees(prep, seed, no_ports, "forest")
        accuracy = {k: float((p[flagged] == truth[flagged]).mean()) for k, p in preds.items()}
        out["accuracy"] = {k: v for k, v in accuracy.items() if k not in SWEEP}
        # the flows whose source port the malicious training flows never had: what the class codes cannot key on
        seen_ports = set(prep.train_frame.iloc[prep.train.rows[prep.train.y == 1]]["Src_Port"].tolist())
        unseen = flagged & ~prep.test_frame.iloc[prep.test.rows]["Src_Port"].isin(seen_ports).to_numpy()
        out["unseen_src_port"] = {"flows": int(unseen.sum())} | {
            k: float((p[unseen] == truth[unseen]).mean()) for k, p in preds.items() if k not in SWEEP
        }
        out["unseen_by_category"] = {
            str(c): {"flows": int((unseen & (truth == c)).sum())}
            | {k: int((unseen & (truth == c) & (preds[k] == c)).sum()) for k in ("shipped", HGB)}
            for c in classes
        }
        out["sweep"] = {k: v for k, v in accuracy.items() if k in SWEEP}
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


def sensitivity(results: list[dict[str, Any]]) -> list[str]:
    """The sweep's table (empty without ``--sweep``)."""
    if not results[0]["sweep"]:
        return []
    lines = [
        "## Sensitivity: the shipped model with one setting changed",
        "",
        "| setting | " + " | ".join(f"seed {r['seed']}" for r in results) + " | mean ± sd |",
        "|---" * (len(results) + 2) + "|",
    ]
    for n in results[0]["sweep"]:
        acc = np.array([r["sweep"][n] for r in results])
        lines.append(f"| {n} | " + " | ".join(f"{a:.4f}" for a in acc) + f" | {acc.mean():.4f} ± {acc.std():.4f} |")
    return [*lines, ""]


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
    ]
    lines += [
        "## Flagged attack flows with a source port the malicious training flows never had",
        "",
        "| model | " + " | ".join(f"seed {r['seed']} ({r['unseen_src_port']['flows']} flows)" for r in results)
        + " | mean |",
        "|---" * (len(seeds) + 2) + "|",
    ]  # fmt: skip
    for n in names:
        acc = np.array([r["unseen_src_port"][n] for r in results])
        lines.append(f"| {n} | " + " | ".join(f"{a:.4f}" for a in acc) + f" | {acc.mean():.4f} |")
    lines += [
        "",
        "By true category, sum over the seeds (right / flows):",
        "",
        "| | " + " | ".join(results[0]["classes"]) + " |",
        "|---" * (len(results[0]["classes"]) + 1) + "|",
    ]
    for k in ("shipped", HGB):
        cells = []
        for c in results[0]["classes"]:
            n = sum(r["unseen_by_category"][c]["flows"] for r in results)
            right = sum(r["unseen_by_category"][c][k] for r in results)
            cells.append(f"{right:,} / {n:,}")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += sensitivity(results)
    lines += [
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
    return lines + reading(results, dups)


def reading(results: list[dict[str, Any]], dups: dict[str, Any]) -> list[str]:
    """What the numbers say: the shipped model against the forests and the bounds, in words."""

    def mean(key: str, part: str = "accuracy") -> float:
        return float(np.mean([r[part][key] for r in results]))

    shipped = [r["accuracy"]["shipped"] for r in results]
    hgb = HGB
    unseen = {c: [sum(r["unseen_by_category"][c][k] for r in results) for k in ("flows", "shipped")]
              for c in results[0]["classes"]}  # fmt: skip
    other = [sum(v[i] for c, v in unseen.items() if c != "DoS") for i in (0, 1)]
    other_hgb = sum(r["unseen_by_category"][c][HGB] for r in results for c in unseen if c != "DoS")
    return [
        "",
        "## Reading",
        "",
        f"- Shipped: **{np.mean(shipped):.4f}** mean on all flagged attack flows (min {min(shipped):.4f}; before: "
        f"{mean('no class codes (before)'):.4f}; random forest {mean('random forest, 79 columns'):.4f}; "
        f"gradient-boosted trees {mean(hgb):.4f}). ≥ 0.95 on every seed: "
        f"{'yes' if min(shipped) >= 0.95 else 'no'}.",
        f"- Exact duplicates bound no per-flow classifier below {dups['all 79 columns']['bound']:.4f} (all 79 "
        f"columns) — the limit is near-duplicates, not duplicates: without the source port, "
        f"{dups['without Src_Port']['mixed_rows']:,} malicious flows share their vector with another category "
        f"(bound {dups['without Src_Port']['bound']:.4f}), and a forest without ports and protocol reaches only "
        f"{mean('random forest, 76 columns (no ports, no protocol)'):.4f}.",
        "- Where the information is: the source port. IoTID20 labels a flow by the attack session it was captured "
        "in, and the sample's attack sessions reuse source ports (one MITM port in 259 flows); the class codes let "
        "the int8 network key on them, as the trees do. On flagged flows whose source port no malicious training "
        f"flow had, the shipped model scores {mean('shipped', 'unseen_src_port'):.4f} and the gradient-boosted "
        f"trees {mean(hgb, 'unseen_src_port'):.4f}; most of those are DoS (random source ports, always right); "
        f"on the MITM, Mirai and Scan ones the shipped model is right on {other[1]:,} of {other[0]:,} "
        f"({other[1] / max(other[0], 1):.2f}), the trees on {other_hgb:,} ({other_hgb / max(other[0], 1):.2f}). On "
        "another capture, where the sessions' ports do not repeat, expect that for these three categories rather "
        "than the headline. Where the port does not help, the network trails the trees: its input is the main "
        "spec's log-scaled int8 vector, the trees split raw values finely — the next thing to try (e.g. "
        "quantile-coded inputs), not done here.",
        "- The remaining errors (seed 42: 69, inspected) are MITM/Mirai/Scan flows of 2–4 packets lasting ~75–150 µs, "
        "half of them to port 443, others to 1900 (SSDP), 9010, 7000: the devices' own background traffic, which "
        "the capture labels by the attack session it fell in; their features do not say which.",
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    ap.add_argument("--sweep", action="store_true", help="also the shipped model with one setting changed at a time")
    ap.add_argument("--cache", type=Path, default=None, help="keep/reuse the main model's test scores here")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "category.md")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results = [one_seed(s, args.cache, args.sweep) for s in args.seeds]
    command = "python bench/category.py --seeds " + " ".join(map(str, args.seeds)) + " --sweep" * args.sweep
    lines = report(results, sample_duplicates(), command)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
