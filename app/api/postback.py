"""The broker's order postback (Kite: HTTP POST of the order dict as JSON, with a checksum).

Public (no API key): the checksum — SHA-256 of order_id + order_timestamp + the
order's account api_secret — is the authentication. A wrong one is a 401 and
changes nothing.
"""
from __future__ import annotations

from flask import jsonify, request
from flask_smorest import Blueprint

from app.errors import ApiError
from app.orders.sync import PostbackRejected, apply_postback

blp = Blueprint("postback", __name__, description="Broker order postbacks")


@blp.route("/postback/kite", methods=["POST"])
def kite_postback():
    """Apply one Kite order postback (de-duplicated: the same update twice changes nothing)."""
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "postback body must be a JSON object")
    try:
        order = apply_postback(body)
    except PostbackRejected as exc:
        raise ApiError(exc.status, f"postback rejected: {exc}")
    return jsonify({"status": "ok", "applied": order is not None})
