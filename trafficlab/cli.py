"""``iotids-lab``: run a traffic-lab scenario into a labelled capture, or list the shipped scenarios.

    iotids-lab list
    iotids-lab check SCENARIO.yaml
    iotids-lab run SCENARIO.yaml --out DIR      (root: creates network namespaces)

SCENARIO is a path or the name of a shipped scenario (``ci``, ``standard``).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from trafficlab.netns import require_netns
from trafficlab.scenario import ScenarioError, load_scenario, shipped_scenarios, shipped_text


def _scenario_text(arg: str) -> str:
    p = Path(arg)
    return p.read_text(encoding="utf-8") if p.exists() else shipped_text(arg)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the lab's cleanup


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="iotids-lab", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the shipped scenarios")
    check = sub.add_parser("check", help="validate a scenario file")
    check.add_argument("scenario")
    run = sub.add_parser("run", help="run a scenario (needs root)")
    run.add_argument("scenario")
    run.add_argument("--out", type=Path, required=True, help="output directory (must not hold a run already)")
    run.add_argument("--no-capture", action="store_true", help="no tcpdump (capture from elsewhere)")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    if args.cmd == "list":
        for name, desc in shipped_scenarios().items():
            print(f"{name:12s} {desc}")
        return 0
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as e:
        print(f"iotids-lab: {e}", file=sys.stderr)
        return 2
    if args.cmd == "check":
        print(f"{args.scenario}: ok ({len(scenario.devices)} devices, {len(scenario.attacks)} attacks, "
              f"{scenario.duration_s:.0f} s)")  # fmt: skip
        return 0
    reason = require_netns()
    if reason:
        print(f"iotids-lab: cannot run the lab here: {reason}", file=sys.stderr)
        return 3
    from trafficlab.capture import tcpdump_capture
    from trafficlab.lab import run_scenario

    signal.signal(signal.SIGTERM, _terminate)
    try:
        result = run_scenario(
            scenario,
            args.out,
            capture=None if args.no_capture else tcpdump_capture,
            scenario_text=_scenario_text(args.scenario),
            progress=lambda t, running: logging.getLogger("iotids-lab").debug("t=%.0f s running %s", t, running),
        )
    except FileExistsError as e:
        print(f"iotids-lab: {e}", file=sys.stderr)
        return 2
    s = result.summary
    print(json.dumps({k: s[k] for k in ("scenario", "wall_s", "pcap", "pcap_bytes", "capture", "attacks")}, indent=1))
    print(f"outputs in {args.out}: capture.pcap labels.json scenario.yaml summary.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
