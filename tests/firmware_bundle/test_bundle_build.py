"""Building, signing and keys: deterministic bytes, the tar layout, refusals, and the CLI round trip."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from bundle_helpers import (
    AGENT_VERSION,
    CREATED,
    EXPIRES,
    NOW,
    Entry,
    TinyModel,
    make_spec,
    new_key,
    pack,
    read_entries,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_bundle import errors, keys
from firmware_bundle.builder import build_bundle, build_from_artifacts, sign_bundle
from firmware_bundle.cli import main
from firmware_bundle.limits import Limits
from firmware_bundle.manifest import Manifest
from firmware_bundle.model_check import inspect_model
from firmware_bundle.verifier import KEY_ID_PAX, verify_bundle

pytest_plugins = ["bundle_helpers"]  # the `model` and `key` fixtures

REPO = Path(__file__).resolve().parents[2]
META = dict(bundle_version=3, model_name="tiny", model_version="1", created=CREATED, expires=EXPIRES)


@pytest.fixture
def artifacts(model: TinyModel, tmp_path: Path) -> Path:
    return model.write_artifacts(tmp_path / "run")


def verify(data: bytes, key: Ed25519PrivateKey, **kw):
    args = dict(trusted_keys=[key.public_key()], now=NOW, highest_installed=0, agent_version=AGENT_VERSION)
    return verify_bundle(data, **(args | kw))


# --------------------------------------------------------------------------- determinism and layout


def test_same_inputs_give_identical_bytes(model: TinyModel, key: Ed25519PrivateKey) -> None:
    assert build_bundle(model.files(), **META) == build_bundle(dict(reversed(model.files().items())), **META)
    signed = build_bundle(model.files(), sign_key=key, **META)
    assert signed == build_bundle(model.files(), sign_key=key, **META)
    assert signed != build_bundle(model.files(), sign_key=key, **(META | {"bundle_version": 4}))


def test_signing_an_unsigned_build_equals_a_signed_build(model: TinyModel, key: Ed25519PrivateKey) -> None:
    unsigned = build_bundle(model.files(), **META)
    signed = sign_bundle(unsigned, key)
    assert signed == build_bundle(model.files(), sign_key=key, **META)
    assert verify(signed, key).key_id == keys.key_id(key)


def test_resigning_with_a_new_key_keeps_manifest_and_files(model: TinyModel, key: Ed25519PrivateKey) -> None:
    old = build_bundle(model.files(), sign_key=key, **META)
    new_k = new_key()
    resigned = sign_bundle(old, new_k)
    assert verify(resigned, new_k).manifest_bytes == verify(old, key).manifest_bytes
    with pytest.raises(errors.UnknownKeyError):
        verify(resigned, key)


def test_tar_layout(model: TinyModel, key: Ed25519PrivateKey) -> None:
    data = build_bundle(model.files(), sign_key=key, **META)
    assert len(data) % tarfile.RECORDSIZE == 0  # plain tar, no compression
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        members = tf.getmembers()
        names = [m.name for m in members]
        assert names == ["manifest.json", "manifest.sig", *sorted(model.files())]
        for m in members:
            assert m.isreg() and m.mode == 0o644 and (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", "")
            assert m.mtime == int(CREATED.timestamp())
        manifest_bytes = tf.extractfile("manifest.json").read()
        sig = tf.getmember("manifest.sig")
        assert sig.pax_headers[KEY_ID_PAX] == keys.key_id(key)
        assert tf.extractfile(sig).read() == key.sign(manifest_bytes)
    raw = json.loads(manifest_bytes)
    assert manifest_bytes == json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()
    assert raw["created"] == "2026-11-25T09:00:00Z" and raw["format"] == "edge-ids/bundle/1"
    assert raw["files"]["model.tflite"] == {
        "sha256": hashlib.sha256(model.model).hexdigest(),
        "size": len(model.model),
    }
    assert Manifest.from_bytes(manifest_bytes).to_bytes() == manifest_bytes


# --------------------------------------------------------------------------- what the builder refuses


def test_builder_refuses_a_missing_required_file(model: TinyModel) -> None:
    files = model.files()
    del files["selftest_outputs.npy"]
    with pytest.raises(errors.ManifestError, match=re.escape("missing ['selftest_outputs.npy']")):
        build_bundle(files, **META)


def test_builder_refuses_an_unknown_file(model: TinyModel) -> None:
    with pytest.raises(errors.ManifestError, match=re.escape("unknown ['../evil']")):
        build_bundle(model.files() | {"../evil": b"x"}, **META)


def test_builder_refuses_expiry_before_creation(model: TinyModel) -> None:
    with pytest.raises(errors.ManifestError, match="expires: expected after created"):
        build_bundle(model.files(), **(META | {"expires": CREATED}))


def test_builder_refuses_an_uninstallable_size(model: TinyModel) -> None:
    with pytest.raises(errors.BundleTooLargeError):
        build_bundle(model.files(), limits=Limits(max_bundle_bytes=8192), **META)


def test_builder_refuses_a_model_that_does_not_fit_the_spec(model: TinyModel) -> None:
    files = model.files() | {"spec.json": make_spec(window=3).to_json().encode()}
    with pytest.raises(errors.ModelShapeError):
        build_bundle(files, inspect_model=inspect_model, **META)


def test_sign_refuses_an_unsafe_bundle(model: TinyModel, key: Ed25519PrivateKey) -> None:
    entries = read_entries(build_bundle(model.files(), **META))
    entries.append(Entry("evil", type=tarfile.SYMTYPE, linkname="/etc/shadow"))
    with pytest.raises(errors.UnsafeMemberError):
        sign_bundle(pack(entries), key)


# --------------------------------------------------------------------------- from trainer artifacts


def test_build_from_artifacts(artifacts: Path, model: TinyModel, key: Ed25519PrivateKey, tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text("mqtt:\n  topic: ids/alerts\n")
    kw = dict(bundle_version=3, created=CREATED, expires=EXPIRES, agent_config=config, sign_key=key)
    data = build_from_artifacts(artifacts, inspect_model=inspect_model, **kw)
    assert data == build_from_artifacts(artifacts, **kw)
    v = verify(data, key, inspect_model=inspect_model)
    assert v.files == model.files() | {"agent-config.yaml": config.read_bytes()}
    assert (v.manifest.model_name, v.manifest.model_version) == ("tiny", "1")  # from the spec


def test_build_from_artifacts_needs_the_trainer_files(artifacts: Path) -> None:
    (artifacts / "model_int8.tflite").unlink()
    with pytest.raises(FileNotFoundError, match=r"model_int8\.tflite"):
        build_from_artifacts(artifacts, bundle_version=1, created=CREATED, expires=EXPIRES)


def test_build_from_artifacts_checks_selftest_vectors(artifacts: Path) -> None:
    import numpy as np

    np.save(artifacts / "selftest_inputs.npy", np.zeros((3, 5, 6), dtype=np.int8))
    with pytest.raises(ValueError, match=r"selftest_inputs\.npy: expected shape"):
        build_from_artifacts(artifacts, bundle_version=1, created=CREATED, expires=EXPIRES)


def test_build_from_artifacts_refuses_a_non_mapping_agent_config(artifacts: Path, tmp_path: Path) -> None:
    bad = tmp_path / "agent.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="expected a YAML mapping"):
        build_from_artifacts(artifacts, bundle_version=1, created=CREATED, expires=EXPIRES, agent_config=bad)


# --------------------------------------------------------------------------- keys


def test_keygen_files_modes_and_key_id(tmp_path: Path) -> None:
    priv, pub, kid = keys.write_keypair(tmp_path / "k", "ota")
    assert (priv.name, pub.name) == ("ota.key.pem", "ota.pub.pem")
    assert priv.stat().st_mode & 0o777 == 0o600
    private, public = keys.load_private_key(priv), keys.load_public_key(pub)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert kid == keys.key_id(public) == keys.key_id(private) == hashlib.sha256(raw).hexdigest()
    sig = keys.sign(private, b"m")
    assert keys.verify_signature(public, sig, b"m") and not keys.verify_signature(public, sig, b"n")
    with pytest.raises(FileExistsError):
        keys.write_keypair(tmp_path / "k", "ota")
    assert keys.load_private_key(priv) is not None  # the existing key is untouched
    assert not [p for p in (tmp_path / "k").iterdir() if p.name.endswith(".tmp")]


def test_keygen_makes_private_directories_whatever_the_umask(tmp_path: Path) -> None:
    """``keygen --out a/b/keys`` under umask 022: every directory it creates is 0700, the private key 0600."""
    env = os.environ | {"PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "firmware_bundle", "keygen", "--out", "a/b/keys", "--name", "fleet"]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, umask=0o022)
    assert out.returncode == 0, out.stderr
    for d in ("a", "a/b", "a/b/keys"):
        assert (tmp_path / d).stat().st_mode & 0o777 == 0o700, d
    assert (tmp_path / "a/b/keys/fleet.key.pem").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "a/b/keys/fleet.pub.pem").stat().st_mode & 0o777 == 0o644  # public: meant to be shared


def test_non_ed25519_keys_are_refused(tmp_path: Path) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    pem = ec_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "ec.pem").write_bytes(pem)
    with pytest.raises(keys.KeyFileError, match="expected an Ed25519 private key"):
        keys.load_private_key(tmp_path / "ec.pem")
    with pytest.raises(keys.KeyFileError, match="expected a PEM public key"):
        keys.load_public_key(tmp_path / "ec.pem")


# --------------------------------------------------------------------------- CLI


def test_cli_round_trip(artifacts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "keys"
    assert main(["keygen", "--out", str(out), "--name", "ota"]) == 0
    kid = capsys.readouterr().out.split("key id:")[1].strip()
    bundle = tmp_path / "b.tar"
    build = [
        "build",
        str(artifacts),
        "--version",
        "7",
        "--created",
        "2026-11-25T09:00:00Z",
        "--expires-days",
        "30",
    ]
    assert main([*build, "--sign-key", str(out / "ota.key.pem"), "-o", str(bundle)]) == 0
    first = bundle.read_bytes()
    assert main([*build, "--sign-key", str(out / "ota.key.pem"), "-o", str(bundle)]) == 0
    assert bundle.read_bytes() == first  # deterministic with a fixed --created
    verify_args = [
        "verify",
        str(bundle),
        "--pubkey",
        str(out / "ota.pub.pem"),
        "--now",
        "2026-11-26T00:00:00Z",
    ]
    assert main(verify_args) == 0
    assert f"OK {bundle}: bundle 7, model tiny 1" in capsys.readouterr().out
    assert main([*verify_args, "--installed-version", "7"]) == 1
    assert "REJECTED reason=replay:" in capsys.readouterr().err
    assert main(["inspect", str(bundle)]) == 0
    shown = capsys.readouterr().out
    assert f"signed:  yes, key id {kid}" in shown and "model.tflite" in shown
    assert '"bundle_version": 7' in shown

    # unsigned build, then sign
    unsigned = tmp_path / "u.tar"
    assert main([*build, "-o", str(unsigned)]) == 0
    assert main(["inspect", str(unsigned)]) == 0
    assert "signed:  no" in capsys.readouterr().out
    assert main(["verify", str(unsigned), "--pubkey", str(out / "ota.pub.pem"), "--now", "2026-11-26T00:00:00Z"]) == 1
    assert "REJECTED reason=unsigned:" in capsys.readouterr().err
    assert main(["sign", str(unsigned), "--key", str(out / "ota.key.pem")]) == 0
    assert unsigned.read_bytes() == first


def test_cli_as_module_subprocess(artifacts: Path, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = os.environ | {"PYTHONPATH": str(REPO)}
        cmd = [sys.executable, "-m", "firmware_bundle", *args]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)

    assert "keygen" in run("--help").stdout
    for name in ("a", "b"):
        assert run("keygen", "--out", "keys", "--name", name).returncode == 0
    bundle = tmp_path / "b.tar"
    built = run("build", str(artifacts), "--version", "2", "--sign-key", "keys/a.key.pem", "-o", str(bundle))
    assert built.returncode == 0, built.stderr
    ok = run("verify", str(bundle), "--pubkey", "keys/b.pub.pem", "--pubkey", "keys/a.pub.pem")
    assert ok.returncode == 0, ok.stderr
    wrong = run("verify", str(bundle), "--pubkey", "keys/b.pub.pem")
    assert wrong.returncode == 1 and "REJECTED reason=unknown_key:" in wrong.stderr
    old = run("verify", str(bundle), "--pubkey", "keys/a.pub.pem", "--installed-version", "3")
    assert old.returncode == 1 and "REJECTED reason=rollback:" in old.stderr
    missing = run("verify", str(tmp_path / "nope.tar"), "--pubkey", "keys/a.pub.pem")
    assert missing.returncode == 2 and "error:" in missing.stderr
