"""Alerts are Suricata EVE: every document on the alert topic validates against Suricata's own schema.

The live test runs the real agent against the real Mosquitto, provokes alerts (real sample flows), an
``alert_summary`` (rate limit of 2 alerts per source per second) and a ``gap`` event (a sensor that skips seqs),
collects every document published on the alerts topic and validates each with ``jsonschema`` against
``../shared/schemas/suricata-eve.schema.json`` (Suricata's etc/schema.json; skipped only when the file is missing).
``alert_summary`` and ``gap`` are not EVE event types: they go to the events topic, and the test checks they
arrived there and not on the alerts topic.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

pytest.register_assert_rewrite("agent_harness")

from agent_harness import GATEWAY, REPO, Stream, sample_rows, topic, wait_until  # noqa: E402

from agent.documents import alert  # noqa: E402
from flowmeter.replay import connect, records  # noqa: E402
from ids_core.eve import read_alert  # noqa: E402

pytest_plugins = ["agent_harness"]

SCHEMA_PATH = Path(os.environ.get("EVE_SCHEMA", REPO.parent / "shared" / "schemas" / "suricata-eve.schema.json"))
MODEL = {"name": "uni-hybrid", "version": "quick-1", "sha256": "ab" * 32}


@pytest.fixture(scope="module")
def eve() -> jsonschema.protocols.Validator:
    if not SCHEMA_PATH.exists():
        pytest.skip(f"Suricata's EVE schema not found at {SCHEMA_PATH} (set EVE_SCHEMA)")
    schema = json.loads(SCHEMA_PATH.read_text())
    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    validator_class.check_schema(schema)
    return validator_class(schema)


def problems(eve: jsonschema.protocols.Validator, doc: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}" for e in eve.iter_errors(doc)]


def test_the_schema_rejects_the_pre_eve_shape(eve):
    """The check can fail: the old shape (``Z`` time, top-level gateway/seq/model, alert.score) is refused."""
    old = {"timestamp": "2026-11-25T09:25:08.792130Z", "event_type": "alert", "gateway": "gw1", "seq": 1,
           "alert": {"signature": "edge-ids anomalous flow", "score": 0.98}, "model": {"name": "m"}}  # fmt: skip
    found = " ".join(problems(eve, old))
    for word in ("timestamp", "gateway", "seq", "model", "score"):
        assert word in found, found


def test_the_readme_example_alert_validates(eve):
    readme = (REPO / "README.md").read_text()
    example = readme.split("An alert is a Suricata EVE", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    doc = json.loads(example)
    assert problems(eve, doc) == [] and read_alert(doc).score == 0.984375


@pytest.mark.parametrize(
    "ident",
    [
        {},
        {"src_ip": "10.0.0.1"},
        {"src_ip": "192.168.0.13", "dst_ip": "192.168.0.16", "src_port": 10000.0, "dst_port": 10101, "protocol": 17,
         "flow_id": "192.168.0.13-192.168.0.16-10000-10101-17", "timestamp": "25/04/2019 10:15:33 AM", "seq": 42,
         "sensor": "br0"},
        {"src_ip": "fe80::1", "dst_ip": "ff02::1", "src_port": 0, "dst_port": 0, "protocol": 58, "timestamp": 1.5e9},
        {"src_ip": "10.0.0.1", "dst_ip": "10.0.0.2", "src_port": 0, "dst_port": 0, "protocol": 1},
        {"protocol": 47, "timestamp": "2026-12-05T13:00:00+01:00"},
    ],
    ids=["nothing", "source-only", "udp-full", "icmp6", "icmp", "gre"],
)  # fmt: skip
def test_every_alert_shape_validates(eve, ident):
    columns = {"Tot_Fwd_Pkts": 3.0, "Tot_Bwd_Pkts": float("nan"), "TotLen_Fwd_Pkts": 1e3, "Flow_Duration": 5.0}
    for attack in (None, ("Mirai-UDP Flooding", 0.9)):
        doc = alert(gateway="gw1", ident=ident, score=0.75, threshold=0.5, model=MODEL, columns=columns, attack=attack)
        assert problems(eve, json.loads(json.dumps(doc, allow_nan=False))) == [], doc


def with_identifiers(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sample has no address or time columns: give its rows four sources, one destination and a time, as
    a flow meter would (identifiers only: the scores do not change)."""
    for i, row in enumerate(rows):
        src, dst = f"192.168.0.{10 + i % 4}", "192.168.0.1"
        row.update(Src_IP=src, Dst_IP=dst, Timestamp="05/12/2026 01:00:00 PM",
                   Flow_ID=f"{src}-{dst}-{row['Src_Port']}-{row['Dst_Port']}-{row['Protocol']}")  # fmt: skip
    return rows


@pytest.mark.timeout(90, func_only=True)
def test_every_document_on_the_alert_topic_validates_against_suricatas_schema(
    eve, agents, collector, broker, sample_csv, quick_run
):
    agent = agents.spawn(alerts__rate_limit={"max_alerts": 2, "per_seconds": 1.0})

    # 1. alerts, rate limited per source: real sample flows, most of them attacks, from four sources
    stream = Stream(with_identifiers(sample_rows(sample_csv, 300, include_inf=False)), broker.port, per_message=10)
    stream.run()
    collector.wait_seqs(stream.seqs, 30, agent.log)
    time.sleep(1.2)  # the rate-limit windows end; the next batch publishes their alert_summary

    # 2. a sensor that skips seqs 3…5: a gap event once the reordering window (5 s) has passed
    client = connect("127.0.0.1", broker.port)
    try:
        rows = with_identifiers(sample_rows(sample_csv, 9, seed=11, include_inf=False))
        gapped = [rec for rec, _t in records(rows, "gapper")]
        for rec in gapped[:3] + gapped[6:]:
            client.publish(topic("flows"), json.dumps(rec), qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()
    wait_until(lambda: collector.events("gap"), 20, "a gap event", agent.log)
    wait_until(lambda: collector.events("alert_summary"), 10, "an alert_summary", agent.log)

    # every document on the alert topic: valid EVE, and an alert
    docs = collector.docs("alerts")
    assert docs, "no alert at all"
    invalid = {i: p for i, doc in enumerate(docs) if (p := problems(eve, doc))}
    assert not invalid, {i: (docs[i], p) for i, p in list(invalid.items())[:3]}
    assert {d["event_type"] for d in docs} == {"alert"}
    print(json.dumps(docs[-1]))  # one real alert, shown with -rP

    # what the old shape carried is all there
    readings = [read_alert(d) for d in docs]
    assert {r.gateway for r in readings} == {GATEWAY} and {r.sensor for r in readings} <= {"replay", "gapper"}
    assert all(r.score > r.threshold and r.model["sha256"] and r.seq is not None for r in readings)
    five_tuple = [d for d in docs if d.get("proto") in ("TCP", "UDP") and "src_port" in d and "dest_port" in d]
    assert five_tuple and all(d["community_id"].startswith("1:") for d in five_tuple), docs[:2]
    assert all(d["flow"]["start"] == "2026-12-05T13:00:00.000000+0000" for d in docs), docs[:2]
    if "Tot_Fwd_Pkts" in quick_run.spec().features:  # the counters come from the model's features (IoTID20 has 0s)
        assert all(d["flow"]["pkts_toserver"] >= 0 for d in docs), docs[:2]

    # the agent's own events went to the events topic, with what they counted
    (gap,) = collector.events("gap")
    assert (gap["sensor"], gap["first_seq"], gap["last_seq"], gap["flows"]) == ("gapper", 3, 5, 3)
    summaries = collector.events("alert_summary")
    assert sum(s["suppressed"] for s in summaries) > 0 and all(s["gateway"] == GATEWAY for s in summaries)
    stats = collector.wait_stats(lambda s: s["alerts_out"] == len(docs), 10, "stats counting every alert")
    assert stats["alerts_suppressed"] >= sum(s["suppressed"] for s in summaries), stats  # some windows still open


@pytest.mark.timeout(90, func_only=True)
def test_grouped_alerts_are_eve_lines_and_none_is_lost(eve, agents, collector, broker, sample_csv):
    """``alerts.max_per_message: 7``: every alert of a batch goes out, at most 7 per message, one EVE document per
    line, each valid against Suricata's schema; exactly the flows whose verdict is malicious alert, each once."""
    agent = agents.spawn(alerts__max_per_message=7, alerts__rate_limit={"max_alerts": 0})
    stream = Stream(with_identifiers(sample_rows(sample_csv, 300, include_inf=False)), broker.port, per_message=30)
    stream.run()
    collector.wait_seqs(stream.seqs, 30, agent.log)
    malicious = {v["seq"] for v in collector.verdicts() if v["verdict"] == "malicious"}
    assert len(malicious) > 7, "the sample should give several alerts per batch"
    wait_until(lambda: sum(collector.alert_counts().values()) >= len(malicious), 20, "every alert", agent.log)

    lines = [m.payload.split(b"\n") for m in collector.messages("alerts")]
    assert max(map(len, lines)) == 7 and min(map(len, lines)) >= 1, [len(x) for x in lines]
    assert len(lines) < len(malicious)  # grouped: fewer messages than alerts
    docs = collector.docs("alerts")
    invalid = {i: p for i, doc in enumerate(docs) if (p := problems(eve, doc))}
    assert not invalid, {i: (docs[i], p) for i, p in list(invalid.items())[:3]}
    assert collector.alert_counts() == {seq: 1 for seq in malicious}
    stats = collector.wait_stats(lambda s: s["alerts_out"] == len(docs), 10, "stats counting every alert")
    assert stats["alerts_suppressed"] == 0
