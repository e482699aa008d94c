"""The opt-in Prometheus endpoint both daemons share: the ``metrics:`` config section and its HTTP server.

``metrics.listen`` is ``host:port`` (``127.0.0.1:9711``, ``[::1]:9711``); empty (the default) means no listener, no
socket, and ``prometheus_client`` is never imported — it is imported here only when a listener starts, since not
every role installs it. The server serves one private ``CollectorRegistry`` holding the daemon's own collector (a
view of the counters its stats topic carries), never the library's global registry, on ``/metrics`` from a daemon
thread.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from ids_core.typedconfig import ConfigError, setting

log = logging.getLogger(__name__)


@dataclass
class MetricsSettings:
    listen: str = setting("", help="host:port of the Prometheus endpoint, e.g. 127.0.0.1:9711 ('' = off)")

    def validate(self) -> None:
        if self.listen:
            parse_listen(self.listen)


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` → (host, port); a clear ``ConfigError`` naming ``metrics.listen`` otherwise."""
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    bad = not sep or not host or any(c in host for c in " /[]") or not port.isdigit()
    if bad or not 1 <= int(port) <= 65535:
        raise ConfigError(f"metrics.listen: {text!r}: expected host:port, port 1 to 65535 (e.g. 127.0.0.1:9711)")
    return host, int(port)


class MetricsServer:
    """A running ``/metrics`` endpoint; :meth:`stop` closes its socket."""

    def __init__(self, server: Any, thread: threading.Thread, listen: str) -> None:
        self._server, self._thread, self.listen = server, thread, listen

    def stop(self, timeout: float = 5.0) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout)


def serve(listen: str, collector: Any) -> MetricsServer:
    """Serve ``collector`` (a ``prometheus_client`` custom collector) on ``listen`` in a private registry.

    Raises ``ConfigError`` when ``prometheus_client`` is missing and ``OSError`` when the address cannot be bound
    (in use, not local, refused by the sandbox): the daemons report either as a start-up error.
    """
    host, port = parse_listen(listen)
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError as e:
        raise ConfigError(
            "metrics.listen: the prometheus-client package is not installed (pip install prometheus-client)"
        ) from e
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    server, thread = start_http_server(port, addr=host, registry=registry)
    log.info("metrics on http://%s/metrics", listen)
    return MetricsServer(server, thread, listen)
