"""The daemons' state directory: where it is and how it is created (private, 0700, whatever the umask)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ids_core.typedconfig import ConfigError


def make_private_dir(path: str | Path) -> Path:
    """Create ``path`` and its missing parents as 0700 directories, whatever the umask.

    An existing ``path`` is made 0700 too when this user owns it (state that only its owner may read);
    existing parents are left as they are.
    """
    path = Path(path)
    for p in reversed([p for p in (path, *path.parents) if not p.exists()]):
        p.mkdir(mode=0o700)
        os.chmod(p, 0o700)  # mkdir's mode is reduced by the umask
    if not path.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(path))
    if path.stat().st_uid == os.geteuid():
        os.chmod(path, 0o700)
    return path


def state_path(state_dir: str) -> Path:
    """``state_dir``, else the first of systemd's ``$STATE_DIRECTORY``, else ``./state``."""
    return Path(state_dir or os.environ.get("STATE_DIRECTORY", "").split(":")[0] or "state")


def make_state_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) private to this user (0700); ConfigError naming state_dir if not."""
    try:
        make_private_dir(path)
    except OSError as e:
        raise ConfigError(f"state_dir: {path}: cannot create a private directory: {e.strerror or e}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"state_dir: {path}: not writable by this user")
    return path


class StateDirConfig:
    """For a config dataclass with a ``state_dir`` setting: where the state lives and how it is made."""

    state_dir: str

    @property
    def state_path(self) -> Path:
        return state_path(self.state_dir)

    def make_state_dir(self) -> Path:
        """Create the state directory (and missing parents) private to this user (0700), whatever the umask."""
        return make_state_dir(self.state_path)
