"""The sd_notify protocol lives in :mod:`ids_core.systemd` (shared with the flow meter); this name stays importable."""

from ids_core.systemd import notify, ready, reloading, status, stopping, watchdog_interval, watchdog_ping

__all__ = ["notify", "ready", "reloading", "status", "stopping", "watchdog_interval", "watchdog_ping"]
