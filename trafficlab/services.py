"""The gateway's services, started in its namespace: Mosquitto, dnsmasq, an openssl TLS server, HTTP + NTP-like.

Each listens only on the lab addresses of the gateway; each is started in its own session with its output in
``<workdir>/<service>.log``, and all are stopped by :meth:`GatewayServices.stop` (the topology kills leftovers).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from trafficlab.netns import Netns

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Ports:
    mqtt: int = 1883
    http: int = 8080
    dns: int = 53
    ntp: int = 123
    tls: int = 8443


def python_argv(module: str, *args: str) -> list[str]:
    """Run one of our modules with this interpreter, importable from where ``trafficlab`` lives."""
    return [sys.executable, "-m", module, *args]


def python_env() -> dict[str, str]:
    """This environment, with the directory that holds ``trafficlab`` first on PYTHONPATH."""
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class GatewayServices:
    """The services on the gateway at ``ip4``/``ip6``, for ``seconds`` at most."""

    def __init__(self, ns: Netns, ip4: str, ip6: str, workdir: Path, seconds: float, hosts: dict[str, tuple[str, str]]):
        self.ns, self.ip4, self.ip6, self.workdir, self.seconds = ns, ip4, ip6, workdir, seconds
        self.hosts = hosts  # device name -> (ipv4, ipv6), published in DNS as <name>.iot.lab
        self.ports = Ports()
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._start("mosquitto", ["mosquitto", "-c", str(self._mosquitto_conf())])
        self._start("dnsmasq", self._dnsmasq_argv())
        cert, key = self._tls_cert()
        self._start("tls", ["openssl", "s_server", "-accept", str(self.ports.tls), "-cert", str(cert),
                            "-key", str(key), "-www", "-quiet"])  # fmt: skip
        ports = ["--http-port", str(self.ports.http), "--ntp-port", str(self.ports.ntp)]
        seconds = f"{self.seconds + 30:.0f}"
        self._start("gatewayd", python_argv("trafficlab.gatewayd", *ports, "--seconds", seconds), env=python_env())
        self._wait_ready()

    def _start(self, name: str, argv: list[str], **kw: object) -> None:
        out = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - the child owns it
        try:
            self.procs[name] = self.ns.popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kw
            )
        finally:
            out.close()

    def _mosquitto_conf(self) -> Path:
        conf = self.workdir / "mosquitto.conf"
        lines = [
            "user root",  # as root Mosquitto would switch to `mosquitto`, which cannot write a 0700 run dir
            "per_listener_settings false",
            f"listener {self.ports.mqtt} {self.ip4}",
            f"listener {self.ports.mqtt} {self.ip6}",
            "allow_anonymous true",
            "persistence false",
            "log_dest stdout",
            "log_type error\nlog_type warning\nlog_type notice",
        ]
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def _dnsmasq_argv(self) -> list[str]:
        argv = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                "--bind-interfaces", f"--listen-address={self.ip4}", f"--listen-address={self.ip6}",
                "--except-interface=lo", f"--port={self.ports.dns}", "--pid-file=", "--user=root",
                "--log-facility=-", "--cache-size=0",
                f"--address=/iot.lab/{self.ip4}", f"--address=/iot.lab/{self.ip6}"]  # fmt: skip
        argv += [f"--host-record={name}.iot.lab,{v4},{v6}" for name, (v4, v6) in sorted(self.hosts.items())]
        return argv

    def _tls_cert(self) -> tuple[Path, Path]:
        cert, key = self.workdir / "tls-cert.pem", self.workdir / "tls-key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-days", "2", "-subj", "/CN=api.iot.lab", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        return cert, key

    def _wait_ready(self) -> None:
        want = {("tcp", self.ports.mqtt), ("tcp", self.ports.http), ("tcp", self.ports.tls),
                ("udp", self.ports.dns), ("udp", self.ports.ntp)}  # fmt: skip
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    tail = (self.workdir / f"{name}.log").read_text(errors="replace")[-500:]
                    raise RuntimeError(f"gateway service {name} exited ({proc.returncode}) at start: {tail}")
            listening = set()
            for line in self.ns.run(["ss", "-Hlntu"]).stdout.splitlines():
                parts = line.split()
                if len(parts) >= 5:
                    listening.add((parts[0], int(parts[4].rsplit(":", 1)[1])))
            missing = want - listening
            if not missing:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway services not listening after {READY_TIMEOUT_S} s: {sorted(missing)}")
            time.sleep(0.1)

    def stop(self) -> dict[str, int | None]:
        """Terminate every service; return their exit codes."""
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        codes = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        return codes
