"""Flask extensions, created once here and bound to the app in create_app()."""
from __future__ import annotations

import os

from flask_smorest import Api
from marshmallow import Schema, fields
from flask_sock import Sock
from prometheus_flask_exporter import PrometheusMetrics
from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

class ErrorBodySchema(Schema):
    code = fields.String(required=True, metadata={"example": "validation_error"})
    message = fields.String(required=True)
    details = fields.Dict(required=True)


class ErrorSchema(Schema):
    """The one error shape of the API (app/errors.py), documented for every error response."""

    error = fields.Nested(ErrorBodySchema, required=True)


class ServiceApi(Api):
    ERROR_SCHEMA = ErrorSchema


api = ServiceApi()
sock = Sock()

# Under gunicorn with several workers each process counts on its own; multiprocess
# mode (PROMETHEUS_MULTIPROC_DIR, set by gunicorn.conf.py) merges them for /metrics.
_metrics_class = GunicornInternalPrometheusMetrics if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else PrometheusMetrics
metrics = _metrics_class.for_app_factory(export_defaults=False)  # app/http_metrics.py observes requests
