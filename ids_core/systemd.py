"""The sd_notify protocol (readiness, reload, stop, status, watchdog), stdlib only.

A notification is one datagram of ``KEY=VALUE`` lines sent to the AF_UNIX socket named by
``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace). Outside systemd every call is a
no-op that returns False, so a daemon (agent, flow meter) runs the same way from a shell.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


def _socket_address() -> str | None:
    """The notify socket address from ``$NOTIFY_SOCKET``, or None when not usable."""
    addr = os.environ.get("NOTIFY_SOCKET", "")
    if addr.startswith("@"):
        return "\0" + addr[1:]  # abstract namespace
    if addr.startswith("/"):
        return addr
    if addr:
        log.debug("NOTIFY_SOCKET %r is neither a path nor @abstract, not notifying", addr)
    return None


def notify(state: str) -> bool:
    """Send ``state`` (newline-separated ``KEY=VALUE`` lines); True when the datagram was sent."""
    addr = _socket_address()
    if addr is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(addr)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("sd_notify %r to %r failed: %s", state.split("\n", 1)[0], addr.lstrip("\0"), exc)
        return False
    return True


def ready() -> bool:
    """Startup (or a reload) finished: ``READY=1``."""
    return notify("READY=1")


def reloading() -> bool:
    """A reload started: ``RELOADING=1`` and ``MONOTONIC_USEC`` (Type=notify-reload, systemd ≥ 253, needs it).

    Older systemd ignores the extra field. Send :func:`ready` when the reload is done.
    """
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")


def stopping() -> bool:
    """Shutdown started: ``STOPPING=1``."""
    return notify("STOPPING=1")


def status(text: str) -> bool:
    """A one-line human status shown by ``systemctl status``."""
    return notify("STATUS=" + " ".join(text.splitlines()))


def watchdog_ping() -> bool:
    """Tell the service manager we are alive: ``WATCHDOG=1``."""
    return notify("WATCHDOG=1")


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings (half of ``WatchdogSec=``), or None when no watchdog is ours."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    try:
        timeout = int(usec)
        if pid and int(pid) != os.getpid():
            return None  # the watchdog belongs to another process (e.g. our parent)
    except ValueError:
        if usec:
            log.warning("expected integer WATCHDOG_USEC/WATCHDOG_PID, got %r/%r", usec, pid)
        return None
    return timeout / 2e6 if timeout > 0 else None
