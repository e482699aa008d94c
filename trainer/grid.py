"""Grid search over Table II (Section III-B): 144 combinations × 3 epochs, resumable.

Each finished combination is appended to ``grid.jsonl`` at once (one fsynced line), so an
interrupted search resumes where it stopped: finished combinations are skipped on restart. The
recurrent stack follows the hybrid pattern (layer 1 GRU 256, layer 2 LSTM 128, layer 3 GRU 64, as
many as ``num_layers``); dense layers are 128 then 64. Models are ranked on the validation part
(the paper ranked on its test set; test metrics are recorded beside, for comparison).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from trainer.config import Profile
from trainer.evaluate import binary_metrics
from trainer.pipeline import prepare
from trainer.train import predict, train_model, validation_split

log = logging.getLogger(__name__)

PARAMS = ("learning_rate", "optimizer", "num_layers", "num_dense_layers", "batch_size")
RANK_BY = ("val_accuracy", "val_auc")


def combinations(profile: Profile) -> list[dict[str, Any]]:
    """Every combination of the profile's grid, in a fixed order."""
    g = profile.grid
    values = [g.learning_rate, g.optimizer, g.num_layers, g.num_dense_layers, g.batch_size]
    return [dict(zip(PARAMS, combo, strict=True)) for combo in itertools.product(*values)]


def combo_key(params: dict[str, Any]) -> str:
    return ",".join(f"{k}={params[k]}" for k in PARAMS)


def select(combos: list[dict[str, Any]], only: str = "", limit: int | None = None) -> list[dict[str, Any]]:
    """Filter by ``key=value,…`` (values compared as text) and keep the first ``limit``."""
    wanted = dict(item.split("=", 1) for item in only.split(",") if item.strip())
    unknown = set(wanted) - set(PARAMS)
    if unknown:
        raise ValueError(f"--only: unknown parameter(s) {sorted(unknown)}; allowed: {PARAMS}")
    chosen = [c for c in combos if all(str(c[k]) == v for k, v in wanted.items())]
    return chosen[:limit] if limit is not None else chosen


def load_results(path: Path) -> dict[str, dict[str, Any]]:
    """Finished combinations by key; a torn last line (a kill mid-write) is ignored with a warning."""
    done: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return done
    for n, line in enumerate(path.read_text().splitlines(), 1):
        try:
            rec = json.loads(line)
            done[rec["key"]] = rec
        except (json.JSONDecodeError, KeyError):
            log.warning("%s:%d: ignoring an incomplete result line", path, n)
    return done


def _append(path: Path, record: dict[str, Any]) -> None:
    """Append one fsynced line; a torn last line (a kill mid-write) is ended first so this record stays whole."""
    with path.open("ab+") as f:
        end = f.seek(0, os.SEEK_END)
        torn = False
        if end > 0:
            f.seek(end - 1)
            torn = f.read(1) != b"\n"
        f.write((("\n" if torn else "") + json.dumps(record) + "\n").encode())
        f.flush()
        os.fsync(f.fileno())


def run_grid(profile: Profile, out_dir: Path, *, limit: int | None = None, only: str = "") -> list[dict[str, Any]]:
    """Run the (selected) grid, skipping finished combinations; returns all results ranked."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / "grid.jsonl"
    todo = select(combinations(profile), only, limit)
    done = load_results(results_path)
    pending = [c for c in todo if combo_key(c) not in done]
    log.info(
        "grid: %d selected, %d already finished (skipped), %d to run",
        len(todo),
        len(todo) - len(pending),
        len(pending),
    )
    if pending:
        prep = prepare(profile, out_dir / "data")
        _, val_part = validation_split(prep.train, profile.train.validation_split, profile.seed)
        for params in tqdm(pending, desc="grid search", unit="combo"):
            start = time.perf_counter()
            cfg = replace(
                profile.train,
                epochs=profile.grid.epochs,
                batch_size=params["batch_size"],
                learning_rate=params["learning_rate"],
                optimizer=params["optimizer"],
            )
            trained = train_model(
                profile.model.name,
                prep.train,
                cfg,
                out_dir,
                seed=profile.seed,
                verbose=0,
                early_stopping=False,
                num_layers=params["num_layers"],
                dense=(128, 64)[: params["num_dense_layers"]],
            )
            val = binary_metrics(val_part.y, predict(trained.model, val_part))
            test = binary_metrics(prep.test.y, predict(trained.model, prep.test))
            record = {
                "key": combo_key(params),
                "params": params,
                "val_accuracy": val["accuracy"],
                "val_auc": val["roc_auc"],
                "validation": val,
                "test": test,
                "history": trained.history,
                "seconds": round(time.perf_counter() - start, 1),
            }
            _append(results_path, record)
            done[record["key"]] = record
    ranked = sorted((done[combo_key(c)] for c in todo), key=lambda r: tuple(-(r[k] or 0) for k in RANK_BY))
    table = write_table(ranked, out_dir / "grid.md")
    print(table)
    return ranked


def write_table(ranked: list[dict[str, Any]], path: Path) -> str:
    """The ranked results as a markdown table (best first)."""
    lines = [
        "| rank | "
        + " | ".join(PARAMS)
        + " | val acc | val AUC | test acc | test precision | test recall | test AUC | s |",
        "|---" * (len(PARAMS) + 8) + "|",
    ]
    for i, r in enumerate(ranked, 1):
        t = r["test"]
        lines.append(
            f"| {i} | "
            + " | ".join(str(r["params"][k]) for k in PARAMS)
            + f" | {r['val_accuracy']:.4f} | {r['val_auc'] or 0:.4f} | {t['accuracy']:.4f} | {t['precision']:.4f}"
            f" | {t['recall']:.4f} | {t['roc_auc'] or 0:.4f} | {r['seconds']} |"
        )
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text
