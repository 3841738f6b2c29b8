"""Metrics counted where no scraper reaches (Celery prefork children), exported by the web process.

A worker increments a hash in Redis; the web app's `/metrics` reads every
registered metric at scrape time (ClusterCollector), so one scrape shows the
whole cluster. Recording never raises: a metric must not fail an order.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

from app.core.redis_client import get_redis

log = logging.getLogger(__name__)
KEY = "metrics:cluster:{name}"
_metrics: list["ClusterCounter | ClusterHistogram"] = []


def _decoded(mapping: dict) -> dict[str, str]:
    return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in mapping.items()}


def _safely(write) -> None:
    try:
        write(get_redis())
    except Exception:
        log.debug("cluster metric not recorded", exc_info=True)


class ClusterCounter:
    """A counter in a Redis hash, one field per series (its label values as a JSON list).

    `series`: the label values known in advance (one tuple per series, in `labelnames` order),
    exported at 0 until first counted, so a fresh deployment has them before any event (dashboards
    and alert rules need a series to compute increase() on). An unlabelled counter has its one series."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...] = (),
                 series: Iterable[tuple[str, ...]] = ()) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self.key = KEY.format(name=name)
        known = [tuple(values) for values in series] if self.labelnames else [()]
        if any(len(values) != len(self.labelnames) for values in known):
            raise ValueError(f"{name}: every known series needs a value for each of {self.labelnames}")
        self._zeros = {self._field(values): 0.0 for values in known}
        _metrics.append(self)

    @staticmethod
    def _field(values) -> str:
        return json.dumps([str(v) for v in values])

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        field = self._field(labels[n] for n in self.labelnames)
        _safely(lambda redis: redis.hincrbyfloat(self.key, field, amount))

    def collect(self, redis):
        family = CounterMetricFamily(self.name.removesuffix("_total"), self.documentation, labels=self.labelnames)
        values = {**self._zeros, **{field: float(v) for field, v in _decoded(redis.hgetall(self.key)).items()}}
        for field, value in sorted(values.items()):
            family.add_metric(json.loads(field), value)
        yield family


class ClusterHistogram:
    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]) -> None:
        self.name, self.documentation, self.buckets = name, documentation, tuple(buckets)
        self.key = KEY.format(name=name)
        _metrics.append(self)

    def observe(self, value: float) -> None:
        def write(redis):
            pipe = redis.pipeline(transaction=False)
            for bound in self.buckets:
                if value <= bound:
                    pipe.hincrby(self.key, f"le:{bound}", 1)
            pipe.hincrby(self.key, "count", 1)
            pipe.hincrbyfloat(self.key, "sum", value)
            pipe.execute()
        _safely(write)

    def collect(self, redis):
        stored = _decoded(redis.hgetall(self.key))
        buckets = [(str(b), int(stored.get(f"le:{b}", 0))) for b in self.buckets]
        buckets.append(("+Inf", int(stored.get("count", 0))))
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], buckets, float(stored.get("sum", 0.0)))
        yield family


class ClusterCollector:
    """Reads every cluster metric from Redis when /metrics is scraped."""

    def describe(self):
        return []

    def collect(self):
        try:
            redis = get_redis()
            for metric in list(_metrics):
                yield from metric.collect(redis)
        except Exception:
            log.debug("cluster metrics unavailable", exc_info=True)
