"""Hostile input (issue #21), each attack as found by probing the service: a 4xx in the API's error
shape `{"error": {"code", "message", "details"}}`, never a 500, and nothing stored.

- JSON nested a thousand deep, on every JSON route (the postback's, which needs no key, included);
- lone surrogates ("\\ud800") in text that is stored; integers past 64 bits (5,000 digits is past
  what Python's int() reads); a path id past BIGINT;
- chunked bodies: past MAX_CONTENT_LENGTH, or carrying a NUL, answered as with a Content-Length —
  in process, and over a real connection to werkzeug's server and to gunicorn with gevent;
- a LIMIT price below one tick (1e-320 was stored as 0.00 and rejected by the broker later);
- a WebSocket handshake the client abandons (was a 500 in http_requests_total) or sends malformed;
- and the batch Idempotency-Key replay: the same key again gives back the first batch, or a 409.
"""
from __future__ import annotations

import http.client
import io
import json
import socket
import threading
import uuid
from datetime import datetime, timezone
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select
from werkzeug.exceptions import NotFound

from app.core.db import session_scope
from app.models import Batch, Order, Subscription, Webhook
from app.web.http_metrics import http_requests_total
from app.web.json_input import MAX_DEPTH, SURROGATE_MESSAGE
from tests.support.processes import GunicornServer

MIB = 1024 * 1024
SURROGATE = "\ud800"
HUGE = "9" * 5000  # past int()'s 4,300 digits: a ValueError inside json.loads
UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}

# Every route with a JSON body (test_every_json_route_is_attacked), and the key it is sent with.
JSON_ROUTES = [
    ("POST", "/accounts", "admin"), ("PATCH", "/accounts/{account_id}", "admin"),
    ("POST", "/accounts/{account_id}/session", "admin"), ("PUT", "/accounts/{account_id}/limits", "admin"),
    ("POST", "/accounts/{account_id}/orders", "primary"), ("POST", "/orders/place", "primary"),
    ("PATCH", "/orders/{order_id}", "primary"),
    ("POST", "/accounts/{account_id}/batch-orders", "primary"), ("POST", "/advanced/batch-orders", "primary"),
    ("POST", "/subscriptions", "admin"), ("POST", "/subscriptions/bulk", "admin"),
    ("POST", "/subscriptions/chain", "admin"),
    ("POST", "/advanced/webhooks", "primary"), ("POST", "/postback/kite", None),
    ("POST", "/accounts/{account_id}/kill-switch", "primary"),  # refused before anything halts the account
]
PATH_VALUES = {"account_id": "primary", "order_id": "0123456789abcdef0123456789abcdef"}


def assert_error(response, status: int) -> dict:
    """The answer is `status` in the API's error shape; its `error`."""
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    error = response.get_json()["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    return error


def send(client, method: str, path: str, raw: str | bytes, headers: dict | None = None, **options):
    return client.open(path.format(**PATH_VALUES), method=method, data=raw, content_type="application/json",
                       headers=headers or {}, **options)


def key(headers, role):
    return headers[role] if role else {}


@pytest.fixture(scope="module")
def target(instruments):
    """An option no other test trades, so its orders in the database can only be this module's."""
    options = sorted((i for i in instruments.all() if i.segment == "NFO-OPT" and i.instrument_type == "PE"),
                     key=lambda i: i.strike)
    return options[3]


def order_body(instrument, **changes) -> dict:
    body = {"exchange": instrument.exchange, "tradingsymbol": instrument.tradingsymbol, "transaction_type": "BUY",
            "quantity": instrument.lot_size * 7, "product": "NRML", "order_type": "MARKET", "margin_check": False}
    return {**body, **changes}


def webhook_body(**changes) -> dict:
    return {"url": f"http://127.0.0.1:9/hostile-{uuid.uuid4().hex}", "account_id": "primary",
            "events": ["order.updated"], "secret": "s3cret", **changes}


@pytest.fixture
def nothing_stored(target):
    """After the test: no order of `target`, batch, webhook or subscription was stored while it ran."""
    started = datetime.now(timezone.utc)

    def stored() -> dict:
        with session_scope() as session:
            def newer(model, *where):
                return session.scalar(select(func.count()).select_from(model)
                                      .where(model.created_at >= started, *where))
            return {"orders": newer(Order, Order.instrument_token == target.instrument_token),
                    "batches": newer(Batch), "webhooks": newer(Webhook), "subscriptions": newer(Subscription)}

    yield
    assert stored() == {"orders": 0, "batches": 0, "webhooks": 0, "subscriptions": 0}


# --- nesting -------------------------------------------------------------------------------------

def test_every_json_route_is_attacked(client):
    documented = {(method.upper(), path) for path, operations in client.get("/openapi.json").json["paths"].items()
                  for method, operation in operations.items() if "requestBody" in operation}
    assert documented == {(method, path) for method, path, _ in JSON_ROUTES}


@pytest.mark.parametrize("method, path, role", JSON_ROUTES)
@pytest.mark.parametrize("shape", ["arrays", "objects", "inside a field"])
def test_json_nested_a_thousand_deep_is_a_400(client, headers, accounts, nothing_stored, method, path, role, shape):
    raw = {"arrays": "[" * 1000 + "]" * 1000,
           "objects": '{"a":' * 1000 + "1" + "}" * 1000,
           "inside a field": '{"legs": ' + "[" * 1000 + "]" * 1000 + "}"}[shape]
    error = assert_error(send(client, method, path, raw, key(headers, role)), 400)
    assert f"deeper than {MAX_DEPTH}" in error["message"]


# --- text no database stores -----------------------------------------------------------------------

def test_a_lone_surrogate_in_an_order_tag_is_a_422_naming_it(client, headers, accounts, target, nothing_stored):
    raw = json.dumps(order_body(target, tag=SURROGATE))  # json.dumps writes it as the escape \ud800
    error = assert_error(send(client, "POST", "/accounts/primary/orders", raw, headers["primary"]), 422)
    assert error["details"] == {"tag": [SURROGATE_MESSAGE]}


def test_a_lone_surrogate_in_a_batch_legs_tag_is_a_422_naming_the_leg(client, headers, accounts, target,
                                                                      nothing_stored):
    legs = [order_body(target), order_body(target, tag="x" + SURROGATE)]
    for leg in legs:
        del leg["margin_check"]
    raw = json.dumps({"legs": legs, "margin_check": False, "wait": 0})
    error = assert_error(send(client, "POST", "/accounts/primary/batch-orders", raw, headers["primary"]), 422)
    assert error["details"] == {"legs": {"1": {"tag": [SURROGATE_MESSAGE]}}}


@pytest.mark.parametrize("field", ["secret", "url"])
def test_a_lone_surrogate_in_a_webhook_is_a_422_naming_it(client, headers, accounts, nothing_stored, field):
    raw = json.dumps(webhook_body(**{field: "http://127.0.0.1:9/" + SURROGATE if field == "url" else SURROGATE}))
    error = assert_error(send(client, "POST", "/advanced/webhooks", raw, headers["primary"]), 422)
    assert error["details"] == {field: [SURROGATE_MESSAGE]}


def test_a_lone_surrogate_in_a_postback_is_refused_without_a_key(client, nothing_stored):
    raw = json.dumps({"order_id": SURROGATE, "order_timestamp": "2026-01-01 09:15:00", "checksum": "00"})
    assert_error(send(client, "POST", "/postback/kite", raw), 422)


# --- numbers no column holds -------------------------------------------------------------------------

def with_number(body: dict, field: str, digits: str) -> str:
    """`body` as JSON with `digits` as the value of `field`, written as they are."""
    return json.dumps({**body, field: "NUMBER"}).replace('"NUMBER"', digits)


@pytest.mark.parametrize("path, body, field", [
    ("/subscriptions", with_number({}, "instrument_token", HUGE), "instrument_token"),
    ("/subscriptions", with_number({}, "instrument_token", str(2**64)), "instrument_token"),
    ("/subscriptions/bulk", '{"instrument_tokens": [1, %s]}' % HUGE, "instrument_tokens"),
    ("/advanced/webhooks", with_number(webhook_body(), "secret", HUGE), "secret"),
    ("/advanced/webhooks", with_number(webhook_body(), "legacy_secret_header", "-" + HUGE), "legacy_secret_header"),
])
def test_an_integer_past_64_bits_is_a_422_naming_it(client, headers, accounts, nothing_stored, path, body, field):
    error = assert_error(send(client, "POST", path, body, headers["admin"]), 422)
    assert field in error["details"]


def test_a_path_id_past_bigint_matches_no_route(app, client, headers, accounts):
    """`DELETE /subscriptions/<id>` never hands the database a number its column cannot hold."""
    for token in ("99999999999999999999999", str(2**63), "9" * 5000, "0"):
        assert_error(client.delete(f"/subscriptions/{token}", headers=headers["admin"]), 404)
        with pytest.raises(NotFound):
            app.url_map.bind("localhost").match(f"/subscriptions/{token}", method="DELETE")


# --- chunked bodies ----------------------------------------------------------------------------------

def chunked(client, path: str, raw: bytes, headers: dict):
    """The request as a WSGI server passes a chunked one: no Content-Length, the stream ended by the server."""
    return client.post(path, input_stream=io.BytesIO(raw), content_type="application/json",
                       headers={**headers, "Transfer-Encoding": "chunked"},
                       environ_overrides={"wsgi.input_terminated": True})


def padded_order(target) -> bytes:
    """A valid order followed by a mebibyte of blanks: still valid JSON, so a cut body would pass."""
    return json.dumps(order_body(target)).encode() + b" " * MIB


def test_a_chunked_body_past_the_limit_is_413_as_with_a_content_length(client, headers, accounts, target,
                                                                       nothing_stored):
    raw = padded_order(target)
    assert_error(client.post("/accounts/primary/orders", data=raw, content_type="application/json",
                             headers=headers["primary"]), 413)
    assert_error(chunked(client, "/accounts/primary/orders", raw, headers["primary"]), 413)


def test_a_nul_in_a_chunked_body_is_refused_as_with_a_content_length(client, headers, accounts, nothing_stored):
    raw = json.dumps(webhook_body(secret="a\x00b")).encode()
    with_length = send(client, "POST", "/advanced/webhooks", raw, headers["primary"])
    assert assert_error(with_length, 400) == assert_error(chunked(client, "/advanced/webhooks", raw,
                                                                  headers["primary"]), 400)


def post_chunked(base_url: str, path: str, raw: bytes, headers: dict, chunk: int = 64 * 1024):
    """POST over a real connection with Transfer-Encoding: chunked → (status, JSON body)."""
    url = urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        connection.putrequest("POST", path)
        for name, value in {**headers, "Content-Type": "application/json", "Transfer-Encoding": "chunked"}.items():
            connection.putheader(name, value)
        connection.endheaders()
        try:
            for start in range(0, len(raw), chunk):
                part = raw[start:start + chunk]
                connection.send(b"%x\r\n%s\r\n" % (len(part), part))
            connection.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered before the end of the body: read what it said
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.fixture(scope="module")
def gunicorn(db_schema, accounts, tmp_path_factory):
    """The production server (gunicorn, gevent worker), one worker."""
    server = GunicornServer(workers=1, env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp("metrics"))})
    server.start(timeout=60)
    yield server
    server.stop()


@pytest.mark.parametrize("server", ["werkzeug", "gunicorn"])
def test_chunked_bodies_over_a_real_connection(request, headers, target, nothing_stored, server):
    base = request.getfixturevalue("live_server" if server == "werkzeug" else "gunicorn").url
    status, body = post_chunked(base, "/accounts/primary/orders", padded_order(target), headers["primary"])
    assert (status, body["error"]["code"]) == (413, "payload_too_large")
    status, body = post_chunked(base, "/advanced/webhooks", json.dumps(webhook_body(secret="a\x00b")).encode(),
                                headers["primary"])
    assert (status, body["error"]["code"]) == (400, "bad_request")
    status, body = post_chunked(base, "/postback/kite", b"[" * 1000 + b"]" * 1000, {})
    assert (status, body["error"]["code"]) == (400, "bad_request")


# --- prices ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, field", [
    ({"order_type": "LIMIT", "price": 1e-320}, "price"),
    ({"order_type": "SL-M", "trigger_price": 1e-320}, "trigger_price"),
])
def test_a_price_below_one_tick_is_a_422_naming_the_tick(client, headers, accounts, target, nothing_stored,
                                                         changes, field):
    error = assert_error(client.post("/accounts/primary/orders", json=order_body(target, **changes),
                                     headers=headers["primary"]), 422)
    assert error["details"][field] == [f"{field} must be a positive multiple of the tick size {target.tick_size:g}"]
    leg = {k: v for k, v in order_body(target, **changes).items() if k != "margin_check"}
    error = assert_error(client.post("/accounts/primary/batch-orders", headers=headers["primary"],
                                     json={"legs": [leg], "margin_check": False, "wait": 0}), 422)
    assert field in error["details"]["legs"]["0"]


# --- WebSocket handshakes ----------------------------------------------------------------------------

def counted(endpoint: str, status: int) -> float:
    return http_requests_total.labels("GET", endpoint, str(status))._value.get()


def test_a_handshake_the_client_abandons_is_no_server_error(client, headers, accounts):
    """The client closed its socket before the 101 could be sent: was a 500 (and an `unhandled error`
    traceback) feeding the error-rate alert; now 499, "client closed request"."""
    endpoint = "websockets.account_orders_socket"
    before = counted(endpoint, 500), counted(endpoint, 499)
    server_end, client_end = socket.socketpair()
    client_end.close()
    try:
        response = client.get("/ws/orders/primary", headers={**headers["primary"], **UPGRADE},
                              environ_overrides={"werkzeug.socket": server_end})
    finally:
        server_end.close()
    assert_error(response, 499)
    assert (counted(endpoint, 500), counted(endpoint, 499)) == (before[0], before[1] + 1)


@pytest.mark.parametrize("missing", ["Sec-WebSocket-Key", "Sec-WebSocket-Version"])
def test_a_handshake_without_its_required_headers_is_a_400(client, headers, accounts, missing):
    server_end, client_end = socket.socketpair()
    try:
        upgrade = {name: value for name, value in UPGRADE.items() if name != missing}
        response = client.get("/ws/orders/primary", headers={**headers["primary"], **upgrade},
                              environ_overrides={"werkzeug.socket": server_end})
    finally:
        server_end.close()
        client_end.close()
    assert missing in assert_error(response, 400)["message"]


# --- the batch Idempotency-Key replay ------------------------------------------------------------------

def test_the_same_batch_key_gives_back_the_first_batch_or_a_409(client, headers, accounts, instruments,
                                                               celery_worker, live_server, target):
    request_headers = {**headers["primary"], "Idempotency-Key": f"hostile-{uuid.uuid4().hex}"}
    leg = {k: v for k, v in order_body(target, quantity=target.lot_size).items() if k != "margin_check"}
    # Bought and sold back: the account is left flat, so later tests' margins are what they expect.
    body = {"legs": [leg, {**leg, "transaction_type": "SELL"}], "wait": 0, "margin_check": False}
    first = client.post("/accounts/primary/batch-orders", json=body, headers=request_headers)
    assert first.status_code in (200, 202), first.get_json()
    batch_id = first.get_json()["batch_id"]

    for margin_check in (False, True):  # straight to the store (the key's constraint), or looked up first
        again = client.post("/accounts/primary/batch-orders", json={**body, "margin_check": margin_check},
                            headers=request_headers)
        assert again.status_code in (200, 202) and again.get_json()["batch_id"] == batch_id, again.get_json()
        other = {**body, "legs": [leg], "margin_check": margin_check}
        error = assert_error(client.post("/accounts/primary/batch-orders", json=other, headers=request_headers), 409)
        assert error["details"] == {"batch_id": batch_id}

    answers = []  # the same key twice at once: one batch
    threads = [threading.Thread(target=lambda: answers.append(client.application.test_client().post(
        "/accounts/primary/batch-orders", json=body, headers=request_headers))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {(a.status_code in (200, 202), a.get_json().get("batch_id")) for a in answers} == {(True, batch_id)}
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Batch).where(
            Batch.idempotency_key == request_headers["Idempotency-Key"])) == 1
