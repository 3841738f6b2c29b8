"""The broker's order postback (Kite: HTTP POST of the order dict as JSON, with a checksum).

Public (no API key): the checksum — SHA-256 of order_id + order_timestamp + the
order's account api_secret — is the authentication. A wrong one is a 401 and
changes nothing. A right one proves only that the sender knows the secret: what
would end an order or add fills is confirmed with the broker before it is applied
(app.orders.postback_verification).
"""
from __future__ import annotations

from flask import request
from marshmallow import Schema, fields

from app.orders.reconciliation import apply_postback
from app.web.blueprint import Blueprint
from app.web.errors import ApiError
from app.web.json_input import json_body

blp = Blueprint("postback", __name__, description="Broker order postbacks")

# The body is Kite's order dict as the broker sends it, read whatever its Content-Type (through the
# service's bounded JSON decoding, app.web.json_input), so it is documented by hand rather than
# parsed by a schema.
POSTBACK_BODY = {
    "required": True,
    "description": "Kite's order dict (every field of an order book row) with its checksum",
    "content": {"application/json": {"schema": {
        "type": "object",
        "required": ["order_id", "order_timestamp", "checksum"],
        "properties": {
            "order_id": {"type": "string", "minLength": 1},
            "order_timestamp": {"type": "string", "minLength": 1},
            "checksum": {"type": "string", "minLength": 1,
                         "description": "hex SHA-256 of order_id + order_timestamp + api_secret"},
            "status": {"type": "string"},
            "tag": {"type": "string", "nullable": True},
        },
        "additionalProperties": True,
    }}},
}


class PostbackResultSchema(Schema):
    status = fields.String(metadata={"enum": ["ok"]})
    applied = fields.Boolean(metadata={"description": "false when nothing changed: the update was already "
                                                      "applied, or the broker's order history did not confirm it"})


@blp.route("/postback/kite", methods=["POST"])
@blp.response(200, PostbackResultSchema)
@blp.errors(400, 401, 404, 413, 422)
@blp.doc(security=[], requestBody=POSTBACK_BODY)
def kite_postback():
    """Apply one Kite order postback (de-duplicated: the same update twice changes nothing)."""
    body = json_body(request, force=True)  # too deep, unstorable text or numbers: 400/422 from the decoding
    if not isinstance(body, dict):
        raise ApiError(400, "postback body must be a JSON object")
    return {"status": "ok", "applied": apply_postback(body) is not None}
