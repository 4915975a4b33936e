"""Prometheus histograms read off a /metrics exposition: quantiles as PromQL computes
them, summed over processes, or counted between two scrapes."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence


def histogram_quantile(text: str, name: str, q: float) -> float | None:
    """Quantile ``q`` of a Prometheus histogram in exposition ``text``, as PromQL computes it."""
    buckets = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket"):
            le = re.search(r'le="([^"]+)"', line)[1]  # type: ignore[index]
            buckets.append(
                (float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1]))
            )
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    previous_le, previous_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return previous_le
            return previous_le + (le - previous_le) * (rank - previous_count) / max(
                count - previous_count, 1e-9
            )
        previous_le, previous_count = le, count
    return None


def merged_histogram(texts: Sequence[str], name: str) -> str:
    """The exposition of ``name``'s buckets summed over several processes' scrapes."""
    summed: Counter[str] = Counter()
    for text in texts:
        summed.update(_buckets(text, name))
    return _exposition(summed)


def histogram_delta(before: str, after: str, name: str) -> str:
    """The exposition of ``name``'s buckets counted between two scrapes."""
    old, new = _buckets(before, name), _buckets(after, name)
    return _exposition({series: value - old.get(series, 0.0) for series, value in new.items()})


def _buckets(text: str, name: str) -> dict[str, float]:
    """``name``'s bucket series in an exposition ``text``, with their counts."""
    buckets: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket"):
            series, value = line.rsplit(" ", 1)
            buckets[series] = float(value)
    return buckets


def _exposition(buckets: Mapping[str, float]) -> str:
    return "\n".join(f"{series} {value}" for series, value in buckets.items())
