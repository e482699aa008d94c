"""Run a scenario: build the namespaces, start the gateway's services, capture, play benign traffic and attacks.

Layout: one gateway namespace holding bridge ``br0`` (the capture point; the gateway's own services answer on
its addresses), one namespace per device and per attacker, each joined to the bridge by a veth. Addresses exist
only in the lab subnets; no namespace has a default route (checked before any traffic), so nothing can leave.

:func:`run_scenario` writes into ``out_dir``: ``capture.pcap`` (from the capture factory; tcpdump by default),
``labels.json`` (:mod:`trafficlab.labels`), ``scenario.yaml`` (the scenario as run) and ``summary.json``; tool
logs go to ``out_dir/work``. Every process it starts is bounded in time, and all of them and every namespace are
gone when it returns or raises.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from trafficlab.attacks import ATTACK_TYPES, AttackContext
from trafficlab.capture import PCAP_NAME, Capture, CaptureFactory, tcpdump_capture
from trafficlab.labels import write_labels
from trafficlab.netns import Netns, NetnsError, Topology
from trafficlab.scenario import GATEWAY, Attack, Scenario
from trafficlab.services import GatewayServices, python_argv, python_env

log = logging.getLogger(__name__)

BRIDGE = "br0"
HOST_IF = "eth0"
DEVICE_GRACE_S = 15.0  # devices stop by themselves at the end; this long after it they are killed
ATTACK_GRACE_S = 17.0  # after its stop time an attack's `timeout` has killed it (arpspoof re-ARPs for ~10 s)
DRAIN_S = 0.5  # last packets in flight before the capture stops

Progress = Callable[[float, list[str]], None]


@dataclasses.dataclass
class Host:
    name: str
    role: str  # gateway | device | attacker
    ns: Netns
    ifname: str
    ipv4: str
    ipv6: str
    mac: str = ""

    def public(self) -> dict[str, str]:
        return {"role": self.role, "ipv4": self.ipv4, "ipv6": self.ipv6, "mac": self.mac, "netns": self.ns.name}


@dataclasses.dataclass
class _AttackRun:
    attack: Attack
    procs: list[subprocess.Popen]
    start_us: int
    deadline: float  # monotonic: kill after this
    stop_us: int | None = None


@dataclasses.dataclass
class RunResult:
    out_dir: Path
    summary: dict[str, Any]
    pids: list[int]  # every process the run started (all gone when it returns)
    netns_inodes: dict[str, int]  # namespace name -> inode of its network namespace (to find leftovers)


def addresses(scenario: Scenario) -> dict[str, tuple[str, str]]:
    """Name → (IPv4, IPv6) for the gateway, the devices (from host 10) and the attackers (from host 200)."""
    v4 = ipaddress.ip_network(scenario.network.ipv4)
    v6 = ipaddress.ip_network(scenario.network.ipv6)
    names = [d.name for d in scenario.devices]
    attackers = [a.name for a in scenario.attackers]
    big = v4.num_addresses >= 256
    index = {GATEWAY: 1}
    index.update({n: (10 if big else 2) + i for i, n in enumerate(names)})
    index.update({n: (200 if big else 2 + len(names)) + i for i, n in enumerate(attackers)})
    return {n: (str(v4.network_address + i), str(v6.network_address + i)) for n, i in index.items()}


def _sysctl(ns: Netns, *settings: str) -> None:
    ns.run(["sysctl", "-q", "-w", *settings])


def _one_segment(ns: Netns, ifname: str) -> None:
    """No segmentation offload on ``ifname``: every TCP packet leaves it at most one MSS long."""
    ns.run(["ip", "link", "set", "dev", ifname, "gso_max_segs", "1"])


def _check_isolated(hosts: list[Host]) -> None:
    """Refuse to run if any namespace could route a packet out of the lab."""
    for h in hosts:
        for family in ("-4", "-6"):
            routes = h.ns.run(["ip", family, "route", "show", "default"]).stdout.strip()
            if routes:
                raise RuntimeError(f"namespace {h.ns.name} has a default route ({routes}); refusing to run")


class Lab:
    """One run of a scenario (use :func:`run_scenario`)."""

    def __init__(
        self, scenario: Scenario, out_dir: Path, capture: CaptureFactory | None, progress: Progress | None
    ) -> None:
        self.scenario, self.out_dir, self.capture_factory, self.progress = scenario, out_dir, capture, progress
        self.work = out_dir / "work"
        self.hosts: dict[str, Host] = {}
        self.procs: list[subprocess.Popen] = []
        self.netns_inodes: dict[str, int] = {}

    # ---- topology
    def build(self, topo: Topology) -> None:
        sc = self.scenario
        addr = addresses(sc)
        v4len = ipaddress.ip_network(sc.network.ipv4).prefixlen
        v6len = ipaddress.ip_network(sc.network.ipv6).prefixlen
        gw = topo.namespace(GATEWAY)
        bridge = topo.bridge(gw, BRIDGE)
        _sysctl(gw, "net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0")
        self.hosts[GATEWAY] = Host(GATEWAY, "gateway", gw, bridge, *addr[GATEWAY])
        roles = [(d.name, "device") for d in sc.devices] + [(a.name, "attacker") for a in sc.attackers]
        for name, role in roles:
            ns = topo.namespace(name)
            port = f"v{name}"
            topo.link(gw, port, ns, HOST_IF)
            topo.attach(gw, port, bridge)
            self.hosts[name] = Host(name, role, ns, HOST_IF, *addr[name])
        # wire-sized frames: without this, veths hand TCP super-segments of up to 64 KiB (TSO/GSO) to the bridge,
        # and the capture shows packets no real Ethernet carries
        for h in self.hosts.values():
            _one_segment(h.ns, h.ifname)
            if h.role != "gateway":
                _one_segment(gw, f"v{h.name}")
        for h in self.hosts.values():
            topo.address(h.ns, h.ifname, f"{h.ipv4}/{v4len}")
            topo.address(h.ns, h.ifname, f"{h.ipv6}/{v6len}")
            link = json.loads(h.ns.run(["ip", "-j", "link", "show", h.ifname]).stdout)
            h.mac = link[0].get("address", "")
            self.netns_inodes[h.ns.name] = os.stat(f"/run/netns/{h.ns.name}").st_ino
        forwarders = {a.attacker for a in sc.attacks if a.type == "arp_spoof" and a.params.forward}
        for name in forwarders:  # a man in the middle passes the diverted packets on, without ICMP redirects
            _sysctl(self.hosts[name].ns, "net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0",
                    f"net.ipv4.conf.{HOST_IF}.send_redirects=0")  # fmt: skip
        _check_isolated(list(self.hosts.values()))

    # ---- processes
    def _popen(self, ns: Netns, argv: list[str], log_name: str, **kw: Any) -> subprocess.Popen:
        with open(self.work / log_name, "ab") as out:
            proc = ns.popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True, **kw)  # fmt: skip
        self.procs.append(proc)
        return proc

    def _start_devices(self) -> list[subprocess.Popen]:
        sc = self.scenario
        gw = self.hosts[GATEWAY]
        procs = []
        for i, d in enumerate(sc.devices):
            spec = {
                "name": d.name,
                "family": d.family,
                "gateway_ip": gw.ipv6 if d.family == 6 else gw.ipv4,
                "rates": d.rates.resolved(d.kind),
                "seconds": sc.duration_s,
                "seed": (sc.seed * 1_000_003 + i) % 2**32,
                "workdir": str(self.work),
                "telnet": d.telnet,
            }
            path = self.work / f"{d.name}.spec.json"
            path.write_text(json.dumps(spec, indent=1) + "\n")
            argv = python_argv("trafficlab.device", str(path))
            procs.append(self._popen(self.hosts[d.name].ns, argv, f"{d.name}.log", env=python_env()))
        return procs

    def _launch(self, attack: Attack, stop_at: float) -> _AttackRun:
        spec = ATTACK_TYPES[attack.type]
        attacker = self.hosts[attack.attacker or ""]
        workdir = self.work / f"attack-{attack.name}"
        workdir.mkdir(parents=True, exist_ok=True)
        spoof_ip = self.hosts[attack.params.spoof].ipv4 if attack.type == "arp_spoof" else ""
        ctx = AttackContext(
            attacker_ip=attacker.ipv4,
            ifname=attacker.ifname,
            target_ips=[self.hosts[t].ipv4 for t in attack.targets],
            gateway_ip=self.hosts[GATEWAY].ipv4,
            seconds=max(0.5, stop_at - time.monotonic()),
            workdir=workdir,
            spoof_ip=spoof_ip,
        )
        commands = spec.commands(attack.params, ctx)
        start_us = time.time_ns() // 1000
        procs = []
        for j, argv in enumerate(commands):
            (workdir / f"command{j}.txt").write_text(" ".join(argv) + "\n")
            procs.append(self._popen(attacker.ns, argv, f"attack-{attack.name}/output{j}.log", cwd=workdir))
        log.info("attack %s (%s) started: %d command(s)", attack.name, spec.tool, len(procs))
        return _AttackRun(attack, procs, start_us, stop_at + ATTACK_GRACE_S)

    # ---- the run
    def run(self, topo: Topology) -> dict[str, Any]:
        sc = self.scenario
        self.work.mkdir(parents=True, exist_ok=True)
        wall_start = time.time()
        self.build(topo)
        gw = self.hosts[GATEWAY]
        devices = {n: (h.ipv4, h.ipv6) for n, h in self.hosts.items() if h.role == "device"}
        services = GatewayServices(gw.ns, gw.ipv4, gw.ipv6, self.work / "gateway", sc.duration_s, devices)
        services.start()
        self.procs += list(services.procs.values())
        capture: Capture | None = None
        if self.capture_factory is not None:
            capture = self.capture_factory(gw.ns, gw.ifname, self.out_dir)
        t0_us = time.time_ns() // 1000
        t0 = time.monotonic()
        device_procs = self._start_devices()
        runs = self._play_attacks(t0)
        device_codes = self._wait_devices(device_procs, t0 + sc.duration_s + DEVICE_GRACE_S)
        time.sleep(DRAIN_S)
        stop_us = time.time_ns() // 1000
        capture_info = capture.stop() if capture is not None else {}
        service_codes = services.stop()
        labels = self._labels(runs, t0_us, stop_us)
        write_labels(self.out_dir / "labels.json", labels)
        return self._summary(labels, runs, device_codes, service_codes, capture_info, time.time() - wall_start)

    def _play_attacks(self, t0: float) -> list[_AttackRun]:
        sc = self.scenario
        pending = sorted(sc.attacks, key=lambda a: a.start_s)
        running: list[_AttackRun] = []
        done: list[_AttackRun] = []
        end = t0 + sc.duration_s
        next_progress = t0
        while True:
            now = time.monotonic()
            while pending and now >= t0 + pending[0].start_s:
                attack = pending.pop(0)
                running.append(self._launch(attack, t0 + attack.stop_s))
            for run in list(running):
                if all(p.poll() is not None for p in run.procs):
                    run.stop_us = time.time_ns() // 1000
                elif now > run.deadline:
                    log.warning("attack %s outlived its stop time; killing it", run.attack.name)
                    for p in run.procs:
                        _kill_group(p)
                    run.stop_us = time.time_ns() // 1000
                if run.stop_us is not None:
                    running.remove(run)
                    done.append(run)
                    log.info("attack %s stopped, exit codes %s", run.attack.name, [p.returncode for p in run.procs])
            if self.progress is not None and now >= next_progress:
                self.progress(now - t0, [r.attack.name for r in running])
                next_progress = now + 1.0
            if not pending and not running and now >= end:
                return done
            time.sleep(0.02)

    def _wait_devices(self, procs: list[subprocess.Popen], deadline: float) -> dict[str, int | None]:
        codes: dict[str, int | None] = {}
        for d, proc in zip(self.scenario.devices, procs, strict=True):
            try:
                codes[d.name] = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("device %s did not stop by itself; killing it", d.name)
                _kill_group(proc)
                codes[d.name] = None
        return codes

    def _labels(self, runs: list[_AttackRun], t0_us: int, stop_us: int) -> dict[str, Any]:
        sc = self.scenario
        attacks = []
        for run in sorted(runs, key=lambda r: r.start_us):
            a, spec = run.attack, ATTACK_TYPES[run.attack.type]
            attacker = self.hosts[a.attacker or ""]
            entry = {
                "name": a.name,
                "type": a.type,
                "tool": spec.tool,
                "category": spec.category,
                "sub_category": spec.sub_category,
                "in_iotid20": spec.in_iotid20,
                "attacker": attacker.name,
                "attacker_addresses": [attacker.ipv4, attacker.ipv6],
                "attacker_mac": attacker.mac,
                "victims": list(a.targets),
                "victim_addresses": [self.hosts[t].ipv4 for t in a.targets],
                "scheduled_start_us": t0_us + int(a.start_s * 1e6),
                "scheduled_stop_us": t0_us + int(a.stop_s * 1e6),
                "start_us": run.start_us,
                "stop_us": run.stop_us,
                "exit_codes": [p.returncode for p in run.procs],
                "params": dataclasses.asdict(a.params),
            }
            if a.type == "arp_spoof":
                entry["spoofed_address"] = self.hosts[a.params.spoof].ipv4
            attacks.append(entry)
        return {
            "scenario": sc.name,
            "seed": sc.seed,
            "clock": "µs since the Unix epoch, system clock (CLOCK_REALTIME), the clock of the pcap's timestamps",
            "start_us": t0_us,
            "stop_us": stop_us,
            "hosts": {n: h.public() for n, h in self.hosts.items()},
            "attacks": attacks,
        }

    def _summary(
        self,
        labels: dict[str, Any],
        runs: list[_AttackRun],
        device_codes: dict[str, int | None],
        service_codes: dict[str, int | None],
        capture_info: dict[str, Any],
        wall_s: float,
    ) -> dict[str, Any]:
        traffic = {}
        for d in self.scenario.devices:
            stats = self.work / f"{d.name}.stats.json"
            traffic[d.name] = json.loads(stats.read_text()) if stats.exists() else None
        pcap = self.out_dir / PCAP_NAME
        return {
            "scenario": self.scenario.name,
            "seed": self.scenario.seed,
            "duration_s": self.scenario.duration_s,
            "wall_s": round(wall_s, 2),
            "start_us": labels["start_us"],
            "stop_us": labels["stop_us"],
            "pcap": PCAP_NAME if pcap.exists() else None,
            "pcap_bytes": pcap.stat().st_size if pcap.exists() else None,
            "capture": capture_info,
            "hosts": labels["hosts"],
            "devices": {n: {"exit_code": device_codes.get(n), "traffic": traffic[n]} for n in traffic},
            "attacks": {
                r.attack.name: {
                    "type": r.attack.type,
                    "exit_codes": [p.returncode for p in r.procs],
                    "ran_s": round(((r.stop_us or r.start_us) - r.start_us) / 1e6, 3),
                }
                for r in runs
            },
            "services": service_codes,
        }


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL a process the lab started, and its children (it leads its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def run_scenario(
    scenario: Scenario,
    out_dir: Path,
    *,
    capture: CaptureFactory | None = tcpdump_capture,
    progress: Progress | None = None,
    prefix: str = "lab",
    scenario_text: str | None = None,
) -> RunResult:
    """Run ``scenario`` and write its outputs to ``out_dir`` (created; an existing capture is an error).

    ``capture`` starts the capture on the gateway bridge (``None``: no capture, e.g. when the caller captures
    from elsewhere); ``progress(elapsed_s, running_attacks)`` is called about once a second (an exception it
    raises aborts the run, which is then cleaned up like any other failure).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if (out_dir / PCAP_NAME).exists() or (out_dir / "labels.json").exists():
        raise FileExistsError(f"{out_dir} already holds a lab run; choose another --out")
    text = scenario_text if scenario_text is not None else yaml.safe_dump(_plain(scenario), sort_keys=False)
    (out_dir / "scenario.yaml").write_text(text)
    lab = Lab(scenario, out_dir, capture, progress)
    try:
        with Topology(prefix=prefix) as topo:
            summary = lab.run(topo)
    finally:
        for proc in lab.procs:  # the topology killed what was still in its namespaces; reap our children
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return RunResult(out_dir, summary, [p.pid for p in lab.procs], lab.netns_inodes)


def _plain(obj: Any) -> Any:
    """A scenario as plain data (the attack params are dataclasses after validation)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list):
        return [_plain(x) for x in obj]
    return obj


__all__ = ["Host", "Lab", "NetnsError", "RunResult", "addresses", "run_scenario"]
