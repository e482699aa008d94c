"""Linux network namespaces for tests, the lab, the bench and the demo: isolated hosts joined by veths and bridges.

Every address lives only inside the namespaces a :class:`Topology` creates: no namespace gets a default route,
nothing is connected to the host's own namespace, so no packet can leave. A ``Topology`` is a context manager;
on exit it kills the processes left in its namespaces and deletes the namespaces (their veths and bridges go with
them), also after an error.

Names: each ``Topology`` gets a unique instance prefix, ``<family><6 hex>`` (family ``ids`` by default), and its
namespaces are called ``<instance>-<role>``. While it lives, the topology holds an ``flock`` on
``/run/iotids-netns/<instance>.lock``; :func:`sweep_stale` deletes the namespaces of a family whose lock nobody
holds any more (a run that was killed before it could clean up), and never touches a live run's namespaces.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_FAMILY = "ids"
LOCK_DIR = Path("/run/iotids-netns")
IFNAMSIZ = 15  # longest Linux interface name (IFNAMSIZ - 1)
_FAMILY_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")
_ROLE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,15}$")
_KILL_GRACE_S = 1.0

# Inside a lab namespace: no router discovery (there is no router, and no default route may appear).
_SYSCTLS = (
    "net.ipv6.conf.default.accept_ra=0",
    "net.ipv6.conf.all.accept_ra=0",
    "net.ipv6.conf.default.router_solicitations=0",
    "net.ipv6.conf.all.router_solicitations=0",
)


class NetnsError(RuntimeError):
    """A namespace command failed; the message carries the command and what it printed."""


def _ip(*args: str, timeout: float = 10) -> str:
    argv = ["ip", *args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as e:
        raise NetnsError("the `ip` command (iproute2) is not installed") from e
    except subprocess.TimeoutExpired as e:
        raise NetnsError(f"`{' '.join(argv)}` did not finish within {timeout} s") from e
    if proc.returncode != 0:
        raise NetnsError(f"`{' '.join(argv)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def _check_ifname(name: str) -> None:
    if not name or len(name) > IFNAMSIZ or "/" in name or name.strip() != name or ":" in name:
        raise ValueError(f"bad interface name {name!r}: 1 to {IFNAMSIZ} characters, no '/', ':' or blanks")


def list_namespaces() -> list[str]:
    """Names of the namespaces under /run/netns (``ip netns list``)."""
    out = _ip("netns", "list")
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def namespace_pids(name: str) -> list[int]:
    """Processes whose network namespace is ``name``."""
    try:
        out = _ip("netns", "pids", name)
    except NetnsError:
        return []
    return [int(tok) for tok in out.split() if tok.isdigit()]


def _kill_all(pids_of: Any, label: str) -> None:
    """SIGTERM the processes ``pids_of()`` returns, then SIGKILL what is left after a grace period."""
    pids = pids_of()
    if not pids:
        return
    log.debug("terminating %d process(es) in %s", len(pids), label)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + _KILL_GRACE_S
        while time.monotonic() < deadline:
            pids = pids_of()
            if not pids:
                return
            time.sleep(0.02)
    if pids:
        log.warning("processes %s still in %s after SIGKILL", pids, label)


def _delete_namespace(name: str) -> None:
    _kill_all(lambda: namespace_pids(name), f"namespace {name}")
    try:
        _ip("netns", "del", name)
    except NetnsError as e:
        if name in list_namespaces():
            log.warning("could not delete namespace %s: %s", name, e)


def _lock_is_free(path: Path) -> bool:
    """True when no process holds the lock at ``path`` (or the file is gone)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing releases the lock we may have taken
    return True


def sweep_stale(family: str = DEFAULT_FAMILY) -> list[str]:
    """Delete the namespaces of ``family`` whose topology is gone (its process died); return their names.

    A namespace belongs to a live topology while that topology's lock is held, so concurrent runs are safe.
    """
    pattern = re.compile(rf"^({re.escape(family)}[0-9a-f]{{6}})-")
    swept: list[str] = []
    for name in list_namespaces():
        m = pattern.match(name)
        if not m:
            continue
        lock = LOCK_DIR / f"{m.group(1)}.lock"
        if _lock_is_free(lock):
            log.info("deleting stale namespace %s (its run is gone)", name)
            _delete_namespace(name)
            swept.append(name)
    for lock in LOCK_DIR.glob(f"{family}*.lock") if LOCK_DIR.is_dir() else ():
        prefix = lock.name.removesuffix(".lock")
        if _lock_is_free(lock) and not any(n.startswith(prefix + "-") for n in list_namespaces()):
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
    return swept


_require_cache: list[str | None] = []


def require_netns(tools: Iterable[str] = ()) -> str | None:
    """None when network namespaces can be made here and every program in ``tools`` is installed, else the reason
    (for ``pytest.skip``)."""
    reason = _netns_reason()
    missing = [t for t in tools if shutil.which(t) is None]
    return reason or (f"lab tools not installed: {', '.join(missing)}" if missing else None)


def _netns_reason() -> str | None:
    if _require_cache:
        return _require_cache[0]
    reason: str | None = None
    if shutil.which("ip") is None:
        reason = "iproute2 `ip` is not installed"
    elif os.geteuid() != 0:
        reason = "network namespaces need root (CAP_SYS_ADMIN)"
    else:
        probe = f"{DEFAULT_FAMILY}probe{secrets.token_hex(3)}"
        try:
            _ip("netns", "add", probe)
            _ip("-n", probe, "link", "add", "p0", "type", "veth", "peer", "name", "p1")
        except NetnsError as e:
            reason = f"cannot create a network namespace with a veth: {e}"
        finally:
            with contextlib.suppress(NetnsError):
                _ip("netns", "del", probe)
    _require_cache.append(reason)
    return reason


class Netns:
    """One network namespace; commands run in it with ``ip netns exec``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._procs: list[subprocess.Popen] = []

    def __repr__(self) -> str:
        return f"Netns({self.name!r})"

    def argv(self, argv: list[str]) -> list[str]:
        """``argv`` wrapped to run inside this namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(
        self, argv: list[str], *, check: bool = True, timeout: float = 30, **kw: Any
    ) -> subprocess.CompletedProcess:
        """Run ``argv`` in the namespace and wait (output captured as text unless ``kw`` says otherwise)."""
        kw.setdefault("capture_output", "stdout" not in kw and "stderr" not in kw)
        kw.setdefault("text", True)
        proc = subprocess.run(self.argv(argv), timeout=timeout, check=False, **kw)
        if check and proc.returncode != 0:
            err = proc.stderr.strip() if isinstance(proc.stderr, str) else proc.stderr
            raise NetnsError(f"in {self.name}: `{' '.join(argv)}` failed ({proc.returncode}): {err}")
        return proc

    def popen(self, argv: list[str], **kw: Any) -> subprocess.Popen:
        """Start ``argv`` in the namespace; the topology kills it on exit if it is still running."""
        proc = subprocess.Popen(self.argv(argv), **kw)
        self._procs.append(proc)
        return proc

    def pids(self) -> list[int]:
        """Every process in this namespace (whoever started it)."""
        return namespace_pids(self.name)

    def _stop_processes(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + _KILL_GRACE_S
        for proc in self._procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=_KILL_GRACE_S)
        self._procs.clear()
        _kill_all(self.pids, f"namespace {self.name}")


class Topology:
    """Namespaces, veths, bridges and addresses, all deleted on exit.

    ``prefix`` is the name family (default ``ids``; up to 8 lower-case letters/digits); each instance adds 6 random
    hex digits, so concurrent topologies never collide. Stale namespaces of the same family are swept on entry.
    """

    def __init__(self, prefix: str | None = None) -> None:
        family = prefix or DEFAULT_FAMILY
        if not _FAMILY_RE.match(family):
            raise ValueError(f"bad prefix {family!r}: 1 to 8 lower-case letters or digits, starting with a letter")
        self.family = family
        self.prefix = f"{family}{secrets.token_hex(3)}"
        self.namespaces: list[Netns] = []
        self._lock_fd: int | None = None

    def __enter__(self) -> Topology:
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(LOCK_DIR / f"{self.prefix}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._lock_fd = fd
        try:
            sweep_stale(self.family)
        except NetnsError as e:
            log.warning("stale namespace sweep failed: %s", e)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Kill the namespaces' processes and delete the namespaces (idempotent)."""
        for ns in reversed(self.namespaces):
            try:
                ns._stop_processes()
            finally:
                _delete_namespace(ns.name)
        self.namespaces.clear()
        if self._lock_fd is not None:
            with contextlib.suppress(FileNotFoundError):
                (LOCK_DIR / f"{self.prefix}.lock").unlink()
            os.close(self._lock_fd)
            self._lock_fd = None

    def namespace(self, role: str) -> Netns:
        """Create the namespace ``<prefix>-<role>`` with its loopback up and router discovery off."""
        if self._lock_fd is None:
            raise RuntimeError("use the Topology as a context manager (`with Topology() as topo:`)")
        if not _ROLE_RE.match(role):
            raise ValueError(f"bad role {role!r}: 1 to 16 lower-case letters, digits, '_' or '-'")
        ns = Netns(f"{self.prefix}-{role}")
        if any(n.name == ns.name for n in self.namespaces):
            raise ValueError(f"namespace role {role!r} already exists in this topology")
        _ip("netns", "add", ns.name)
        self.namespaces.append(ns)
        self.up(ns, "lo")
        ns.run(["sysctl", "-q", "-w", *_SYSCTLS])
        return ns

    def bridge(self, ns: Netns, name: str = "br0") -> str:
        """A bridge in ``ns``, up, forwarding at once (no STP, no forward delay); returns its name."""
        _check_ifname(name)
        _ip("-n", ns.name, "link", "add", name, "type", "bridge", "forward_delay", "0", "stp_state", "0")
        self.up(ns, name)
        return name

    def link(self, a: Netns, a_if: str, b: Netns, b_if: str) -> None:
        """A veth pair from ``a_if`` in ``a`` to ``b_if`` in ``b``, both ends up (created in place, never in the
        host's namespace, so the names only have to be unique inside each namespace)."""
        _check_ifname(a_if)
        _check_ifname(b_if)
        if a.name == b.name and a_if == b_if:
            raise ValueError("a veth needs two different ends")
        _ip("link", "add", a_if, "netns", a.name, "type", "veth", "peer", "name", b_if, "netns", b.name)
        self.up(a, a_if)
        self.up(b, b_if)

    def address(self, ns: Netns, ifname: str, cidr: str) -> None:
        """Add ``cidr`` (IPv4 or IPv6) to ``ifname``; IPv6 without duplicate address detection, usable at once."""
        _check_ifname(ifname)
        args = ["-n", ns.name, "addr", "add", cidr, "dev", ifname]
        if ":" in cidr:
            args.append("nodad")
        _ip(*args)

    def attach(self, ns: Netns, ifname: str, bridge: str) -> None:
        """Make ``ifname`` a port of ``bridge`` (both in ``ns``)."""
        _check_ifname(ifname)
        _check_ifname(bridge)
        _ip("-n", ns.name, "link", "set", ifname, "master", bridge)
        self.up(ns, ifname)

    def up(self, ns: Netns, ifname: str) -> None:
        """Set ``ifname`` (``lo`` too) up in ``ns``."""
        _check_ifname(ifname)
        _ip("-n", ns.name, "link", "set", ifname, "up")
