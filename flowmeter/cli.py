"""``iotids-flowmeter``: packets (pcap/pcapng files or a live interface) → IoTID20 flow records, as CSV or on MQTT.

``PCAP... --csv OUT`` writes the IoTID20 column layout (each file flushed at its end, as the reference does);
``--interface IF --csv OUT`` does the same live until SIGINT/SIGTERM. With ``--config FILE`` (or ``--mqtt``) and no
``--csv`` the records go to MQTT through the on-disk outbox (:mod:`flowmeter.daemon`); this is what systemd runs.
Configuration errors exit 2 with one line naming the setting.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from flowmeter.capture import LiveCaptureError, compile_bpf
from flowmeter.config import ConfigError, FlowmeterConfig, load_config
from flowmeter.csvout import CsvWriter
from flowmeter.meter import FlowMeter
from flowmeter.pcapfile import CaptureError, read_capture
from flowmeter.settings import REFERENCE_TIMEOUTS, MeterSettings
from ids_core.typedconfig import describe

EXIT_STARTUP = 2  # a configuration, interface, filter or state problem: one line on stderr, nothing started

log = logging.getLogger("iotids-flowmeter")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="iotids-flowmeter",
        description="Packets → IoTID20 flow records, feature for feature like CICFlowMeter 99dc827 (IoTID20's).",
    )
    src = p.add_argument_group("sources")
    src.add_argument("pcap", nargs="*", help="pcap or pcapng files, read in order (each flushed at its end)")
    src.add_argument("--interface", metavar="IF", help="capture live from IF (CAP_NET_RAW; default capture.interface)")
    src.add_argument("--bpf", metavar="EXPR", help="tcpdump filter for the live capture (default capture.bpf)")
    conf = p.add_argument_group("configuration")
    conf.add_argument("--config", type=Path, help="flow meter YAML (default: config/flowmeter.yaml); MQTT output")
    conf.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set mqtt.host=broker.lan --set publish.max_records=512",
    )
    conf.add_argument("--help-config", action="store_true", help="list every setting with its default and exit")
    conf.add_argument(
        "--validate-config",
        action="store_true",
        help="check the configuration (TLS files, state dir, interface, filter), then exit",
    )
    meter = p.add_argument_group("meter")
    defaults = MeterSettings()
    for name, what in (
        ("flow_timeout_us", "flow timeout from a flow's first packet"),
        ("activity_timeout_us", "gap that splits Active/Idle periods"),
        ("max_flows", "active flows kept; beyond it the oldest are evicted (counted)"),
    ):
        flag = "--" + name.replace("_", "-")
        meter.add_argument(flag, type=int, default=None, help=f"{what} (default {getattr(defaults, name)})")
    meter.add_argument(
        "--reference-timeouts",
        action="store_true",
        help=f"the reference tool's own timeouts {REFERENCE_TIMEOUTS[0]}/{REFERENCE_TIMEOUTS[1]} µs",
    )
    meter.add_argument(
        "--drop-single-packet-flows", action="store_true", help="the reference's rule: do not write flows of one packet"
    )
    meter.add_argument("--no-ipv6", action="store_true", help="ignore IPv6 packets (the reference's rule)")
    out = p.add_argument_group("outputs")
    out.add_argument("--csv", metavar="OUT", help="write the IoTID20 column layout to OUT")
    out.add_argument("--cat", help="label every flow with this IoTID20 Cat (writes Label/Cat/Sub_Cat, trainable)")
    out.add_argument("--sub-cat", help="IoTID20 Sub_Cat (implies its Cat)")
    out.add_argument("--mqtt", action="store_true", help="publish to MQTT (the default with --config)")
    p.add_argument("--stats", action="store_true", help="print the counters as JSON on stderr at the end")
    p.add_argument("-v", "--verbose", action="store_true")
    return p  # fmt: skip


def settings_from_args(args: argparse.Namespace, base: MeterSettings | None = None) -> MeterSettings:
    """``base`` (the config's ``meter`` section; default the meter's defaults) changed by the flags given."""
    base = base or MeterSettings()
    flow, activity = REFERENCE_TIMEOUTS if args.reference_timeouts else (None, None)
    if args.flow_timeout_us is not None:
        flow = args.flow_timeout_us
    if args.activity_timeout_us is not None:
        activity = args.activity_timeout_us
    return MeterSettings(
        flow_timeout_us=flow if flow is not None else base.flow_timeout_us,
        activity_timeout_us=activity if activity is not None else base.activity_timeout_us,
        max_flows=args.max_flows if args.max_flows is not None else base.max_flows,
        single_packet_flows=base.single_packet_flows and not args.drop_single_packet_flows,
        ipv6=base.ipv6 and not args.no_ipv6,
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


def meter_live(capture: object, settings: MeterSettings, emit: Callable[[dict], None]) -> dict:
    """Run a live capture through the meter until the capture stops; counters."""
    meter = FlowMeter(settings, emit)
    capture.on_tick = meter.expire  # type: ignore[attr-defined]
    packet = meter.packet
    for ts, frame, linktype in capture:  # type: ignore[attr-defined]
        packet(ts, frame, linktype)
    meter.flush()
    return {"files": 0, "bad_files": 0, "capture": capture.stats(), "meter": [meter.stats.as_dict()]}  # type: ignore[attr-defined]


def startup_error(e: BaseException, cfg: FlowmeterConfig) -> str:
    """One line naming the setting that stopped start-up and what is wrong with it."""
    text = str(e)
    if isinstance(e, LiveCaptureError):
        text = f"capture.bpf: {text}" if text.startswith("bad filter") else f"capture.interface: {text}"
    elif isinstance(e, sqlite3.Error):
        text = f"state_dir: {cfg.state_path}: not a usable outbox database ({text})"
    elif isinstance(e, OSError):
        text = f"{e.filename}: {e.strerror}" if e.filename and e.strerror else text
    return " ".join(text.split())


def validate(cfg: FlowmeterConfig, interface: str, bpf: str) -> None:
    """What start-up will need, checked without capturing or connecting (raises ConfigError/LiveCaptureError)."""
    from ids_core.mqtt import check_tls_files

    cfg.mqtt.resolved_password()
    if cfg.mqtt.tls.enabled:
        check_tls_files(cfg.mqtt.tls)
    cfg.make_state_dir()
    if interface:
        try:
            socket.if_nametoindex(interface)
        except OSError:
            raise ConfigError(f"capture.interface: no interface {interface!r} here") from None
    if bpf:
        compile_bpf(bpf)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.help_config:
        print("\n".join(describe(FlowmeterConfig)))
        return 0
    try:
        cfg = load_config(args.config, args.overrides)
        settings = settings_from_args(args, cfg.meter.settings())
    except (ConfigError, ValueError) as e:
        print(f"iotids-flowmeter: configuration error: {' '.join(str(e).split())}", file=sys.stderr)
        return EXIT_STARTUP
    level = logging.DEBUG if args.verbose else cfg.log_level
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("paho").setLevel(logging.WARNING)
    if args.pcap and args.interface:
        parser.error("give pcap files or --interface, not both")
    interface = args.interface or ("" if args.pcap else cfg.capture.interface)
    bpf = args.bpf if args.bpf is not None else cfg.capture.bpf
    mqtt_out = not args.csv and bool(args.config or args.mqtt or args.validate_config)
    if args.validate_config:
        try:
            validate(cfg, interface, bpf)
        except (ConfigError, LiveCaptureError) as e:
            print(f"iotids-flowmeter: cannot start: {startup_error(e, cfg)}", file=sys.stderr)
            return EXIT_STARTUP
        print(f"configuration OK; {'interface ' + interface if interface else 'pcap input'} → "
              f"{cfg.flows_topic if mqtt_out else args.csv} as sensor {cfg.sensor}")  # fmt: skip
        return 0
    if not args.pcap and not interface:
        parser.error("give at least one pcap/pcapng file, or --interface IF (or capture.interface in the config)")
    if not args.csv and not mqtt_out:
        parser.error("give an output: --csv OUT, or --config FILE / --mqtt to publish on MQTT")
    if mqtt_out:
        return run_daemon(cfg, settings, interface, bpf, args.pcap)
    try:
        writer = CsvWriter(args.csv, cat=args.cat, sub_cat=args.sub_cat)
    except (ValueError, OSError) as e:
        parser.error(str(e))
    started = time.process_time()
    with writer:
        if interface:
            from flowmeter.daemon import open_capture

            try:
                capture = open_capture(cfg, interface, bpf, 1.0, None)
            except LiveCaptureError as e:
                print(f"iotids-flowmeter: cannot start: {startup_error(e, cfg)}", file=sys.stderr)
                return EXIT_STARTUP
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: capture.stop())
            with capture:
                totals = meter_live(capture, settings, writer.write)
        else:
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


def run_daemon(cfg: FlowmeterConfig, settings: MeterSettings, interface: str, bpf: str, pcaps: Sequence[str]) -> int:
    """MQTT output: the daemon (what systemd runs)."""
    from flowmeter.daemon import FlowmeterDaemon

    try:
        daemon = FlowmeterDaemon(cfg, meter_settings=settings, interface=interface, bpf=bpf, pcaps=pcaps)
    except (ConfigError, LiveCaptureError, sqlite3.Error, OSError, ValueError) as e:
        print(f"iotids-flowmeter: cannot start: {startup_error(e, cfg)}", file=sys.stderr)
        return EXIT_STARTUP
    return daemon.run()


if __name__ == "__main__":
    sys.exit(main())
