"""Model slots on the gateway and the one state file that says which slot is live.

Layout under ``<state_dir>/models``::

    state.json            active / previous slot, highest version ever installed, probation deadline
    slots/<version>/      an unpacked bundle (immutable once renamed into place)
    slots/.tmp-<version>  a slot being written (deleted at start-up if a crash left it)

Every change is a write of a complete new file followed by an atomic rename (with fsync of the file
and of its directory), so a crash or a power cut at any point leaves either the old state or the new
one: the agent then starts on the old model or on the new one, never on a half-written slot.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from firmware_bundle.fsutil import fsync_dir, write_atomic

log = logging.getLogger(__name__)

STATE_FILE = "state.json"


@dataclass
class SlotState:
    """What is installed: persisted in ``state.json``."""

    active: int | None = None  # bundle version serving (None: the factory model from model.dir)
    previous: int | None = None  # the slot to roll back to (None: the factory model)
    highest_installed: int = 0  # anti-rollback and anti-replay: a new bundle must be above this
    probation_until: float | None = None  # wall-clock end of the active slot's probation, if running
    active_sha256: str | None = None  # sha256 of the bundle file that is active


class SlotStore:
    """The slots directory and its state file."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.slots = self.root / "slots"
        self.slots.mkdir(parents=True, exist_ok=True)

    @property
    def state_path(self) -> Path:
        return self.root / STATE_FILE

    def load(self) -> SlotState:
        """The persisted state; a missing file is a fresh gateway. An unreadable one is an error."""
        if not self.state_path.exists():
            return SlotState()
        try:
            return SlotState(**json.loads(self.state_path.read_text()))
        except (ValueError, TypeError) as e:
            raise RuntimeError(f"{self.state_path} is unreadable ({e}); refusing to guess which model is live") from e

    def save(self, state: SlotState) -> None:
        write_atomic(self.state_path, (json.dumps(asdict(state), indent=1) + "\n").encode(), mode=0o600)

    def slot(self, version: int) -> Path:
        return self.slots / str(version)

    def write_slot(self, version: int, files: dict[str, bytes]) -> Path:
        """Write ``files`` into a fresh slot: a temporary directory, fsynced, then renamed into place."""
        final, tmp = self.slot(version), self.slots / f".tmp-{version}"
        for stale in (tmp, final):
            if stale.exists():
                shutil.rmtree(stale)
        tmp.mkdir(mode=0o700)
        for name, data in files.items():
            with open(tmp / name, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        fsync_dir(tmp)
        os.rename(tmp, final)
        fsync_dir(self.slots)
        return final

    def remove_slot(self, version: int) -> None:
        path = self.slot(version)
        if path.exists():
            shutil.rmtree(path)
            fsync_dir(self.slots)

    def cleanup(self, state: SlotState) -> list[str]:
        """Delete temporary slots and slots that are neither active nor previous (a crashed install)."""
        keep = {str(v) for v in (state.active, state.previous) if v is not None}
        removed = []
        for path in self.slots.iterdir():
            if path.name not in keep:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink()
                removed.append(path.name)
        for tmp in self.root.glob(f".{STATE_FILE}.*.tmp"):  # a write of the state file cut short
            tmp.unlink()
            removed.append(tmp.name)
        if removed:
            fsync_dir(self.slots)
            log.info("removed unused or unfinished model slots: %s", sorted(removed))
        return removed
