"""One JSON error shape for every 4xx; never a 500 for bad input."""
import pytest


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.json
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return body["error"]


def test_malformed_json_is_400(client, headers):
    response = client.post("/accounts", data="{not json", content_type="application/json", headers=headers["admin"])
    assert_error(response, 400, "bad_request")


def test_unknown_field_and_wrong_type_are_422_naming_the_field(client, headers):
    error = assert_error(client.post("/accounts", headers=headers["admin"],
                                     json={"account_id": "a1", "api_key": "k", "api_secret": "s", "extra": 1}),
                         422, "validation_error")
    assert "extra" in error["details"]
    error = assert_error(client.post("/accounts", headers=headers["admin"],
                                     json={"account_id": 12, "api_key": "k", "api_secret": "s"}),
                         422, "validation_error")
    assert "account_id" in error["details"]
    error = assert_error(client.post("/accounts", headers=headers["admin"], json=[1, 2]), 422, "validation_error")


def test_missing_required_field_is_422(client, headers):
    error = assert_error(client.post("/accounts", headers=headers["admin"], json={"account_id": "a2"}),
                         422, "validation_error")
    assert {"api_key", "api_secret"} <= set(error["details"])


def test_unauthorized_forbidden_not_found(client, headers):
    assert_error(client.get("/accounts"), 401, "unauthorized")
    assert_error(client.post("/accounts", headers=headers["other"],
                             json={"account_id": "zz", "api_key": "k", "api_secret": "s"}), 403, "forbidden")
    assert_error(client.get("/no/such/route", headers=headers["admin"]), 404, "not_found")
    assert_error(client.get("/accounts/nobody", headers=headers["admin"]), 404, "not_found")
    assert_error(client.delete("/health"), 405, "method_not_allowed")


def test_conflict_is_409(client, headers):
    body = {"account_id": "dup", "api_key": "k", "api_secret": "s"}
    assert client.post("/accounts", headers=headers["admin"], json=body).status_code == 201
    assert_error(client.post("/accounts", headers=headers["admin"], json=body), 409, "conflict")


def test_oversized_body_is_413(client, headers):
    response = client.post("/accounts", headers=headers["admin"], data="x" * (300 * 1024),
                           content_type="application/json")
    assert_error(response, 413, "payload_too_large")


def test_correlation_id_echoed_and_generated(client):
    response = client.get("/health", headers={"X-Correlation-ID": "abc-123"})
    assert response.headers["X-Correlation-ID"] == "abc-123"
    assert float(response.headers["X-Process-Time"]) >= 0
    generated = client.get("/health").headers["X-Correlation-ID"]
    assert len(generated) == 32


@pytest.mark.parametrize("path", ["/accounts/%00", "/instruments/notanumber", "/instruments?limit=abc"])
def test_odd_paths_and_queries_are_4xx(client, headers, path):
    assert 400 <= client.get(path, headers=headers["admin"]).status_code < 500
