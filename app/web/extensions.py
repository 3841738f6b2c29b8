"""Flask extensions, created once here and bound to the app in create_app()."""
from __future__ import annotations

import os

from flask_smorest import Api
from marshmallow import Schema, fields
from flask_sock import Sock
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_flask_exporter import PrometheusMetrics
from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

class ErrorBodySchema(Schema):
    code = fields.String(required=True, metadata={"example": "validation_error"})
    message = fields.String(required=True)
    details = fields.Dict(required=True)


class ErrorSchema(Schema):
    """The one error shape of the API (app/web/errors.py), documented for every error response."""

    error = fields.Nested(ErrorBodySchema, required=True)


class ServiceApi(Api):
    ERROR_SCHEMA = ErrorSchema


api = ServiceApi()
sock = Sock()

# Under gunicorn with several workers each process counts on its own; multiprocess
# mode (PROMETHEUS_MULTIPROC_DIR, set by gunicorn.conf.py) merges them for /metrics.
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
_metrics_class = GunicornInternalPrometheusMetrics if MULTIPROCESS else PrometheusMetrics


class ServiceMetrics(_metrics_class):
    """/metrics plus the service's scrape-time collectors (figures counted by workers in Redis,
    live-state gauges). In multiprocess mode the exporter builds a fresh registry per scrape,
    so the collectors are added to that one each time rather than registered once."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.service_collectors: list = []

    def add_collectors(self, *collectors) -> None:
        for collector in collectors:
            if any(type(c) is type(collector) for c in self.service_collectors):
                continue  # create_app may run more than once in a process
            self.service_collectors.append(collector)
            if not MULTIPROCESS:
                self.registry.register(collector)

    def generate_metrics(self, accept_header=None, names=None):
        if not MULTIPROCESS:
            return super().generate_metrics(accept_header, names)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        for collector in self.service_collectors:
            registry.register(collector)
        if names:
            registry = registry.restricted_registry(names)
        generate, content_type = choose_encoder(accept_header)
        return generate(registry).decode("utf-8"), content_type


metrics = ServiceMetrics.for_app_factory(export_defaults=False)  # app/web/http_metrics.py observes requests
