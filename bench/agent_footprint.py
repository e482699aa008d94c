"""Memory and install size of the gateway's agent beside TensorFlow (issue 14 retired the Keras speed target and
kept this comparison): the installed size of the ``agent`` extra's dependency closure vs ``tensorflow-cpu``'s, and
the RSS of a fresh process at each step of running the T=62 model with Keras (``--child tf-rss``)."""

from __future__ import annotations

import configparser
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from agent_plan import FEATURES, MAX_RECORDS, MODEL, REPO
from benchlib import vm


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(roots: list[str]) -> dict[str, int]:
    """Installed bytes of each distribution in the dependency closure of ``roots`` (requirement strings; markers
    evaluated for this interpreter, no extras of the dependencies), from each distribution's RECORD."""
    from packaging.requirements import Requirement

    seen: dict[str, int] = {}
    todo = [Requirement(r) for r in roots]
    while todo:
        req = todo.pop()
        name = _norm(req.name)
        if name in seen or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            seen[name] = 0  # not installed here (e.g. a platform-only dependency)
            continue
        size = 0
        for f in dist.files or []:
            p = Path(dist.locate_file(f))
            if p.is_file():
                size += p.stat().st_size
        seen[name] = size
        todo += [Requirement(r) for r in dist.requires or []]
    return seen


def install_sizes() -> dict[str, Any]:
    """Installed MB of the ``agent`` extra (setup.cfg) and of ``tensorflow-cpu`` with their dependencies."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    agent_reqs = [ln.strip() for ln in cfg["options.extras_require"]["agent"].splitlines() if ln.strip()]
    out: dict[str, Any] = {}
    for label, roots in (("agent extra", ["numpy", *agent_reqs]), ("tensorflow-cpu", ["tensorflow-cpu"])):
        sizes = _closure(roots)
        out[label] = {
            "mb": sum(sizes.values()) / 1e6,
            "distributions": len(sizes),
            "largest": {k: round(v / 1e6, 1) for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])[:5]},
        }
    return out


def tf_rss_probe(workdir: Path) -> dict[str, dict[str, float]]:
    """VmHWM/VmRSS of a fresh process after each step of scoring T=62 windows with Keras float32."""
    stages = {"python + numpy": vm()}
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    stages["+ import tensorflow"] = vm()
    from trainer.models import build_model

    model = build_model(MODEL, (62, FEATURES))
    w = np.load(workdir / "T62" / "weights.npz")
    model.set_weights([w[f"w{i}"] for i in range(len(w.files))])
    stages["+ T=62 Keras model built"] = vm()
    x = np.array(np.load(workdir / "T62" / "raw_windows.npy", mmap_mode="r")[:MAX_RECORDS], dtype=np.float32)
    model.predict_on_batch(x[:1])
    stages["+ batch 1 (predict_on_batch)"] = vm()
    model.predict_on_batch(x)
    stages["+ batch 256"] = vm()
    return stages
