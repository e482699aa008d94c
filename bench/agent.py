#!/usr/bin/env python
"""Agent benchmark: zero-loss flows/s, publish→verdict latency and RSS of the real daemon through Mosquitto.

Usage: ``python bench/agent.py [--quick]`` (results in ``bench/results/agent.{md,json}``; ``--quick`` is a smoke
check with short trials that writes into its work directory instead).

One process tree, every comparison taken side by side in the same run:

1. A ``prepare`` child (TensorFlow) writes SYNTHETIC flows (``trainer.synthetic``, full IoTID20 layout with
   ``Src_IP``), turns them into JSON records as ``flowmeter.replay`` does, fits a log-Min-Max ``FeatureTransform`` on
   the first 62 non-constant numeric columns, builds Uni-Hybrid at T=1 and T=62 with RANDOM-INIT weights (speed
   does not depend on the weight values), converts them with the project's path (``trainer.convert``: the
   ``unroll=True`` twin, full int8, per-tensor) and writes ``spec.json`` with the file's quantization.
2. Mosquitto (own config, no persistence, unlimited in-flight/queued), the subscriber child and the publisher
   (this process; a raw-socket MQTT QoS 1 load generator) run on core 0; the agents (``python -m agent.daemon``,
   ``model.threads: 1``) and the raw interpreter worker are pinned to core 1 (``taskset -c 1``).
3. Per shape several agents run at once and stay idle unless fed: ``int8`` (``batch.max_wait_ms`` 20, the
   default), ``int8-5ms``, ``int8-2ms``, ``int8-alerts`` (threshold 0.01: every flow alerts, rate limiting off),
   ``int8-alerts-rl`` (the same with rate limiting as shipped) and ``int8-steady`` (never overloaded).
4. Max zero-loss rate: flows are published at a fixed rate for ``trial_seconds`` (QoS 1, ``sensor``/``seq`` in
   every record; one JSON record per message, or columnar batches of 32 as the flow meter publishes them by
   default, ``ids_core.flowmessage``); a trial passes when every ``seq`` got its verdict, the last verdict came
   within ``DRAIN_LIMIT`` of the last publish and the publisher kept its pace. A burst probe gives the start; the
   rate then moves up or down geometrically, then bisects. Searches of one shape run interleaved (one trial each
   per round), with a raw ``TFLiteModel.predict`` measurement (batch 256, one thread, same core) after every
   round. Saturating bursts then give each agent's flows per CPU-second, which does not depend on how much of the
   core others took (also for JSON arrays of 32, without a search).
5. Latency at 50 % of the ``int8`` 1-record/message max, the ``max_wait`` variants alternating: publish time
   (publisher) → verdict arrival (subscriber), same host clock, beside the agent's own arrival → outbox latency
   from its stats. Then the agents' ``VmHWM``, a fresh process's memory per step of loading the T=62 model, the
   same for TensorFlow running the Keras model, and the installed size of the agent's dependencies vs
   TensorFlow's (``agent_footprint``).

This file is the command line; the benchmark lives in ``bench/agent_*.py`` beside it: ``agent_plan`` (plans,
variants, formats, pass criteria), ``agent_prepare`` (the ``prepare`` child), ``agent_children`` (what runs in the
other children), ``agent_processes`` (starting and stopping processes, CPU accounting), ``agent_load`` (records,
messages and the raw-socket publisher), ``agent_trial`` (the driver and one trial), ``agent_search`` (the zero-loss
search and the run of one shape), ``agent_footprint`` (memory and install size beside TensorFlow), ``agent_run``
(a whole run → ``agent.json`` + ``agent.md``), ``agent_report`` (the Markdown) and ``agent_targets`` (issue 14's
targets beside the numbers they replace).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from agent_children import raw_worker, reply, rss_probe, subscriber
from agent_footprint import tf_rss_probe
from agent_plan import FULL, QUICK
from agent_prepare import prepare
from agent_report import render
from agent_run import run

BENCH = Path(__file__).resolve().parent
# ``python bench/agent.py`` puts bench/ first on sys.path, where this file would shadow the ``agent`` package: the
# repository goes first and bench/ (this benchmark's modules, benchlib) last.
sys.path[:] = [str(BENCH.parent), *(p for p in sys.path if Path(p or ".").resolve() != BENCH), str(BENCH)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke check: short trials, results in the work directory")
    ap.add_argument("--out", help="results directory (default bench/results; with --quick the work directory)")
    ap.add_argument("--workdir", help="where models, configs and logs go (default: a new temporary directory)")
    ap.add_argument("--render", metavar="JSON", help="only re-render the .md beside an agent.json")
    ap.add_argument("--child", choices=("prepare", "raw", "subscriber", "rss", "tf-rss"), help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "prepare":
        reply(prepare(Path(args.workdir), QUICK if args.quick else FULL))
    elif args.child == "rss":
        reply(rss_probe(Path(args.workdir)))
    elif args.child == "raw":
        raw_worker(Path(args.workdir))
    elif args.child == "subscriber":
        subscriber(args.port)
    elif args.child == "tf-rss":
        reply(tf_rss_probe(Path(args.workdir)))
    elif args.render:
        Path(args.render).with_suffix(".md").write_text(render(json.loads(Path(args.render).read_text())))
    else:
        started = time.time()

        def log(msg: str) -> None:
            print(f"[{time.time() - started:6.0f} s] {msg}", file=sys.stderr, flush=True)

        run(args.quick, args.out, args.workdir, log)


if __name__ == "__main__":
    main()
