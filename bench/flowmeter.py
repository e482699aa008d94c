"""Flow meter throughput and memory: our meter (records, CSV, MQTT through the daemon) beside the Java reference and
the PyPI ``cicflowmeter`` package on the same capture, in one run; RSS with 10k and 100k active flows.

    .venv/bin/python bench/flowmeter.py            # ~20 min on the 2-core dev VM → bench/results/flowmeter.{md,json}
    .venv/bin/python bench/flowmeter.py --quick    # seconds: small capture, no Java/PyPI; writes into --out-dir only
    .venv/bin/python bench/flowmeter.py --render bench/results/flowmeter.json

The capture is the shared pcaps (``../shared/pcaps``) replicated with shifted times and addresses (written under
/tmp, never committed). Every tool runs in a child process pinned to one core (``taskset``); its CPU time comes from
``wait4`` (user + system of the child and the children it waited for), its start-up is measured on a 20-packet pcap
and subtracted. Cases run in interleaved rounds; medians are reported. On the shared VM read CPU-time rates and
ratios, not wall time.

This file is the command line; the benchmark lives in ``bench/flowmeter_*.py`` beside it: ``flowmeter_programs``
(what the children run), ``flowmeter_capture`` (the replicated capture), ``flowmeter_children`` (each tool in a pinned
child), ``flowmeter_mqtt`` (the daemon through Mosquitto), ``flowmeter_run`` (a whole run) and ``flowmeter_report``
(the Markdown).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# ``python bench/flowmeter.py`` puts bench/ first on sys.path, where this file would shadow the ``flowmeter`` package
sys.path.insert(0, str(REPO))

from flowmeter_report import write_report  # noqa: E402
from flowmeter_run import run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small capture, 1 round, no Java/PyPI; writes to --out-dir")
    ap.add_argument("--packets", type=int, help="at least this many packets (default 1,100,000; quick 20,000)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 3; quick 1)")
    ap.add_argument("--pypi-packets", type=int, default=20_000, help="the PyPI package's share of the capture")
    ap.add_argument("--pypi-python", default="/tmp/venv-cicfm/bin/python", help="a python with cicflowmeter")
    ap.add_argument("--no-java", action="store_true")
    ap.add_argument("--work-dir", default=None, help="captures and scratch (default a new dir under /tmp)")
    ap.add_argument("--out-dir", type=Path, default=None, help="where the .md/.json go (default bench/results)")
    ap.add_argument("--keep", action="store_true", help="keep the generated captures")
    ap.add_argument("--render", type=Path, metavar="JSON", help="re-render the .md from a .json and exit")
    args = ap.parse_args(argv)
    out_dir = args.out_dir or (REPO / "bench" / "results")
    if args.render:
        res = json.loads(args.render.read_text())
        sys.stdout.write(write_report(res, out_dir / "flowmeter.md", args.render))
        return 0
    if args.quick and args.out_dir is None:
        sys.exit("--quick writes into --out-dir only (the committed results come from a full run)")
    args.packets = args.packets or (20_000 if args.quick else 1_100_000)
    args.rounds = args.rounds or (1 if args.quick else 3)
    if args.quick:
        args.pypi_packets = min(args.pypi_packets, 2_000)
    args.work_dir = args.work_dir or tempfile.mkdtemp(prefix="flowmeter-bench-")
    out_dir.mkdir(parents=True, exist_ok=True)
    res = run(args)
    sys.stdout.write(write_report(res, out_dir / "flowmeter.md", out_dir / "flowmeter.json"))
    if not args.keep:
        shutil.rmtree(args.work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
