"""Bearer tokens over REST and WebSockets, checked against a local JWKS server (tests/support/jwks.py):
accounts from the token, every refusal a 401 that names the reason and nothing secret, the key cache,
the issuer down, and a socket closed with 4401 when its token expires. The verifier's own cases:
tests/unit/web/test_jwt_tokens.py."""
from __future__ import annotations

import io
import json
import logging
import time

import jwt
import pytest
import websocket

from app.core.config import get_settings
from app.core.logs import configure_logging
from app.web.jwt_auth import TokenVerifier
from tests.support.jwks import TokenIssuer, signing_key
from tests.support.waiting import wait_for


@pytest.fixture(scope="module")
def issuer():
    issuer = TokenIssuer()
    yield issuer
    issuer.stop()


@pytest.fixture
def tokens_on(app, issuer, monkeypatch):
    """tokens_on(**settings): the app accepts the issuer's tokens (a fresh key cache) for this test."""
    issuer.failing = False
    issuer.published.pop("rsa-2", None)

    def enable(**changes) -> TokenVerifier:
        verifier = TokenVerifier.from_settings(issuer.settings(get_settings(), **changes))
        monkeypatch.setitem(app.extensions, "token_verifier", verifier)
        return verifier

    enable()
    return enable


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def listed(client, token) -> set[str]:
    return {a["account_id"] for a in client.get("/accounts", headers=bearer(token)).json}


# --- REST ------------------------------------------------------------------------------------

def test_a_token_for_one_account(client, issuer, tokens_on, accounts):
    token = issuer.token(["primary"])
    assert client.get("/accounts/primary", headers=bearer(token)).status_code == 200
    refused = client.get("/accounts/other", headers=bearer(token))
    assert refused.status_code == 403 and refused.json["error"]["message"] == \
        "this token may not access account 'other'"
    assert listed(client, token) == {"primary"}


def test_a_token_for_several_accounts(client, issuer, tokens_on, accounts):
    token = issuer.token(["primary", "other"], kid="ec-1")  # ES256 as well as RS256
    assert all(client.get(f"/accounts/{a}", headers=bearer(token)).status_code == 200 for a in ("primary", "other"))
    assert listed(client, token) == {"primary", "other"}
    assert client.post("/accounts", headers=bearer(token), json={"account_id": "jwt-x", "api_key": "k",
                                                                  "api_secret": "s"}).status_code == 403


def test_an_admin_token(client, issuer, tokens_on, accounts):
    token = issuer.token("*")
    assert {"primary", "other"} <= listed(client, token)
    created = client.post("/accounts", headers=bearer(token),
                          json={"account_id": "jwt-admin-made", "api_key": "k", "api_secret": "s"})
    assert created.status_code in (201, 409)  # 409: a rerun on the same database


@pytest.mark.parametrize("make, reason", [
    (lambda i: i.token(aud="another-service"), "token audience not accepted"),
    (lambda i: i.token(iss="https://evil.example.test"), "token issuer not accepted"),
    (lambda i: i.token(ttl_s=-5), "token expired"),
    (lambda i: i.unsigned_token(), "token algorithm not accepted"),
    (lambda i: i.hs256_with_public_key(), "token algorithm not accepted"),
    (lambda i: i.token(kid="rsa-2"), "token signed by an unknown key"),
    (lambda i: "garbage", "malformed token"),
], ids=["aud", "iss", "expired", "alg-none", "hs256-public-key", "unknown-kid", "malformed"])
def test_a_bad_token_is_401_invalid_token(client, issuer, tokens_on, make, reason):
    token = make(issuer)
    response = client.get("/accounts/primary", headers=bearer(token))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == f'Bearer error="invalid_token", error_description="{reason}"'
    assert response.json["error"] == {"code": "unauthorized", "message": f"invalid bearer token: {reason}",
                                      "details": {}}
    assert token not in response.get_data(as_text=True)


def test_an_unknown_kid_refetches_once_then_is_cached(client, issuer, tokens_on):
    client.get("/accounts", headers=bearer(issuer.token()))
    fetched = issuer.fetches
    for _ in range(3):
        assert client.get("/accounts", headers=bearer(issuer.token(kid="rsa-2"))).status_code == 401
    assert issuer.fetches == fetched + 1


def test_the_last_good_keys_still_work_when_the_issuer_is_down(client, issuer, tokens_on):
    tokens_on(jwt_jwks_max_age_s=0, jwt_jwks_min_refresh_s=0)  # every request wants a fresh set
    assert client.get("/accounts", headers=bearer(issuer.token())).status_code == 200
    issuer.failing = True
    fetched = issuer.fetches
    assert client.get("/accounts", headers=bearer(issuer.token(kid="ec-1"))).status_code == 200
    assert issuer.fetches > fetched  # it did ask


def test_keys_never_fetched_is_503_not_401(client, issuer, tokens_on):
    issuer.failing = True
    response = client.get("/accounts", headers=bearer(issuer.token()))
    assert response.status_code == 503 and response.json["error"]["code"] == "service_unavailable"
    assert int(response.headers["Retry-After"]) >= 1


def test_without_credentials_the_challenge_names_bearer(client, tokens_on, headers):
    response = client.get("/accounts")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    assert client.get("/accounts", headers=headers["admin"]).status_code == 200  # API keys still work


def test_one_credential_per_request(client, issuer, tokens_on, headers):
    response = client.get("/accounts", headers={**bearer(issuer.token("*")), **headers["admin"]})
    assert response.status_code == 401 and "one credential" in response.json["error"]["message"]


def test_tokens_in_rest_query_strings_are_refused(client, issuer, tokens_on):
    token = issuer.token("*")
    response = client.get(f"/accounts?access_token={token}")
    assert response.status_code == 401
    assert "WebSocket URLs only" in response.json["error"]["message"] and token not in response.get_data(as_text=True)


def test_bearer_tokens_are_ignored_when_jwt_is_not_configured(client, issuer, headers):
    response = client.get("/accounts", headers=bearer(issuer.token("*")))
    assert response.status_code == 401 and "WWW-Authenticate" not in response.headers


def test_tokens_never_reach_the_logs(client, issuer, tokens_on, live_server, accounts):
    # The service's JSON-lines handler on a stream of our own, at INFO (werkzeug's request lines
    # carry the query string), then the process's handlers back as they were.
    root, stream = logging.getLogger(), io.StringIO()
    handlers, level = list(root.handlers), root.level
    configure_logging("INFO", stream=stream)
    try:
        good, bad = issuer.token(), issuer.token(aud="another-service")
        client.get("/accounts", headers=bearer(good))
        client.get("/accounts", headers=bearer(bad))
        client.get(f"/accounts?access_token={good}")
        assert first_message(f"{live_server.ws_url}/ws/orders/primary?access_token={good}")["type"] == "snapshot"
        # werkzeug logs a socket's request line once the socket is over, on the server's own time.
        wait_for(lambda: "/ws/orders/primary?access_token=" in stream.getvalue(), 5.0, what="the socket's request line")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    logged = stream.getvalue()
    assert "/ws/orders/primary?access_token=[REDACTED]" in logged
    for token in (good, bad):
        assert token.split(".")[1] not in logged and token.split(".")[2] not in logged


# --- WebSockets ------------------------------------------------------------------------------

def first_message(url: str, header: list[str] | None = None) -> dict:
    ws = websocket.create_connection(url, header=header or [], timeout=5)
    try:
        return json.loads(ws.recv())
    finally:
        ws.close()


def test_a_socket_takes_the_bearer_header_or_access_token(live_server, issuer, tokens_on, accounts):
    token = issuer.token(["primary"])
    url = f"{live_server.ws_url}/ws/orders/primary"
    assert first_message(url, [f"Authorization: Bearer {token}"])["type"] == "snapshot"
    assert first_message(f"{url}?access_token={token}")["type"] == "snapshot"
    admin = first_message(f"{live_server.ws_url}/ws/orders?access_token={issuer.token('*')}")
    assert admin["type"] == "snapshot" and admin["account_id"] == "*"


@pytest.mark.parametrize("path, make, status", [
    ("/ws/orders/other", lambda i: i.token(["primary"]), 403),
    ("/ws/orders", lambda i: i.token(["primary", "other"]), 403),
    ("/ws/orders/primary", lambda i: i.token(ttl_s=-5), 401),
    ("/ws/orders/primary", lambda i: i.token(aud="another-service"), 401),
    ("/ws/orders/primary", lambda i: i.unsigned_token(), 401),
    ("/ws/ticks?underlying=nifty", lambda i: i.hs256_with_public_key(), 401),
], ids=["other-account", "admin-route", "expired", "aud", "alg-none", "hs256-public-key"])
def test_a_socket_with_a_bad_or_narrow_token_is_refused_before_it_opens(live_server, issuer, tokens_on, path,
                                                                       make, status):
    separator = "&" if "?" in path else "?"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(f"{live_server.ws_url}{path}{separator}access_token={make(issuer)}", timeout=5)
    assert refused.value.status_code == status
    if status == 401:
        assert refused.value.resp_headers["www-authenticate"].startswith('Bearer error="invalid_token"')


def test_a_socket_is_closed_with_4401_when_its_token_expires(live_server, issuer, tokens_on):
    token = issuer.token(["primary"], ttl_s=2)
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    ws = websocket.create_connection(f"{live_server.ws_url}/ws/orders/primary?access_token={token}", timeout=5)
    try:
        assert json.loads(ws.recv())["type"] == "snapshot"
        ws.settimeout(expires - time.time() + 4)
        while True:
            opcode, frame = ws.recv_data_frame(True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
        assert int.from_bytes(frame.data[:2], "big") == 4401
        assert time.time() >= expires
    finally:
        ws.close()


def test_a_key_rotated_in_is_used_by_sockets_too(live_server, issuer, tokens_on):
    tokens_on(jwt_jwks_min_refresh_s=0)
    issuer.published["rsa-2"] = signing_key("rsa-2")
    token = issuer.token(["primary"], kid="rsa-2")
    assert first_message(f"{live_server.ws_url}/ws/orders/primary?access_token={token}")["type"] == "snapshot"
