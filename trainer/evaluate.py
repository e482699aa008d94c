"""Evaluation (Section III-D, Table V, Figs 5–9): metrics, per-category recall, and the plots."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn import metrics as skm

from ids_core.columns import NUMERIC_COLUMNS


def binary_metrics(y: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Accuracy, precision, recall, F1 (Eqs 1–4), ROC AUC, average precision, the confusion matrix and the
    false-positive rate on benign windows (FP / (FP + TN))."""
    y = np.asarray(y).astype(int)
    pred = (np.asarray(scores) > threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
    both = len(np.unique(y)) == 2
    return {
        "n": len(y),
        "accuracy": float(skm.accuracy_score(y, pred)),
        "precision": float(skm.precision_score(y, pred, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, zero_division=0)),
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
        "roc_auc": float(skm.roc_auc_score(y, scores)) if both else None,
        "average_precision": float(skm.average_precision_score(y, scores)) if both else None,
        "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        "benign_fpr": float(fp / (fp + tn)) if fp + tn else None,
        "majority_class_accuracy": float(max(y.mean(), 1 - y.mean())) if len(y) else None,
    }


def per_category(category: np.ndarray, y: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict:
    """Per IoTID20 category: the share flagged malicious (recall for attacks, false-alarm rate for Normal)."""
    pred = np.asarray(scores) > threshold
    out = {}
    for cat in sorted(set(category)):
        sel = category == cat
        flagged = float(pred[sel].mean())
        malicious = bool(np.asarray(y)[sel].mean() > 0.5)
        out[cat] = {"n": int(sel.sum()), "recall" if malicious else "false_alarm_rate": flagged}
    return out


def unseen_in_train(train: pd.DataFrame, test: pd.DataFrame, test_rows: np.ndarray) -> np.ndarray:
    """Mask over test windows: True where the newest flow's feature row never occurs in training.

    The full file is ~26% exact duplicates, so a random split scores many test rows the model has
    literally seen; this mask gives the honest number beside the paper's.
    """
    cols = list(NUMERIC_COLUMNS)
    seen = pd.MultiIndex.from_frame(train[cols])
    newest = test.iloc[test_rows][cols]
    return ~pd.MultiIndex.from_frame(newest).isin(seen)


# --------------------------------------------------------------------------- plots


def plot_history(history: Mapping[str, list[float]], best_epoch: int, title: str, path: Path) -> Path:
    """Fig. 5/6: training and validation loss (left) and accuracy (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    epochs = np.arange(1, len(history["loss"]) + 1)
    for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
        ax.plot(epochs, history[key], label=f"training {key}")
        ax.plot(epochs, history[f"val_{key}"], label=f"validation {key}")
        ax.axvline(best_epoch, color="grey", ls=":", label=f"best (epoch {best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_title(f"Training and validation {key}")
        ax.legend()
    fig.suptitle(title)
    return _save(fig, path)


def plot_confusion(results: Mapping[str, dict], path: Path) -> Path:
    """Fig. 7: confusion matrices, one per model."""
    fig, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 3.6), squeeze=False)
    for ax, (name, m) in zip(axes[0], results.items(), strict=True):
        c = m["confusion"]
        mat = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
        ax.imshow(mat, cmap="Blues")
        for (i, j), v in np.ndenumerate(mat):
            ax.text(j, i, f"{v:,}", ha="center", va="center", color="white" if v > mat.max() / 2 else "black")
        ax.set_xticks([0, 1], ["benign", "malicious"])
        ax.set_yticks([0, 1], ["benign", "malicious"])
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
        ax.set_title(name)
    return _save(fig, path)


def plot_curves(y: np.ndarray, scores: Mapping[str, np.ndarray], kind: str, path: Path) -> Path:
    """Fig. 8 (precision–recall, AP) or Fig. 9 (ROC, AUC) for every model."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for name, s in scores.items():
        if kind == "roc":
            fpr, tpr, _ = skm.roc_curve(y, s)
            ax.plot(fpr, tpr, label=f"{name} (AUC={skm.roc_auc_score(y, s):.6f})")
            ax.set_xlabel("False Positive Rate")
            ax.set_ylabel("True Positive Rate")
        else:
            prec, rec, _ = skm.precision_recall_curve(y, s)
            ax.plot(rec, prec, label=f"{name} (AP={skm.average_precision_score(y, s):.6f})")
            ax.set_xlabel("Recall")
            ax.set_ylabel("Precision")
    ax.set_title("ROC curve" if kind == "roc" else "Precision–recall curve")
    ax.legend(loc="lower right" if kind == "roc" else "lower left")
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
