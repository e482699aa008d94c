"""sd_notify against real AF_UNIX datagram sockets (a path in tmp_path and an abstract-namespace name)."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator

import pytest

from ids_core import systemd


@pytest.fixture
def receiver(tmp_path, monkeypatch) -> Iterator[socket.socket]:
    """A datagram socket bound in tmp_path and published as $NOTIFY_SOCKET."""
    path = tmp_path / "notify.sock"
    assert len(str(path)) < 108, "sun_path limit"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)  # only bounds a failure; a sent datagram is already queued
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


@pytest.fixture
def no_systemd(monkeypatch) -> None:
    for var in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (systemd.ready, b"READY=1"),
        (systemd.stopping, b"STOPPING=1"),
        (systemd.watchdog_ping, b"WATCHDOG=1"),
        (lambda: systemd.status("scoring 1200 flows/s"), b"STATUS=scoring 1200 flows/s"),
        (lambda: systemd.notify("READY=1\nSTATUS=up"), b"READY=1\nSTATUS=up"),
    ],
)
def test_sends_exact_datagram(receiver, call, expected):
    assert call() is True
    assert receiver.recv(4096) == expected


def test_status_is_one_line(receiver):
    assert systemd.status("model reloaded\nv3")
    assert receiver.recv(4096) == b"STATUS=model reloaded v3"


def test_reloading_sends_monotonic_usec(receiver):
    before = time.monotonic_ns() // 1000
    assert systemd.reloading()
    after = time.monotonic_ns() // 1000
    lines = receiver.recv(4096).decode().split("\n")
    assert lines[0] == "RELOADING=1"
    key, _, value = lines[1].partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after
    assert len(lines) == 2


def test_abstract_namespace_socket(monkeypatch):
    name = f"edge-ids-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.ready()
        assert sock.recv(4096) == b"READY=1"


def test_not_under_systemd_is_a_noop(no_systemd):
    assert systemd.notify("READY=1") is False
    assert systemd.ready() is False
    assert systemd.watchdog_ping() is False
    assert systemd.watchdog_interval() is None


@pytest.mark.parametrize("value", ["relative/notify.sock", "vsock:2:1234"])
def test_unsupported_address_is_a_noop(monkeypatch, value):
    monkeypatch.setenv("NOTIFY_SOCKET", value)
    assert systemd.ready() is False


def test_missing_socket_returns_false_and_logs(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert systemd.ready() is False
    assert "sd_notify" in caplog.text


def test_watchdog_interval_is_half_the_timeout(no_systemd, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert systemd.watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd.watchdog_interval() == 15.0


def test_watchdog_of_another_pid_is_not_ours(no_systemd, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert systemd.watchdog_interval() is None


@pytest.mark.parametrize(("usec", "pid"), [("0", None), ("", None), ("abc", None), ("1000", "x")])
def test_watchdog_interval_rejects_bad_values(no_systemd, monkeypatch, usec, pid):
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid is not None:
        monkeypatch.setenv("WATCHDOG_PID", pid)
    assert systemd.watchdog_interval() is None
