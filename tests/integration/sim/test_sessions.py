"""Kite's login and session lifetimes through the official client: the login page's redirect, single-use
request tokens, access tokens that expire at 06:00 IST or on `expire_sessions`, and the ticker after expiry.

Moving the session clock and expiring sessions are broker-wide, so those tests run on a broker of this
module's own (`own_broker`) and put its clock back after each test.
"""
from __future__ import annotations

import time
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
import requests
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from sim.harness import PaperBroker
from tests.support.paper_broker import TEST_SECRET, TickerRecorder
from tests.support.waiting import wait_for

CALLBACK = "http://127.0.0.1:9/kite/callback"


@pytest.fixture(scope="module")
def own_broker():
    with PaperBroker(seed=13, api_secret=TEST_SECRET) as b:
        yield b


@pytest.fixture
def session_broker(own_broker):
    """The module's broker, with its session clock back on real time after the test."""
    try:
        yield own_broker
    finally:
        own_broker.settings(now=None)


def login_page(broker, api_key: str, **params) -> requests.Response:
    return requests.get(f"{broker.root}/connect/login", params={"v": "3", "api_key": api_key, **params},
                        allow_redirects=False, timeout=10)


def request_token_from_login(broker, api_key: str) -> str:
    response = login_page(broker, api_key)
    assert response.status_code == 302, response.text
    return parse_qs(urlsplit(response.headers["Location"]).query)["request_token"][0]


def logged_in(broker, api_key: str, secret: str = "app-secret") -> KiteConnect:
    """A client with a session made the real way: login page, then generate_session."""
    kite = KiteConnect(api_key, root=broker.root)
    kite.generate_session(request_token_from_login(broker, api_key), api_secret=secret)
    return kite


def register_app(broker, api_key: str, secret: str = "app-secret") -> None:
    broker.add_account(api_key, secret, redirect_url=CALLBACK)


# ---- login page and request tokens ----------------------------------------------------------------
def test_login_redirects_with_a_request_token_that_works_once(broker, api_key):
    broker.add_account(api_key, "app-secret", redirect_url=CALLBACK + "?app=options")
    response = login_page(broker, api_key, redirect_params="account=primary&next=/dash board")
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == CALLBACK.split("?")[0]
    pairs = parse_qsl(location.query)
    request_token = dict(pairs)["request_token"]
    assert [k for k, _ in pairs] == ["app", "request_token", "action", "type", "status", "account", "next"]
    assert dict(pairs) == {"app": "options", "request_token": request_token, "action": "login", "type": "login",
                           "status": "success", "account": "primary", "next": "/dash board"}

    kite = KiteConnect(api_key, root=broker.root)
    session = kite.generate_session(request_token, api_secret="app-secret")
    assert session["api_key"] == api_key and len(session["access_token"]) == 32
    assert kite.profile()["user_id"] == session["user_id"] and kite.orders() == []

    with pytest.raises(kex.TokenException) as again:
        KiteConnect(api_key, root=broker.root).generate_session(request_token, api_secret="app-secret")
    assert again.value.code == 403 and "already exchanged" in str(again.value)
    assert kite.orders() == []   # the session made with it is unaffected


def test_a_wrong_secret_does_not_use_up_the_request_token(broker, api_key):
    register_app(broker, api_key)
    request_token = request_token_from_login(broker, api_key)
    with pytest.raises(kex.TokenException, match="checksum"):
        KiteConnect(api_key, root=broker.root).generate_session(request_token, api_secret="not-the-secret")
    assert KiteConnect(api_key, root=broker.root).generate_session(request_token, api_secret="app-secret")


def test_login_page_explains_refusals_in_plain_text(broker, api_key):
    unknown = login_page(broker, api_key + "-never-registered")
    assert unknown.status_code == 400 and unknown.headers["Content-Type"].startswith("text/plain")
    assert "invalid api_key" in unknown.text and api_key + "-never-registered" in unknown.text

    KiteConnect(api_key, access_token="t", root=broker.root).orders()   # the account exists, with no redirect URL
    no_redirect = login_page(broker, api_key)
    assert no_redirect.status_code == 400 and no_redirect.headers["Content-Type"].startswith("text/plain")
    assert "no redirect URL" in no_redirect.text

    missing = requests.get(f"{broker.root}/connect/login?v=3", allow_redirects=False, timeout=10)
    assert missing.status_code == 400 and "no api_key" in missing.text

    bad = requests.post(f"{broker.root}/_sim/accounts", json={"api_key": api_key, "redirect_url": "ftp://x"},
                        timeout=10)
    assert bad.status_code == 400 and "redirect_url" in bad.json()["error"]


def test_lenient_mode_accepts_a_made_up_request_token_once(broker, api_key):
    kite = KiteConnect(api_key, root=broker.root)
    assert kite.generate_session("made-up-token", api_secret=TEST_SECRET)["access_token"]
    with pytest.raises(kex.TokenException, match="already exchanged"):
        KiteConnect(api_key, root=broker.root).generate_session("made-up-token", api_secret=TEST_SECRET)


def test_request_tokens_expire_after_five_minutes(session_broker, api_key):
    register_app(session_broker, api_key)
    session_broker.settings(now="2026-12-02T10:00:00+05:30")
    stale = request_token_from_login(session_broker, api_key)
    session_broker.settings(now="2026-12-02T10:05:10+05:30")
    fresh = request_token_from_login(session_broker, api_key)
    with pytest.raises(kex.TokenException, match="expire 5 minutes after the login"):
        KiteConnect(api_key, root=session_broker.root).generate_session(stale, api_secret="app-secret")
    session_broker.settings(now="2026-12-02T10:09:50+05:30")   # 4 min 40 s after the second login
    assert KiteConnect(api_key, root=session_broker.root).generate_session(fresh, api_secret="app-secret")


# ---- access-token expiry --------------------------------------------------------------------------
def test_expire_sessions_ends_every_kind_of_session(session_broker, api_key):
    register_app(session_broker, api_key)
    from_login = logged_in(session_broker, api_key)
    expired_hook_calls = []
    from_login.set_session_expiry_hook(lambda: expired_hook_calls.append(time.time()))
    first_seen = KiteConnect(api_key + "-lenient", access_token="lenient-token", root=session_broker.root)
    session_broker.add_account(api_key + "-registered", "s", access_token="registered-token")
    registered = KiteConnect(api_key + "-registered", access_token="registered-token", root=session_broker.root)
    for kite in (from_login, first_seen, registered):
        assert kite.orders() == []

    session_broker.settings(expire_sessions=True)

    for kite in (from_login, first_seen, registered):
        with pytest.raises(kex.TokenException) as err:
            kite.orders()
        assert err.value.code == 403
    assert len(expired_hook_calls) == 1
    with pytest.raises(kex.TokenException):
        first_seen.positions()                       # an expired token never starts a new lenient session
    assert logged_in(session_broker, api_key).orders() == []   # a new login does
    session_broker.add_account(api_key + "-registered", access_token="registered-token")
    assert registered.orders() == []                 # and so does registering the token again


def test_access_tokens_expire_at_the_next_six_am_ist(session_broker, api_key, start_ticker):
    register_app(session_broker, api_key)
    session_broker.settings(now="2026-12-02T05:58:00+05:30")
    kite = logged_in(session_broker, api_key)
    night_owl = KiteConnect(api_key + "-lenient", access_token="first-seen-at-5-58", root=session_broker.root)
    night_owl.orders()
    recorder = start_ticker(TickerRecorder(api_key, kite.access_token, session_broker.ws_root))
    try:
        assert wait_for(lambda: recorder.connects == 1, 10, what="the ticker to connect")
        session_broker.settings(now="2026-12-02T05:59:58+05:30")
        assert kite.orders() == [] and night_owl.orders() == []

        session_broker.settings(now="2026-12-02T06:00:01+05:30")
        for client in (kite, night_owl):
            with pytest.raises(kex.TokenException):
                client.orders()
        assert wait_for(lambda: recorder.closes, 10, what="the broker to close the expired ticker")
        assert recorder.closes[0][0] == 1008

        session_broker.settings(now="2026-12-02T05:59:00+05:30")   # the clock going back revives nothing
        with pytest.raises(kex.TokenException):
            kite.orders()
    finally:
        recorder.close()

    session_broker.settings(now="2026-12-02T06:00:01+05:30")
    after_six = logged_in(session_broker, api_key)               # issued after 06:00: lives a whole day
    session_broker.settings(now="2026-12-03T05:59:50+05:30")
    assert after_six.orders() == []
    session_broker.settings(now="2026-12-03T06:00:01+05:30")
    with pytest.raises(kex.TokenException):
        after_six.orders()


def test_ticker_is_refused_once_the_session_expired(session_broker, api_key, start_ticker):
    register_app(session_broker, api_key)
    kite = logged_in(session_broker, api_key)
    open_socket = start_ticker(TickerRecorder(api_key, kite.access_token, session_broker.ws_root))
    late_socket = None
    try:
        assert wait_for(lambda: open_socket.connects == 1, 10, what="the ticker to connect")
        refused_before = session_broker.state()["ticker"]["refused"]

        session_broker.settings(expire_sessions=True)

        assert wait_for(lambda: open_socket.closes, 10, what="the broker to close the expired ticker")
        assert wait_for(lambda: any("403" in str(e) for e in open_socket.errors), 20,
                        what=lambda: f"a 403 when the client reconnects; errors: {open_socket.errors}")
        late_socket = start_ticker(TickerRecorder(api_key, kite.access_token, session_broker.ws_root))
        assert wait_for(lambda: any("403" in str(e) for e in late_socket.errors), 10,
                        what=lambda: f"a 403 at the handshake; errors: {late_socket.errors}")
        assert open_socket.connects == 1 and late_socket.connects == 0
        state = session_broker.state()["ticker"]
        assert state["refused"] >= refused_before + 2 and state["closed_for_session"] >= 1
    finally:
        open_socket.close()
        if late_socket:
            late_socket.close()
