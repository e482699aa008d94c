"""Ed25519 signing keys: generate, save (private key 0600, atomically), load, key ids, sign, verify."""

from __future__ import annotations

import hashlib
import logging
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from firmware_bundle.errors import KeyFileError  # defined there, without cryptography: catchable without it
from firmware_bundle.fsutil import write_atomic
from ids_core.statedir import make_private_dir

_Key = TypeVar("_Key", Ed25519PrivateKey, Ed25519PublicKey)

log = logging.getLogger(__name__)

SIGNATURE_LENGTH = 64


def generate_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def key_id(public_key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """sha256 hex of the raw 32-byte public key (a private key is reduced to its public key)."""
    if isinstance(public_key, Ed25519PrivateKey):
        public_key = public_key.public_key()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def sign(private_key: Ed25519PrivateKey, data: bytes) -> bytes:
    """The 64-byte raw Ed25519 signature over ``data`` (deterministic)."""
    return private_key.sign(data)


def verify_signature(public_key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``data`` under ``public_key``."""
    if len(signature) != SIGNATURE_LENGTH:
        return False
    try:
        public_key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


# --------------------------------------------------------------------------- PEM


def private_key_to_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_to_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def private_key_from_pem(pem: bytes, password: bytes | None = None) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except (ValueError, TypeError) as e:
        raise KeyFileError(f"expected a PEM PKCS8 private key, got unreadable data ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"expected an Ed25519 private key, got {type(key).__name__}")
    return key


def public_key_from_pem(pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as e:
        raise KeyFileError(f"expected a PEM public key, got unreadable data ({e})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"expected an Ed25519 public key, got {type(key).__name__}")
    return key


def load_private_key(path: str | Path, password: bytes | None = None) -> Ed25519PrivateKey:
    """Load a PEM PKCS8 Ed25519 private key; warns when the file is readable by group or others."""
    return _load_key(Path(path), "private key", lambda pem: private_key_from_pem(pem, password))


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    return _load_key(Path(path), "public key", public_key_from_pem)


def _load_key(path: Path, what: str, parse: Callable[[bytes], _Key]) -> _Key:
    """Read ``path`` and ``parse`` its PEM; every error names the file."""
    try:
        mode = path.stat().st_mode
        pem = path.read_bytes()
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read {what}: {e.strerror}") from None
    if what == "private key" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s: private key is accessible by group/others (mode %o); expected 0600", path, mode & 0o777)
    try:
        return parse(pem)
    except KeyFileError as e:
        raise KeyFileError(f"{path}: {e}") from None


# --------------------------------------------------------------------------- files


def write_keypair(out_dir: str | Path, name: str = "bundle-signing") -> tuple[Path, Path, str]:
    """Generate a key pair into ``out_dir`` (created 0700): ``NAME.key.pem`` (0600) and ``NAME.pub.pem``.

    Never overwrites an existing key (FileExistsError). Returns (private path, public path, key id).
    """
    out = Path(out_dir)
    if not out.exists():
        make_private_dir(out)  # 0700, whatever the umask; an existing directory is the caller's choice
    priv_path, pub_path = out / f"{name}.key.pem", out / f"{name}.pub.pem"
    for p in (priv_path, pub_path):
        if p.exists():
            raise FileExistsError(f"{p} exists; refusing to overwrite a key")
    key = generate_private_key()
    write_atomic(priv_path, private_key_to_pem(key), mode=0o600, overwrite=False)
    write_atomic(pub_path, public_key_to_pem(key.public_key()), mode=0o644, overwrite=False)
    kid = key_id(key)
    log.info("generated Ed25519 key %s: %s, %s", kid, priv_path, pub_path)
    return priv_path, pub_path, kid
