"""systemd integration without systemd (a bound ``$NOTIFY_SOCKET``), and SIGHUP reloads under load."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("agent_harness")

from agent_harness import NotifySocket, Stream, duplicates, sample_rows, wait_until  # noqa: E402

pytest_plugins = ["agent_harness"]


@pytest.fixture
def notify() -> Iterator[NotifySocket]:
    """A datagram socket in a short directory (``sun_path`` holds about 100 bytes)."""
    with tempfile.TemporaryDirectory(prefix="notify-") as d:
        sock = NotifySocket(Path(d) / "notify.sock")
        try:
            yield sock
        finally:
            sock.close()


@pytest.mark.timeout(60, func_only=True)
@pytest.mark.parametrize(
    ("watchdog_pid", "pings"),
    [("agent", True), ("absent", True), ("other", False)],
    ids=["WATCHDOG_PID=agent", "no-WATCHDOG_PID", "WATCHDOG_PID=other-process"],
)
def test_ready_watchdog_pings_and_stopping_on_sigterm(agents, notify, watchdog_pid, pings):
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"}
    if watchdog_pid == "other":
        env["WATCHDOG_PID"] = str(os.getpid())  # the watchdog is the test process's, not the agent's
    agent = agents.spawn(env=env, exec_with_own_pid=("WATCHDOG_PID",) if watchdog_pid == "agent" else ())
    if watchdog_pid == "agent":  # sh exported its own pid, then exec'd the agent in its place
        environ = Path(f"/proc/{agent.pid}/environ").read_bytes().split(b"\0")
        assert f"WATCHDOG_PID={agent.pid}".encode() in environ

    notify.wait("READY=1", context=agent.log)
    assert any(d.startswith("STATUS=serving model ") for _, d in notify.datagrams), notify.datagrams
    ready_at = time.monotonic()
    if pings:  # WatchdogSec=1 s: a ping every 0.5 s
        notify.wait("WATCHDOG=1", timeout=10, count=4, since=ready_at, context=agent.log)
        elapsed = time.monotonic() - ready_at
        assert notify.count("WATCHDOG=1", since=ready_at) <= elapsed / 0.5 + 2, "pinging faster than needed"
    else:
        time.sleep(2.0)  # four intervals: no ping may come for a watchdog that is not ours
        assert notify.count("WATCHDOG=1") == 0, notify.datagrams

    agent.signal(signal.SIGTERM)
    notify.wait("STOPPING=1", context=agent.log)
    assert agent.wait(20) == 0, agent.log()


@pytest.mark.timeout(90, func_only=True)
def test_sighup_reloads_mid_stream_and_every_flow_gets_exactly_one_verdict(
    agents, collector, broker, notify, sample_csv
):
    agent = agents.spawn(env={"NOTIFY_SOCKET": str(notify.path)})
    notify.wait("READY=1", context=agent.log)
    stream = Stream(sample_rows(sample_csv, 1000), broker.port, sensor="hup", rate=400).start()
    scored_at_signal = []
    for n, after in enumerate((250, 550), 1):
        wait_until(lambda a=after: len(collector.verdict_counts()) >= a, 30, f"{after} verdicts", agent.log)
        agent.signal(signal.SIGHUP)
        scored_at_signal.append(len(collector.verdict_counts()))
        agent.wait_log("model switched", count=n)
    stream.join(60)
    collector.wait_seqs(stream.seqs, 30, agent.log)
    assert max(scored_at_signal) < len(stream.seqs) - 100, "the reloads did not land mid-stream"
    counts = collector.verdict_counts("hup")
    assert not duplicates(counts), duplicates(counts)
    assert set(counts) | collector.deadletter_seqs("hup") == set(stream.seqs)
    assert notify.count("RELOADING=1") == 2 and notify.count("READY=1") == 3, notify.datagrams
    assert all("MONOTONIC_USEC=" in d for _, d in notify.datagrams if d.startswith("RELOADING=1"))

    # A broken config on SIGHUP is rejected; the running one keeps serving.
    agent.config_path.write_text("mqtt: [unclosed\n")
    agent.signal(signal.SIGHUP)
    agent.wait_log("reload: config rejected, keeping the running one")
    Stream(sample_rows(sample_csv, 20, include_inf=False), broker.port, sensor="after").run()
    collector.wait_seqs(range(20), 20, agent.log, sensor="after")
    assert agent.alive and agent.log_count("model switched") == 2
