"""``iotids-bundle``: make signing keys, build, sign, verify and inspect OTA model bundles."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

from firmware_bundle import keys
from firmware_bundle.builder import build_from_artifacts, sign_bundle
from firmware_bundle.errors import BundleError, BundleTooLargeError
from firmware_bundle.fsutil import write_atomic
from firmware_bundle.limits import Limits
from firmware_bundle.manifest import FIRST_AGENT_VERSION, MANIFEST_NAME, SIGNATURE_NAME, format_time
from firmware_bundle.model_check import inspect_model
from firmware_bundle.verifier import KEY_ID_PAX, read_members, verify_bundle

log = logging.getLogger(__name__)

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2

DESCRIPTION = """\
Signed over-the-air model bundles for edge-ids gateways.

subcommands:
  keygen   create an Ed25519 signing key pair: NAME.key.pem (private, mode 0600) and
           NAME.pub.pem (public; pin it on the gateways). Never overwrites a key.
  build    bundle a trainer output directory (model_int8.tflite, spec.json, self-test
           vectors) into one deterministic tar; signed when --sign-key is given.
  sign     (re-)sign a bundle with a private key (e.g. an unsigned build, or key rotation).
  verify   run every check a gateway runs (signature, schema, expiry, version, agent
           version, file hashes, safe members, model shapes); exit 0 when valid, else 1
           with "REJECTED reason=<code>: <message>" on stderr.
  inspect  show a bundle's manifest and members without verifying it.

exit status: 0 ok, 1 bundle rejected, 2 usage or input error.
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except BundleError as e:
        print(f"REJECTED reason={e.reason}: {e}", file=sys.stderr)
        return EXIT_REJECTED
    except (OSError, ValueError) as e:  # key files, paths, dates, versions
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(prog="iotids-bundle", description=DESCRIPTION, formatter_class=fmt)
    p.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = p.add_subparsers(dest="command", required=True, metavar="{keygen,build,sign,verify,inspect}")

    def command(name: str, func: Callable[[argparse.Namespace], int], summary: str) -> Callable[..., Any]:
        parser = sub.add_parser(name, help=summary, description=_doc(func), formatter_class=fmt)
        parser.set_defaults(func=func)
        return parser.add_argument

    arg = command("keygen", _keygen, "create an Ed25519 signing key pair")
    arg("--out", required=True, type=Path, metavar="DIR", help="directory for the key files")
    arg("--name", default="bundle-signing", metavar="NAME", help="file name stem (default: %(default)s)")

    arg = command("build", _build, "bundle a trainer output directory")
    arg("artifact_dir", type=Path, metavar="ARTIFACT_DIR", help="model_int8.tflite, spec.json, selftest_*.npy")
    arg("--version", required=True, type=int, metavar="N", help="bundle_version, above every installed one")
    arg("--created", metavar="RFC3339", help="creation time (default: now); fix it to rebuild identically")
    arg("--expires-days", type=float, default=90.0, metavar="D", help="validity after --created (default: 90)")
    arg("--min-agent-version", default=FIRST_AGENT_VERSION, metavar="X.Y.Z", help="default: %(default)s")
    arg("--agent-config", type=Path, metavar="FILE", help="YAML fragment shipped as agent-config.yaml")
    arg("--model-name", help="default: the spec's model.name")
    arg("--model-version", help="default: the spec's model.version")
    arg("--sign-key", type=Path, metavar="PRIV.pem", help="private key; without it the bundle is unsigned")
    arg("--skip-model-check", action="store_true", help="do not load the model to compare its shapes")
    arg("-o", "--output", required=True, type=Path, metavar="BUNDLE", help="file to write (atomically)")

    arg = command("sign", _sign, "(re-)sign a bundle")
    arg("bundle", type=Path, metavar="BUNDLE")
    arg("--key", required=True, type=Path, metavar="PRIV.pem", help="private key")
    arg("-o", "--output", type=Path, metavar="OUT", help="default: replace BUNDLE (atomically)")

    arg = command("verify", _verify, "run the gateway's checks")
    arg("bundle", type=Path, metavar="BUNDLE")
    arg(
        "--pubkey",
        required=True,
        action="append",
        type=Path,
        metavar="PUB.pem",
        help="pinned key, repeatable",
    )
    arg("--installed-version", type=int, default=0, metavar="N", help="highest installed bundle_version")
    arg("--agent-version", default=_agent_version(), metavar="X.Y.Z", help="default: %(default)s")
    arg("--now", metavar="RFC3339", help="reference time (default: the current time)")
    arg("--skip-model-check", action="store_true", help="do not load the model to compare its shapes")

    arg = command("inspect", _inspect, "show manifest and members (no verification)")
    arg("bundle", type=Path, metavar="BUNDLE")
    return p


# --------------------------------------------------------------------------- subcommands


def _keygen(args: argparse.Namespace) -> int:
    """Create NAME.key.pem (0600) and NAME.pub.pem in --out; print the key id."""
    priv, pub, kid = keys.write_keypair(args.out, args.name)
    print(f"private key: {priv}\npublic key:  {pub}\nkey id:      {kid}")
    return EXIT_OK


def _build(args: argparse.Namespace) -> int:
    """Bundle ARTIFACT_DIR into -o; deterministic for a fixed --created."""
    created = _parse_time(args.created) if args.created else datetime.now(UTC).replace(microsecond=0)
    sign_key = keys.load_private_key(args.sign_key) if args.sign_key else None
    data = build_from_artifacts(
        args.artifact_dir,
        bundle_version=args.version,
        created=created,
        expires=created + timedelta(days=args.expires_days),
        min_agent_version=args.min_agent_version,
        agent_config=args.agent_config,
        sign_key=sign_key,
        model_name=args.model_name,
        model_version=args.model_version,
        inspect_model=None if args.skip_model_check else inspect_model,
    )
    write_atomic(args.output, data)
    signed = f"signed by {keys.key_id(sign_key)}" if sign_key else "UNSIGNED"
    print(f"{args.output}: bundle {args.version}, {len(data)} bytes, {signed}")
    return EXIT_OK


def _sign(args: argparse.Namespace) -> int:
    """Sign BUNDLE with --key, keeping its manifest and files byte for byte."""
    key = keys.load_private_key(args.key)
    data = sign_bundle(_read_bundle(args.bundle), key)
    out = args.output or args.bundle
    write_atomic(out, data)
    print(f"{out}: signed by {keys.key_id(key)}")
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    """Verify BUNDLE against the pinned --pubkey keys; exit 0 when a gateway would accept it."""
    trusted = [keys.load_public_key(p) for p in args.pubkey]
    now = _parse_time(args.now) if args.now else datetime.now(UTC)
    verified = verify_bundle(
        _read_bundle(args.bundle),
        trusted_keys=trusted,
        now=now,
        highest_installed=args.installed_version,
        agent_version=args.agent_version,
        inspect_model=None if args.skip_model_check else inspect_model,
    )
    m = verified.manifest
    print(
        f"OK {args.bundle}: bundle {m.bundle_version}, model {m.model_name} {m.model_version}, "
        f"expires {format_time(m.expires)}, signed by {verified.key_id}"
    )
    return EXIT_OK


def _inspect(args: argparse.Namespace) -> int:
    """Print BUNDLE's members, signature status and manifest, without verifying anything."""
    data = _read_bundle(args.bundle)
    if len(data) > Limits().max_bundle_bytes:
        raise BundleTooLargeError(f"bundle: expected at most {Limits().max_bundle_bytes} bytes, got more")
    members = read_members(data)
    print(f"bundle:  {args.bundle} ({len(data)} bytes)")
    sig = next((m for m in members if m.name == SIGNATURE_NAME), None)
    if sig is None:
        print("signed:  no")
    else:
        print(f"signed:  yes, key id {sig.pax_headers.get(KEY_ID_PAX, 'not named')} (claimed, not verified)")
    print("members:")
    for m in members:
        link = f" -> {m.linkname}" if m.linkname else ""
        print(f"  {m.size:>10}  {m.name}{link}" + ("" if m.is_regular else f"  [{m.kind}]"))
    manifest = next((m for m in members if m.name == MANIFEST_NAME and m.is_regular), None)
    print("manifest:")
    if manifest is None:
        print("  (none)")
    else:
        try:
            print(json.dumps(json.loads(manifest.data), indent=2, sort_keys=True))
        except ValueError:
            print(f"  (not JSON) {manifest.data[:200]!r}")
    return EXIT_OK


# --------------------------------------------------------------------------- helpers


def _doc(func: object) -> str:
    return (getattr(func, "__doc__", None) or "").strip()


def _read_bundle(path: Path, limits: Limits = Limits()) -> bytes:  # noqa: B008
    """At most one byte more than the limit, so a huge file is refused without reading it all."""
    with open(path, "rb") as f:
        return f.read(limits.max_bundle_bytes + 1)


def _parse_time(text: str) -> datetime:
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        raise ValueError(f"expected an RFC 3339 time with a zone (e.g. 2026-11-25T09:00:00Z), got {text!r}")
    return dt.astimezone(UTC)


def _agent_version() -> str:
    try:
        return metadata.version("edge-ids")
    except metadata.PackageNotFoundError:
        return FIRST_AGENT_VERSION


if __name__ == "__main__":
    sys.exit(main())
