"""``iotids-flowmeter``: packets (pcap/pcapng files) → IoTID20 flow records (CSV).

The parser is laid out in three groups so more sources (live capture) and outputs (MQTT) can be added:
sources, meter settings, outputs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence

from flowmeter.csvout import CsvWriter
from flowmeter.meter import FlowMeter
from flowmeter.pcapfile import CaptureError, read_capture
from flowmeter.settings import REFERENCE_TIMEOUTS, MeterSettings

log = logging.getLogger("iotids-flowmeter")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="iotids-flowmeter",
        description="Packets → IoTID20 flow records, feature for feature like CICFlowMeter 99dc827 (IoTID20's).",
    )
    src = p.add_argument_group("sources")
    src.add_argument("pcap", nargs="*", help="pcap or pcapng files, read in order (each flushed at its end)")
    meter = p.add_argument_group("meter")
    defaults = MeterSettings()
    meter.add_argument(
        "--flow-timeout-us",
        type=int,
        default=None,
        help=f"flow timeout from a flow's first packet (default {defaults.flow_timeout_us})",
    )
    meter.add_argument(
        "--activity-timeout-us",
        type=int,
        default=None,
        help=f"gap that splits Active/Idle periods (default {defaults.activity_timeout_us})",
    )
    meter.add_argument(
        "--reference-timeouts",
        action="store_true",
        help=f"the reference tool's own timeouts {REFERENCE_TIMEOUTS[0]}/{REFERENCE_TIMEOUTS[1]} µs",
    )
    meter.add_argument(
        "--max-flows",
        type=int,
        default=defaults.max_flows,
        help="active flows kept; beyond it the oldest are evicted (counted)",
    )
    meter.add_argument(
        "--drop-single-packet-flows", action="store_true", help="the reference's rule: do not write flows of one packet"
    )
    meter.add_argument("--no-ipv6", action="store_true", help="ignore IPv6 packets (the reference's rule)")
    out = p.add_argument_group("outputs")
    out.add_argument("--csv", metavar="OUT", help="write the IoTID20 column layout to OUT")
    out.add_argument("--cat", help="label every flow with this IoTID20 Cat (writes Label/Cat/Sub_Cat, trainable)")
    out.add_argument("--sub-cat", help="IoTID20 Sub_Cat (implies its Cat)")
    p.add_argument("--stats", action="store_true", help="print the counters as JSON on stderr at the end")
    p.add_argument("-v", "--verbose", action="store_true")
    return p  # fmt: skip


def settings_from_args(args: argparse.Namespace) -> MeterSettings:
    flow, activity = REFERENCE_TIMEOUTS if args.reference_timeouts else (None, None)
    if args.flow_timeout_us is not None:
        flow = args.flow_timeout_us
    if args.activity_timeout_us is not None:
        activity = args.activity_timeout_us
    base = MeterSettings()
    return MeterSettings(
        flow_timeout_us=flow if flow is not None else base.flow_timeout_us,
        activity_timeout_us=activity if activity is not None else base.activity_timeout_us,
        max_flows=args.max_flows,
        single_packet_flows=not args.drop_single_packet_flows,
        ipv6=not args.no_ipv6,
    )


def meter_files(paths: Sequence[str], settings: MeterSettings, emit: Callable[[dict], None]) -> dict:
    """Run each capture through a fresh meter (flushed at the file's end, as the reference does); counters."""
    totals: dict = {"files": 0, "bad_files": 0, "capture_errors": Counter(), "meter": []}
    for path in paths:
        try:
            reader = read_capture(path)
        except CaptureError as e:
            log.error("%s", e)
            totals["bad_files"] += 1
            continue
        meter = FlowMeter(settings, emit)
        packet = meter.packet
        for ts, frame, linktype in reader:
            packet(ts, frame, linktype)
        meter.flush()
        totals["files"] += 1
        totals["capture_errors"].update(reader.errors)
        if reader.errors:
            log.warning("%s: corrupt records: %s", path, dict(reader.errors))
        totals["meter"].append({"file": str(path), **meter.stats.as_dict()})
    totals["capture_errors"] = dict(totals["capture_errors"])
    return totals


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    if not args.pcap:
        parser.error("give at least one pcap/pcapng file")
    if not args.csv:
        parser.error("give an output: --csv OUT")
    try:
        settings = settings_from_args(args)
        writer = CsvWriter(args.csv, cat=args.cat, sub_cat=args.sub_cat)
    except (ValueError, OSError) as e:
        parser.error(str(e))
    started = time.process_time()
    with writer:
        totals = meter_files(args.pcap, settings, writer.write)
    cpu = time.process_time() - started
    packets = sum(m["packets"] for m in totals["meter"])
    log.info(
        "%d file(s), %d packets, %d flows → %s (%.2f CPU-s)%s",
        totals["files"], packets, writer.rows, args.csv, cpu,
        f"; {totals['bad_files']} unreadable file(s)" if totals["bad_files"] else "",
    )  # fmt: skip
    if args.stats:
        print(json.dumps(totals, indent=2), file=sys.stderr)
    return 1 if totals["bad_files"] and not totals["files"] else 0


if __name__ == "__main__":
    sys.exit(main())
