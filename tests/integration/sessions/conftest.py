"""Fixtures for the Kite session tests: an account of its own per test (its own app at the paper broker,
whose redirect URL is the service's /kite/callback), so ending its session touches no other test."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
import requests

from tests.support.environment import API_KEYS


@dataclass
class SessionAccount:
    id: str
    api_key: str
    api_secret: str
    access_token: str


@pytest.fixture()
def session_account(db_schema, paper_broker, live_server):
    from app import accounts as account_service
    from app.core.db import session_scope

    account_id = f"sess-{uuid.uuid4().hex[:8]}"
    account = SessionAccount(account_id, f"paper-{account_id}", f"secret-{account_id}", f"tok-{account_id}")
    paper_broker.add_account(account.api_key, account.api_secret, account.access_token,
                             redirect_url=f"{live_server.url}/kite/callback")
    with session_scope() as session:
        account_service.add_account(session, account.id, account.api_key, account.api_secret, account.access_token)
    yield account
    with session_scope() as session:  # retired: /health and the stream look at active accounts only
        session.get(account_service.Account, account.id).active = False


ADMIN = {"X-API-Key": API_KEYS["admin"]}


def start_login(live_server, account_id: str) -> str:
    """`GET /accounts/{id}/login` as curl would: the Location of Kite's (the paper broker's) login page."""
    response = requests.get(f"{live_server.url}/accounts/{account_id}/login", headers=ADMIN,
                            allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.text
    return response.headers["Location"]


def callback_url(live_server, account_id: str) -> str:
    """Through Kite's login page (which signs the person in at once): where it sends the browser back."""
    at_kite = requests.get(start_login(live_server, account_id), allow_redirects=False, timeout=10)
    assert at_kite.status_code == 302, at_kite.text
    location = at_kite.headers["Location"]
    assert location.startswith(f"{live_server.url}/kite/callback?")
    return location


BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def log_in(live_server, account_id: str) -> requests.Response:
    """The whole redirect flow driven by a real HTTP client, without the API key past the first hop,
    asking for pages as a browser does."""
    return requests.get(callback_url(live_server, account_id), headers=BROWSER, allow_redirects=False, timeout=15)
