"""Starting and stopping the processes under test (Mosquitto, the agents, the benchmark's own children) and
reading their CPU use from ``/proc``."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_plan import ALERTS_PER_MESSAGE, MAX_RECORDS, PREFIX, REPO, STORM_LINES, STORM_RL, STORMS, WAIT_MS
from benchlib import JsonLines, tail


def now() -> float:
    return time.monotonic()


def loadavg() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def core_times(core: int) -> dict[str, float]:
    """Busy, steal and total seconds of one CPU core since boot (``/proc/stat``)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            v = [int(x) / os.sysconf("SC_CLK_TCK") for x in line.split()[1:]]
            user, nice, system, _idle, _iowait, irq, softirq, steal = v[:8]
            return {"busy": user + nice + system + irq + softirq, "steal": steal, "total": sum(v[:8])}
    raise RuntimeError(f"cpu{core} not in /proc/stat")


def split_cores() -> tuple[int, set[int]]:
    """(the agents' core, the driver's cores): the last allowed core for the agents, the others for the rest."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        raise SystemExit("this benchmark needs at least 2 cores (agent on one, broker and publisher on the other)")
    return allowed[-1], set(allowed[:-1])


CLI = Path(__file__).resolve().parent / "agent.py"  # the children re-execute it with ``--child <mode>``


def child_cmd(mode: str, *args: str) -> list[str]:
    """The command line of one of the benchmark's own children."""
    return [sys.executable, str(CLI), "--child", mode, *args]


class BenchError(RuntimeError):
    """A child process failed or the setup did not come up."""


class Children:
    """Every process this run started; ``close()`` stops them all (SIGTERM, then SIGKILL)."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], log: Path, **kwargs: Any) -> subprocess.Popen:
        out = open(log, "w")  # noqa: SIM115 (kept open for the child's life)
        proc = subprocess.Popen(cmd, stdout=kwargs.pop("stdout", out), stderr=out, cwd=REPO, env=child_env(), **kwargs)
        self.procs.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 15.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def close(self) -> None:
        for _, proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                if proc.stdin:
                    proc.stdin.close()
            with contextlib.suppress(Exception):
                self.stop(proc, timeout=10)


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


class LineChild(JsonLines):
    """A child of ``children`` answering one JSON line per JSON request line; ``ready`` is its first line."""

    def __init__(self, children: Children, name: str, cmd: list[str], log: Path) -> None:
        proc = children.start(name, cmd, log, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        super().__init__(proc, name, log, BenchError)
        self.ready = self.read()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(children: Children, workdir: Path, core: str) -> tuple[int, subprocess.Popen]:
    """Mosquitto with its own config: loopback listener, no persistence, no in-flight or queue limits."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    d = workdir / "broker"
    d.mkdir(exist_ok=True)
    os.chmod(d, 0o777)  # mosquitto started as root drops to the mosquitto user
    port = _free_port()
    conf = d / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 0\n"
        f"max_queued_messages 0\nmessage_size_limit 0\nset_tcp_nodelay true\nlog_dest file {d}/mosquitto.log\n"
    )
    proc = children.start("mosquitto", ["taskset", "-c", core, exe, "-c", str(conf)], d / "stdout.log")
    deadline = now() + 10
    while now() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"mosquitto exited: {tail(d / 'mosquitto.log')}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return port, proc
        except OSError:
            time.sleep(0.05)
    raise BenchError("mosquitto did not start listening")


@dataclass
class AgentProc:
    """One agent under test."""

    variant: str
    t: int
    gateway: str
    proc: subprocess.Popen
    log: Path

    @property
    def flows_topic(self) -> str:
        return f"{PREFIX}/{self.gateway}/flows"

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)


def _agent_config(
    workdir: Path,
    gateway: str,
    model_dir: Path,
    port: int,
    wait_ms: float,
    shipped_limit: bool,
    alerts_per_message: int = 1,
) -> Path:
    """The agent's YAML: rate limiting off, or (``shipped_limit``) left at the shipped default; ``alerts_per_message``
    is ``alerts.max_per_message``."""
    import yaml

    d = workdir / "agents" / gateway
    d.mkdir(parents=True, exist_ok=True)
    cfg = {
        "gateway_id": gateway,
        "state_dir": str(d / "state"),
        "model": {"dir": str(model_dir), "threads": 1, "runtime": "ai_edge_litert"},
        "mqtt": {"host": "127.0.0.1", "port": port, "topic_prefix": PREFIX, "client_id": f"{PREFIX}-{gateway}"},
        "batch": {"max_records": MAX_RECORDS, "max_wait_ms": wait_ms},
        "alerts": {
            "publish_verdicts": True,
            "max_per_message": alerts_per_message,
            **({} if shipped_limit else {"rate_limit": {"max_alerts": 0}}),
        },
        "bundle": {"enabled": False},
        "stats_interval": 1.0,  # the agent's own arrival → outbox latency, read during the latency runs
        "log_level": "INFO",
    }
    path = d / "agent.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def start_agent(children: Children, workdir: Path, variant: str, t: int, port: int, core: str) -> AgentProc:
    gateway = f"T{t}-{variant}"
    model_dir = workdir / f"T{t}" / ("int8-alerts" if variant in STORMS else "int8")
    per_message = ALERTS_PER_MESSAGE if variant == STORM_LINES else 1
    config = _agent_config(workdir, gateway, model_dir, port, WAIT_MS[variant], variant == STORM_RL, per_message)
    cmd = [sys.executable, "-m", "agent.daemon", "--config", str(config)]
    log = config.parent / "agent.log"
    proc = children.start(gateway, ["taskset", "-c", core, *cmd], log)
    return AgentProc(variant, t, gateway, proc, log)
