"""Captures on the gateway's bridge: the default tcpdump one, and the hook a caller uses to plug in its own.

A *capture factory* is any callable ``(gateway: Netns, bridge: str, out_dir: Path) -> Capture`` that returns
once the capture is running; the lab calls it before any traffic and ``stop()`` after the last packet. A
subprocess can be wrapped with :class:`ProcessCapture`. The bridge is put in promiscuous mode (libpcap does that
by default): only then does a Linux bridge hand frames forwarded between two ports (device ↔ attacker) to a
capture on the bridge device itself.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from trafficlab.netns import Netns

READY_TIMEOUT_S = 10.0
PCAP_NAME = "capture.pcap"


class Capture(Protocol):
    def stop(self) -> dict[str, Any]:
        """Stop capturing, flush, and return what the capture wants in the run summary (counts, paths)."""
        ...


CaptureFactory = Callable[[Netns, str, Path], Capture]


class ProcessCapture:
    """A capture that is one process in the gateway namespace, stopped with ``signal`` (tcpdump flushes on INT)."""

    def __init__(self, proc: subprocess.Popen, log_path: Path | None = None, sig: int = signal.SIGINT) -> None:
        self.proc, self.log_path, self.sig = proc, log_path, sig

    def stop(self) -> dict[str, Any]:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(self.sig)
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        out: dict[str, Any] = {"returncode": rc}
        if self.log_path is not None and self.log_path.exists():
            text = self.log_path.read_text(errors="replace")
            for key in ("captured", "received by filter", "dropped by kernel"):
                m = re.search(rf"(\d+) packets? {key}", text)
                if m:
                    out[key.replace(" ", "_")] = int(m.group(1))
        return out


def tcpdump_capture(gateway: Netns, bridge: str, out_dir: Path) -> ProcessCapture:
    """tcpdump on ``bridge`` writing ``out_dir/capture.pcap`` (whole frames, 16 MiB kernel buffer, as root)."""
    pcap = out_dir / PCAP_NAME
    log_path = out_dir / "work" / "tcpdump.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = ["tcpdump", "-i", bridge, "-w", str(pcap), "-U", "-n", "-s", "0", "-B", "16384", "-Z", "root"]
    with open(log_path, "wb") as log_file:
        proc = gateway.popen(argv, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while "listening on" not in log_path.read_text(errors="replace"):
        if proc.poll() is not None:
            raise RuntimeError(f"tcpdump exited ({proc.returncode}): {log_path.read_text(errors='replace')[-400:]}")
        if time.monotonic() > deadline:
            ProcessCapture(proc).stop()
            raise RuntimeError(f"tcpdump did not start listening within {READY_TIMEOUT_S} s")
        time.sleep(0.05)
    return ProcessCapture(proc, log_path)
