"""Prometheus metric families made at scrape time from a daemon's stats document (one source of truth: no counter
lives in the metrics code). The metrics themselves are listed in a catalogue shipped with each daemon's package
(``<package>/metrics.yaml``). Imported only when a daemon serves metrics (``metrics.listen``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from importlib import resources
from typing import Any

import yaml
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

# section → key → its fields (a help text alone, or [metric name, …, help])
Catalogue = Mapping[str, Mapping[str, tuple[str, ...]]]


def read_catalogue(package: str) -> Catalogue:
    """The metric catalogue ``metrics.yaml`` of ``package`` (package data), every entry a tuple of strings."""
    source = resources.files(package) / "metrics.yaml"
    doc = yaml.safe_load(source.read_text(encoding="utf-8"))
    try:
        return {
            section: {str(key): _fields(value) for key, value in entries.items()} for section, entries in doc.items()
        }
    except (AttributeError, TypeError) as e:
        raise ValueError(f"{source}: not a mapping of sections to mappings of string lists: {e}") from None


def _fields(value: Any) -> tuple[str, ...]:
    fields = (value,) if isinstance(value, str) else tuple(value)
    if not all(isinstance(f, str) for f in fields):
        raise TypeError(f"{value!r} holds a non-string")
    return fields


class StatsCollector:
    """Base of a daemon's custom collector (``prometheus_client`` only needs ``collect`` and ``describe``)."""

    def describe(self) -> list[Metric]:
        return []  # the families follow the stats: nothing is checked at registration

    def collect(self) -> Iterator[Metric]:
        raise NotImplementedError


def families(prefix: str, stats: Mapping[str, Any], catalogue: Catalogue) -> Iterator[Metric]:
    """One counter per entry of the catalogue's ``counters`` and one gauge per entry of its ``gauges``
    (key: [name, help]), the value ``stats[key]``."""
    for key, (name, doc) in catalogue.get("counters", {}).items():
        yield CounterMetricFamily(prefix + name, doc, value=stats[key])
    for key, (name, doc) in catalogue.get("gauges", {}).items():
        yield GaugeMetricFamily(prefix + name, doc, value=float(stats[key]))


def labelled(prefix: str, name: str, doc: str, label: str, counts: Mapping[str, int]) -> CounterMetricFamily:
    """A counter with one sample per ``label`` value (``counts``: value → count)."""
    family = CounterMetricFamily(prefix + name, doc, labels=[label])
    for value, n in sorted(counts.items()):
        family.add_metric([value], n)
    return family
