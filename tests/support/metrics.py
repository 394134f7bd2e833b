"""Prometheus text exposition -> values."""
from __future__ import annotations

import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

LabelMatch = Callable[[dict[str, str]], bool]


def scrape(url: str, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode()


def metric_value(text: str, name: str, where: LabelMatch | None = None, **labels: str) -> float | None:
    """Sum of the samples called name whose labels include ``labels`` (and satisfy ``where``);
    None when there is no such sample."""
    values = [s.value for family in text_string_to_metric_families(text) for s in family.samples
              if s.name == name and labels.items() <= s.labels.items() and (where is None or where(s.labels))]
    return sum(values) if values else None


def metric_sum(text: str, name: str, where: LabelMatch | None = None, **labels: str) -> float:
    """Like metric_value, 0 when there is no such sample (counters not yet incremented)."""
    return metric_value(text, name, where, **labels) or 0.0
