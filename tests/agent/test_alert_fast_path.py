"""The batch alert path (``documents.AlertMaker`` + ``dumps_finite``, the own Community ID) gives the same documents
as the reference (the one-flow-at-a-time ``alert`` as it was, with the ``communityid`` package), and suppressed
alerts build nothing."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import communityid
import numpy as np
import pytest
from bundle_helpers import tiny_model

from agent import documents
from agent.config import load_config
from agent.mqtt import Inbound
from agent.pipeline import Batch, Pipeline
from agent.scorer import Scorer
from agent.stats import Stats
from ids_core import eve
from ids_core.outbox import Outbox

MODEL = {"name": "uni-hybrid", "version": "7", "sha256": "cd" * 32}
FEATURES = ("Flow_Duration", "Tot_Fwd_Pkts", "Flow_Byts/s", "Tot_Bwd_Pkts", "TotLen_Fwd_Pkts", "TotLen_Bwd_Pkts")
_CID = communityid.CommunityID(seed=0)


def reference_alert(*, gateway, ident, score, threshold, model, now, columns, attack=None) -> dict[str, Any]:
    """``documents.alert`` before the batch path (git f07805d), Community ID by the ``communityid`` package."""
    doc: dict[str, Any] = {"timestamp": documents.timestamp(now), "event_type": "alert", "host": gateway}
    for src_key, doc_key in (("src_ip", "src_ip"), ("src_port", "src_port"), ("dst_ip", "dest_ip"),
                             ("dst_port", "dest_port")):  # fmt: skip
        value = ident.get(src_key)
        if value is not None:
            value = documents._port(value) if doc_key.endswith("port") else str(value)
            if value is not None:
                doc[doc_key] = value
    if ident.get("protocol") is not None:
        doc["proto"] = documents._proto(ident["protocol"])
    cid = reference_community_id(ident)
    if cid is not None:
        doc["community_id"] = cid
    flow: dict[str, Any] = {}
    for column, key in (("Tot_Fwd_Pkts", "pkts_toserver"), ("Tot_Bwd_Pkts", "pkts_toclient"),
                        ("TotLen_Fwd_Pkts", "bytes_toserver"), ("TotLen_Bwd_Pkts", "bytes_toclient")):  # fmt: skip
        count = documents._count(columns.get(column))
        if count is not None:
            flow[key] = count
    start, duration = documents._flow_start(ident.get("timestamp")), documents._count(columns.get("Flow_Duration"))
    if start is not None:
        flow["start"] = documents.timestamp(start)
        if duration is not None:
            flow["end"] = documents.timestamp(start + timedelta(microseconds=duration))
    if duration is not None:
        flow["age"] = duration // 1_000_000
    if flow:
        doc["flow"] = flow
    name, probability = (None, None) if attack is None else (str(attack[0]), float(attack[1]))
    doc["alert"] = {
        "action": "allowed", "gid": 1, "signature_id": 1_990_001, "rev": 1, "signature": "edge-ids anomalous flow",
        "category": "Anomalous network flow" + ("" if name is None else f": {name}"),
        "severity": 1 if score - threshold >= (1.0 - threshold) / 2 else 2,
        "metadata": eve.encode_metadata({
            "score": score, "threshold": threshold, "verdict": "malicious", "model_name": model.get("name"),
            "model_version": model.get("version"), "model_sha256": model.get("sha256"), "sensor": ident.get("sensor"),
            "seq": None if ident.get("seq") is None else int(ident["seq"]), "flow_id": ident.get("flow_id"),
            "flow_timestamp": ident.get("timestamp"), "attack_category": name, "attack_probability": probability,
        }),
    }  # fmt: skip
    return doc


def reference_community_id(ident: dict[str, Any]) -> str | None:
    try:
        proto, sport, dport = (
            int(float(ident["protocol"])),
            int(float(ident["src_port"])),
            int(float(ident["dst_port"])),
        )
        if proto not in (6, 17, 132):
            return None
        return _CID.calc(communityid.FlowTuple(proto, str(ident["src_ip"]), str(ident["dst_ip"]), sport, dport))
    except (KeyError, TypeError, ValueError, communityid.Error):
        return None


def idents(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Flows of every shape the agent meets: v4/v6, CSV floats, missing fields, odd protocols, bad addresses."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        v6 = i % 5 == 0
        src = f"2001:db8::{rng.randrange(1, 0xFFFF):x}" if v6 else f"10.{rng.randrange(3)}.0.{rng.randrange(1, 255)}"
        dst = "2001:db8::1" if v6 else f"192.168.0.{rng.randrange(1, 4)}"
        ident: dict[str, Any] = {
            "flow_id": f"{src}-{dst}-{i}", "src_ip": src, "dst_ip": dst,
            "src_port": rng.choice([rng.randrange(65536), float(rng.randrange(1024)), 80, 80.0]),
            "dst_port": rng.choice([80, 443, rng.randrange(65536)]),
            "protocol": rng.choice([6, 17, 132, 1, 6.0, "tcp"]),
            "timestamp": rng.choice([f"25/07/2019 0{rng.randrange(10)}:25:53 PM", 1_564_025_153 + i,
                                     "2019-07-25T03:25:53.5+02:00", "not a time"]),
            "seq": i, "sensor": rng.choice(["br0", "capteur-é"]),
        }  # fmt: skip
        for key in rng.sample(sorted(ident), rng.choice([0, 0, 0, 1, 3])):
            del ident[key]
        if i % 17 == 0:
            ident["src_ip"] = "not-an-address"
        out.append(ident)
    return out


def columns(rng: random.Random) -> dict[str, float]:
    pick = [0.0, 3.0, 1e7, 2_500_000.0, float("inf"), float("nan"), -1.0, 1e30]
    return {name: rng.choice(pick) for name in FEATURES}


@pytest.mark.parametrize("attack", [None, ("DoS-Synflooding", 0.93)])
def test_batch_alerts_equal_the_reference(attack):
    rng = random.Random(1)
    now = datetime(2026, 12, 5, 13, 0, 0, 77, tzinfo=UTC)
    threshold = 0.62
    maker = documents.AlertMaker(gateway="gw-7", threshold=threshold, model=MODEL, now=now, features=FEATURES)
    for ident in idents(300):
        score = rng.choice([threshold, 0.99999, 0.8, 1.0, threshold + (1 - threshold) / 2])
        cols = columns(rng)
        values = np.array([cols[f] for f in FEATURES])
        expected = reference_alert(gateway="gw-7", ident=ident, score=score, threshold=threshold, model=MODEL,
                                   now=now, columns=cols, attack=attack)  # fmt: skip
        fast = maker.document(ident, score, values, attack)
        assert fast == expected
        assert json.loads(documents.dumps_finite(fast)) == expected  # orjson: the same JSON
        one = documents.alert(gateway="gw-7", ident=ident, score=score, threshold=threshold, model=MODEL, now=now,
                              columns=cols, attack=attack)  # fmt: skip
        assert documents.dumps(one) == json.dumps(expected, separators=(",", ":")).encode()  # byte for byte


def test_verdicts_document_through_the_fast_encoder_is_the_same_json():
    rng = random.Random(3)
    scores = [rng.choice([0.0, 1.0, 1e-7, 0.5, rng.random()]) for _ in range(300)]
    sensors = [{"flow_id": f"f{i}", "seq": rng.choice([0, i, 2**63 - 1]), "sensor": "s-1", "src_ip": "10.0.0.1"}
               for i in range(300)]  # fmt: skip
    doc = documents.verdicts(gateway="gw-7", model=MODEL, threshold=0.62, idents=sensors, scores=scores,
                             message_seq=12, now=datetime(2026, 12, 5, tzinfo=UTC))  # fmt: skip
    assert json.loads(documents.dumps_finite(doc)) == json.loads(documents.dumps(doc)) == doc


def test_community_id_equals_the_package_both_directions():
    for ident in idents(500, seed=2):
        back = {**ident, "src_ip": ident.get("dst_ip"), "dst_ip": ident.get("src_ip"),
                "src_port": ident.get("dst_port"), "dst_port": ident.get("src_port")}  # fmt: skip
        for flow in (ident, back):
            if all(flow.get(k) is not None for k in ("src_ip", "dst_ip", "src_port", "dst_port", "protocol")):
                assert documents.community_id(flow) == reference_community_id(flow), flow
    assert documents.community_id({"protocol": 6, "src_ip": "1.2.3.4\x00", "dst_ip": "5.6.7.8", "src_port": 1,
                                   "dst_port": 2}) is None  # fmt: skip


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory):
    return tiny_model().write_artifacts(tmp_path_factory.mktemp("tiny"))


def test_suppressed_alerts_build_nothing(tiny_dir, tmp_path, monkeypatch):
    """One source, every flow over the threshold, 3 alerts allowed: 3 documents and rows, the rest only counted."""
    built: list[int] = []
    document = documents.AlertMaker.document
    monkeypatch.setattr(documents.AlertMaker, "document", lambda self, *a: built.append(1) or document(self, *a))
    cfg = load_config(
        overrides=[f"model.dir={tiny_dir}", f"state_dir={tmp_path / 'state'}", "alerts.threshold=0.000001",
                   "alerts.rate_limit.max_alerts=3", "bundle.enabled=false"],
        environ={},
    )  # fmt: skip
    outbox = Outbox(tmp_path / "outbox.sqlite", 1000)
    stats = Stats()
    pipeline = Pipeline(cfg, Scorer.load(tiny_dir), outbox, stats)
    rng = np.random.default_rng(0)
    flows = [{**{f"f{j}": float(v) for j, v in enumerate(rng.random(6) + 0.5)}, "Src_IP": "10.0.0.9"}
             for _ in range(40)]  # fmt: skip
    batch = Batch()
    pipeline._add(batch, Inbound(cfg.topic("flows"), json.dumps(flows).encode(), 1, 1, False, 0, 0.0))
    pipeline.process(batch)
    snap = stats.snapshot()
    over = snap["alerts_out"] + snap["alerts_suppressed"]
    assert over > 3, "the tiny model scored too few flows over the threshold for this test"
    assert snap["alerts_out"] == 3 and len(built) == 3
    rows = outbox.pending(100)
    assert [r.topic for r in rows] == [cfg.topic("alerts")] * 3
    assert all(json.loads(r.payload)["src_ip"] == "10.0.0.9" for r in rows)
    outbox.close()
