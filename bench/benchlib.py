"""What the benchmark scripts share (stdlib only: the tflite-runtime worker runs in its own venv).

The scripts run as ``python bench/<name>.py``, so this module is importable as ``benchlib`` beside them.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
from pathlib import Path
from typing import IO, Any


def vm(pid: int | str = "self", keys: tuple[str, ...] = ("VmHWM", "VmRSS")) -> dict[str, float]:
    """Fields of ``/proc/<pid>/status`` in MB: peak and current resident set size by default."""
    status = Path(f"/proc/{pid}/status").read_text()
    return {k: int(re.search(rf"^{k}:\s+(\d+) kB", status, re.M).group(1)) / 1024 for k in keys}


def tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log ("" when it cannot be read)."""
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


class JsonLines:
    """A child process that answers each JSON request line on its stdin with one JSON line on its stdout."""

    def __init__(self, proc: subprocess.Popen, name: str, log: Path, error: type[Exception] = RuntimeError) -> None:
        self.proc, self.name, self.log, self.error = proc, name, log, error

    def read(self) -> dict[str, Any]:
        out: IO[str] | None = self.proc.stdout
        assert out is not None
        line = out.readline()
        if not line:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)
            raise self.error(f"{self.name} exited with status {self.proc.returncode}:\n{tail(self.log)}")
        return json.loads(line)

    def ask(self, **req: Any) -> dict[str, Any]:
        stdin: IO[str] | None = self.proc.stdin
        assert stdin is not None
        stdin.write(json.dumps(req) + "\n")
        stdin.flush()
        return self.read()
