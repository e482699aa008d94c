"""Start-up errors: every bad config value, model, spec, state directory, key and TLS file stops the real
``python -m agent.daemon`` with exit status 2 and ONE line on stderr naming the setting or file and what is
wrong — never a traceback. Secrets are never echoed, whatever their type. State files are private whatever the
umask. A tiny real int8 model (and a float one) stand in for a trained run, so no training is needed."""

from __future__ import annotations

import functools
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

pytest.register_assert_rewrite("agent_harness")

from agent_harness import run_agent_cli, write_config  # noqa: E402
from bundle_helpers import N_FEATURES, WINDOW, tiny_model  # noqa: E402
from test_agent_tls import _certs  # noqa: E402

from ids_core.outbox import Outbox  # noqa: E402

SECRET = "123456789"


@functools.cache
def float_model() -> bytes:
    """A float32 TFLite model with the tiny model's shapes (what must not pass as model_int8.tflite)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    m = tf.keras.Sequential(
        [tf.keras.Input((WINDOW, N_FEATURES)), tf.keras.layers.Flatten(), tf.keras.layers.Dense(1, "sigmoid")]
    )
    return tf.lite.TFLiteConverter.from_keras_model(m).convert()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model().write_artifacts(tmp_path_factory.mktemp("model") / "run")


def start(tmp_path: Path, model_dir: Path, *sets: str, env: dict[str, str] | None = None, yaml_text: str = ""):
    """``--validate-config`` with a config that passes unless ``sets``/``yaml_text`` break it (no broker needed)."""
    cfg = write_config(tmp_path / "agent.yaml", yaml_text or "gateway_id: gw1\nlog_level: WARNING\n")
    args = ["--config", str(cfg), "--set", f"state_dir={tmp_path / 'state'}", "--validate-config"]
    if "model.dir=" not in " ".join(sets):
        args += ["--set", f"model.dir={model_dir}"]
    for s in sets:
        args += ["--set", s]
    return run_agent_cli(*args, env=env)


def assert_refused(out, *words: str) -> str:
    """Exit 2, one line of ours on stderr that contains every one of ``words``, no traceback (the interpreter
    runtime may log its own ``INFO: Created TensorFlow Lite XNNPACK delegate`` line first)."""
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip() and not line.startswith("INFO: Created TensorF")]
    assert len(lines) == 1 and lines[0].startswith("iotids-agent: "), out.stderr
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    return lines[0]


def test_the_tiny_model_itself_starts(tmp_path, model_dir):
    out = start(tmp_path, model_dir)
    assert out.returncode == 0 and out.stdout.startswith("configuration OK"), out.stderr


# --------------------------------------------------------------------------- settings


NON_FINITE = ["mqtt.reconnect_max_delay=.inf", "alerts.rate_limit.per_seconds=.nan", "batch.max_wait_ms=.nan",
              "stats_interval=.inf", "bundle.probation_seconds=.nan", "mqtt.reconnect_min_delay=-.inf",
              "alerts.threshold=.nan", "alerts.threshold=.inf"]  # fmt: skip


@pytest.mark.parametrize("setting", NON_FINITE)
def test_non_finite_numbers_are_refused_where_a_range_is_checked(tmp_path, model_dir, setting):
    key = setting.split("=")[0]
    assert_refused(start(tmp_path, model_dir, setting), f"{key}:", "not a finite number", "allowed:")


@pytest.mark.parametrize(
    "how",
    ["int via --set", "list via --set", "bad YAML via --set", "int in the file", "bad YAML in the file", "env"],
)
def test_a_secret_is_never_echoed_whatever_its_type(tmp_path, model_dir, how):
    sets: list[str] = ["mqtt.username=gw"]
    env, text = None, ""
    if how == "int via --set":
        sets.append(f"mqtt.password={SECRET}")
    elif how == "list via --set":
        sets.append(f"mqtt.password=[{SECRET}]")
    elif how == "bad YAML via --set":
        sets.append(f"mqtt.password=[{SECRET}")
    elif how == "int in the file":
        text = f"mqtt:\n  username: gw\n  password: {SECRET}\n"
    elif how == "bad YAML in the file":
        text = f'mqtt:\n  username: gw\n  password: "{SECRET}\n'
    else:
        env = {"EDGE_IDS__MQTT__PASSWORD": SECRET}
    line = assert_refused(start(tmp_path, model_dir, *sets, env=env, yaml_text=text))
    assert SECRET not in line and SECRET[:4] not in line, line
    assert "mqtt.password" in line or "agent.yaml" in line, line


@pytest.mark.parametrize(
    ("value", "words"),
    [("0", ["out of range", "above 0 and below 1"]), ("1", ["out of range", "above 0 and below 1"]),
     ("1.5", ["out of range"]), ("-0.2", ["out of range"]), ("high", ["expected float", "high"]),
     ("true", ["expected float"])],
)  # fmt: skip
def test_alert_threshold_outside_0_1_stops_startup(tmp_path, model_dir, value, words):
    """``alerts.threshold`` must lie strictly between 0 and 1 (at 0 every flow alerts, at 1 none can)."""
    assert_refused(start(tmp_path, model_dir, f"alerts.threshold={value}"), "alerts.threshold:", *words)


def test_alert_threshold_inside_0_1_starts(tmp_path, model_dir):
    out = start(tmp_path, model_dir, "alerts.threshold=0.75")
    assert out.returncode == 0 and out.stdout.startswith("configuration OK"), out.stderr


def test_no_bundle_section_means_bundles_off(tmp_path, model_dir):
    """The documented default (bundle.enabled: false) is what the code does: no section, no keys, starts."""
    out = start(tmp_path, model_dir)
    assert out.returncode == 0, out.stderr
    assert_refused(start(tmp_path, model_dir, "bundle.enabled=true"), "bundle.public_keys", "at least one key")


# --------------------------------------------------------------------------- model and spec


def _variant(model_dir: Path, tmp_path: Path, kind: str) -> Path:
    d = tmp_path / f"model-{kind}"
    shutil.copytree(model_dir, d)
    spec = json.loads((d / "spec.json").read_text())
    if kind == "float model named model_int8.tflite":
        (d / "model_int8.tflite").write_bytes(float_model())
    elif kind == "garbage model":
        (d / "model_int8.tflite").write_bytes(b"not a flatbuffer" * 8)
    elif kind == "no model":
        (d / "model_int8.tflite").unlink()
    elif kind == "no spec":
        (d / "spec.json").unlink()
    elif kind == "spec not JSON":
        (d / "spec.json").write_text("{not json")
    elif kind == "spec not a spec":
        (d / "spec.json").write_text('{"format": "something else"}')
    elif kind == "spec quantization differs":
        spec["input"]["quantization"]["scale"] *= 2
        (d / "spec.json").write_text(json.dumps(spec))
    elif kind == "spec output quantization differs":
        spec["output"]["quantization"]["zero_point"] += 1
        (d / "spec.json").write_text(json.dumps(spec))
    elif kind == "spec shape differs":
        spec["window"]["length"] += 1
        spec["input"]["shape"][0] += 1
        (d / "spec.json").write_text(json.dumps(spec))
    return d


MODEL_CASES = {
    "float model named model_int8.tflite": ["model_int8.tflite", "int8", "float32"],
    "garbage model": ["model_int8.tflite", "cannot load model"],
    "no model": ["model_int8.tflite", "No such file"],
    "no spec": ["spec.json", "No such file"],
    "spec not JSON": ["spec.json", "not JSON"],
    "spec not a spec": ["spec.json", "not a preprocessing spec"],
    "spec quantization differs": ["spec.json", "input quantization"],
    "spec output quantization differs": ["spec.json", "output quantization"],
    "spec shape differs": ["spec.json", "input shape"],
}


@pytest.mark.parametrize("kind", MODEL_CASES)
def test_a_bad_model_or_spec_is_refused_naming_the_file(tmp_path, model_dir, kind):
    d = _variant(model_dir, tmp_path, kind)
    assert_refused(start(tmp_path, model_dir, f"model.dir={d}"), "model.dir", str(d), *MODEL_CASES[kind])


@pytest.mark.parametrize("kind", ["missing", "a file", "empty"])
def test_a_bad_model_dir_is_refused(tmp_path, model_dir, kind):
    d = {"missing": tmp_path / "nope", "a file": tmp_path / "file", "empty": tmp_path / "empty"}[kind]
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    assert_refused(start(tmp_path, model_dir, f"model.dir={d}"), "model.dir", str(d))


# --------------------------------------------------------------------------- state directory


def test_a_state_dir_that_is_a_file_is_refused(tmp_path, model_dir):
    (tmp_path / "f").write_text("x")
    assert_refused(start(tmp_path, model_dir, f"state_dir={tmp_path / 'f'}"), "state_dir", str(tmp_path / "f"))


def test_a_corrupt_outbox_is_refused_naming_the_file(tmp_path, model_dir):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "outbox.sqlite").write_bytes(os.urandom(8192))
    assert_refused(start(tmp_path, model_dir), "state_dir", "outbox.sqlite", "not a usable outbox")


def test_an_unusable_outbox_path_is_refused_naming_the_state_dir(tmp_path, model_dir):
    (tmp_path / "state" / "outbox.sqlite").mkdir(parents=True)
    assert_refused(start(tmp_path, model_dir), "state_dir", "outbox.sqlite", "Is a directory")


def test_state_dir_and_outbox_are_private_whatever_the_umask(tmp_path, model_dir):
    """umask 022 (the usual default outside systemd): the state directory is 0700, the outbox and its -wal/-shm
    0600 — the alerts in it name internal hosts. An existing 0755 state directory is tightened too."""
    old = os.umask(0o022)
    try:
        out = start(tmp_path, model_dir, f"state_dir={tmp_path / 'a' / 'state'}")
        assert out.returncode == 0, out.stderr
        assert (tmp_path / "a").stat().st_mode & 0o777 == 0o700
        assert (tmp_path / "a" / "state").stat().st_mode & 0o777 == 0o700
        assert (tmp_path / "a" / "state" / "outbox.sqlite").stat().st_mode & 0o777 == 0o600
        (tmp_path / "b").mkdir(mode=0o755)
        assert start(tmp_path, model_dir, f"state_dir={tmp_path / 'b'}").returncode == 0
        assert (tmp_path / "b").stat().st_mode & 0o777 == 0o700
        box = Outbox(tmp_path / "c.sqlite", 10)  # open: WAL and shared-memory files exist
        try:
            box.put_many([("t", b"x", 1, False)])
            for name in ("c.sqlite", "c.sqlite-wal", "c.sqlite-shm"):
                assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
        finally:
            box.close()
    finally:
        os.umask(old)


# --------------------------------------------------------------------------- keys and TLS


def _keys(tmp_path: Path) -> dict[str, Path]:
    from firmware_bundle import keys

    priv, pub, _ = keys.write_keypair(tmp_path / "keys", "fleet")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n")
    return {"missing": tmp_path / "nope.pub.pem", "garbage": garbage, "a private key": priv, "good": pub}


@pytest.mark.parametrize("kind", ["missing", "garbage", "a private key"])
def test_a_bad_bundle_key_is_refused_naming_the_file(tmp_path, model_dir, kind):
    files = _keys(tmp_path)
    sets = ("bundle.enabled=true", f"bundle.public_keys=[{files['good']}, {files[kind]}]")
    assert_refused(start(tmp_path, model_dir, *sets), "bundle.public_keys", str(files[kind]))


def test_a_good_bundle_key_starts(tmp_path, model_dir):
    files = _keys(tmp_path)
    out = start(tmp_path, model_dir, "bundle.enabled=true", f"bundle.public_keys=[{files['good']}]")
    assert out.returncode == 0, out.stderr


TLS_CASES = {
    "missing CA": ({"ca_file": "nope.pem"}, ["mqtt.tls.ca_file", "nope.pem", "no such file"]),
    "garbage CA": ({"ca_file": "garbage"}, ["mqtt.tls.ca_file", "garbage", "not a PEM CA certificate"]),
    "missing client key": ({"key_file": "nope.key"}, ["mqtt.tls.key_file", "nope.key", "no such file"]),
    "missing client cert": ({"cert_file": "nope.pem"}, ["mqtt.tls.cert_file", "nope.pem", "no such file"]),
    "key of another cert": ({"key_file": "server.key"}, ["mqtt.tls.cert_file/key_file", "client.pem", "server.key"]),
    "garbage cert": ({"cert_file": "garbage"}, ["mqtt.tls.cert_file/key_file", "garbage"]),
}


@pytest.mark.parametrize("kind", TLS_CASES)
def test_a_bad_tls_file_is_refused_naming_the_setting_and_file(tmp_path, model_dir, kind):
    certs = tmp_path / "certs"
    certs.mkdir()
    _certs(certs)
    (certs / "garbage").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    tls = {"ca_file": "ca.pem", "cert_file": "client.pem", "key_file": "client.key"}
    change, words = TLS_CASES[kind]
    tls.update(change)
    sets = ["mqtt.tls.enabled=true", *(f"mqtt.tls.{k}={certs / v}" for k, v in tls.items())]
    assert_refused(start(tmp_path, model_dir, *sets), *words)


def test_good_tls_files_start(tmp_path, model_dir):
    certs = tmp_path / "certs"
    certs.mkdir()
    _certs(certs)
    files = {"ca_file": "ca.pem", "cert_file": "client.pem", "key_file": "client.key"}
    sets = ["mqtt.tls.enabled=true", *(f"mqtt.tls.{k}={certs / v}" for k, v in files.items())]
    out = start(tmp_path, model_dir, *sets)
    assert out.returncode == 0, out.stderr


def test_an_unreadable_password_file_is_refused_naming_it(tmp_path, model_dir):
    out = start(tmp_path, model_dir, "mqtt.username=gw", f"mqtt.password_file={tmp_path / 'nope'}")
    assert_refused(out, "mqtt.password_file", str(tmp_path / "nope"))


def test_outbox_is_a_real_sqlite_database(tmp_path, model_dir):
    """The privacy pre-creation leaves an ordinary database behind (not an empty file sqlite cannot use)."""
    assert start(tmp_path, model_dir).returncode == 0
    with sqlite3.connect(tmp_path / "state" / "outbox.sqlite") as conn:
        assert conn.execute("SELECT COUNT(*) FROM outbox").fetchone() == (0,)
