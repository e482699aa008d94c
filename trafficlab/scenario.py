"""Lab scenarios: YAML files naming the devices, their traffic rates, the attacks with start/stop, and a seed.

A scenario is checked completely before anything runs; every error names its key (``attacks[2].stop_s``).
Shipped scenarios live in ``trafficlab/scenarios/*.yaml`` (``iotids-lab list``); users pass their own path.
See ``trafficlab/scenarios/standard.yaml`` for a commented example of every key.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ids_core.typedconfig import ConfigError, build, setting

MAX_SCENARIO_BYTES = 256 * 1024  # a scenario is a short hand-written file; refuse anything bigger before parsing
MAX_DURATION_S = 4 * 3600
MAX_DEVICES = 32
MAX_ATTACKS = 64
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,11}$")  # a namespace role and, prefixed with "v", a veth name
GATEWAY = "gateway"


class ScenarioError(ConfigError):
    """A scenario file that cannot be read or breaks a rule; the message names the file and the key."""


@dataclasses.dataclass
class Rates:
    """How often a device talks; ``null`` takes its kind's default, 0 turns that traffic off."""

    mqtt_interval_s: float | None = setting(None, min=0, max=3600, help="seconds between MQTT telemetry messages")
    http_interval_s: float | None = setting(None, min=0, max=3600, help="seconds between HTTP polls (curl)")
    stream_kbps: float | None = setting(None, min=0, max=8000, help="camera-like HTTP upload bitrate (curl -T)")
    dns_interval_s: float | None = setting(None, min=0, max=3600, help="seconds between DNS lookups (dig)")
    ntp_interval_s: float | None = setting(None, min=0, max=3600, help="seconds between NTP-like UDP queries")
    tls_interval_s: float | None = setting(None, min=0, max=3600, help="seconds between TLS sessions (s_client)")

    def resolved(self, kind: str) -> dict[str, float]:
        """The rates with the kind's defaults filled in (0 = off)."""
        out = dict(KIND_DEFAULTS[kind])
        for key, value in dataclasses.asdict(self).items():
            if value is not None:
                out[key] = float(value)
        return out


# What each kind of device does unless its rates say otherwise (0 = not at all).
KIND_DEFAULTS: dict[str, dict[str, float]] = {
    "sensor": {"mqtt_interval_s": 2.0, "http_interval_s": 0, "stream_kbps": 0, "dns_interval_s": 30.0,
               "ntp_interval_s": 60.0, "tls_interval_s": 0},
    "camera": {"mqtt_interval_s": 0, "http_interval_s": 10.0, "stream_kbps": 256.0, "dns_interval_s": 30.0,
               "ntp_interval_s": 60.0, "tls_interval_s": 30.0},
    "plug": {"mqtt_interval_s": 10.0, "http_interval_s": 5.0, "stream_kbps": 0, "dns_interval_s": 60.0,
             "ntp_interval_s": 120.0, "tls_interval_s": 60.0},
    "hub": {"mqtt_interval_s": 5.0, "http_interval_s": 15.0, "stream_kbps": 0, "dns_interval_s": 20.0,
            "ntp_interval_s": 60.0, "tls_interval_s": 20.0},
}  # fmt: skip


@dataclasses.dataclass
class Device:
    """An IoT device: its own namespace, one interface on the gateway's bridge."""

    name: str = setting(help="1-12 characters: a-z, 0-9, _ (starts with a letter)")
    kind: str = setting("sensor", choices=tuple(KIND_DEFAULTS), help="traffic mix (see KIND_DEFAULTS)")
    rates: Rates = setting(factory=Rates, help="overrides of the kind's rates")
    family: int = setting(4, choices=(4, 6), help="IP version the device's own traffic uses")
    telnet: bool = setting(True, help="run a telnet-like login service on port 23 (brute-force and scan target)")


@dataclasses.dataclass
class Attacker:
    name: str = setting(help="1-12 characters: a-z, 0-9, _ (starts with a letter)")


@dataclasses.dataclass
class Attack:
    """One attack run from an attacker namespace between ``start_s`` and ``stop_s`` (seconds after the start)."""

    name: str = setting(help="unique label of this attack")
    type: str = setting(help="attack type (see trafficlab.attacks.ATTACK_TYPES)")
    targets: list[str] = setting(factory=list, help="device names or 'gateway'")
    start_s: float = setting(0.0, min=0)
    stop_s: float = setting(0.0, min=0)
    attacker: str | None = setting(None, help="attacker name (default: the first attacker)")
    params: Any = setting(factory=dict, help="type-specific settings (see trafficlab.attacks)")


@dataclasses.dataclass
class Network:
    ipv4: str = setting("10.77.0.0/24", help="lab IPv4 subnet (private, /16 to /28)")
    ipv6: str = setting("fd77::/64", help="lab IPv6 subnet (unique-local fc00::/7, /64 to /120)")


@dataclasses.dataclass
class Scenario:
    """A whole lab run."""

    name: str = setting(help="scenario name")
    description: str = setting("", help="free text")
    seed: int = setting(0, min=0, max=2**32 - 1, help="seeds every random choice (jitter, names, payloads)")
    duration_s: float = setting(60.0, min=5, max=MAX_DURATION_S, help="benign traffic runs from 0 to duration_s")
    network: Network = setting(factory=Network)
    devices: list[Device] = setting(factory=list)
    attackers: list[Attacker] = setting(factory=lambda: [Attacker(name="attacker")])
    attacks: list[Attack] = setting(factory=list)

    def validate(self) -> None:
        _check_network(self.network)
        if not self.devices:
            raise ScenarioError("devices: at least one device is needed")
        if len(self.devices) > MAX_DEVICES:
            raise ScenarioError(f"devices: {len(self.devices)} devices; at most {MAX_DEVICES}")
        if not self.attackers:
            raise ScenarioError("attackers: at least one attacker is needed (the default is one called 'attacker')")
        if len(self.attacks) > MAX_ATTACKS:
            raise ScenarioError(f"attacks: {len(self.attacks)} attacks; at most {MAX_ATTACKS}")
        hosts = [(f"devices[{i}].name", d.name) for i, d in enumerate(self.devices)]
        hosts += [(f"attackers[{i}].name", a.name) for i, a in enumerate(self.attackers)]
        seen: set[str] = set()
        for key, name in hosts:
            if not _NAME_RE.match(name) or name == GATEWAY:
                raise ScenarioError(
                    f"{key}: {name!r} must be 1-12 of a-z, 0-9, _ starting with a letter, not 'gateway'"
                )
            if name in seen:
                raise ScenarioError(f"{key}: {name!r} is used twice (device and attacker names must be unique)")
            seen.add(name)
        if len(hosts) + 2 > _subnet_hosts(self.network.ipv4):
            raise ScenarioError(f"network.ipv4: {self.network.ipv4} is too small for {len(hosts)} hosts + gateway")
        self._validate_attacks()

    def _validate_attacks(self) -> None:
        from trafficlab.attacks import ATTACK_TYPES  # attacks imports this module

        devices = {d.name for d in self.devices}
        attackers = [a.name for a in self.attackers]
        names: set[str] = set()
        for i, attack in enumerate(self.attacks):
            key = f"attacks[{i}]"
            if attack.name in names:
                raise ScenarioError(f"{key}.name: {attack.name!r} is used twice")
            names.add(attack.name)
            if attack.type not in ATTACK_TYPES:
                raise ScenarioError(f"{key}.type: {attack.type!r} is not known; known: {', '.join(ATTACK_TYPES)}")
            if attack.stop_s <= attack.start_s:
                raise ScenarioError(f"{key}.stop_s: {attack.stop_s} must be after start_s ({attack.start_s})")
            if attack.stop_s > self.duration_s:
                raise ScenarioError(f"{key}.stop_s: {attack.stop_s} is after the end (duration_s {self.duration_s})")
            if attack.attacker is None:
                attack.attacker = attackers[0]
            elif attack.attacker not in attackers:
                raise ScenarioError(f"{key}.attacker: {attack.attacker!r} is not one of {attackers}")
            if not attack.targets:
                raise ScenarioError(f"{key}.targets: at least one device name (or 'gateway') is needed")
            for j, target in enumerate(attack.targets):
                if target != GATEWAY and target not in devices:
                    raise ScenarioError(f"{key}.targets[{j}]: {target!r} is not a device or 'gateway'")
            spec = ATTACK_TYPES[attack.type]
            try:
                attack.params = build(spec.params, attack.params, f"{key}.params")
            except ConfigError as e:
                raise ScenarioError(str(e)) from e
            spec.check(self, attack, key)
        # one attacker, one attack at a time: its address + a time window must name exactly one attack
        for a in attackers:
            own = sorted((x for x in self.attacks if x.attacker == a), key=lambda x: x.start_s)
            for prev, nxt in itertools.pairwise(own):
                if nxt.start_s < prev.stop_s:
                    i = self.attacks.index(nxt)
                    raise ScenarioError(
                        f"attacks[{i}].start_s: {nxt.name!r} starts at {nxt.start_s} s while {prev.name!r} of the "
                        f"same attacker {a!r} runs until {prev.stop_s} s; use another attacker or move it"
                    )

    def device(self, name: str) -> Device:
        return next(d for d in self.devices if d.name == name)


def _subnet_hosts(cidr: str) -> int:
    return ipaddress.ip_network(cidr).num_addresses - 2


def _check_network(net: Network) -> None:
    try:
        v4 = ipaddress.IPv4Network(net.ipv4)
    except ValueError as e:
        raise ScenarioError(f"network.ipv4: {net.ipv4!r} is not an IPv4 subnet: {e}") from e
    if not v4.is_private or not 16 <= v4.prefixlen <= 28:
        raise ScenarioError(f"network.ipv4: {net.ipv4} must be a private subnet from /16 to /28")
    try:
        v6 = ipaddress.IPv6Network(net.ipv6)
    except ValueError as e:
        raise ScenarioError(f"network.ipv6: {net.ipv6!r} is not an IPv6 subnet: {e}") from e
    if not v6.subnet_of(ipaddress.IPv6Network("fc00::/7")) or not 64 <= v6.prefixlen <= 120:
        raise ScenarioError(f"network.ipv6: {net.ipv6} must be unique-local (fc00::/7) from /64 to /120")


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """Build a checked :class:`Scenario` from YAML text; errors start with ``source``."""
    if len(text.encode()) > MAX_SCENARIO_BYTES:
        raise ScenarioError(f"{source}: larger than {MAX_SCENARIO_BYTES} bytes")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ScenarioError(f"{source}: not valid YAML: {e}") from e
    try:
        return build(Scenario, data)
    except ConfigError as e:
        raise ScenarioError(f"{source}: {e}") from e


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario file, or a shipped scenario by its name (``ci``, ``standard``)."""
    p = Path(path)
    if not p.exists() and str(path) in shipped_scenarios():
        return parse_scenario(shipped_text(str(path)), f"shipped scenario {path!r}")
    try:
        size = p.stat().st_size
        if size > MAX_SCENARIO_BYTES:
            raise ScenarioError(f"{p}: {size} bytes, larger than {MAX_SCENARIO_BYTES}")
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ScenarioError(f"{p}: cannot read: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ScenarioError(f"{p}: not UTF-8 text: {e}") from e
    return parse_scenario(text, str(p))


def shipped_scenarios() -> dict[str, str]:
    """Name → first description line of every scenario shipped in ``trafficlab/scenarios``."""
    out = {}
    for entry in sorted(resources.files("trafficlab").joinpath("scenarios").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            data = yaml.safe_load(entry.read_text(encoding="utf-8")) or {}
            out[entry.name.removesuffix(".yaml")] = str(data.get("description", "")).strip().splitlines()[0:1]
    return {k: (v[0] if v else "") for k, v in out.items()}


def shipped_text(name: str) -> str:
    """The YAML text of a shipped scenario."""
    return resources.files("trafficlab").joinpath("scenarios", f"{name}.yaml").read_text(encoding="utf-8")
