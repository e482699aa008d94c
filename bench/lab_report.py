"""The real-packet numbers (issue 11): a lab scenario live through the flow meter, Mosquitto and two agents.

Three steps, each a sub-command (root and network namespaces needed for ``learn-run`` and ``run``):

``learn DIR``   a finished *learning* lab run (``iotids-lab run``: capture.pcap + labels.json) → the meter's flows
                at its default (IoTID20) timeouts, labelled from labels.json → ``iotids-train adapt`` with those
                flows as site data (its held-out, time-ordered part and learning curve are adapt's own) → the
                site-adapted run directory.
``run``         the *evaluation* run: the scenario (another seed than the learning run, so no evaluation flow was
                ever trained on) played live; :class:`lab_pipeline.LivePipeline` meters it on the gateway bridge
                and two agents score the same flows side by side (same gateway topics, told apart by the
                ``model`` field of their documents); then ``analyze``.
``analyze``     from a finished evaluation run: per attack and per IoTID20 category flows, detected flows,
                detection rate and alert latency from the attack's start; benign false-positive rate; the shared
                real captures (``../shared/pcaps``) metered at default timeouts and scored offline by both models
                with the agent's own parser and scorer; the learning curve from the adapt run's report; the
                acceptance targets met or not. Writes ``<results>.md`` and ``<results>.json``.

``python bench/lab_report.py run --scenario ci ...`` is the quick smoke mode (45 s).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import json
import logging
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.lab_pipeline import SENSOR, AgentSpec, LivePipeline, read_record  # noqa: E402
from ids_core.eve import read_alert  # noqa: E402
from trafficlab.labels import label_flows, read_labels  # noqa: E402

log = logging.getLogger("lab_report")

SCAN_TYPES = {"nmap_syn", "nmap_connect", "nmap_version", "nmap_os"}
FLOOD_TYPES = {"syn_flood", "ack_flood", "udp_flood", "icmp_flood", "http_flood"}
CATEGORIES = ("Scan", "DoS", "Mirai", "MITM ARP Spoofing")
TARGET_FPR = 0.02
TARGET_DETECTION = 0.90
AGENTS = ("iotid20", "site")  # report order: the IoTID20 quick model, the site-adapted one
SHARED_PCAPS = REPO.parent / "shared" / "pcaps"
ATTACK_PCAPS = ("syn-flood",)  # shared captures of an attack: their flags are detections, not false alarms


# --------------------------------------------------------------------------- learn


def label_csv(flows_csv: Path, labels_path: Path, out: Path) -> Counter[str]:
    """Rewrite the meter's CSV with the lab's Label/Cat/Sub_Cat per flow (:func:`trafficlab.labels.label_flows`)."""
    with open(flows_csv, newline="") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    for col in ("Label", "Cat", "Sub_Cat"):
        if col not in fields:
            fields.append(col)
    cats: Counter[str] = Counter()
    for row, lab in zip(rows, label_flows(rows, labels_path), strict=True):
        row.update(lab.columns())
        cats[lab.cat] += 1
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return cats


def cmd_learn(args: argparse.Namespace) -> int:
    lab_dir, out = Path(args.lab_run), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    flows = out / "learn_flows.csv"
    env = {**os.environ, "TZ": "UTC"}
    subprocess.run(
        [sys.executable, "-m", "flowmeter.cli", str(lab_dir / "capture.pcap"), "--csv", str(flows)],
        cwd=REPO,
        env=env,
        check=True,
    )
    labelled = out / "learn_flows_labelled.csv"
    cats = label_csv(flows, lab_dir / "labels.json", labelled)
    log.info("learning run %s: %s", lab_dir, dict(cats))
    argv = [
        sys.executable,
        "-m",
        "trainer.cli",
        "adapt",
        "--profile",
        "quick",
        "--data",
        args.data,
        "--site-attacks",
        str(labelled),
        "--baseline",
        str(args.iotid20_run),
        "--curve",
        args.curve,
        "--out",
        str(args.site_run),
        "--model-version",
        args.model_version,
    ]
    if args.also_score:
        argv += ["--also-score", args.also_score]
    log.info("%s", " ".join(argv))
    return subprocess.run(argv, cwd=REPO, env=env).returncode


# --------------------------------------------------------------------------- run


def cmd_run(args: argparse.Namespace) -> int:
    from trafficlab.lab import run_scenario
    from trafficlab.scenario import load_scenario

    scenario = load_scenario(args.scenario)
    if args.seed is not None:
        scenario = dataclasses.replace(scenario, seed=args.seed)
    work = Path(args.work)
    agents = [AgentSpec("iotid20", Path(args.iotid20_run)), AgentSpec("site", Path(args.site_run))]
    pipe = LivePipeline(work / "pipeline", agents, pcap=args.pcap, code_root=Path(args.code_root))
    started = time.time()

    def progress(elapsed: float, running: list[str]) -> None:
        if int(elapsed) % 60 == 0:
            log.info("%4.0f s: running %s", elapsed, running or "-")

    result = run_scenario(scenario, work / "lab", capture=pipe, progress=progress, prefix="labrep")
    (work / "run.json").write_text(
        json.dumps(
            {
                "argv": sys.argv,
                "started": started,
                "wall_s": time.time() - started,
                "seed": scenario.seed,
                "scenario": scenario.name,
                "capture": result.summary.get("capture"),
            },
            indent=1,
        )
    )
    log.info(
        "run done in %.0f s: %s",
        time.time() - started,
        {k: v for k, v in result.summary["capture"].items() if k != "meter_stats"},
    )
    return cmd_analyze(args)


# --------------------------------------------------------------------------- analyze


def _rate(k: int, n: int) -> float | None:
    return k / n if n else None


def live_numbers(work: Path, agents: list[AgentSpec]) -> dict[str, Any]:
    """Per model: per attack, per category and benign numbers of the recorded live run."""
    labels = read_labels(work / "lab" / "labels.json")
    by_sha = {a.model_sha256(): a.name for a in agents}
    rec = read_record(work / "pipeline" / "mqtt-record.txt", by_sha)
    seqs = sorted(rec.flows)
    flow_labels = dict(zip(seqs, label_flows([rec.flows[s] for s in seqs], labels), strict=True))
    attacks = {a["name"]: a for a in labels["attacks"]}
    t0 = labels["start_us"] / 1e6
    first_attack = min((a["start_us"] for a in attacks.values()), default=labels["stop_us"]) / 1e6
    first_flow_at: dict[str, float] = {}
    for s in seqs:
        name = flow_labels[s].attack
        if name:
            first_flow_at[name] = min(first_flow_at.get(name, float("inf")), rec.flow_arrival[s])
    out: dict[str, Any] = {
        "flows": len(seqs),
        "seq_range_complete": seqs == list(range(len(seqs))),
        "deadletters": len(rec.deadletters),
        "gaps": len(rec.gaps),
        "meter_stats": rec.meter_stats,
        "run_seconds": (labels["stop_us"] - labels["start_us"]) / 1e6,
        "quiet_seconds": first_attack - t0,
        "models": {},
    }
    for agent in agents:
        verdicts = rec.verdicts.get(agent.name, {})
        mal = {s for s, v in verdicts.items() if any(x[2] == "malicious" for x in v)}
        first_alert: dict[str, float] = {}
        for t, doc in rec.alerts.get(agent.name, []):
            alert = read_alert(doc)
            lab = flow_labels.get(alert.seq)
            if lab and lab.attack and alert.sensor == SENSOR:
                first_alert[lab.attack] = min(first_alert.get(lab.attack, float("inf")), t)
        per_attack = {}
        for name, a in attacks.items():
            members = [s for s in seqs if flow_labels[s].attack == name]
            k = sum(1 for s in members if s in mal)
            start = a["start_us"] / 1e6
            per_attack[name] = {
                "type": a["type"],
                "category": a["category"],
                "sub_category": a["sub_category"],
                "in_iotid20": a.get("in_iotid20", True),
                "start_s": round(start - t0, 1),
                "flows": len(members),
                "detected": k,
                "detection_rate": _rate(k, len(members)),
                "first_flow_on_mqtt_s": round(first_flow_at[name] - start, 2) if name in first_flow_at else None,
                "alert_latency_s": round(first_alert[name] - start, 2) if name in first_alert else None,
            }
        per_cat = {}
        for cat in CATEGORIES:
            members = [s for s in seqs if flow_labels[s].cat == cat]
            k = sum(1 for s in members if s in mal)
            per_cat[cat] = {"flows": len(members), "detected": k, "detection_rate": _rate(k, len(members))}
        sf = [
            s
            for s in seqs
            if flow_labels[s].attack and attacks[flow_labels[s].attack]["type"] in SCAN_TYPES | FLOOD_TYPES
        ]
        sf_k = sum(1 for s in sf if s in mal)
        benign = [s for s in seqs if not flow_labels[s].attack]
        fp = [s for s in benign if s in mal]
        quiet = [s for s in benign if rec.flow_arrival[s] < first_attack]
        fp_by_proto: Counter[str] = Counter(str(rec.flows[s].get("Protocol")) for s in fp)
        fp_by_port: Counter[str] = Counter(
            str(min(int(rec.flows[s].get("Src_Port", 0)), int(rec.flows[s].get("Dst_Port", 0)))) for s in fp
        )
        out["models"][agent.name] = {
            "model_dir": str(agent.model_dir),
            "sha256": agent.model_sha256(),
            "verdicts": sum(len(v) for v in verdicts.values()),
            "flows_with_one_verdict": sum(1 for s in seqs if len(verdicts.get(s, [])) == 1),
            "alerts": len(rec.alerts.get(agent.name, [])),
            "per_attack": per_attack,
            "per_category": per_cat,
            "scan_and_flood": {"flows": len(sf), "detected": sf_k, "detection_rate": _rate(sf_k, len(sf))},
            "benign": {
                "flows": len(benign),
                "false_positives": len(fp),
                "fpr": _rate(len(fp), len(benign)),
                "quiet_period_flows": len(quiet),
                "quiet_period_fpr": _rate(sum(1 for s in quiet if s in mal), len(quiet)),
                "fp_by_protocol": dict(fp_by_proto.most_common()),
                "fp_by_low_port": dict(fp_by_port.most_common(8)),
            },
        }
    return out


def shared_pcaps(directory: Path, agents: list[AgentSpec]) -> list[dict[str, Any]]:
    """Every capture in ``directory`` metered at the default timeouts and scored by every model offline."""
    from agent.records import RecordLimits, parse_flows
    from agent.scorer import Scorer
    from flowmeter.meter import FlowMeter
    from flowmeter.pcapfile import read_capture
    from flowmeter.settings import MeterSettings

    scorers = {a.name: Scorer.load(a.model_dir) for a in agents}
    rows = []
    for pcap in sorted(p for p in directory.iterdir() if p.suffix in (".pcap", ".pcapng")):
        records: list[dict[str, Any]] = []
        meter = FlowMeter(MeterSettings(), records.append)
        for ts, frame, linktype in read_capture(pcap):
            meter.packet(ts, frame, linktype)
        meter.flush()
        row: dict[str, Any] = {"pcap": pcap.name, "flows": len(records)}
        for name, scorer in scorers.items():
            flagged = rejected = 0
            for i in range(0, len(records), 256):
                chunk = [{**r, "sensor": "pcap", "seq": i + j} for j, r in enumerate(records[i : i + 256])]
                recs, rej = parse_flows(
                    json.dumps(chunk).encode(),
                    scorer.spec.features,
                    categorical=scorer.categorical,
                    key_columns=scorer.spec.window_key,
                    limits=RecordLimits(),
                )
                rejected += len(rej)
                if recs:
                    flagged += int((scorer.score(recs) > scorer.spec.threshold).sum())
            row[name] = {"flagged": flagged, "rejected": rejected, "fpr": _rate(flagged, len(records))}
        rows.append(row)
    return rows


def learning_curve(site_run: Path) -> dict[str, Any]:
    """The learning curve ``iotids-train adapt`` measured (held-out, time-ordered site benign traffic)."""
    path = site_run / "report.json"
    if not path.exists():
        return {}
    sa = json.loads(path.read_text()).get("site_adaptation", {})
    return {
        "run": str(site_run),
        "model_version": json.loads((site_run / "spec.json").read_text())["model"]["version"]
        if (site_run / "spec.json").exists()
        else None,
        "points": sa.get("learning_curve", []),
        "site": {
            k: sa.get("site", {}).get(k)
            for k in (
                "learn_rows",
                "held_rows",
                "learn_benign_seconds",
                "held_benign_seconds",
                "learn_by_source",
                "held_by_source",
            )
        },
        "heldout": sa.get("heldout", {}),
        "baseline": sa.get("baseline"),
    }


def _pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f} %"


def _s(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f} s"


def render(report: dict[str, Any]) -> str:
    live, m = report["live"], report["live"]["models"]
    a, b = (m[n] for n in AGENTS)
    lines = [
        "# Real-packet numbers: the lab live through flow meter → Mosquitto → two agents",
        "",
        f"Command: `{report['command']}`  ",
        *(
            [f"Re-analysed from its recording: `{report['analyze_command']}`  "]
            if report.get("analyze_command")
            else []
        ),
        f"Machine: {report['machine']}  ",
        f"Date: {report['date']}; code: commit {report['commit']}",
        "",
        f"Evaluation run: scenario `{report['scenario']}` seed {report['seed']} ({live['run_seconds']:.0f} s, first "
        f"{live['quiet_seconds']:.0f} s benign only), metered live on the gateway bridge at the meter's default "
        f"(IoTID20) timeouts: **{live['flows']:,} flows** published; every one scored by both agents "
        f"(flows with exactly one verdict: IoTID20 {a['flows_with_one_verdict']:,}, "
        f"site {b['flows_with_one_verdict']:,}; dead letters {live['deadletters']}, gaps {live['gaps']}; kernel drops "
        f"{live['meter_stats'].get('kernel_drops')}).",
        f"Models: IoTID20 quick `{a['model_dir']}` (sha256 {a['sha256'][:12]}…) and site-adapted `{b['model_dir']}` "
        f"(sha256 {b['sha256'][:12]}…), trained by `iotids-train adapt` on a separate learning run "
        f"({report.get('learning_run', '?')}); no evaluation flow was trained on.",
        "",
        "Setup: the lab (`trafficlab`) → `iotids-flowmeter` capturing live on `br0` inside the gateway namespace "
        "(promiscuous; default settings: IoTID20 timeouts 550 µs / 1 µs, batches of ≤ 256 records or 500 ms) → a "
        "Mosquitto on the gateway namespace's loopback → two agent daemons (own `mqtt.client_id` and `state_dir`, "
        "same `gateway_id`, verdicts on, alert rate limit off) publishing on the same gateway topics, their "
        "documents told apart by the `model.sha256` field; `mosquitto_sub` stamps every message's arrival. Flows "
        "are labelled from the run's labels.json (`trafficlab.labels.label_flows`).",
        "",
        "## Acceptance",
        "",
    ]
    acc = report["acceptance"]
    lines += [
        "| target | IoTID20 model | site-adapted | met (site-adapted) |",
        "|---|---|---|---|",
        f"| benign false-positive rate ≤ {TARGET_FPR:.0%} (all benign flows of the evaluation run) | "
        f"{_pct(a['benign']['fpr'], 2)} | {_pct(b['benign']['fpr'], 2)} | {'yes' if acc['fpr_met'] else '**no**'} |",
        f"| scan + flood flows detected ≥ {TARGET_DETECTION:.0%} | {_pct(a['scan_and_flood']['detection_rate'])} | "
        f"{_pct(b['scan_and_flood']['detection_rate'])} | {'yes' if acc['detection_met'] else '**no**'} |",
        "",
        "## Per attack",
        "",
        "Latency: first alert on one of the attack's flows minus the attack's start (the tool's launch); "
        "'first flow' is when the meter's first record of the attack reached the broker (the floor for any model).",
        "",
        "| attack | tool type | IoTID20 Cat | flows | first flow | IoTID20: detected | latency | site: detected "
        "| latency |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, pa in a["per_attack"].items():
        pb = b["per_attack"][name]
        cat = pa["category"] + ("" if pa["in_iotid20"] else " (not in IoTID20)")
        lines.append(
            f"| {name} | {pa['type']} | {cat} | {pa['flows']:,} | {_s(pa['first_flow_on_mqtt_s'])} | "
            f"{pa['detected']:,} ({_pct(pa['detection_rate'])}) | {_s(pa['alert_latency_s'])} | "
            f"{pb['detected']:,} ({_pct(pb['detection_rate'])}) | {_s(pb['alert_latency_s'])} |"
        )
    lines += [
        "",
        "## Per IoTID20 category",
        "",
        "| category | flows | IoTID20: detected | site: detected |",
        "|---|---|---|---|",
    ]
    for cat in CATEGORIES:
        ca, cb = a["per_category"][cat], b["per_category"][cat]
        lines.append(
            f"| {cat} | {ca['flows']:,} | {ca['detected']:,} ({_pct(ca['detection_rate'])}) | "
            f"{cb['detected']:,} ({_pct(cb['detection_rate'])}) |"
        )
    lines += [
        "",
        "## Benign traffic (false alarms)",
        "",
        "| | benign flows | IoTID20 model | site-adapted |",
        "|---|---|---|---|",
        f"| whole evaluation run | {a['benign']['flows']:,} | {a['benign']['false_positives']:,} "
        f"({_pct(a['benign']['fpr'], 2)}) | {b['benign']['false_positives']:,} ({_pct(b['benign']['fpr'], 2)}) |",
        f"| benign-only first {live['quiet_seconds']:.0f} s | {a['benign']['quiet_period_flows']:,} | "
        f"{_pct(a['benign']['quiet_period_fpr'], 2)} | {_pct(b['benign']['quiet_period_fpr'], 2)} |",
        "",
        f"Site-adapted false positives by protocol: {b['benign']['fp_by_protocol']}; by lower port: "
        f"{b['benign']['fp_by_low_port']}.",
        "",
        "## Shared real captures (traffic the lab never produced)",
        "",
        "`../shared/pcaps`, metered by our meter at its default timeouts, scored offline by both models with the "
        "agent's parser and scorer: traffic of the Zeek/Suricata test suites, benign except one SYN flood.",
        "",
        "| capture | flows | IoTID20 model flags | site-adapted flags |",
        "|---|---|---|---|",
    ]
    tot: Counter[str] = Counter()
    for row in report["shared_pcaps"]:
        ra, rb = row["iotid20"], row["site"]
        attack = any(marker in row["pcap"] for marker in ATTACK_PCAPS)
        name = row["pcap"] + (" (an attack: flags are detections)" if attack else "")
        lines.append(
            f"| {name} | {row['flows']:,} | {ra['flagged']:,} ({_pct(ra['fpr'])}) | "
            f"{rb['flagged']:,} ({_pct(rb['fpr'])}) |"
        )
        if not attack:
            tot.update({"flows": row["flows"], "a": ra["flagged"], "b": rb["flagged"]})
    lines.append(
        f"| **benign captures (false alarms)** | {tot['flows']:,} | {tot['a']:,} "
        f"({_pct(_rate(tot['a'], tot['flows']))}) | {tot['b']:,} ({_pct(_rate(tot['b'], tot['flows']))}) |"
    )
    lc = report.get("learning_curve") or {}
    if lc.get("points"):
        lines += [
            "",
            "## Learning period: false alarms vs minutes of benign learning traffic",
            "",
            f"From `iotids-train adapt`'s own learning curve (`{lc['run']}`) on the learning run: the same "
            "training on the first share (in time) of the site's benign learning rows; false-positive rate on "
            "the held-out, later "
            f"{lc['site'].get('held_benign_seconds') or 0:.0f} s of the site's benign traffic (Keras float model; "
            "0 = the IoTID20 model, last row = the shipped adapted run).",
            "",
            "| benign learning traffic | benign learning flows | held-out site FPR | IoTID20 Normal FPR | lab attacks "
            "detected |",
            "|---|---|---|---|---|",
        ]
        for p in lc["points"]:
            secs = p["benign_learning_seconds"]
            lines.append(
                f"| {secs / 60:.1f} min ({secs:.0f} s) | {p['benign_learning_rows']:,} | "
                f"{_pct(p['heldout_site_fpr'], 2)} | {_pct(p.get('iotid20_normal_fpr'))} | "
                f"{_pct(p.get('attack_detection'))} |"
            )
    lines += ["", "## What the numbers say", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def notes(report: dict[str, Any]) -> list[str]:
    """Plain statements derived from the numbers (no judgement hidden in code)."""
    m = report["live"]["models"]
    out = []
    arp_a, arp_b = m["iotid20"]["per_category"]["MITM ARP Spoofing"], m["site"]["per_category"]["MITM ARP Spoofing"]
    out.append(
        f"MITM ARP Spoofing: {arp_a['flows']} IP flows in the attack's window (ARP frames make no flow); flagged: "
        f"IoTID20 model {arp_a['detected']}, site-adapted {arp_b['detected']}."
    )
    acc = report["acceptance"]
    out.append(
        "Acceptance: "
        + ("met" if acc["fpr_met"] and acc["detection_met"] else "not met")
        + f" (site-adapted benign FPR {_pct(acc['site_fpr'], 2)}, scan+flood detected "
        f"{_pct(acc['site_scan_flood_detection'])})."
    )
    return out


def _without_notes(argv: list[str]) -> list[str]:
    """``argv`` without the free-text options (their text is in the report already)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--note", "--learning-run", "--commit"):
            skip = True
            continue
        out.append(a)
    return out


def cmd_analyze(args: argparse.Namespace) -> int:
    work = Path(args.work)
    agents = [AgentSpec("iotid20", Path(args.iotid20_run)), AgentSpec("site", Path(args.site_run))]
    run_info = json.loads((work / "run.json").read_text()) if (work / "run.json").exists() else {}
    live = live_numbers(work, agents)
    site = live["models"]["site"]
    acc = {
        "site_fpr": site["benign"]["fpr"],
        "site_scan_flood_detection": site["scan_and_flood"]["detection_rate"],
        "fpr_met": site["benign"]["fpr"] is not None and site["benign"]["fpr"] <= TARGET_FPR,
        "detection_met": (site["scan_and_flood"]["detection_rate"] or 0) >= TARGET_DETECTION,
    }
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    report: dict[str, Any] = {
        "command": " ".join(run_info.get("argv") or sys.argv),
        "machine": f"{platform.node()}: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}, "
        f"Python {platform.python_version()}",
        "date": dt.datetime.fromtimestamp(run_info.get("started", time.time()), dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": (commit.stdout.strip() or args.commit or "?"),
        "scenario": run_info.get("scenario", "?"),
        "seed": run_info.get("seed"),
        "learning_run": args.learning_run,
        "live": live,
        "acceptance": acc,
        "shared_pcaps": shared_pcaps(Path(args.pcaps), agents) if Path(args.pcaps).is_dir() else [],
        "learning_curve": learning_curve(Path(args.curve_run or args.site_run)),
    }
    report["notes"] = notes(report) + list(args.note or [])
    if args.cmd == "analyze":  # numbers recomputed from the recording (the notes are in the report itself)
        report["analyze_command"] = " ".join(a for a in _without_notes(sys.argv))
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    results.with_suffix(".md").write_text(render(report))
    print(render(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def models(q: argparse.ArgumentParser) -> None:
        q.add_argument("--iotid20-run", required=True, help="run directory of the IoTID20 quick model")
        q.add_argument("--site-run", required=True, help="run directory of the site-adapted model")

    q = sub.add_parser("learn", help="learning lab run → labelled flows → iotids-train adapt")
    q.add_argument("lab_run", help="a finished lab run directory (capture.pcap, labels.json)")
    q.add_argument("--out", required=True, help="directory for the metered, labelled learning flows")
    q.add_argument("--curve", default="0.05,0.1,0.25,0.5", help="adapt's learning-curve fractions")
    q.add_argument("--model-version", default="site-lab")
    q.add_argument("--also-score", default="")
    q.add_argument("--data", default="sample", help="IoTID20 data for adapt (auto | sample | a CSV path)")
    models(q)
    q.set_defaults(fn=cmd_learn)

    for name, fn in (("run", cmd_run), ("analyze", cmd_analyze)):
        q = sub.add_parser(name)
        models(q)
        q.add_argument("--work", required=True, help="evaluation run directory (lab/, pipeline/, run.json)")
        q.add_argument("--results", default=str(REPO / "bench" / "results" / "lab_report"))
        q.add_argument("--pcaps", default=str(SHARED_PCAPS))
        q.add_argument("--learning-run", default="", help="the learning run's description, for the report")
        q.add_argument("--commit", default="")
        q.add_argument("--curve-run", default="", help="adapt run whose learning curve to show (default: --site-run)")
        q.add_argument("--note", action="append", help="a line for the report's notes")
        if name == "run":
            q.add_argument("--scenario", default="standard", help="shipped name or YAML path (ci = smoke mode)")
            q.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
            q.add_argument("--pcap", action="store_true", help="also keep tcpdump's capture.pcap")
            q.add_argument("--code-root", default=str(REPO), help="source tree the meter and agents run from")
        q.set_defaults(fn=fn)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
