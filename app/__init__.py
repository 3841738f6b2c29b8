"""Ticker Service web application: REST API, WebSocket relay, metrics."""
from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from flask import Flask, g, request

from app.core.config import INSTANCE_DIR, Settings, configure, get_settings, require_credentials_key
from app.core.validation import raw_request_has_nul

log = logging.getLogger("app.access")

# Endpoints anyone may call: health, metrics, the API description, the dashboard,
# the broker's postback (which carries its own checksum) and Kite's login redirect (its sealed state).
PUBLIC_ENDPOINTS = {"health.health", "prometheus_metrics", "api-docs.openapi_json",
                    "api_docs.page", "api_docs.asset", "static", "postback.kite_postback",
                    "dashboard.index", "dashboard.dashboard_page", "kite_login.kite_callback"}


def create_app(settings: Settings | None = None, **overrides: Any) -> Flask:
    from app.web.auth import authenticate, parse_api_keys
    from app.web.jwt_auth import TokenVerifier
    from app.web import api_docs, http_metrics
    from app.web.errors import ApiError, register_error_handlers
    from app.web.extensions import api, metrics, sock
    from app.core.logs import configure_logging, correlation_id

    settings = configure(settings) if settings else get_settings()
    require_credentials_key()  # web and `flask` commands: a missing key stops them here, saying how to make one
    configure_logging(settings.log_level)

    app = Flask(__name__, instance_path=str(INSTANCE_DIR))
    app.config.update(
        SETTINGS=settings,
        MAX_CONTENT_LENGTH=settings.max_content_length,
        API_TITLE="Ticker Service",
        API_VERSION="1.0",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        # A client message past max_message_size closes its socket (1009) as soon as that much has arrived.
        SOCK_SERVER_OPTIONS={"ping_interval": 20, "max_message_size": settings.ws_max_message_bytes},
        # Either scheme will do; open endpoints say security: [].
        API_SPEC_OPTIONS={"security": [{"ApiKeyAuth": []}, {"BearerAuth": []}]},
    )
    app.config.update(overrides)
    app.extensions["api_keys"] = parse_api_keys(settings.api_keys)
    app.extensions["token_verifier"] = TokenVerifier.from_settings(settings)  # None: API keys only

    api.init_app(app)
    app.register_blueprint(api_docs.blp)  # /docs: Swagger UI, every file from this origin (no CDN)
    api.spec.components.security_scheme("ApiKeyAuth", {"type": "apiKey", "in": "header", "name": "X-API-Key"})
    api.spec.components.security_scheme("BearerAuth", {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "A JWT from your user service, accepted when the service has JWT_JWKS_URL (README, "
                       "Authentication). WebSocket URLs may carry ?access_token= or ?api_key= instead."})
    sock.init_app(app)
    metrics.init_app(app)
    _register_service_metrics(metrics)
    register_error_handlers(app)
    _register_routes(app, api)
    _register_cli(app)

    @app.before_request
    def _start_request():
        g.started = time.perf_counter()
        g.correlation_id = request.headers.get("X-Correlation-ID") or uuid.uuid4().hex
        correlation_id.set(g.correlation_id)
        if request.endpoint not in PUBLIC_ENDPOINTS and request.endpoint is not None:
            authenticate()  # first: a caller without a valid key learns nothing else
        if _has_nul():  # the one NUL policy (app.core.validation)
            raise ApiError(400, "NUL characters are not allowed in a request")
        g.admitted = True  # past the checks every route shares: the route answers from here on

    @app.after_request
    def _finish_request(response):
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        response.headers["X-Correlation-ID"] = g.get("correlation_id", "-")
        response.headers["X-Process-Time"] = f"{elapsed:.6f}"
        http_metrics.observe(request.method, request.endpoint, response.status_code, elapsed)
        if g.get("admitted"):
            http_metrics.count_operation(request.endpoint, response.status_code)
        log.info("request", extra={"method": request.method, "path": request.path,
                                   "status": response.status_code, "duration_ms": round(elapsed * 1000, 3)})
        return response

    return app


def _has_nul() -> bool:
    from app.web.json_input import read_body

    # The body is read whole here, chunked or not: 413 past MAX_CONTENT_LENGTH either way.
    return raw_request_has_nul(request.path, request.args.values(), read_body(request))


def _register_routes(app: Flask, api) -> None:
    from app.web.api import blueprints

    for blueprint in blueprints():
        api.register_blueprint(blueprint)


def _register_service_metrics(metrics) -> None:
    """Figures counted by workers in Redis and live-state gauges, read when /metrics is scraped."""
    from app.core import cluster_metrics
    from app.orders import metrics as order_metrics
    from app.batches import metrics as _batch_metrics  # noqa: F401  (defines its cluster metrics)
    from app.broker import margin_check as _margin_check  # noqa: F401  (likewise)
    from app.webhooks import delivery as _webhook_delivery  # noqa: F401  (likewise)
    from app.orders import rejections as _order_rejections  # noqa: F401  (likewise)

    metrics.add_collectors(cluster_metrics.ClusterCollector(), order_metrics.OrderStateCollector())


def _register_cli(app: Flask) -> None:
    from app.cli import accounts_cli, credentials_cli, db_cli, instruments_cli

    app.cli.add_command(accounts_cli)
    app.cli.add_command(credentials_cli)
    app.cli.add_command(db_cli)
    app.cli.add_command(instruments_cli)
