"""The gateway's dependency set as aarch64 binary wheels, read from setup.cfg at run time.

    wheels.py reqs EXTRA                    the extra's requirements (with install_requires), one per line
    wheels.py key EXTRA PYTHON              a short hash of the extra's requirements (the wheel cache's key)
    wheels.py fetch EXTRA PYTHON DEST       download the extra's wheels for aarch64 CPython PYTHON into DEST
    wheels.py resolve                       every (extra, Python) of RESOLVE must resolve, or not, as it says

Platforms: manylinux2014 and manylinux_2_17 … manylinux_2_36 for aarch64 — glibc 2.36 is Debian bookworm's and
Raspberry Pi OS bookworm's. ``--only-binary=:all:``: a Pi must never need a compiler. Runs on the host (x86).
"""

from __future__ import annotations

import configparser
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GLIBC_MINOR = 36  # bookworm
PLATFORMS = ["manylinux2014_aarch64", *(f"manylinux_2_{m}_aarch64" for m in range(17, GLIBC_MINOR + 1))]

# (extra, CPython) → must it resolve? tflite-runtime 2.14 has no CPython 3.13 wheel and needs numpy < 2, which has
# none for 3.13 either: the fallback extra is for Python ≤ 3.11 gateways only (README, "Raspberry Pi").
RESOLVE = {
    ("agent", "3.11"): True,
    ("agent", "3.13"): True,
    ("agent-tflite-runtime", "3.11"): True,
    ("agent-tflite-runtime", "3.13"): False,
}


def requirements(extra: str) -> list[str]:
    """install_requires plus the extra's requirements, as setup.cfg lists them now."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")

    def lines(section: str, key: str) -> list[str]:
        raw = cfg.get(section, key, fallback="")
        return [line.split("#")[0].strip() for line in raw.splitlines() if line.split("#")[0].strip()]

    extras = cfg["options.extras_require"]
    if extra not in extras:
        raise SystemExit(f"setup.cfg has no extra {extra!r}; extras: {', '.join(extras)}")
    return lines("options", "install_requires") + lines("options.extras_require", extra)


def key(extra: str, python: str) -> str:
    text = "\n".join([extra, python, *PLATFORMS, *requirements(extra)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def download(extra: str, python: str, dest: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--dest", str(dest)]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    cmd += ["--python-version", python, "--implementation", "cp", "--only-binary=:all:", *requirements(extra)]
    return subprocess.run(cmd, capture_output=True, text=True)


def fetch(extra: str, python: str, dest: Path) -> int:
    done = download(extra, python, dest)
    if done.returncode != 0:
        print(done.stdout + done.stderr, file=sys.stderr)
        print(f"cannot download aarch64 wheels of [{extra}] for CPython {python}", file=sys.stderr)
        return 1
    wheels = sorted(p.name for p in dest.iterdir())
    not_wheels = [n for n in wheels if not n.endswith(".whl")]
    if not_wheels:
        print(f"not binary wheels: {not_wheels}", file=sys.stderr)
        return 1
    print(f"[{extra}] CPython {python} aarch64: {len(wheels)} wheels: {', '.join(wheels)}")
    return 0


def resolve() -> int:
    """Every RESOLVE entry as expected; prints one line each. Exit status 1 on any surprise that matters."""
    failures = 0
    for (extra, python), expected in RESOLVE.items():
        with tempfile.TemporaryDirectory() as tmp:
            done = download(extra, python, Path(tmp))
            names = sorted(p.name for p in Path(tmp).iterdir())
        ok = done.returncode == 0
        reqs = ", ".join(requirements(extra))
        if ok:
            listed = ", ".join(names)
            print(f"resolve [{extra}] CPython {python} aarch64: OK, binary wheels only ({len(names)}): {listed}")
        else:
            reason = next((ln for ln in done.stderr.splitlines() if ln.startswith("ERROR: No matching")), "")
            print(f"resolve [{extra}] CPython {python} aarch64: does not resolve ({reason or 'pip failed'})")
        if ok and not expected:
            print(f"  note: [{extra}] now resolves on CPython {python}; update RESOLVE and the README")
        elif not ok and expected:
            print(done.stderr[-2000:])
            print(f"  FAILED: [{extra}] ({reqs}) must resolve on aarch64 CPython {python} without a compiler")
            failures += 1
    return 1 if failures else 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["reqs"] and len(argv) == 2:
        print("\n".join(requirements(argv[1])))
        return 0
    if argv[:1] == ["key"] and len(argv) == 3:
        print(key(argv[1], argv[2]))
        return 0
    if argv[:1] == ["fetch"] and len(argv) == 4:
        return fetch(argv[1], argv[2], Path(argv[3]))
    if argv == ["resolve"]:
        return resolve()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
