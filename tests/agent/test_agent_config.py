"""The agent's start-up contract: a light import, bad settings refused with exit code 2 and a message naming
the key and what is allowed, environment overrides, ``--validate-config`` and ``--help-config``."""

from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import sys
import typing

import pytest
import yaml

pytest.register_assert_rewrite("agent_harness")

from agent_harness import REPO, agent_config, agent_env, retained, run_agent_cli, topic, write_config  # noqa: E402

from agent.config import DEFAULT_CONFIG, AgentConfig  # noqa: E402
from ids_core.typedconfig import build  # noqa: E402

pytest_plugins = ["agent_harness"]

HEAVY = ("tensorflow", "keras", "tf_keras", "sklearn", "pandas", "matplotlib", "trainer")

IMPORT_AND_SCORE = """
import importlib, json, pkgutil, sys
import agent, flowmeter, ids_core
packages = (agent, ids_core, flowmeter)
modules = [m.name for pkg in packages for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")
           if not m.name.endswith(".__main__")]
for name in modules:
    importlib.import_module(name)
from agent.scorer import Scorer
from agent.records import parse_flows
scorer = Scorer.load(sys.argv[1])
recs, _ = parse_flows(json.dumps({f: 1.0 for f in scorer.spec.features}).encode(), scorer.spec.features)
scores = scorer.score(recs)
print(json.dumps({"modules": modules, "loaded": sorted(sys.modules), "scores": scores.tolist()}))
"""


@pytest.mark.timeout(60, func_only=True)
def test_agent_imports_and_scores_without_the_training_stack(quick_run):
    """Every gateway-side module (agent, ids_core, flowmeter), the int8 model loaded and a flow scored, in a fresh
    interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_AND_SCORE, str(quick_run.out_dir)],
        cwd=REPO,
        env=agent_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"agent.daemon", "flowmeter.replay", "agent.pipeline", "agent.mqtt"} <= set(doc["modules"])
    assert len(doc["scores"]) == 1 and 0.0 <= doc["scores"][0] <= 1.0
    heavy = sorted(m for m in doc["loaded"] if m.split(".")[0] in HEAVY)
    assert not heavy, f"the agent pulled in {heavy[:10]}"


def base(tmp_path, **settings) -> dict:
    """Settings that pass validation, changed by ``settings`` (no broker or model is needed to reject a value)."""
    return agent_config(tmp_path, port=1883, model_dir=tmp_path / "no-model", **settings)


BAD_SETTINGS = [
    ("mqtt.port=70000", {"mqtt__port": 70000}, ["mqtt.port", "70000", "1 to 65535"]),
    ("batch.max_records=0", {"batch__max_records": 0}, ["batch.max_records", "1 to 65536"]),
    ("unknown key", {"mqtt__hots": "broker.lan"}, ["mqtt", "unknown key", "hots", "allowed:", "host"]),
    ("wrong type", {"batch__max_wait_ms": "fast"}, ["batch.max_wait_ms", "expected float", "fast"]),
    ("choice", {"log_level": "TRACE"}, ["log_level", "TRACE", "allowed: DEBUG, INFO, WARNING, ERROR"]),
    ("shared group needs MQTT 5", {"mqtt__shared_group": "workers", "mqtt__protocol": "3.1.1"},
     ["mqtt.shared_group", "mqtt.protocol 5"]),
]  # fmt: skip


@pytest.mark.timeout(60, func_only=True)
@pytest.mark.parametrize(("what", "change", "words"), BAD_SETTINGS, ids=[b[0] for b in BAD_SETTINGS])
def test_bad_setting_stops_startup_with_exit_2_naming_key_and_allowed(tmp_path, what, change, words):
    path = write_config(tmp_path / "agent.yaml", base(tmp_path, **change))
    out = run_agent_cli("--config", str(path))
    assert out.returncode == 2, (what, out.returncode, out.stderr)
    assert out.stderr.startswith("iotids-agent: configuration error:"), out.stderr
    for word in words:
        assert word in out.stderr, f"{what}: {word!r} not in {out.stderr!r}"
    assert not (tmp_path / "agent" / "state").exists(), "started before the config was checked"


@pytest.mark.timeout(60, func_only=True)
def test_bad_yaml_stops_startup_with_exit_2(tmp_path):
    path = write_config(tmp_path / "agent.yaml", "mqtt:\n  port: [1883\n")
    out = run_agent_cli("--config", str(path))
    assert out.returncode == 2 and "not valid YAML" in out.stderr and str(path) in out.stderr, out.stderr


@pytest.mark.timeout(60, func_only=True)
def test_environment_overrides_the_file_and_set_overrides_the_environment(tmp_path):
    path = write_config(tmp_path / "agent.yaml", base(tmp_path))
    out = run_agent_cli("--config", str(path), env={"EDGE_IDS__MQTT__PORT": "70000"})
    assert out.returncode == 2 and "mqtt.port" in out.stderr and "70000" in out.stderr, out.stderr
    out = run_agent_cli(
        "--config", str(path), "--set", "batch.max_records=0", env={"EDGE_IDS__BATCH__MAX_RECORDS": "8"}
    )
    assert out.returncode == 2 and "batch.max_records: 0" in out.stderr, out.stderr


@pytest.mark.timeout(60, func_only=True)
def test_environment_port_reaches_the_broker(agents, broker):
    """The file names a port nobody listens on; ``EDGE_IDS__MQTT__PORT`` names the broker's."""
    agent = agents.spawn(cfg=agents.config(mqtt__port=1), env={"EDGE_IDS__MQTT__PORT": str(broker.port)})
    assert f"connecting to 127.0.0.1:{broker.port}" in agent.log()
    assert retained(broker.port, topic("status")).payload == b"online"


@pytest.mark.timeout(60, func_only=True)
def test_validate_config_checks_the_model_and_exits(tmp_path, quick_run):
    ok = write_config(tmp_path / "ok.yaml", agent_config(tmp_path, port=1, model_dir=quick_run.out_dir))
    out = run_agent_cli("--config", str(ok), "--validate-config")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("configuration OK; model ") and quick_run.spec().model_version in out.stdout

    (tmp_path / "empty").mkdir()
    bad = write_config(tmp_path / "bad.yaml", agent_config(tmp_path, port=1, model_dir=tmp_path / "empty"))
    out = run_agent_cli("--config", str(bad), "--validate-config")
    assert out.returncode == 2 and "cannot start" in out.stderr and "model.dir" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr, out.stderr


def leaf_settings(cls: type, prefix: str = "") -> list[str]:
    hints = typing.get_type_hints(cls)
    keys = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys += leaf_settings(hints[f.name], f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


@pytest.mark.timeout(60, func_only=True)
def test_help_config_lists_every_setting_with_its_default():
    out = run_agent_cli("--help-config")
    assert out.returncode == 0, out.stderr
    listed = [line.split(" = ", 1)[0] for line in out.stdout.splitlines() if " = " in line]
    assert listed == leaf_settings(AgentConfig)
    lines = dict(line.split(" = ", 1) for line in out.stdout.splitlines() if " = " in line)
    assert lines["mqtt.port"].startswith("1883")
    assert "(one of: 5, 3.1.1)" in lines["mqtt.protocol"]
    assert lines["alerts.rate_limit.max_alerts"].startswith("20")


def _flatten(doc: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.timeout(60, func_only=True)
def test_documented_defaults_are_the_code_defaults():
    """``--help-config`` (the code's defaults) and the shipped ``agent.yaml`` (the documented ones) agree on every
    setting, and the file lists every setting but secrets: a config without a section gets what the file says."""
    out = run_agent_cli("--help-config")
    assert out.returncode == 0, out.stderr
    code = {k: ast.literal_eval(v.split("  ", 1)[0]) for k, v in (ln.split(" = ", 1) for ln in out.stdout.splitlines())}
    documented = _flatten(yaml.safe_load(DEFAULT_CONFIG.read_text()))
    differ = {k: (code.get(k, "<no such setting>"), v) for k, v in documented.items() if code.get(k) != v}
    assert not differ, f"setting: (code default, documented default): {differ}"
    assert set(code) - set(documented) == {"mqtt.password"}  # a secret is not written into the example file
    assert build(AgentConfig, yaml.safe_load(DEFAULT_CONFIG.read_text())) == AgentConfig()
    assert AgentConfig().bundle.enabled is False
