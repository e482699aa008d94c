"""The parent's side of the children: a long-lived worker speaking JSON lines, one-shot children, their environment."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from benchlib import JsonLines
from inference_plan import REPO, SCRIPT


class WorkerError(RuntimeError):
    """A worker child died or answered something unexpected."""


class Worker(JsonLines):
    """A long-lived worker child speaking one JSON line per request."""

    def __init__(self, python: str, runtime: str, threads: int, workdir: Path, quick: bool) -> None:
        name = f"{runtime}-t{threads}"
        log_path = workdir / f"worker-{name}.log"
        self._log = log_path.open("w")
        cmd = [python, str(SCRIPT), "--child", "worker", "--workdir", str(workdir)]
        cmd += ["--runtime", runtime, "--threads", str(threads)] + (["--quick"] if quick else [])
        proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, cwd=REPO, env=child_env()
        )
        super().__init__(proc, name, log_path, WorkerError)
        self.ready = self.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(WorkerError, BrokenPipeError, json.JSONDecodeError):
                self.ask(op="quit")
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


def child_env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "2"}


def run_child(python: str, workdir: Path, child: str, *extra: str, timeout: float = 3600) -> dict[str, Any]:
    cmd = [python, str(SCRIPT), "--child", child, "--workdir", str(workdir), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=child_env(), timeout=timeout, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise WorkerError(f"{child} child failed with status {proc.returncode}:\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
