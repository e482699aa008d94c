#!/usr/bin/env python
"""Attack category: a second small int8 model vs a second output of the Uni-Hybrid — size, speed, accuracy.

Usage: ``python bench/category_choice.py [--seed 42] [--out bench/results/category_choice.md]``

On the real sample's quick-profile split (``trainer.pipeline.prepare``):

1. **Second model** (what ships, ``trainer.category``): dense 256 → 128 → softmax over the malicious categories
   (since 2026-12-05 16:40 with class codes of ports and protocol in its input, ``bench/category.py``),
   trained on the malicious training rows, int8; its size, LiteRT µs per flow and accuracy on malicious test flows.
2. **Second output** (estimate): the quick Uni-Hybrid (same builder, T = 1) with a second head — Dense(5, softmax)
   over Normal + the four attack categories on its last dense layer — trained jointly (binary cross-entropy +
   sparse categorical cross-entropy, equal weights) on every training row with the quick profile's optimizer, batch
   and early stopping; its category accuracy on the malicious test flows and binary accuracy beside the one-head
   model's. Size and speed of the extra head: one 64 × 5 FULLY_CONNECTED + SOFTMAX (int8: ~0.3 kB, no measurable
   time next to the recurrent layers).
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

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SAMPLE = REPO.parent / "shared" / "data" / "iotid20" / "iotid20_2000.csv"


def two_head(prep, profile, seed: int) -> dict:
    import keras

    from trainer.models import build_model, make_optimizer

    classes = sorted({str(c) for c in prep.train.category})
    keras.utils.set_random_seed(seed)
    base = build_model(profile.model.name, prep.train.shape)
    trunk = base.layers[-2].output  # the last hidden dense layer (64)
    cat = keras.layers.Dense(len(classes), activation="softmax", name="category")(trunk)
    model = keras.Model(base.input, [base.output, cat])
    model.compile(optimizer=make_optimizer(profile.train.optimizer, profile.train.learning_rate),
                  loss=["binary_crossentropy", "sparse_categorical_crossentropy"])  # fmt: skip
    x, y = prep.train.windows(), prep.train.y.astype(np.float32)
    c = np.searchsorted(classes, prep.train.category.astype(str))
    t0 = time.perf_counter()
    hist = model.fit(
        x, [y, c], epochs=profile.train.epochs, batch_size=profile.train.batch_size, verbose=0,
        validation_split=profile.train.validation_split,
        callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=profile.train.patience,
                                                 restore_best_weights=True),
                   keras.callbacks.ReduceLROnPlateau(monitor="val_loss", patience=3, factor=0.5)],
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    score, prob = model.predict(prep.test.windows(), verbose=0)
    truth = prep.test.category.astype(str)
    mal = prep.test.y == 1
    attack_classes = [i for i, n in enumerate(classes) if n != "Normal"]
    pred = np.asarray(classes)[np.asarray(attack_classes)[prob[:, attack_classes].argmax(1)]]
    return {
        "binary_accuracy": float(((score[:, 0] > 0.5) == (prep.test.y == 1)).mean()),
        "category_accuracy_malicious": float((pred[mal] == truth[mal]).mean()),
        "epochs": len(hist.history["loss"]),
        "seconds": round(seconds, 1),
        "head_parameters": int(model.get_layer("category").count_params()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "category_choice.md")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from trainer.category import train_category
    from trainer.config import load_profile
    from trainer.pipeline import prepare

    profile = load_profile("quick", overrides=[f"data={SAMPLE}", f"seed={args.seed}"])
    with tempfile.TemporaryDirectory() as tmp:
        prep = prepare(profile, Path(tmp) / "data")
        fake_scores = np.where(prep.test.y == 1, 0.9, 0.1).astype(np.float32)  # flags exactly the attacks
        second = train_category(
            prep.train, prep.test, train_frame=prep.train_frame, test_frame=prep.test_frame,
            transform=prep.selection.transform, out_dir=Path(tmp),
            main_scores=fake_scores, threshold=0.5, model_version="bench", seed=args.seed,
        )  # fmt: skip
    head = two_head(prep, profile, args.seed)
    sp = second["speed"]
    lines = [
        "# Attack category: second model vs second output",
        "",
        f"Command: `python bench/category_choice.py --seed {args.seed}`; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
        f"{platform.platform()} (2 shared cores, other work running: times are upper bounds). Real IoTID20 sample, "
        "quick-profile split (8,000 / 2,000 flows).",
        "",
        "| | size (int8) | µs/flow, LiteRT 1 thread, batch 256 (batch 1) | category accuracy, malicious test flows |",
        "|---|---|---|---|",
        f"| second model (dense 256 → 128, shipped) | {second['size_bytes']:,} B | "
        f"{sp['category_us_per_flow_batch_256']} ({sp['category_us_per_flow_batch_1']}), only flagged flows | "
        f"{second['accuracy_malicious']:.4f} |",
        f"| second output of the Uni-Hybrid (joint training) | + ~{head['head_parameters']} weights (~0.3 kB) | "
        f"≈ 0 extra | {head['category_accuracy_malicious']:.4f} (binary accuracy {head['binary_accuracy']:.4f}, "
        f"{head['epochs']} epochs, {head['seconds']} s) |",
        "",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
