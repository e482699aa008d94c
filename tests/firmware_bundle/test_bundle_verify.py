"""Attacks on real signed bundles: each test names the attack and asserts the exact check that stops it."""

from __future__ import annotations

import builtins
import gzip
import hashlib
import tarfile
from datetime import timedelta

import pytest
from bundle_helpers import (
    AGENT_VERSION,
    CREATED,
    EXPIRES,
    NOW,
    Entry,
    TinyModel,
    flip_byte,
    get,
    make_spec,
    manifest_of,
    new_key,
    pack,
    read_entries,
    resign,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware_bundle import errors, keys
from firmware_bundle.builder import build_bundle
from firmware_bundle.limits import Limits
from firmware_bundle.manifest import MANIFEST_NAME, SIGNATURE_NAME
from firmware_bundle.model_check import inspect_model
from firmware_bundle.verifier import KEY_ID_PAX, VerifiedBundle, verify_bundle

pytest_plugins = ["bundle_helpers"]  # the `model` and `key` fixtures

VERSION = 5
INSTALLED = 4


@pytest.fixture(scope="module")
def bundle(model: TinyModel, key: Ed25519PrivateKey) -> bytes:
    return build(model, key)


def build(model: TinyModel, key: Ed25519PrivateKey | None, **kw) -> bytes:
    args = dict(bundle_version=VERSION, model_name="tiny", model_version="1", created=CREATED, expires=EXPIRES)
    files = kw.pop("files", None) or model.files()
    return build_bundle(files, sign_key=key, **(args | kw))


def verify(data: bytes, key: Ed25519PrivateKey, **kw) -> VerifiedBundle:
    args = dict(
        trusted_keys=[key.public_key()],
        now=NOW,
        highest_installed=INSTALLED,
        agent_version=AGENT_VERSION,
        inspect_model=inspect_model,
    )
    return verify_bundle(data, **(args | kw))


def rejected(exc: type[errors.BundleError], reason: str, data: bytes, key: Ed25519PrivateKey, **kw) -> str:
    """Assert a failure with exactly ``exc`` (not a subclass) and ``reason``; return the message."""
    with pytest.raises(errors.BundleError) as info:
        verify(data, key, **kw)
    assert type(info.value) is exc, f"expected {exc.__name__}, got {type(info.value).__name__}: {info.value}"
    assert info.value.reason == reason
    return str(info.value)


def with_manifest(bundle: bytes, key: Ed25519PrivateKey, **changes) -> bytes:
    """The bundle with manifest fields changed and validly re-signed."""
    entries = read_entries(bundle)
    return pack(resign(entries, key, manifest_of(entries) | changes))


def with_files(bundle: bytes, key: Ed25519PrivateKey, files: dict[str, bytes]) -> bytes:
    """The bundle with members replaced, listed in the manifest with their true hashes, re-signed
    (only a signer could make it: it gets past the checks the builder would have stopped)."""
    entries = read_entries(bundle)
    m = manifest_of(entries)
    for name, data in files.items():
        get(entries, name).data = data
        m["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    return pack(resign(entries, key, m))


# --------------------------------------------------------------------------- the good case


def test_valid_bundle_verifies(bundle: bytes, key: Ed25519PrivateKey, model: TinyModel) -> None:
    v = verify(bundle, key)
    assert v.files == model.files()
    assert v.key_id == keys.key_id(key.public_key())
    assert v.manifest.bundle_version == VERSION and v.manifest.model_name == "tiny"
    assert v.manifest_bytes == get(read_entries(bundle), MANIFEST_NAME).data
    assert v.spec.input_shape == (4, 6)


def test_key_rotation_bundle_signed_by_second_trusted_key_verifies(model: TinyModel) -> None:
    old, new = new_key(), new_key()
    v = verify(build(model, new), old, trusted_keys=[old.public_key(), new.public_key()])
    assert v.key_id == keys.key_id(new)


def test_verifier_does_no_io(bundle: bytes, key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_open(*args, **kwargs):
        raise AssertionError(f"verifier opened {args[0]!r}")

    monkeypatch.setattr(builtins, "open", no_open)
    assert verify(bundle, key, inspect_model=None).manifest.bundle_version == VERSION


# --------------------------------------------------------------------------- (1) size


def test_oversized_payload_is_refused_before_parsing(key: Ed25519PrivateKey) -> None:
    limits = Limits(max_bundle_bytes=4096)
    msg = rejected(errors.BundleTooLargeError, "too_large", b"\x00junk" * 2000, key, limits=limits)
    assert "expected at most 4096 bytes, got 10000" in msg


def test_oversized_real_bundle_is_too_large(bundle: bytes, key: Ed25519PrivateKey) -> None:
    rejected(errors.BundleTooLargeError, "too_large", bundle, key, limits=Limits(max_bundle_bytes=len(bundle) - 1))


def test_oversized_manifest_is_too_large(bundle: bytes, key: Ed25519PrivateKey) -> None:
    rejected(errors.BundleTooLargeError, "too_large", bundle, key, limits=Limits(max_manifest_bytes=100))


def test_too_many_members_is_too_large(bundle: bytes, key: Ed25519PrivateKey) -> None:
    entries = read_entries(bundle) + [Entry(f"extra{i}") for i in range(20)]
    rejected(errors.BundleTooLargeError, "too_large", pack(entries), key)


# --------------------------------------------------------------------------- (2) tar and signature


def test_wrong_key_is_unknown_key(model: TinyModel, key: Ed25519PrivateKey) -> None:
    msg = rejected(errors.UnknownKeyError, "unknown_key", build(model, new_key()), key)
    assert "expected a signature by a pinned key" in msg


def test_forged_signature_claiming_pinned_key_is_bad_signature(bundle: bytes, key: Ed25519PrivateKey) -> None:
    entries = resign(read_entries(bundle), new_key())
    get(entries, SIGNATURE_NAME).pax = {KEY_ID_PAX: keys.key_id(key)}  # lie about the signer
    rejected(errors.SignatureError, "bad_signature", pack(entries), key)


def test_unpinned_key_without_key_hint_is_bad_signature(bundle: bytes, key: Ed25519PrivateKey) -> None:
    entries = resign(read_entries(bundle), new_key())
    get(entries, SIGNATURE_NAME).pax = None
    rejected(errors.SignatureError, "bad_signature", pack(entries), key)


def test_flipped_byte_in_manifest_is_bad_signature(bundle: bytes, key: Ed25519PrivateKey) -> None:
    rejected(errors.SignatureError, "bad_signature", flip_byte(bundle, MANIFEST_NAME, 40), key)


def test_flipped_byte_in_signature_is_bad_signature(bundle: bytes, key: Ed25519PrivateKey) -> None:
    rejected(errors.SignatureError, "bad_signature", flip_byte(bundle, SIGNATURE_NAME, 5), key)


def test_short_signature_is_bad_signature(bundle: bytes, key: Ed25519PrivateKey) -> None:
    entries = read_entries(bundle)
    get(entries, SIGNATURE_NAME).data = get(entries, SIGNATURE_NAME).data[:63]
    msg = rejected(errors.SignatureError, "bad_signature", pack(entries), key)
    assert "expected a 64-byte Ed25519 signature, got 63 bytes" in msg


def test_unsigned_bundle_is_refused(model: TinyModel, key: Ed25519PrivateKey) -> None:
    msg = rejected(errors.UnsignedBundleError, "unsigned", build(model, None), key)
    assert isinstance(errors.UnsignedBundleError(msg), errors.MalformedBundleError)


def test_truncated_download_is_malformed(bundle: bytes, key: Ed25519PrivateKey) -> None:
    for cut in (len(bundle) // 2, 1000, 100):
        rejected(errors.MalformedBundleError, "malformed", bundle[:cut], key)


@pytest.mark.parametrize(
    "data",
    [b"", b"not a tar at all" * 100, gzip.compress(b"x" * 5000)],
    ids=["empty", "garbage", "gzip"],
)
def test_not_an_uncompressed_tar_is_malformed(data: bytes, key: Ed25519PrivateKey) -> None:
    rejected(errors.MalformedBundleError, "malformed", data, key)


def test_compressed_bundle_is_malformed(bundle: bytes, key: Ed25519PrivateKey) -> None:
    rejected(errors.MalformedBundleError, "malformed", gzip.compress(bundle), key)


def test_data_smuggled_after_end_of_archive_is_malformed(bundle: bytes, key: Ed25519PrivateKey) -> None:
    msg = rejected(errors.MalformedBundleError, "malformed", bundle + b"smuggled", key)
    assert "expected only zero padding after the last member" in msg


def test_missing_manifest_is_malformed(bundle: bytes, key: Ed25519PrivateKey) -> None:
    entries = [e for e in read_entries(bundle) if e.name != MANIFEST_NAME]
    rejected(errors.MalformedBundleError, "malformed", pack(entries), key)


def test_second_manifest_is_malformed(bundle: bytes, key: Ed25519PrivateKey) -> None:
    entries = read_entries(bundle)
    rejected(errors.MalformedBundleError, "malformed", pack([*entries, get(entries, MANIFEST_NAME)]), key)


def test_symlinked_signature_is_malformed(bundle: bytes, key: Ed25519PrivateKey) -> None:
    entries = [e for e in read_entries(bundle) if e.name != SIGNATURE_NAME]
    entries.append(Entry(SIGNATURE_NAME, type=tarfile.SYMTYPE, linkname="model.tflite"))
    rejected(errors.MalformedBundleError, "malformed", pack(entries), key)


# --------------------------------------------------------------------------- (3) manifest schema


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"format": "edge-ids/bundle/2"}, "format"),
        ({"bundle_version": True}, "bundle_version"),
        ({"bundle_version": 5.0}, "bundle_version"),
        ({"bundle_version": 0}, "bundle_version"),
        ({"created": "2026-11-25T09:00:00+00:00"}, "created"),
        ({"expires": "2026-11-25"}, "expires"),
        ({"expires": "2026-11-24T09:00:00Z"}, "expires"),
        ({"min_agent_version": "0.1"}, "min_agent_version"),
        ({"model": {"name": "../x", "version": "1"}}, "model.name"),
        ({"surprise": 1}, "unknown ['surprise']"),
    ],
)
def test_manifest_breaking_the_schema_is_bad_manifest(
    bundle: bytes, key: Ed25519PrivateKey, change: dict, where: str
) -> None:
    msg = rejected(errors.ManifestError, "bad_manifest", with_manifest(bundle, key, **change), key)
    assert where in msg


@pytest.mark.parametrize("edit", ["drop_required", "unknown_file", "upper_sha", "negative_size"])
def test_manifest_file_list_breaking_the_schema_is_bad_manifest(
    bundle: bytes, key: Ed25519PrivateKey, edit: str
) -> None:
    files = manifest_of(read_entries(bundle))["files"]
    if edit == "drop_required":
        del files["selftest_outputs.npy"]
    elif edit == "unknown_file":
        files["install.sh"] = files["spec.json"]
    elif edit == "upper_sha":
        files["spec.json"] = files["spec.json"] | {"sha256": files["spec.json"]["sha256"].upper()}
    else:
        files["spec.json"] = files["spec.json"] | {"size": -1}
    rejected(errors.ManifestError, "bad_manifest", with_manifest(bundle, key, files=files), key)


def test_manifest_with_duplicate_json_keys_is_bad_manifest(bundle: bytes, key: Ed25519PrivateKey) -> None:
    entries = read_entries(bundle)
    body = get(entries, MANIFEST_NAME).data.replace(b'{"bundle_version":5,', b'{"bundle_version":5,"bundle_version":9,')
    entries = [e for e in entries if e.name != MANIFEST_NAME]
    entries = pack(resign([Entry(MANIFEST_NAME, body), *entries], key))
    assert "duplicate key 'bundle_version'" in rejected(errors.ManifestError, "bad_manifest", entries, key)


# --------------------------------------------------------------------------- (4) time, (5) version, (6) agent


def test_expired_bundle_is_refused(bundle: bytes, key: Ed25519PrivateKey) -> None:
    msg = rejected(errors.ExpiredBundleError, "expired", bundle, key, now=EXPIRES + timedelta(seconds=1))
    assert "expires: expected after now" in msg
    rejected(errors.ExpiredBundleError, "expired", bundle, key, now=EXPIRES)  # expiry instant itself


def test_bundle_from_the_future_is_not_yet_valid(bundle: bytes, key: Ed25519PrivateKey) -> None:
    rejected(errors.NotYetValidError, "not_yet_valid", bundle, key, now=CREATED - timedelta(minutes=6))
    assert verify(bundle, key, now=CREATED - timedelta(minutes=4))  # within the clock skew


def test_replayed_older_version_is_rollback(bundle: bytes, key: Ed25519PrivateKey) -> None:
    msg = rejected(errors.RollbackError, "rollback", bundle, key, highest_installed=VERSION + 1)
    assert f"expected above {VERSION + 1} (installed), got older {VERSION}" in msg


def test_same_version_again_is_replay(bundle: bytes, key: Ed25519PrivateKey) -> None:
    rejected(errors.ReplayError, "replay", bundle, key, highest_installed=VERSION)


def test_too_new_minimum_agent_version_is_agent_too_old(bundle: bytes, key: Ed25519PrivateKey) -> None:
    data = with_manifest(bundle, key, min_agent_version="0.10.0")
    msg = rejected(errors.AgentTooOldError, "agent_too_old", data, key, agent_version="0.9.7")
    assert "expected at most 0.9.7 (this agent), got 0.10.0" in msg
    assert verify(data, key, agent_version="0.10.0.dev3")  # release segment compared as ints


# --------------------------------------------------------------------------- (7) files


def test_flipped_byte_in_model_is_file_mismatch(bundle: bytes, key: Ed25519PrivateKey) -> None:
    msg = rejected(errors.FileMismatchError, "file_mismatch", flip_byte(bundle, "model.tflite", 300), key)
    assert msg.startswith("model.tflite: expected sha256 ")


def test_truncated_model_file_is_file_mismatch(bundle: bytes, key: Ed25519PrivateKey, model: TinyModel) -> None:
    entries = read_entries(bundle)
    get(entries, "model.tflite").data = model.model[:-100]  # manifest and signature untouched
    msg = rejected(errors.FileMismatchError, "file_mismatch", pack(entries), key)
    assert f"model.tflite: expected {len(model.model)} bytes, got {len(model.model) - 100}" in msg


def test_missing_listed_file_is_file_mismatch(bundle: bytes, key: Ed25519PrivateKey) -> None:
    entries = [e for e in read_entries(bundle) if e.name != "selftest_inputs.npy"]
    assert "got none" in rejected(errors.FileMismatchError, "file_mismatch", pack(entries), key)


def test_hardlink_cannot_supply_a_listed_files_content(bundle: bytes, key: Ed25519PrivateKey) -> None:
    """tarfile would follow a hardlink to its target's data; the verifier never does."""
    entries = read_entries(bundle)
    m = manifest_of(entries)
    m["files"]["agent-config.yaml"] = m["files"]["model.tflite"]
    entries.append(Entry("agent-config.yaml", type=tarfile.LNKTYPE, linkname="model.tflite"))
    rejected(errors.FileMismatchError, "file_mismatch", pack(resign(entries, key, m)), key)


# --------------------------------------------------------------------------- (8) members


def _unsafe(bundle: bytes, key: Ed25519PrivateKey, entry: Entry) -> str:
    return rejected(errors.UnsafeMemberError, "unsafe_member", pack([*read_entries(bundle), entry]), key)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (Entry("../../etc/cron.d/evil", b"* * * * * root sh\n"), "path traversal"),
        (Entry("/etc/cron.d/evil", b"* * * * * root sh\n"), "absolute path"),
        (Entry("models/evil.tflite", b"x"), "path with directories"),
        (Entry("evil", type=tarfile.SYMTYPE, linkname="/etc/shadow"), "got a symlink -> '/etc/shadow'"),
        (Entry("evil", type=tarfile.LNKTYPE, linkname="/etc/shadow"), "got a hardlink"),
        (Entry("evil", type=tarfile.DIRTYPE), "got a directory"),
        (Entry("evil", type=tarfile.FIFOTYPE), "got a fifo"),
        (Entry("evil", type=tarfile.CHRTYPE), "got a character device"),
        (Entry("install.sh", b"#!/bin/sh\nrm -rf /\n"), "unlisted"),
        (Entry(".hidden", b"x"), "characters outside"),
    ],
    ids=["path_traversal", "absolute_path", "subdirectory", "symlink", "hardlink", "directory", "fifo",
         "char_device", "extra_member_not_in_manifest", "dotfile"],
)  # fmt: skip
def test_unsafe_member_is_refused(bundle: bytes, key: Ed25519PrivateKey, entry: Entry, expected: str) -> None:
    assert expected in _unsafe(bundle, key, entry)


def test_duplicate_member_is_unsafe(bundle: bytes, key: Ed25519PrivateKey) -> None:
    entry = Entry("model.tflite", b"a second, different model")  # first copy still matches the manifest
    assert "duplicate" in _unsafe(bundle, key, entry)


def test_symlink_under_a_listed_name_is_unsafe(bundle: bytes, key: Ed25519PrivateKey) -> None:
    """A link carries no data: listed with size 0 it passes the file check, then the member check stops it."""
    entries = read_entries(bundle)
    m = manifest_of(entries)
    m["files"]["agent-config.yaml"] = {"sha256": hashlib.sha256(b"").hexdigest(), "size": 0}
    entries.append(Entry("agent-config.yaml", type=tarfile.SYMTYPE, linkname="/etc/shadow"))
    msg = rejected(errors.UnsafeMemberError, "unsafe_member", pack(resign(entries, key, m)), key)
    assert "symlink" in msg


# --------------------------------------------------------------------------- (9) spec and model


def test_wrong_model_shape_is_refused(model: TinyModel, key: Ed25519PrivateKey) -> None:
    spec = make_spec(window=5)  # the model takes 4 × 6
    data = build(model, key, files=model.files() | {"spec.json": spec.to_json().encode()})
    msg = rejected(errors.ModelShapeError, "model_shape", data, key)
    assert "expected input shape [5, 6] (spec.json input.shape), got [4, 6]" in msg
    assert verify(data, key, inspect_model=None)  # without an inspector only the spec is checked


def test_model_output_shape_mismatch_is_refused(bundle: bytes, key: Ed25519PrivateKey) -> None:
    msg = rejected(errors.ModelShapeError, "model_shape", bundle, key, inspect_model=lambda b: ((4, 6), (2,)))
    assert "expected output shape [1]" in msg


def test_unloadable_model_is_bad_model(bundle: bytes, key: Ed25519PrivateKey) -> None:
    data = with_files(bundle, key, {"model.tflite": b"\x1c\x00\x00\x00TFL3" + bytes(200)})
    rejected(errors.BadModelError, "bad_model", data, key)


@pytest.mark.parametrize("spec", [b"{not json", b'{"format": "something/else"}', b"[]"])
def test_broken_spec_is_bad_spec(bundle: bytes, key: Ed25519PrivateKey, spec: bytes) -> None:
    rejected(errors.BadSpecError, "bad_spec", with_files(bundle, key, {"spec.json": spec}), key)


def test_spec_of_another_model_is_bad_spec(bundle: bytes, key: Ed25519PrivateKey) -> None:
    data = with_files(bundle, key, {"spec.json": make_spec(model_version="2").to_json().encode()})
    msg = rejected(errors.BadSpecError, "bad_spec", data, key)
    assert "expected model tiny 1 (manifest), got tiny 2" in msg


# --------------------------------------------------------------------------- order and caller errors


def test_checks_run_in_the_documented_order(bundle: bytes, key: Ed25519PrivateKey) -> None:
    """Each bundle breaks every later check too; the earliest failing check must be the one reported."""
    entries = read_entries(bundle)
    get(entries, "model.tflite").data = b"tampered"  # (7)
    entries.append(Entry("../evil", b"x"))  # (8)
    m = manifest_of(entries) | {"min_agent_version": "9.0.0"}  # (6)
    broken = pack(resign(entries, key, m))
    kw = dict(highest_installed=VERSION + 1, now=EXPIRES)  # (5) rollback, (4) expired
    rejected(errors.BundleTooLargeError, "too_large", broken, key, limits=Limits(max_bundle_bytes=1000), **kw)
    rejected(errors.UnknownKeyError, "unknown_key", broken, new_key(), **kw)
    rejected(errors.ExpiredBundleError, "expired", broken, key, **kw)
    rejected(errors.RollbackError, "rollback", broken, key, highest_installed=VERSION + 1)
    rejected(errors.AgentTooOldError, "agent_too_old", broken, key)
    rejected(errors.FileMismatchError, "file_mismatch", broken, key, agent_version="9.0.0")


def test_caller_errors_are_value_errors(bundle: bytes, key: Ed25519PrivateKey) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify(bundle, key, now=NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="at least one trusted public key"):
        verify(bundle, key, trusted_keys=[])
    with pytest.raises(ValueError, match="agent version"):
        verify(bundle, key, agent_version="latest")


def test_reason_codes_are_unique_snake_case() -> None:
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.BundleError)]
    reasons = [c.reason for c in classes if c is not errors.BundleError]
    assert len(reasons) == len(set(reasons))
    assert all(r.replace("_", "").isalpha() and r.islower() for r in reasons)
