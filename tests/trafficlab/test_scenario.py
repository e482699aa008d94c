"""Scenario files: the shipped ones are valid, and every broken file gets an error that names the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from trafficlab.attacks import ATTACK_TYPES, MIRAI_CREDENTIALS, AttackContext
from trafficlab.scenario import (
    MAX_SCENARIO_BYTES,
    ScenarioError,
    load_scenario,
    parse_scenario,
    shipped_scenarios,
    shipped_text,
)

BASE = {
    "name": "t",
    "seed": 1,
    "duration_s": 30,
    "devices": [{"name": "cam", "kind": "camera"}, {"name": "thermo", "kind": "sensor", "telnet": False}],
    "attacks": [
        {"name": "scan", "type": "nmap_syn", "targets": ["cam"], "start_s": 2, "stop_s": 5},
        {"name": "flood", "type": "syn_flood", "targets": ["thermo"], "start_s": 6, "stop_s": 9},
    ],
}


def scenario_text(**changes: object) -> str:
    data = yaml.safe_load(yaml.safe_dump(BASE))
    for key, value in changes.items():
        node = data
        *parents, leaf = key.split("__")
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        if value is _DELETE:
            del node[int(leaf) if leaf.isdigit() else leaf]
        else:
            node[int(leaf) if leaf.isdigit() else leaf] = value
    return yaml.safe_dump(data)


_DELETE = object()


def error_of(text: str) -> str:
    with pytest.raises(ScenarioError) as e:
        parse_scenario(text, "s.yaml")
    return str(e.value)


def test_the_base_scenario_is_valid_and_defaults_are_filled_in():
    sc = parse_scenario(scenario_text())
    assert [d.name for d in sc.devices] == ["cam", "thermo"]
    assert sc.attackers[0].name == "attacker" and sc.attacks[0].attacker == "attacker"
    assert sc.attacks[1].params.rate_pps == 1000
    rates = sc.devices[0].rates.resolved("camera")
    assert rates["stream_kbps"] == 256 and rates["mqtt_interval_s"] == 0


@pytest.mark.parametrize("name", sorted(shipped_scenarios()))
def test_every_shipped_scenario_is_valid(name):
    sc = load_scenario(name)
    assert sc.name == name
    assert sc.attacks, "a shipped scenario without attacks labels nothing"
    assert parse_scenario(shipped_text(name)).duration_s == sc.duration_s


def test_shipped_scenarios_cover_every_attack_type_and_keep_their_budgets():
    ci, standard = load_scenario("ci"), load_scenario("standard")
    assert ci.duration_s <= 60, "the CI scenario runs in tests: keep it short"
    assert 600 <= standard.duration_s <= 900 + 120
    assert {a.type for a in ci.attacks} >= set(ATTACK_TYPES) - {"nmap_os"}
    assert {a.type for a in standard.attacks} == set(ATTACK_TYPES)
    first_attack = min(a.start_s for a in standard.attacks)
    assert first_attack >= 120, "site adaptation wants a benign-only learning period at the start"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"colour": "red"}, "unknown key(s) ['colour']"),
        ({"duration_s": "long"}, "duration_s: expected float"),
        ({"duration_s": 1}, "duration_s: 1.0 is out of range"),
        ({"devices": []}, "devices: at least one device"),
        ({"devices__0__kind": "toaster"}, "devices[0].kind: 'toaster' is not allowed"),
        ({"devices__0__rates": {"mqtt_interval": 1}}, "devices[0].rates: unknown key(s) ['mqtt_interval']"),
        ({"devices__0__rates": {"stream_kbps": -1}}, "devices[0].rates.stream_kbps: -1.0 is out of range"),
        ({"devices__0__family": 5}, "devices[0].family: 5 is not allowed"),
        ({"devices__1__name": "cam"}, "devices[1].name: 'cam' is used twice"),
        ({"devices__0__name": "Cam-1"}, "devices[0].name: 'Cam-1' must be"),
        ({"devices__0__name": "gateway"}, "devices[0].name: 'gateway' must be"),
        ({"attackers": [{"name": "cam"}]}, "attackers[0].name: 'cam' is used twice"),
        ({"network": {"ipv4": "8.8.8.0/24"}}, "network.ipv4: 8.8.8.0/24 must be a private subnet"),
        ({"network": {"ipv4": "10.0.0.0/29"}}, "network.ipv4: 10.0.0.0/29 must be a private subnet from /16 to /28"),
        ({"network": {"ipv6": "2001:db8::/64"}}, "network.ipv6: 2001:db8::/64 must be unique-local"),
        ({"network": {"ipv4": "banana"}}, "network.ipv4: 'banana' is not an IPv4 subnet"),
        ({"attacks__0__type": "teardrop"}, "attacks[0].type: 'teardrop' is not known"),
        ({"attacks__0__stop_s": 2}, "attacks[0].stop_s: 2.0 must be after start_s (2.0)"),
        ({"attacks__1__stop_s": 31}, "attacks[1].stop_s: 31.0 is after the end (duration_s 30.0)"),
        ({"attacks__0__targets": ["fridge"]}, "attacks[0].targets[0]: 'fridge' is not a device or 'gateway'"),
        ({"attacks__0__targets": []}, "attacks[0].targets: at least one"),
        ({"attacks__0__attacker": "eve"}, "attacks[0].attacker: 'eve' is not one of ['attacker']"),
        ({"attacks__1__name": "scan"}, "attacks[1].name: 'scan' is used twice"),
        ({"attacks__1__start_s": 4}, "attacks[1].start_s: 'flood' starts at 4.0 s while 'scan'"),
        ({"attacks__1__params": {"rate_pps": 10**6}}, "attacks[1].params.rate_pps: 1000000 is out of range"),
        ({"attacks__1__params": {"flood": True}}, "attacks[1].params: unknown key(s) ['flood']"),
        ({"attacks__1__params": [1, 2]}, "attacks[1].params: expected a mapping"),
        (
            {"attacks__1__type": "telnet_bruteforce"},
            "attacks[1].targets[0]: 'thermo' runs no telnet service",
        ),
        (
            {"attacks__1__type": "arp_spoof", "attacks__1__params": {"spoof": "thermo"}},
            "attacks[1].params.spoof: 'thermo' is also a target",
        ),
        (
            {"attacks__1__type": "arp_spoof", "attacks__1__stop_s": 7},
            "attacks[1].stop_s: ARP spoofing needs at least 3 s",
        ),
    ],
)
def test_a_broken_scenario_is_refused_with_the_key_named(changes, expected):
    message = error_of(scenario_text(**changes))
    assert message.startswith("s.yaml: ")
    assert expected in message


def test_attacks_overlap_only_on_different_attackers():
    data = yaml.safe_load(scenario_text(attackers=[{"name": "eve"}, {"name": "mal"}], attacks__1__start_s=3))
    assert "starts at 3.0 s while 'scan' of the same attacker 'eve'" in error_of(yaml.safe_dump(data))
    data["attacks"][1]["attacker"] = "mal"
    sc = parse_scenario(yaml.safe_dump(data))
    assert [a.attacker for a in sc.attacks] == ["eve", "mal"]


def test_bad_files_are_refused_before_parsing(tmp_path: Path):
    assert "not valid YAML" in error_of("devices: [")
    assert "expected a mapping" in error_of("- a\n- b\n")
    big = tmp_path / "big.yaml"
    big.write_text("#" * (MAX_SCENARIO_BYTES + 1))
    with pytest.raises(ScenarioError, match="larger than"):
        load_scenario(big)
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.yaml")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00name")
    with pytest.raises(ScenarioError, match="not UTF-8"):
        load_scenario(binary)


def test_attack_commands_are_bounded_in_count_and_time(tmp_path: Path):
    sc = parse_scenario(
        scenario_text(
            attacks=[
                {"name": "f", "type": "udp_flood", "targets": ["cam", "thermo"], "start_s": 1, "stop_s": 4,
                 "params": {"rate_pps": 2000}},
                {"name": "g", "type": "telnet_bruteforce", "targets": ["cam"], "start_s": 5, "stop_s": 9,
                 "params": {"attempts": 7}},
            ]
        )
    )  # fmt: skip
    ctx = AttackContext("10.77.0.200", "eth0", ["10.77.0.10", "10.77.0.11"], "10.77.0.1", 3.0, tmp_path)
    flood = ATTACK_TYPES["udp_flood"].commands(sc.attacks[0].params, ctx)
    assert len(flood) == 2
    for argv in flood:
        assert argv[:6] == ["timeout", "-k", "2", "-s", "INT", "3.00"]
        assert argv[argv.index("-c") + 1] == "6000" and argv[argv.index("-i") + 1] == "u500"
        assert "--flood" not in argv
    ctx.target_ips = ["10.77.0.11"]
    (hydra,) = ATTACK_TYPES["telnet_bruteforce"].commands(sc.attacks[1].params, ctx)
    assert hydra[0] == "timeout" and "hydra" in hydra
    assert len((tmp_path / "mirai_credentials.txt").read_text().splitlines()) == 7
    assert ("root", "xc3511") in MIRAI_CREDENTIALS and len(MIRAI_CREDENTIALS) > 50


def test_the_cli_lists_checks_and_refuses_with_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from trafficlab.cli import main

    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert listed.startswith("ci ") and "\nstandard " in listed
    assert main(["check", "standard"]) == 0
    assert "standard: ok (7 devices, 11 attacks, 900 s)" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(scenario_text(attacks__0__targets=["fridge"]))
    assert main(["check", str(bad)]) == 2
    assert f"{bad}: attacks[0].targets[0]: 'fridge' is not a device" in capsys.readouterr().err
    assert main(["run", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()
