"""The service's flask-smorest Blueprint: how every route reads its input and documents its errors."""
from __future__ import annotations

from http import HTTPStatus

from flask import request
from flask_smorest import Blueprint as SmorestBlueprint
from webargs.core import missing
from webargs.flaskparser import FlaskParser, is_json_request

from app.web.errors import ApiError
from app.web.extensions import ErrorSchema
from app.web.json_input import decode, json_body, read_body

IDEMPOTENCY_KEY_MAX = 128  # the columns' length


class BodyParser(FlaskParser):
    """webargs' parser reading JSON bodies through the service's bounded decoding (app.web.json_input:
    depth, text and numbers the service cannot store are 4xx, not 500s) and, for the blueprints that
    ask, JSON-object bodies only: 400 for a body that is not JSON, 422 for one that is not an object."""

    def __init__(self, object_bodies: bool = False) -> None:
        super().__init__()
        self.object_bodies = object_bodies

    def _raw_load_json(self, req):  # webargs' hook for load_json, which answers a JSONDecodeError with 400
        if not is_json_request(req):  # webargs' rule: a body not declared JSON is no JSON body
            return missing
        return decode(read_body(req))

    def load_json(self, req, schema):
        return _json_object(req) if self.object_bodies else super().load_json(req, schema)


def _json_object(req) -> dict:
    body = json_body(req)
    if body is None:
        raise ApiError(400, "request body must be JSON (Content-Type: application/json)")
    if not isinstance(body, dict):
        raise ApiError(422, "request body must be a JSON object", details={"_schema": ["not an object"]})
    return body


class Blueprint(SmorestBlueprint):
    """`object_bodies=True`: the blueprint's JSON bodies must be objects (see BodyParser)."""

    ARGUMENTS_PARSER = BodyParser()

    def __init__(self, *args, object_bodies: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if object_bodies:
            self.ARGUMENTS_PARSER = BodyParser(object_bodies=True)

    def errors(self, *statuses: int):
        """Document a route's error answers, each in the API's one error shape."""
        def document(view):
            for status in statuses:
                view = self.alt_response(status, response=HTTPStatus(status).name)(view)
            return view
        return document

    def order_budget_refusal(self):
        """Document the 429 of a request whose placements do not fit in the day's order budget or, for a new
        order or batch, in the backlog of orders waiting to be sent."""
        return self.alt_response(
            429, schema=ErrorSchema, description=(
                "order_budget_exhausted: the placements do not fit in what is left of the day's order "
                "budget (ORDER_BUDGET_PER_DAY per Zerodha account); order_backlog_full (new orders and "
                "batches): the account's orders waiting to be sent would pass ORDER_BACKLOG_MAX, or this "
                "one's turn would come after its expiry. Nothing stored or sent"),
            headers={"Retry-After": {"description": "seconds until the budget resets (midnight IST), or "
                                                    "until the backlog has room",
                                     "schema": {"type": "integer"}}})


def idempotency_key() -> str | None:
    """The Idempotency-Key header without surrounding blanks; 422 when blank or longer than the
    database keeps (not a 500)."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > IDEMPOTENCY_KEY_MAX:
        raise ApiError(422, f"Idempotency-Key must be 1-{IDEMPOTENCY_KEY_MAX} characters",
                       details={"Idempotency-Key": [f"1-{IDEMPOTENCY_KEY_MAX} characters"]})
    return key


def idempotency_key_parameter(description: str) -> dict:
    """The OpenAPI description of the Idempotency-Key header."""
    return {"in": "header", "name": "Idempotency-Key", "required": False, "description": description,
            "schema": {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX}}
