#!/usr/bin/env python
"""Inference benchmark: Keras float32 vs float TFLite vs int8 TFLite (LiteRT, tflite-runtime) for Uni-Hybrid.

Usage: ``python bench/inference.py [--quick]`` (results in ``bench/results/inference.{md,json}``; ``--quick``
is a smoke check with few repetitions that writes into its work directory instead).

How it measures, in one process tree:

1. A ``prepare`` child builds the Uni-Hybrid model for the quick (T=1) and paper (T=62) shapes, saves its
   random-init weights, trains a copy for a few epochs on a synthetic rule ("toy" weights: non-zero biases and
   BatchNorm statistics, spread-out scores) and converts both weight sets with the project's own path
   (``trainer.convert.run_conversion``: the ``unroll=True`` twin, float / int8 per-tensor / int8 per-channel).
2. Fresh ``probe`` children report peak RSS (``VmHWM``) of a process that imports only the interpreter wrapper
   and loads the int8 T=62 model, and of one that imports TensorFlow.
3. Long-lived ``worker`` children, one per runtime and thread count (Keras needs a fresh process per thread
   count; tflite-runtime runs in its own venv), load every model; LiteRT also runs the shipped file without
   XNNPACK as a reference. The parent then runs interleaved rounds: in each round every case gets one block
   of batch-1 calls and one batch-256 run of at least ``run_seconds``, one case at a time. Throughput is the
   median over rounds, batch-1 latency the median / p99 over all calls; so ratios are taken side by side. Each
   run also records how much CPU other processes used meanwhile (the machine is shared).

Speed and size are measured on the toy weights (speed does not depend on weight values; size does, see the
report). Int8-vs-float agreement is measured on random windows in [0, 1] for both weight sets.

This file is the command line; the benchmark lives in ``bench/inference_*.py`` beside it: ``inference_plan``
(shapes, variants, the plan of a run, one case), ``inference_prepare`` (the ``prepare`` child), ``inference_children``
(the ``worker`` and ``probe`` children), ``inference_workers`` (the parent's side of them), ``inference_rounds``
(agreement and the interleaved rounds), ``inference_run`` (a whole run → ``inference.json`` + ``inference.md``),
``inference_report`` (the Markdown), ``inference_view`` (reading the results for it) and ``inference_notes``
("What this means").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from inference_children import probe, worker
from inference_plan import FULL, QUICK, REPO, TFLRT_PYTHON
from inference_prepare import prepare
from inference_report import render
from inference_run import run


def _child(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(REPO))
    workdir = Path(args.workdir)
    if args.child == "worker":
        worker(workdir, args.runtime, args.threads)
        return
    result = (
        prepare(workdir, QUICK if args.quick else FULL) if args.child == "prepare" else probe(workdir, args.runtime)
    )
    print("\n" + json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke check: few repetitions, results in the work directory")
    ap.add_argument("--out", help="results directory (default bench/results; with --quick the work directory)")
    ap.add_argument("--workdir", help="where models and logs go (default: a new temporary directory)")
    ap.add_argument("--tflite-runtime-python", default=TFLRT_PYTHON, help="python of a venv with tflite-runtime")
    ap.add_argument("--render", metavar="JSON", help="only re-render the .md beside an inference.json")
    ap.add_argument("--child", choices=("prepare", "worker", "probe"), help=argparse.SUPPRESS)
    ap.add_argument("--runtime", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args)
    elif args.render:
        Path(args.render).with_suffix(".md").write_text(render(json.loads(Path(args.render).read_text())))
    else:
        run(args)


if __name__ == "__main__":
    main()
