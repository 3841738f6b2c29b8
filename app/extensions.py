"""Flask extensions, created once here and bound to the app in create_app()."""
from __future__ import annotations

import os

from flask_smorest import Api
from flask_sock import Sock
from prometheus_flask_exporter import NO_PREFIX, PrometheusMetrics
from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

api = Api()
sock = Sock()

# Under gunicorn with several workers each process counts on its own; multiprocess
# mode (PROMETHEUS_MULTIPROC_DIR, set by gunicorn.conf.py) merges them for /metrics.
_metrics_class = GunicornInternalPrometheusMetrics if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else PrometheusMetrics
metrics = _metrics_class.for_app_factory(defaults_prefix=NO_PREFIX, group_by="url_rule",
                                         excluded_paths=["^/metrics$", "^/static/"])
