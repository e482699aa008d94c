"""Shared fixtures: paths to the real IoTID20 data and a real Mosquitto broker on a free loopback port."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# helper modules imported by test modules: rewrite their asserts too (before anything imports them)
pytest.register_assert_rewrite("agent_harness", "bundle_helpers", "ota_helpers", "trained", "systemd_units")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("IOTID20_DATA_DIR", REPO.parent / "shared" / "data" / "iotid20"))
SAMPLE_CSV = SHARED_DATA / "iotid20_2000.csv"
FULLSCHEMA_CSV = SHARED_DATA / "iotid20_head5_fullschema.csv"
SHARED = Path(os.environ.get("IOTIDS_SHARED_DIR", REPO.parent / "shared"))
SHARED_PCAPS = sorted(p for p in (SHARED / "pcaps").glob("*.pcap*") if p.is_file())  # Zeek's and Suricata's captures


@pytest.fixture(scope="session")
def sample_csv() -> Path:
    if not SAMPLE_CSV.exists():
        pytest.skip(f"real IoTID20 sample not found at {SAMPLE_CSV} (set IOTID20_DATA_DIR)")
    return SAMPLE_CSV


@pytest.fixture(scope="session")
def fullschema_csv() -> Path:
    if not FULLSCHEMA_CSV.exists():
        pytest.skip(f"IoTID20 full-schema fixture not found at {FULLSCHEMA_CSV}")
    return FULLSCHEMA_CSV


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Broker:
    """A real Mosquitto process on 127.0.0.1:port, with persistence, that tests may stop and restart."""

    port: int
    workdir: Path
    exe: str = "mosquitto"
    durable: bool = False  # save on every change: queued messages survive even a SIGKILL (slower)
    extra: tuple[str, ...] = ()  # more config lines, e.g. further listeners (TLS, passwords)
    proc: subprocess.Popen | None = None

    @property
    def conf(self) -> Path:
        return self.workdir / "mosquitto.conf"

    def start(self) -> None:
        lines = [
            # as root, Mosquitto would drop to the `mosquitto` user, which cannot write pytest's 0700 tmp dirs
            "user root" if os.geteuid() == 0 else "",
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1\nautosave_on_changes true" if self.durable else "",
            "max_queued_messages 0",
            "max_inflight_messages 0",
            "message_size_limit 0",
            f"log_dest file {self.workdir}/mosquitto.log",
            *self.extra,
        ]
        self.conf.write_text("\n".join(line for line in lines if line) + "\n")
        self.proc = subprocess.Popen(
            [self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.workdir / 'mosquitto.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        self.proc = None


def _broker(tmp_path: Path, durable: bool, extra: tuple[str, ...] = ()) -> Iterator[Broker]:
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if exe is None:
        pytest.fail("mosquitto is not installed (apt-get install mosquitto); the MQTT tests need a real broker")
    workdir = tmp_path / "broker"
    workdir.mkdir()
    b = Broker(free_port(), workdir, exe, durable, extra)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """Mosquitto with persistence saved on shutdown: sessions and queued messages survive a SIGTERM restart."""
    yield from _broker(tmp_path, durable=False)


@pytest.fixture
def durable_broker(tmp_path: Path) -> Iterator[Broker]:
    """Mosquitto that saves on every change, so even a SIGKILL loses nothing it acknowledged."""
    yield from _broker(tmp_path, durable=True)


from trained import quick_run  # noqa: E402,F401
