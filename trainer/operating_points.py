"""Operating points of the shipped model: alert threshold → false-positive rate, recall and precision.

A site chooses its ``alerts.threshold`` (agent config) from this table. The agent alerts when a flow's score is
**above** the threshold, and so does every number here. The run saves the shipped int8 model's test-split scores
(:data:`TEST_SCORES`), so the table can be recomputed, or printed for an old run (``iotids-train thresholds``).

Marked thresholds: for each target false-positive rate (1 %, 0.1 %) the **lowest** threshold whose rate on the
benign test windows is at most the target (the most recall that budget allows), written as the shortest decimal
that flags exactly the same windows. With ``n`` benign windows the rate moves in steps of ``1/n``; a target below
one step is reached only with no false positive at all, and the table says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ids_core.preprocess import Quantization

TEST_SCORES = "test_scores.npz"  # y_true, scores_int8, scores (dequantized, as the agent compares), category
PLOT = "operating_points.png"
FPR_TARGETS = (0.01, 0.001)
GRID = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def save_test_scores(
    path: Path, y_true: np.ndarray, scores: np.ndarray, output: Quantization, category: np.ndarray | None = None
) -> Path:
    """The shipped model's test-split scores: raw int8 outputs and the float scores the agent compares."""
    q = output.quantize(np.asarray(scores, dtype=np.float32))
    dequantized = output.dequantize(q)
    if not np.array_equal(dequantized, np.asarray(scores, dtype=np.float32)):
        raise ValueError("expected the int8 model's dequantized scores, got scores between quantization steps")
    arrays = {
        "y_true": np.asarray(y_true).astype(np.int8),
        "scores_int8": q,
        "scores": dequantized,
        "output_scale": np.float32(output.scale),
        "output_zero_point": np.int32(output.zero_point),
    }
    if category is not None:
        arrays["category"] = np.asarray(category).astype(str)
    with path.open("wb") as f:
        np.savez(f, **arrays)
    return path


def load_test_scores(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, scores)`` saved by :func:`save_test_scores`."""
    with np.load(path) as z:
        return z["y_true"].astype(int), z["scores"]


def _point(y: np.ndarray, s: np.ndarray, t: float) -> dict[str, Any]:
    flagged = s > t
    tp = int(np.sum(flagged & (y == 1)))
    fp = int(np.sum(flagged & (y == 0)))
    n_pos, n_neg = int(np.sum(y == 1)), int(np.sum(y == 0))
    return {
        "threshold": float(t),
        "fpr": fp / n_neg if n_neg else None,
        "recall": tp / n_pos if n_pos else None,
        "precision": tp / (tp + fp) if tp + fp else None,
        "tp": tp,
        "fp": fp,
        "fn": n_pos - tp,
        "tn": n_neg - fp,
        "marks": [],
    }


def _shortest_between(lo: float, hi: float) -> float:
    """The shortest decimal strictly between ``lo`` and ``hi`` (the midpoint's nearest rounding that fits)."""
    mid = (lo + hi) / 2
    for digits in range(1, 12):
        r = round(mid, digits)
        if lo < r < hi:
            return r
    return mid


def lowest_threshold_for(y_true: np.ndarray, scores: np.ndarray, target: float) -> float | None:
    """The lowest threshold in (0, 1) whose false-positive rate (``score > t`` on benign) is at most ``target``.

    Only the scores' distinct values matter: every threshold in ``[v_k, v_{k+1})`` flags the same windows, so the
    one returned is the shortest decimal inside that interval. None when no threshold below 1 reaches it.
    """
    y, s = np.asarray(y_true).astype(int), np.asarray(scores, dtype=np.float64)
    benign = np.sort(s[y == 0])
    if len(benign) == 0:
        return None
    allowed = int(np.floor(target * len(benign) + 1e-9))  # false positives the target allows
    values = np.unique(s)
    lows = np.concatenate([[0.0], values])  # interval i: thresholds in [lows[i], highs[i]) flag the same windows
    highs = np.minimum(np.concatenate([values, [np.inf]]), 1.0)
    false_positives = len(benign) - np.searchsorted(benign, lows, side="right")  # benign scored above lows[i]
    ok = np.flatnonzero((lows < highs) & (false_positives <= allowed))
    return _shortest_between(float(lows[ok[0]]), float(highs[ok[0]])) if ok.size else None


def operating_points(
    y_true: np.ndarray,
    scores: np.ndarray,
    *,
    model_threshold: float = 0.5,
    thresholds: Iterable[float] = GRID,
    fpr_targets: Iterable[float] = FPR_TARGETS,
) -> dict[str, Any]:
    """The operating-point table: a row per threshold (``thresholds``, the model's own and the marked ones).

    Returns ``{"n_benign", "n_malicious", "fpr_step", "model_threshold", "targets": {"1%": threshold | None},
    "points": [{"threshold", "fpr", "recall", "precision", "tp", "fp", "fn", "tn", "marks"}, ...]}``, thresholds
    ascending; ``marks`` names the model's threshold and each target a row reaches first.
    """
    y, s = np.asarray(y_true).astype(int), np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"expected y_true and scores of one same length, got shapes {y.shape} and {s.shape}")
    n_neg = int(np.sum(y == 0))
    targets = {_target_name(f): lowest_threshold_for(y, s, f) for f in fpr_targets}
    rows = {float(t): _point(y, s, t) for t in (*thresholds, model_threshold)}
    for name, t in targets.items():
        if t is not None:
            rows.setdefault(t, _point(y, s, t))["marks"].append(f"lowest for FPR ≤ {name}")
    rows[float(model_threshold)]["marks"].insert(0, "model's threshold")
    return {
        "n_benign": n_neg,
        "n_malicious": int(np.sum(y == 1)),
        "fpr_step": 1 / n_neg if n_neg else None,
        "model_threshold": float(model_threshold),
        "targets": targets,
        "points": [rows[t] for t in sorted(rows)],
    }


def _target_name(fpr: float) -> str:
    return f"{100 * fpr:g}%"


def _pct(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{100 * v:.{digits}f} %"


def markdown_lines(table: Mapping[str, Any], model: str, plot: str | None = None) -> list[str]:
    """The report's section: the table, what its marks mean, the resolution of the test split, the plot."""
    n_neg, step = table["n_benign"], table["fpr_step"]
    lines = [
        f"## Operating points: choosing the alert threshold ({model}, test split)",
        "",
        f"An alert is raised when a flow's score is above the threshold. {n_neg:,} benign and "
        f"{table['n_malicious']:,} malicious test windows; the false-positive rate moves in steps of "
        f"{_pct(step, 3)}. A site sets its own threshold with `alerts.threshold` in the agent config (SIGHUP reloads "
        "it); the rows marked *lowest for FPR ≤ x* are the lowest thresholds whose false-positive rate on the test "
        "split is at most x (the most recall that budget allows).",
        "",
        "| threshold | false-positive rate | recall | precision | FP | FN | |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in table["points"]:
        marks = "; ".join(p["marks"])
        bold = "**" if marks else ""
        lines.append(
            f"| {bold}{p['threshold']}{bold} | {_pct(p['fpr'])} | {_pct(p['recall'])} | {_pct(p['precision'])} | "
            f"{p['fp']:,} | {p['fn']:,} | {marks} |"
        )
    notes = []
    recall_at = {p["threshold"]: p["recall"] for p in table["points"]}
    for name, t in table["targets"].items():
        if t is None:
            notes.append(f"- FPR ≤ {name}: not reached by any threshold below 1 on this test split.")
        elif recall_at.get(t) == 0:
            notes.append(
                f"- FPR ≤ {name} is reached only by flagging nothing ({t}): some benign windows score as high as "
                "any attack."
            )
        elif step is not None and float(name.rstrip("%")) / 100 < step:
            notes.append(
                f"- FPR ≤ {name} is finer than one benign window ({_pct(step, 3)}): {t} is the lowest threshold "
                "with no false positive on the test split; the true rate at it is not measured at this resolution."
            )
    lines += ["", *notes] if notes else []
    if plot:
        lines += ["", f"![operating points]({plot})"]
    return [*lines, ""]


def plot_operating_points(y_true: np.ndarray, scores: np.ndarray, table: Mapping[str, Any], path: Path) -> Path:
    """Left: recall, precision and false-positive rate against the threshold. Right: recall against the
    false-positive rate (log scale), where the trade is read; the table's marked thresholds are drawn on both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y, s = np.asarray(y_true).astype(int), np.asarray(scores, dtype=np.float64)
    ts = np.unique(np.concatenate([[0.0], s]))
    ts = ts[ts < 1.0]
    curve = [_point(y, s, t) for t in ts]
    value = lambda key: np.array([np.nan if p[key] is None else p[key] for p in curve], dtype=float)  # noqa: E731
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, label, color in (("recall", "recall", "tab:blue"), ("precision", "precision", "tab:orange"),
                              ("fpr", "false-positive rate", "tab:red")):  # fmt: skip
        left.step(ts, value(key), where="post", label=label, color=color)
    fpr, recall = value("fpr"), value("recall")
    shown = fpr > 0  # a rate of 0 has no place on a log axis
    right.step(fpr[shown], recall[shown], where="post", color="tab:blue")
    marked = [p for p in table["points"] if p["marks"]]
    colors = ("grey", "tab:green", "tab:purple", "tab:olive", "tab:brown")
    for p, color in zip(marked, colors, strict=False):
        label = f"{p['threshold']} ({'; '.join(p['marks'])})"
        left.axvline(p["threshold"], color=color, ls="--", lw=1, label=label)
        if p["fpr"] and p["recall"] is not None:
            right.plot([p["fpr"]], [p["recall"]], "o", color=color, label=label)
    left.set_xlabel("alert threshold (alert when score > threshold)")
    left.set_xlim(0, 1)
    left.set_title("Against the threshold")
    right.set_xscale("log")
    right.set_xlabel("false-positive rate (benign test windows)")
    right.set_ylabel("recall")
    right.set_title("Recall for a false-positive budget")
    for ax in (left, right):
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def print_table(table: Mapping[str, Any]) -> str:
    """Plain text for a terminal (``iotids-train thresholds``)."""
    out = [f"{'threshold':>10}  {'FPR':>9}  {'recall':>9}  {'precision':>9}  {'FP':>6}  {'FN':>6}  marks"]
    for p in table["points"]:
        out.append(
            f"{p['threshold']!s:>10}  {_pct(p['fpr']):>9}  {_pct(p['recall']):>9}  {_pct(p['precision']):>9}  "
            f"{p['fp']:>6}  {p['fn']:>6}  {'; '.join(p['marks'])}"
        )
    out.append(f"{table['n_benign']:,} benign / {table['n_malicious']:,} malicious test windows")
    return "\n".join(out)


def write_run_operating_points(
    out_dir: Path,
    y_true: np.ndarray,
    scores: np.ndarray,
    *,
    output: Quantization,
    model_threshold: float,
    model: str,
    category: np.ndarray | None = None,
) -> dict[str, Any]:
    """A training run's part: save the test-split scores, compute the table, draw the plot; the report's entry."""
    save_test_scores(out_dir / TEST_SCORES, y_true, scores, output, category)
    table = operating_points(y_true, scores, model_threshold=model_threshold)
    plot = plot_operating_points(y_true, scores, table, out_dir / PLOT)
    return {"model": model, "scores_file": TEST_SCORES, "plot": plot.name, **table}


def report_lines(summary: Mapping[str, Any]) -> list[str]:
    """The report's operating-points section of a run summary (none for runs made before it existed)."""
    op = summary.get("operating_points")
    return markdown_lines(op, op["model"], op.get("plot")) if op else []


def run_table(run_dir: Path) -> str:
    """The operating points of an existing run directory, as text (raises FileNotFoundError naming the file)."""
    import json

    path = Path(run_dir) / TEST_SCORES
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file (runs made before the operating points have none)")
    spec = json.loads((Path(run_dir) / "spec.json").read_text())
    y, s = load_test_scores(path)
    return print_table(operating_points(y, s, model_threshold=float(spec["threshold"])))
