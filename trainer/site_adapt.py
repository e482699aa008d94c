"""Site adaptation: the quick model retrained on IoTID20 plus a site's own benign flows (and a lab's attacks).

A model trained on IoTID20 alone calls almost any other network's traffic an attack (IoTID20's Normal is a
few lab IoT devices). ``iotids-train adapt`` trains the same model, with the same pipeline
(:func:`trainer.pipeline.run`), on IoTID20's training split plus the earlier part of the site's traffic, and
scores both models on what neither was trained on: the later part of the site's traffic and IoTID20's test split.

Decisions (the README states them):

* **Hold-out in time.** Each site file's rows of each category are taken in time order; the last ``holdout``
  share is held out (:func:`trainer.site_data.split_in_time`). Never random: the test is traffic from after
  the learning period, as on a gateway.
* **The site's learning rows are part of the whole fit**: Extra-Trees ranking and Min-Max see them, so the
  scaler covers the site's ranges (fitted on IoTID20 alone, most site values saturate at 0 or 1).
* **Weights**: inside each class, the site's rows (benign) and the lab's rows (attacks) carry ``site_share``
  of the class's training weight, IoTID20's rows the rest; each class keeps its total weight, so the
  benign/malicious balance is the data's (:func:`trainer.pipeline.source_weights`). A few hundred site flows
  would otherwise be outvoted ~10:1 by IoTID20's benign rows.
* **Learning curve**: the same training on the first 10/25/50 % (in time) of the benign learning rows,
  false-positive rate on the same held-out rows: how long a learning period has to be.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ids_core import artifacts
from ids_core.columns import LABEL_NORMAL
from ids_core.preprocess import PreprocessSpec
from trainer.config import Profile
from trainer.export import load_tflite, score_tflite
from trainer.pipeline import TEST_FLOWS, prepare, run
from trainer.site_data import (
    learning_prefix,
    load_site_csv,
    load_site_files,
    span_seconds,
    split_in_time,
    thin_attacks,
)
from trainer.train import predict, train_model
from trainer.windows import SplitWindows, build_split

log = logging.getLogger(__name__)

LAB_PREFIX = "lab:"
OTHER_PREFIX = "other:"
IOTID20_TEST = "IoTID20 test"
DEFAULT_CURVE = (0.1, 0.25, 0.5)
MAX_ATTACK_ROWS = 2000  # learning rows per lab attack type (evenly thinned in time; the weights set their influence)
CURVE_PLOT = "site_learning_curve.png"


@dataclass
class SiteData:
    """The site's rows (benign, and the lab's labelled ones), split in time."""

    learn: pd.DataFrame
    held: pd.DataFrame
    files: list[dict[str, Any]]

    def describe(self) -> dict[str, Any]:
        def by(frame: pd.DataFrame) -> dict[str, int]:
            return {f"{s} / {c}": int(n) for (s, c), n in frame.groupby(["source", "category"]).size().items()}

        return {
            "files": self.files,
            "learn_rows": len(self.learn),
            "held_rows": len(self.held),
            "learn_by_source": by(self.learn),
            "held_by_source": by(self.held),
            "learn_benign_seconds": span_seconds(self.learn),
            "held_benign_seconds": span_seconds(self.held),
        }


def load_site(
    site_benign: list[Path], site_attacks: list[Path], holdout: float, max_attack_rows: int = MAX_ATTACK_ROWS
) -> SiteData:
    """Load the site's benign CSVs and the lab's labelled CSVs and split each in time (see the module doc)."""
    if not site_benign and not site_attacks:
        raise ValueError("no site data: give --site-benign (and/or labelled --site-attacks) CSVs")
    frames, counts = [], []
    if site_benign:
        benign, benign_counts = load_site_files(list(site_benign))
        frames.append(benign.assign(role="site"))
        counts += [{**c, "role": "site benign"} for c in benign_counts]
    if site_attacks:
        lab, lab_counts = load_site_files(list(site_attacks))
        lab["source"] = LAB_PREFIX + lab["source"]
        frames.append(lab.assign(role="lab"))
        counts += [{**c, "source": LAB_PREFIX + c["source"], "role": "lab"} for c in lab_counts]
    frame = pd.concat(frames, ignore_index=True)
    if (frame["category"] == LABEL_NORMAL).sum() == 0:
        raise ValueError("the site files hold no benign (Normal) rows: give the site's traffic with --site-benign")
    split = split_in_time(frame, holdout)
    if (split.held["category"] == LABEL_NORMAL).sum() == 0:
        raise ValueError(f"holdout={holdout} leaves no held-out benign site rows; give more site traffic")
    return SiteData(thin_attacks(split.learn, max_attack_rows), split.held, counts)


def adapt(
    profile: Profile,
    out_dir: Path,
    *,
    site_benign: list[Path],
    site_attacks: list[Path] = (),  # type: ignore[assignment]
    holdout: float = 0.3,
    site_share: float = 0.5,
    baseline: Path | None = None,
    also_score: list[Path] = (),  # type: ignore[assignment]
    curve: tuple[float, ...] = DEFAULT_CURVE,
    max_attack_rows: int = MAX_ATTACK_ROWS,
    model_version: str | None = None,
    verbose: int = 0,
) -> dict[str, Any]:
    """Train the site-adapted model into ``out_dir`` (an ordinary run directory) and compare it with a baseline.

    ``baseline``: a run directory of the IoTID20 model; ``None`` trains it with the same profile into
    ``out_dir/baseline``. ``also_score``: flow CSVs scored by both models and reported on their own, never
    trained on (e.g. captures from elsewhere). Only the profile's main model is trained (``compare`` is ignored).
    """
    profile = replace(profile, compare=[])
    site = load_site(site_benign, site_attacks, holdout, max_attack_rows)
    log.info("site data: %d learning rows, %d held-out rows", len(site.learn), len(site.held))
    if baseline is None:
        baseline = out_dir / "baseline"
        log.info("training the IoTID20 baseline into %s", baseline)
        run(profile, baseline, model_version=f"{model_version or profile.name}-baseline", verbose=verbose)
    summary = run(
        profile,
        out_dir,
        model_version=model_version,
        verbose=verbose,
        extra_train=site.learn,
        extra_share=site_share,
        spec_extra={
            "site_adapted": {
                "holdout": holdout,
                "site_share": site_share,
                "max_attack_rows": max_attack_rows,
                "files": site.files,
            }
        },
    )
    held = heldout_sets(site, out_dir / TEST_FLOWS, list(also_score))
    models = {"IoTID20 model": Path(baseline), "site-adapted": out_dir}
    scores = {name: score_run(d, held) for name, d in models.items()}
    comparison = {name: rates(held, s["int8"]) for name, s in scores.items()}
    points = learning_curve(profile, site, curve, out_dir / "curve", held, site_share=site_share)
    points.insert(0, curve_point(0.0, site.learn.iloc[:0], held, scores["IoTID20 model"]["float"], "baseline run"))
    points.append(curve_point(1.0, site.learn, held, scores["site-adapted"]["float"], "adapted run"))
    plot_learning_curve(points, out_dir / CURVE_PLOT)
    summary["site_adaptation"] = {
        "holdout": holdout,
        "site_share": site_share,
        "max_attack_rows": max_attack_rows,
        "baseline": str(baseline),
        "baseline_model_version": PreprocessSpec.load(Path(baseline) / artifacts.SPEC).model_version,
        "baseline_same_iotid20_split": same_file(Path(baseline) / TEST_FLOWS, out_dir / TEST_FLOWS),
        "site": site.describe(),
        "heldout": comparison,
        "learning_curve": points,
        "plot": CURVE_PLOT,
    }
    (out_dir / "report.json").write_text(json.dumps(summary, indent=1, default=str))
    with (out_dir / "report.md").open("a") as f:
        f.write("\n" + site_report(summary["site_adaptation"]))
    return summary


def same_file(a: Path, b: Path) -> bool:
    return a.is_file() and b.is_file() and a.read_bytes() == b.read_bytes()


def heldout_sets(site: SiteData, test_flows: Path, also_score: list[Path]) -> pd.DataFrame:
    """What no model trained on: held-out site rows, IoTID20's test split, other flows (``role`` says which)."""
    frames = [site.held, load_site_csv(test_flows, source=IOTID20_TEST).frame.assign(role="iotid20")]
    if also_score:
        other, _ = load_site_files(also_score)
        frames.append(other.assign(role="other", source=OTHER_PREFIX + other["source"]))
    return pd.concat(frames, ignore_index=True)


def windows_for(frame: pd.DataFrame, transform: Any, length: int, key: list[str]) -> SplitWindows:
    """Windows of ``frame`` built per source (streams never cross sources); ``rows`` index ``frame``."""
    parts, maps = [], []
    for src in pd.unique(frame["source"]):
        pos = np.flatnonzero((frame["source"] == src).to_numpy())
        part = frame.iloc[pos].reset_index(drop=True)
        absent = [c for c in ("timestamp", "Timestamp") if c in part.columns and part[c].isna().all()]
        parts.append(build_split(part.drop(columns=absent), transform, length=length, key=key, order="auto", seed=0))
        maps.append(pos)
    return SplitWindows.concat(parts, maps)


def score_run(run_dir: Path, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Scores of a run directory's shipped int8 and float TFLite models for every row of ``frame`` (row order)."""
    spec = PreprocessSpec.load(run_dir / artifacts.SPEC)
    split = windows_for(frame, spec.transform, spec.window_length, list(spec.window_key))
    out = {}
    for kind, name in (("int8", artifacts.SHIPPED_MODEL), ("float", artifacts.FLOAT_MODEL)):
        s = score_tflite(load_tflite(run_dir / name), split)
        out[kind] = s[np.argsort(split.rows)] > spec.threshold
    return out


def rates(frame: pd.DataFrame, flagged: np.ndarray) -> dict[str, dict[str, Any]]:
    """Share flagged malicious per group: false-positive rate for benign groups, detection rate for attacks."""
    groups: dict[str, np.ndarray] = {}
    role = frame["role"].to_numpy()
    site, iot, other = np.isin(role, ("site", "lab")), role == "iotid20", role == "other"
    normal = frame["category"].eq(LABEL_NORMAL).to_numpy()
    groups["site benign (all held-out)"] = site & normal
    for src in pd.unique(frame.loc[site & normal, "source"]):
        groups[f"site benign: {src}"] = site & normal & frame["source"].eq(src).to_numpy()
    for cat in sorted(pd.unique(frame.loc[site & ~normal, "category"])):
        in_cat = site & ~normal & frame["category"].eq(cat).to_numpy()
        groups[f"lab attack: {cat}"] = in_cat
        subs = sorted(pd.unique(frame.loc[in_cat, "sub_category"].dropna())) if "sub_category" in frame else []
        for sub in subs if len(subs) > 1 else ():
            groups[f"lab attack: {cat} / {sub}"] = in_cat & frame["sub_category"].eq(sub).to_numpy()
    for cat in sorted(pd.unique(frame.loc[iot, "category"])):
        groups[f"IoTID20 test: {cat}"] = iot & frame["category"].eq(cat).to_numpy()
    groups["not trained on: benign (all)"] = other & normal
    for (src, cat), _ in frame[other].groupby(["source", "category"], sort=False):
        groups[f"not trained on: {src} / {cat}"] = (
            other & frame["source"].eq(src).to_numpy() & frame["category"].eq(cat).to_numpy()
        )
    out = {}
    for name, sel in groups.items():
        if not sel.any():
            continue
        benign = bool(normal[sel].all())
        out[name] = {"n": int(sel.sum()), "flagged": int(flagged[sel].sum()), "benign": benign}
        out[name]["false_positive_rate" if benign else "detection_rate"] = float(flagged[sel].mean())
    return out


def curve_point(
    fraction: float, learn: pd.DataFrame, held: pd.DataFrame, flagged: np.ndarray, model: str
) -> dict[str, Any]:
    r = rates(held, flagged)
    attacks = [v for k, v in r.items() if not v["benign"]]
    benign_learn = learn[learn["category"] == LABEL_NORMAL]
    return {
        "fraction": fraction,
        "benign_learning_rows": len(benign_learn),
        "benign_learning_seconds": span_seconds(learn) if len(learn) else 0.0,
        "heldout_site_fpr": r["site benign (all held-out)"]["false_positive_rate"],
        "iotid20_normal_fpr": r.get(f"IoTID20 test: {LABEL_NORMAL}", {}).get("false_positive_rate"),
        "attack_detection": float(sum(v["flagged"] for v in attacks) / max(1, sum(v["n"] for v in attacks))),
        "model": model,
    }


def learning_curve(
    profile: Profile,
    site: SiteData,
    fractions: tuple[float, ...],
    workdir: Path,
    held: pd.DataFrame,
    *,
    site_share: float,
) -> list[dict[str, Any]]:
    """Held-out false-positive rate after training on the first ``fraction`` (in time) of the benign learning rows.

    Each point is the same fit as the adapted run (selection, scaling, weights, training), without export;
    scores are the Keras float model's (the int8 model agrees with it on ≥ 99.9 % of windows).
    """
    points = []
    for f in sorted(fractions):
        if not 0.0 < f < 1.0:
            raise ValueError(f"learning-curve fractions must be in (0, 1), got {f}")
        learn = learning_prefix(site.learn, f)
        prep = prepare(profile, workdir / f"{f:g}", extra_train=learn, extra_share=site_share)
        trained = train_model(
            profile.model.name, prep.train, profile.train, workdir / f"{f:g}", seed=profile.seed, verbose=0
        )
        t = prep.selection.transform
        split = windows_for(held, t, profile.window.length, list(profile.window.key))
        flagged = predict(trained.model, split)[np.argsort(split.rows)] > profile.export.threshold
        points.append(curve_point(f, learn, held, flagged, "Keras float"))
        log.info(
            "learning curve: %.0f%% of the learning rows → held-out FPR %.4f", 100 * f, points[-1]["heldout_site_fpr"]
        )
    return points


def plot_learning_curve(points: list[dict[str, Any]], path: Path) -> Path:
    """False-positive rate on held-out site traffic (and attack detection) vs benign learning rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [p["benign_learning_rows"] for p in points]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(x, [100 * p["heldout_site_fpr"] for p in points], "o-", label="false positives, held-out site benign")
    ax.plot(x, [100 * p["attack_detection"] for p in points], "s--", label="attacks detected (held-out)")
    for p, xi in zip(points, x, strict=True):
        if p["benign_learning_seconds"]:
            ax.annotate(f"{p['benign_learning_seconds']:.0f} s", (xi, 100 * p["heldout_site_fpr"]), fontsize=7)
    ax.set_xlabel("benign site flows in the learning period")
    ax.set_ylabel("%")
    ax.set_ylim(-2, 102)
    ax.set_title("Site adaptation: learning period vs false alarms")
    ax.legend(loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def site_report(s: dict[str, Any]) -> str:
    """The report.md section: before/after on held-out traffic, the learning curve, the decisions."""
    site = s["site"]
    names = list(s["heldout"])
    groups = list(s["heldout"][names[0]])
    lines = [
        "## Site adaptation",
        "",
        f"Trained on IoTID20's training split plus the first {1 - s['holdout']:.0%} (in time) of each site file's "
        f"rows per category ({site['learn_rows']:,} rows); scored on the last {s['holdout']:.0%} "
        f"({site['held_rows']:,} rows) and IoTID20's test split, which no model trained on. Baseline: "
        f"`{s['baseline']}` (model version {s['baseline_model_version']}"
        + (
            ", same IoTID20 split)."
            if s["baseline_same_iotid20_split"]
            else "; **trained on another IoTID20 split: some IoTID20 test rows may be in its training data**)."
        )
        + " Site and lab rows carry "
        f"{s['site_share']:.0%} of their class's training weight; the site's learning rows are part of the "
        f"feature-selection and Min-Max fit; lab attack types are thinned to {s['max_attack_rows']:,} learning rows "
        "each, evenly over time (held-out rows are all kept).",
        "",
        "| held-out rows | n | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for g in groups:
        first = s["heldout"][names[0]][g]
        kind = "false positives" if first["benign"] else "detected"
        cells = [
            _pct(s["heldout"][n][g].get("false_positive_rate", s["heldout"][n][g].get("detection_rate"))) for n in names
        ]
        lines.append(f"| {g} ({kind}) | {first['n']:,} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Shipped int8 models. Site files:",
        "",
        *[f"- {f['role']}: `{f['file']}` — {f['rows']:,} rows kept of {f['raw_rows']:,}" for f in site["files"]],
        "",
        "### Learning period",
        "",
        "| share of learning rows | benign flows | seconds of traffic | held-out site FPR | attack detection | "
        "IoTID20 Normal FPR | model |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in s["learning_curve"]:
        secs = "–" if p["benign_learning_seconds"] is None else f"{p['benign_learning_seconds']:,.0f}"
        lines.append(
            f"| {p['fraction']:.0%} | {p['benign_learning_rows']:,} | {secs} | {_pct(p['heldout_site_fpr'])} | "
            f"{_pct(p['attack_detection'])} | {_pct(p['iotid20_normal_fpr'])} | {p['model']} |"
        )
    lines += [
        "",
        "Float models (0 % = the baseline run, 100 % = this run, their float TFLite files). Seconds of traffic: "
        "first to last benign flow start, summed over files.",
        "",
        f"![learning curve]({s['plot']})",
        "",
    ]
    return "\n".join(lines)


def print_summary(s: dict[str, Any], out: Path) -> None:
    """The CLI's closing lines: held-out rates of both models, and where the run is."""
    names = list(s["heldout"])
    print(f"held-out rows: {' | '.join(names)}")
    for g, first in s["heldout"][names[0]].items():
        key = "false_positive_rate" if first["benign"] else "detection_rate"
        vals = " | ".join(_pct(s["heldout"][n][g][key]) for n in names)
        print(f"  {g} ({'false positives' if first['benign'] else 'detected'}, n={first['n']}): {vals}")
    for p in s["learning_curve"]:
        rows, fpr = p["benign_learning_rows"], _pct(p["heldout_site_fpr"])
        print(f"  learning {p['fraction']:.0%} ({rows} benign flows): held-out FPR {fpr}")
    print(f"artifacts: {out}/model_int8.tflite, {out}/spec.json; report: {out}/report.md")
