"""The one-click Kite login against the paper broker: GET /accounts/{id}/login → Kite's login page →
GET /kite/callback, driven by a real HTTP client; forged, replayed, expired and foreign states."""
from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import requests
from cryptography.fernet import Fernet
from kiteconnect import KiteConnect

from tests.integration.sessions.conftest import ADMIN, BROWSER, callback_url, log_in, start_login


def stored_token(account_id: str) -> str:
    from app.accounts import credentials, get_account
    from app.core.db import session_scope

    with session_scope() as session:
        return credentials(get_account(session, account_id)).access_token


def with_query(url: str, **changes) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_login_redirects_to_kite_with_a_state_in_redirect_params(live_server, paper_broker, session_account):
    location = start_login(live_server, session_account.id)
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{paper_broker.root}/connect/login"
    query = parse_qs(parts.query)
    assert query["v"] == ["3"] and query["api_key"] == [session_account.api_key]
    assert list(parse_qs(query["redirect_params"][0])) == ["state"]


def test_the_redirect_flow_ends_with_a_working_session(client, live_server, paper_broker, session_account,
                                                       settings_override):
    settings_override(kite_session_expiry_ist=(6, 0))  # Kite's 06:00 IST (the test stack turns it off)
    before = stored_token(session_account.id)
    page = log_in(live_server, session_account.id)
    assert page.status_code == 200, page.text
    assert page.headers["Content-Type"].startswith("text/html")
    assert f"Account <strong>{session_account.id}</strong> is logged in to Kite" in page.text
    assert f'/dashboard?logged_in={session_account.id}' in page.text
    token = stored_token(session_account.id)
    assert token and token != before
    assert KiteConnect(session_account.api_key, access_token=token, root=paper_broker.root).profile()["user_id"]
    view = client.get(f"/accounts/{session_account.id}", headers=ADMIN).get_json()["session"]
    assert view["state"] == "active" and view["expires_in_s"] > 0
    from app.kite_session.state import next_daily_expiry
    from app.models import utcnow

    expected = next_daily_expiry(utcnow()).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert view["expires_at"] == expected  # the next 06:00 IST
    assert view["login_url"] == f"/accounts/{session_account.id}/login"


def test_the_dashboard_gets_the_login_url_as_json(client, paper_broker, session_account):
    response = client.get(f"/accounts/{session_account.id}/login",
                          headers={**ADMIN, "Accept": "application/json"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["account_id"] == session_account.id
    assert body["login_url"].startswith(f"{paper_broker.root}/connect/login?v=3&api_key={session_account.api_key}&")


def test_only_a_key_of_the_account_may_start_its_login(client, headers, session_account):
    assert client.get(f"/accounts/{session_account.id}/login", headers=headers["other"]).status_code == 403
    assert client.get(f"/accounts/{session_account.id}/login").status_code == 401
    assert client.get("/accounts/no-such-account/login", headers=ADMIN).status_code == 404
    assert client.get("/accounts/primary/login", headers=headers["primary"]).status_code == 302


def test_a_replayed_callback_is_refused_and_changes_nothing(live_server, session_account):
    url = callback_url(live_server, session_account.id)
    assert requests.get(url, headers=BROWSER, timeout=15).status_code == 200
    token = stored_token(session_account.id)
    again = requests.get(url, headers=BROWSER, timeout=15)
    assert again.status_code == 400
    assert "already used" in again.text and "Nothing was changed" in again.text
    assert stored_token(session_account.id) == token


def test_forged_foreign_and_expired_states_are_refused(live_server, session_account):
    from app.core.config import credentials_key

    url = callback_url(live_server, session_account.id)
    token = stored_token(session_account.id)
    state = parse_qs(urlsplit(url).query)["state"][0]
    payload = json.dumps({"purpose": "kite-login", "account_id": session_account.id, "nonce": "n-1"}).encode()
    cases = {
        "forged": (state[:-6] + ("AAAAAA" if not state.endswith("AAAAAA") else "BBBBBB"), "not one this service issued"),
        "foreign": (Fernet(Fernet.generate_key()).encrypt(payload).decode(), "not one this service issued"),
        "expired": (Fernet(credentials_key().encode()).encrypt_at_time(payload, int(time.time()) - 3600).decode(),
                    "has expired"),
        "not a login state": (Fernet(credentials_key().encode()).encrypt(b'"x"').decode(), "not one this service"),
        "missing": ("", "has no state"),
    }
    for name, (bad_state, says) in cases.items():
        page = requests.get(with_query(url, state=bad_state), headers=BROWSER, timeout=15)
        assert page.status_code == 400, name
        assert says in page.text, (name, page.text)
    assert stored_token(session_account.id) == token  # none of them changed anything
    assert requests.get(url, headers=BROWSER, timeout=15).status_code == 200  # the genuine one still works once


def test_a_failed_kite_login_is_refused(live_server, session_account):
    url = with_query(callback_url(live_server, session_account.id), status="cancelled")
    page = requests.get(url, headers=BROWSER, timeout=15)
    assert page.status_code == 400 and "did not succeed" in page.text


def test_a_request_token_kite_refuses_is_a_clear_page(live_server, paper_broker, session_account):
    url = callback_url(live_server, session_account.id)
    request_token = parse_qs(urlsplit(url).query)["request_token"][0]
    # The same request token exchanged once already (by someone else): single use at Kite too.
    KiteConnect(session_account.api_key, root=paper_broker.root).generate_session(
        request_token, api_secret=session_account.api_secret)
    page = requests.get(url, headers=BROWSER, timeout=15)
    assert page.status_code == 400
    assert "Kite refused the request token" in page.text


def test_a_client_that_is_not_a_browser_gets_json(live_server, session_account):
    url = callback_url(live_server, session_account.id)
    done = requests.get(url, headers={"Accept": "application/json"}, timeout=15)
    assert done.status_code == 200
    assert done.json()["account_id"] == session_account.id and done.json()["session"]["state"] == "active"
    again = requests.get(url, headers={"Accept": "application/json"}, timeout=15)
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "login_refused" and "already used" in again.json()["error"]["message"]
