"""The attack category in every alert: the real agent (its category model from the session's quick run) against a
real Mosquitto, fed the run's held-out test flows over MQTT; alerts for Mirai flows say Mirai, and the category of
every attack alert is right at least 95 % of the time."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.register_assert_rewrite("agent_harness")

from agent_harness import topic  # noqa: E402

from agent.category import UNCERTAIN  # noqa: E402
from agent.model_life import MODEL_ERRORS  # noqa: E402
from agent.scorer import Scorer  # noqa: E402
from flowmeter.replay import connect, read_flows, records  # noqa: E402
from ids_core import artifacts, eve  # noqa: E402
from ids_core.category import CategorySpec  # noqa: E402
from ids_core.eve import read_alert  # noqa: E402
from ids_core.interpreter import ModelLoadError  # noqa: E402
from ids_core.preprocess import SpecError  # noqa: E402

pytest_plugins = ["agent_harness"]

SENSOR = "category-test"
MIN_ALERT_ACCURACY = 0.95  # issue 13: category accuracy over the flows the model flags (best guess, named or not)


def publish(port: int, rows: list[dict], per_message: int = 100) -> None:
    client = connect("127.0.0.1", port)
    try:
        recs = [rec for rec, _truth in records(rows, SENSOR)]
        infos = [client.publish(topic("flows"), json.dumps(recs[i : i + per_message]), qos=1)
                 for i in range(0, len(recs), per_message)]  # fmt: skip
        for info in infos:
            info.wait_for_publish(30)
    finally:
        client.disconnect()
        client.loop_stop()


def test_alerts_for_mirai_flows_say_mirai(agents, collector, broker, quick_run):
    spec = CategorySpec.load(quick_run.out_dir / artifacts.CATEGORY_SPEC)
    rows = read_flows(quick_run.out_dir / "test_flows.csv")
    mirai = [r for r in rows if r["Cat"] == "Mirai"]
    sent = mirai + [r for r in rows if r["Cat"] != "Mirai"]  # the whole test split, its Mirai flows first
    assert len(mirai) > 100
    agent = agents.spawn(name="cat")
    publish(broker.port, sent)
    collector.wait_seqs(range(len(sent)), 60, agent.log, sensor=SENSOR)

    alerts = {a.seq: (a, d) for d in collector.alerts() for a in [read_alert(d)]}
    truth = {i: r["Cat"] for i, r in enumerate(sent)}
    assert alerts and all(d["alert"]["category"].startswith("Anomalous network flow: ") for _, d in alerts.values())
    named = {s: a.attack_category for s, (a, _d) in alerts.items()}
    assert all(n is not None for n in named.values()), "every alert carries a category"
    confident = {s: n for s, n in named.items() if not n.endswith(UNCERTAIN)}
    assert {n for n in confident.values()} <= set(spec.classes)
    mirai_alerts = [s for s in named if truth[s] == "Mirai"]
    assert len(mirai_alerts) >= 0.9 * len(mirai), "the shipped model flags Mirai flows"
    named_mirai = [s for s in mirai_alerts if s in confident]
    said_mirai = [s for s in named_mirai if confident[s] == "Mirai"]
    assert len(said_mirai) >= 0.9 * len(named_mirai), f"{len(said_mirai)} of {len(named_mirai)} named Mirai alerts"
    assert len(said_mirai) >= 0.25 * len(mirai_alerts), f"only {len(said_mirai)} of {len(mirai_alerts)} say Mirai"
    right = [s for s, n in confident.items() if truth[s] != "Normal"]
    accuracy = np.mean([confident[s] == truth[s] for s in right])
    assert accuracy >= 0.95, f"confident category accuracy {accuracy:.4f} over {len(right)} attack alerts"
    best = {s: n.removesuffix(UNCERTAIN).strip() for s, n in named.items() if truth[s] != "Normal"}
    every = np.mean([n == truth[s] for s, n in best.items()])
    print(f"category accuracy over all {len(best)} attack alerts {every:.4f}, named plainly {accuracy:.4f}")
    assert every >= MIN_ALERT_ACCURACY, f"category accuracy {every:.4f} over all {len(best)} attack alerts"
    for s in said_mirai:  # the probability travels in the metadata, at or above the spec's bar when named plainly
        meta = alerts[s][1]["alert"]["metadata"]
        assert spec.min_probability <= float(meta[eve.ATTACK_PROBABILITY][0]) <= 1.0
    assert "category model (" in agent.log()


def test_a_model_without_category_model_alerts_without_category(agents, collector, broker, quick_run, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("model_int8.tflite", "spec.json"):
        shutil.copy(quick_run.out_dir / name, plain / name)
    rows = [r for r in read_flows(quick_run.out_dir / "test_flows.csv") if r["Cat"] == "Mirai"][:50]
    agent = agents.spawn(name="plain", model__dir=str(plain))
    publish(broker.port, rows)
    collector.wait_seqs(range(len(rows)), 60, agent.log, sensor=SENSOR)
    alerts = [read_alert(d) for d in collector.alerts()]
    assert alerts and all(a.attack_category is None for a in alerts)
    assert all(d["alert"]["category"] == "Anomalous network flow" for d in collector.alerts())


def test_a_category_model_that_does_not_fit_the_main_spec_stops_the_model_from_loading(quick_run, tmp_path):
    """A category model for another transform, or half of one, is a model that does not load (start-up: exit 2)."""
    d = tmp_path / "model"
    d.mkdir()
    for name in ("model_int8.tflite", "spec.json", *artifacts.CATEGORY_FILES):
        shutil.copy(quick_run.out_dir / name, d / name)
    assert Scorer.load(d).category is not None
    doc = json.loads((d / artifacts.CATEGORY_SPEC).read_text())
    (d / artifacts.CATEGORY_SPEC).write_text(json.dumps(doc | {"transform_sha256": "0" * 64}))
    with pytest.raises(SpecError, match="expected the main spec's transform"):
        Scorer.load(d)
    (d / artifacts.CATEGORY_SPEC).unlink()
    with pytest.raises(ModelLoadError, match="category model incomplete"):
        Scorer.load(d)
    assert isinstance(SpecError("x"), MODEL_ERRORS) and isinstance(ModelLoadError("x"), MODEL_ERRORS)
