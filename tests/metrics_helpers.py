"""Helpers for the Prometheus endpoint tests of the agent and the flow meter: scrape and parse with
prometheus_client's own parser, check Prometheus' naming conventions, find a process's listening sockets."""

from __future__ import annotations

import re
import socket
import urllib.request
from pathlib import Path
from typing import Any

NON_BASE_UNIT = re.compile(r"_(ms|milliseconds|microseconds|kilobytes|megabytes|minutes|hours)$")


def scrape(listen: str) -> dict[str, Any]:
    """name → metric family, parsed by prometheus_client's parser from ``GET http://<listen>/metrics``."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=10) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain"), r.headers
        text = r.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(families: dict[str, Any], sample: str, **labels: str) -> float:
    """The one sample called ``sample`` whose labels include ``labels``."""
    family = families[re.sub(r"_(total|bucket|sum|count)$", "", sample)]
    found = [s.value for s in family.samples if s.name == sample and labels.items() <= s.labels.items()]
    assert len(found) == 1, f"{sample}{labels}: {len(found)} samples in {family.samples}"
    return found[0]


def check_conventions(families: dict[str, Any], prefix: str) -> None:
    """Every name has ``prefix`` and is snake case; ``_total`` on counter samples only; base units; histograms of
    durations in ``_seconds``; info metrics (gauges ``*_info`` in the text format) have the value 1."""
    name_rule = re.compile(rf"^{prefix}[a-z][a-z0-9_]*$")
    assert families, "no metrics"
    for name, family in families.items():
        assert name_rule.match(name), name
        assert not name.endswith("_total"), f"{name}: the family name carries no _total (its samples do)"
        assert not NON_BASE_UNIT.search(name), f"{name}: not in base units"
        for s in family.samples:
            if family.type == "counter":
                assert s.name == name + "_total", s
            elif family.type == "histogram":
                assert s.name in (name + "_bucket", name + "_sum", name + "_count"), s
            else:
                assert family.type == "gauge" and s.name == name, (family.type, s)
                assert s.value == 1 or not name.endswith("_info"), s
        if "latency" in name or "inference" in name:
            assert family.type == "histogram" and name.endswith("_seconds"), name


def listening_inodes(pid: int) -> set[str]:
    """Inodes of the TCP sockets in LISTEN state that process ``pid`` holds."""
    own = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = str(fd.readlink()) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            own.add(target[8:-1])
    listening = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                listening.add(fields[9])
    return own & listening


def refused(host: str, port: int) -> bool:
    """True when nothing accepts TCP connections on ``host:port``."""
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((host, port)) != 0
