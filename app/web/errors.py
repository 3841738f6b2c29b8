"""One JSON error shape for every failure: {"error": {"code", "message", "details"}}."""
from __future__ import annotations

import logging
import math
from typing import Any, Callable

from flask import Flask, jsonify, request
from marshmallow import ValidationError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    499: "client_closed_request",  # nginx's status: the client left before it could be answered
    500: "internal_error",
    503: "service_unavailable",
}


class ApiError(Exception):
    """Raised by routes and services to answer with a given status and code."""

    def __init__(self, status: int, message: str, code: str | None = None,
                 details: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "error")
        self.message = message
        self.details = details or {}
        self.headers = headers or {}  # e.g. Retry-After with a 429


def error_response(status: int, message: str, code: str | None = None,
                   details: dict[str, Any] | None = None):
    body = {"error": {"code": code or CODES.get(status, "error"), "message": message,
                      "details": details or {}}}
    return jsonify(body), status


def _http_exception(exc: HTTPException):
    status = exc.code or 500
    details: dict[str, Any] = {}
    # flask-smorest / webargs put marshmallow messages in exc.data.
    data = getattr(exc, "data", None) or {}
    messages = data.get("messages") if isinstance(data, dict) else None
    if messages:
        # webargs nests by location ({"json": {...}}); clients want the fields.
        details = messages if isinstance(messages, dict) else {"_schema": messages}
        if len(details) == 1 and next(iter(details)) in ("json", "query", "path", "form", "headers"):
            details = next(iter(details.values()))
        if len(details) == 1 and "_schema" in details and isinstance(details["_schema"], list):
            details = {"_schema": details["_schema"]}
        if status == 400 and "Invalid JSON body." in str(details):
            return error_response(400, "request body is not valid JSON", "bad_request")
        message = _summarise(details)
        return error_response(status, message, details=details)
    description = exc.description if isinstance(exc.description, str) else exc.name
    if status == 413:
        description = "request body too large"
    return error_response(status, description)


def _absolute_login_url(details: dict) -> dict:
    """The login URL of a session_expired answer, on the host the client reached us by."""
    from flask import request

    return {**details, "login_url": request.url_root.rstrip("/") + details["login_url"]}


def _summarise(details: dict[str, Any]) -> str:
    parts = []
    for field, problems in details.items():
        text = problems[0] if isinstance(problems, list) and problems else problems
        if isinstance(text, dict):
            text = _summarise(text)
        parts.append(f"{field}: {text}")
    return "; ".join(parts) or "invalid request"


def _failed_handshake(exc: Exception):
    """The answer to a WebSocket upgrade that cannot go on, or None for any other failure: the client
    left during the handshake (its socket closed or reset: 499, which the 5xx error rate leaves out,
    for nothing went wrong here), or sent a handshake without what RFC 6455 requires (400)."""
    from flask import request
    from wsproto.utilities import RemoteProtocolError

    if request.environ.get("HTTP_UPGRADE", "").lower() != "websocket":
        return None
    if isinstance(exc, (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)):
        log.info("WebSocket client left during the handshake", extra={"path": request.path, "error": repr(exc)})
        return error_response(499, "the client closed the connection")
    if isinstance(exc, RemoteProtocolError):
        return error_response(400, f"not a WebSocket handshake: {exc}")
    return None


def _domain_errors() -> dict[type[Exception], Callable[[Any], ApiError]]:
    """How the API answers each domain exception that reaches it: the routes let them through
    rather than catching them one by one."""
    from app import accounts
    from app.batches import service as batches
    from app.broker import margin_check
    from app.kite_session.state import SessionNotLive
    from app.market import option_chain, subscriptions
    from app.orders.admission import OrderBacklogFull
    from app.orders.budget import OrderBudgetExhausted
    from app.orders.reconciliation import PostbackRejected
    from app.orders.service import OrderError
    from app.risk import limits as risk_limits
    from app.risk import halt, kill_switch
    from app.webhooks import delivery, registry

    return {
        OrderError: lambda e: ApiError(e.status, e.message, e.code, e.details),
        OrderBacklogFull: lambda e: ApiError(429, str(e), "order_backlog_full", e.details,
                                             {"Retry-After": str(e.retry_after_s)}),
        OrderBudgetExhausted: lambda e: ApiError(429, str(e), "order_budget_exhausted", e.details,
                                                 {"Retry-After": str(e.retry_after_s)}),
        SessionNotLive: lambda e: ApiError(409, str(e), "session_expired", _absolute_login_url(e.details)),
        halt.AccountHalted: lambda e: ApiError(409, str(e), "account_halted", e.details),
        kill_switch.KillSwitchNotFound: lambda e: ApiError(404, str(e)),
        kill_switch.KillSwitchRunning: lambda e: ApiError(409, str(e), "kill_switch_running",
                                                          {"kill_switch_id": e.kill_switch_id}),
        accounts.AccountNotFound: lambda e: ApiError(404, f"account {e.args[0]!r} not found"),
        accounts.AccountExists: lambda e: ApiError(409, f"account {e.args[0]!r} already exists"),
        batches.BatchNotFound: lambda e: ApiError(404, str(e)),
        batches.BatchConflict: lambda e: ApiError(409, str(e), "idempotency_conflict", {"batch_id": e.batch_id}),
        margin_check.InsufficientMargin: lambda e: ApiError(422, str(e), "insufficient_margin", e.details),
        risk_limits.RiskLimitBreached: lambda e: ApiError(422, str(e), "risk_limit", e.details),
        risk_limits.RiskCheckUnavailable: lambda e: ApiError(
            503, str(e), "risk_check_unavailable", e.details,
            {"Retry-After": str(max(1, math.ceil(e.retry_after_s or 1)))}),
        margin_check.MarginCheckUnavailable: lambda e: ApiError(
            503, str(e), "margin_check_unavailable", e.details,
            {"Retry-After": str(max(1, math.ceil(e.retry_after_s)))} if e.retry_after_s is not None else None),
        subscriptions.UnknownInstrument: lambda e: ApiError(
            422, str(e), details={"instrument_token": [str(t) for t in e.tokens[:50]]}),
        subscriptions.UnknownAccount: lambda e: ApiError(
            422, f"unknown account {e.args[0]!r}", details={"account_id": ["unknown account"]}),
        subscriptions.OverCapacity: lambda e: ApiError(
            409, str(e), "over_capacity", {"requested": e.requested, "capacity": e.capacity}),
        registry.InvalidWebhook: lambda e: ApiError(422, f"{e.field}: {e}", details={e.field: [str(e)]}),
        registry.WebhookNotFound: lambda e: ApiError(404, f"webhook {e.args[0]!r} not found"),
        registry.DeliveryNotFound: lambda e: ApiError(404, f"delivery {e.args[0]!r} not found"),
        delivery.DeliveryInFlight: lambda e: ApiError(409, "this delivery is still being attempted", "conflict"),
        option_chain.NoSuchChain: lambda e: ApiError(404, str(e)),
        PostbackRejected: lambda e: ApiError(e.status, f"postback rejected: {e}"),
    }


def _answer(exc: ApiError):
    response, status = error_response(exc.status, exc.message, exc.code, exc.details)
    response.headers.update(exc.headers)
    return response, status


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApiError, _answer)
    for exception, as_api_error in _domain_errors().items():
        app.register_error_handler(exception, lambda exc, as_api_error=as_api_error: _answer(as_api_error(exc)))

    @app.errorhandler(ValidationError)
    def _validation_error(exc: ValidationError):
        details = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        return error_response(422, _summarise(details), "validation_error", details)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        return _http_exception(exc)

    @app.errorhandler(PoolTimeout)
    def _no_database_connection(exc: PoolTimeout):  # overload: every pooled connection busy past the timeout
        log.warning("no database connection free: answered 503", extra={"path": request.path})
        response, status = error_response(503, "server busy: no database connection came free in time; "
                                               "retry shortly", "server_busy")
        response.headers["Retry-After"] = "1"
        return response, status

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # a bug, not bad input: log it whole, answer without internals
        handshake = _failed_handshake(exc)
        if handshake is not None:
            return handshake
        log.exception("unhandled error")
        return error_response(500, "internal error")
