"""Kite's daily session on the dashboard, in headless Chromium against the real stack.

The accounts panel shows each account's session (a live countdown while active), an expiry
arrives live on the order socket and the ticket refuses to submit, a 409 `session_expired` the
page did not see coming shows the service's message, and "Log in to Kite" goes through the paper
broker's login page and the service's /kite/callback back to the dashboard, active again.

The live server runs in this process, so a session is expired here the way the service records
one (app.kite_session.state.mark_expired); the paper broker's token stays valid, so the other
tests of the session keep trading. The suite turns Kite's daily expiry off (a run may span
06:00 IST); the tests that show a countdown turn it on for this process. Every test leaves
`primary` active, as the suite's settings start a session.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.usefixtures("celery_worker", "stream")

ACCOUNT = "primary"
ROW = f'#accounts-body tr[data-account-id="{ACCOUNT}"]'
COUNTDOWN = re.compile(r"^expires in \d+:\d\d:\d\d$")


def _session(account_id=ACCOUNT) -> dict:
    from app.kite_session.state import account_session

    return account_session(account_id)


def _expire(reason="test", source="test", account_id=ACCOUNT) -> None:
    """As the service records a TokenException: stored, then announced on the order socket."""
    from app.kite_session.state import mark_expired

    assert mark_expired(account_id, reason, source)


def _expire_unannounced(account_id=ACCOUNT) -> None:
    """The session dies and nobody tells the page (a lost announcement, or the 06:00 IST race)."""
    from sqlalchemy import update

    from app.core.db import session_scope
    from app.models import Account

    with session_scope() as session:
        session.execute(update(Account).where(Account.id == account_id).values(
            session_status="expired", session_expired_at=datetime.now(timezone.utc),
            session_error="test: unannounced"))


def _start_session(account_id=ACCOUNT) -> None:
    """A new session on the token it holds (the paper broker never ended it), announced as a login is."""
    from app.core.db import session_scope
    from app.kite_session.announce import session_started
    from app.kite_session.state import start_session
    from app.models import Account

    with session_scope() as session:
        start_session(session.get(Account, account_id))
    session_started(account_id, _session(account_id))


def _end_session_in(seconds: float, account_id=ACCOUNT) -> None:
    """The session's expected end moves to `seconds` from now, announced: the page counts down to it."""
    from app.core.db import session_scope
    from app.kite_session.announce import session_started
    from app.models import Account

    with session_scope() as session:
        session.get(Account, account_id).session_expires_at = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    session_started(account_id, _session(account_id))


@pytest.fixture()
def primary_session(accounts):
    """`primary` active when the test starts; a new session under the suite's settings when it ends."""
    assert _session()["state"] == "active", _session()
    yield
    _start_session()


@pytest.fixture()
def daily_expiry(primary_session):
    """Sessions end at 06:00 IST, as Kite's do; `primary`'s starts again under that rule."""
    from app.core import config

    before = config.get_settings()
    config.configure(before, kite_session_expiry_ist=(6, 0))
    _start_session()
    yield
    config.configure(before)  # first: primary_session then starts one under the suite's settings


def _open(page, live_server, key, path="/"):
    page.goto(f"{live_server.url}{path}")
    expect(page).to_have_title(re.compile("Ticker"))
    if page.locator("#api-key").input_value() != key:
        page.fill("#api-key", key)
        page.click("#key-save")
    expect(page.locator("#account")).to_have_value(ACCOUNT)
    expect(page.locator("#orders-state")).to_have_attribute("data-state", "open")


def _build_basket(page):
    page.wait_for_function("() => window.dashboard.chain.atm !== null", timeout=30_000)
    page.select_option("#preset-side", "long")
    page.click("[data-preset=straddle]")
    expect(page.locator("#legs-body tr")).to_have_count(2)


def _no_page_errors(page):
    assert not [e for e in page.js_errors if e.startswith("pageerror")], page.js_errors


def test_panel_counts_down_and_an_expiry_blocks_the_ticket_live(page, live_server, headers, daily_expiry):
    _open(page, live_server, headers[ACCOUNT]["X-API-Key"])
    row = page.locator(ROW)
    expect(row).to_have_attribute("data-state", "active")
    expect(row.locator("td.state")).to_have_text("active")
    detail = row.locator("td.detail")
    expect(detail).to_have_text(COUNTDOWN)
    first = detail.inner_text()
    expect(detail).not_to_have_text(first, timeout=3_000)  # it ticks every second
    remaining = _session()["expires_in_s"]
    h, m, s = (int(x) for x in detail.inner_text().split()[-1].split(":"))
    assert abs(h * 3600 + m * 60 + s - remaining) <= 5, (detail.inner_text(), remaining)
    expect(row.locator("button.login")).to_have_text("Log in again")  # there, but not the prominent one

    _build_basket(page)
    expect(page.locator("#submit-batch")).to_be_enabled()
    expect(page.locator("#ticket-session")).to_be_hidden()
    seq = page.evaluate("() => window.dashboard.blotter.seq")

    # The broker refuses the token: stored, announced on the order socket, shown at once
    # (the panel's own poll is every 30 s).
    _expire("Incorrect `api_key` or `access_token`.", "order")
    expect(row).to_have_attribute("data-state", "expired", timeout=5_000)
    expect(row.locator("td.state")).to_have_text("expired")
    expect(detail).to_contain_text("since ")
    expect(detail).to_contain_text("order: Incorrect `api_key` or `access_token`.")
    expect(row.locator("button.login")).to_have_text("Log in to Kite")
    expect(page.locator("#accounts-count")).to_have_text("1 of 1 need login")

    ticket = page.locator("#ticket-session")
    expect(ticket).to_be_visible()
    expect(ticket).to_contain_text(f"{ACCOUNT} cannot trade: its Kite session expired")
    expect(ticket.locator("button.login")).to_have_text("Log in to Kite")
    expect(page.locator("#submit-batch")).to_be_disabled()

    # The session message is numbered with the order updates: no gap, no resync.
    assert page.evaluate("() => window.dashboard.blotter.seq") > seq
    assert page.evaluate("() => window.dashboard.blotter.missing.size") == 0

    # A login elsewhere: announced, and the ticket opens again.
    _start_session()
    expect(row).to_have_attribute("data-state", "active", timeout=5_000)
    expect(detail).to_have_text(COUNTDOWN)
    expect(ticket).to_be_hidden()
    expect(page.locator("#submit-batch")).to_be_enabled()
    _no_page_errors(page)


def test_a_session_refused_by_the_service_shows_its_message_and_the_login(page, live_server, headers,
                                                                          primary_session):
    _open(page, live_server, headers[ACCOUNT]["X-API-Key"])
    expect(page.locator(ROW)).to_have_attribute("data-state", "active")
    expect(page.locator(f"{ROW} td.detail")).to_have_text("active · no daily expiry")  # the suite's setting
    _build_basket(page)
    expect(page.locator("#submit-batch")).to_be_enabled()

    _expire_unannounced()
    with page.expect_response(re.compile(r"/accounts/primary/batch-orders$")) as answer:
        page.click("#submit-batch")
    assert answer.value.status == 409
    assert answer.value.json()["error"]["code"] == "session_expired"

    ticket = page.locator("#ticket-session")
    expect(ticket).to_be_visible()
    expect(ticket.locator(".why")).to_contain_text("has expired")  # the service's own words
    expect(ticket.locator(".why")).to_contain_text("log in again")
    expect(ticket.locator("button.login")).to_have_text("Log in to Kite")
    expect(page.locator("#submit-batch")).to_be_disabled()
    expect(page.locator("#batch")).to_be_hidden()
    # The refusal carried the session: the panel shows it without waiting for its poll.
    row = page.locator(ROW)
    expect(row).to_have_attribute("data-state", "expired", timeout=5_000)
    expect(row.locator("td.detail")).to_contain_text("test: unannounced")
    _no_page_errors(page)


def test_the_countdown_reaching_zero_shows_the_session_expired(page, live_server, headers, daily_expiry):
    """At the session's end the page waits for no one: the countdown ends, the ticket closes, and the
    service's own view (expired by the clock, before any broker call said so) is read again."""
    _open(page, live_server, headers[ACCOUNT]["X-API-Key"])
    row = page.locator(ROW)
    expect(row.locator("td.detail")).to_have_text(COUNTDOWN)
    _build_basket(page)
    expect(page.locator("#submit-batch")).to_be_enabled()

    _end_session_in(3)
    expect(row.locator("td.detail")).to_have_text(re.compile(r"^expires in 0:00:0[0-3]$"), timeout=3_000)
    expect(row).to_have_attribute("data-state", "expired", timeout=6_000)
    expect(row.locator("td.detail")).to_contain_text("since ")
    expect(page.locator("#ticket-session")).to_contain_text(f"{ACCOUNT} cannot trade: its Kite session expired")
    expect(page.locator("#submit-batch")).to_be_disabled()
    # Then the page reads the service's view (GET /accounts): it agrees, and the page stays expired.
    page.wait_for_function("(id) => { const s = window.dashboard.accounts.sessionOf(id); return s && !s.local; }",
                           arg=ACCOUNT, timeout=6_000)
    assert _session()["state"] == "expired"
    expect(row).to_have_attribute("data-state", "expired")
    expect(page.locator("#submit-batch")).to_be_disabled()
    _no_page_errors(page)


@pytest.fixture()
def login_redirect(paper_broker, live_server, accounts):
    """The paper broker's app for `primary` sends logins back to the service's /kite/callback."""
    api_key = accounts[ACCOUNT]["api_key"]
    before = paper_broker.add_account(api_key)["redirect_url"]
    paper_broker.add_account(api_key, redirect_url=f"{live_server.url}/kite/callback")
    yield
    paper_broker.add_account(api_key, redirect_url=before or "")


def test_log_in_to_kite_from_the_dashboard(page, live_server, headers, paper_broker, login_redirect,
                                           daily_expiry):
    key = headers[ACCOUNT]["X-API-Key"]
    _expire("Incorrect `api_key` or `access_token`.", "order")
    before = _session()
    _open(page, live_server, key)
    row = page.locator(ROW)
    expect(row).to_have_attribute("data-state", "expired")

    # A second tab stays on the dashboard: the login reaches it live, on its order socket.
    watcher = page.context.new_page()
    watcher_errors = []
    watcher.on("pageerror", lambda exc: watcher_errors.append(str(exc)))
    _open(watcher, live_server, key)
    expect(watcher.locator(ROW)).to_have_attribute("data-state", "expired")

    visited = []
    page.on("request", lambda r: visited.append(r.url) if r.is_navigation_request() else None)
    with page.expect_response(re.compile(r"/accounts/primary/login$")) as asked:
        row.locator("button.login").click()
    assert asked.value.status == 200
    assert asked.value.request.headers.get("x-api-key") == key  # the key in the header, as every REST call

    # The paper broker's login page redirects at once to the callback, which logs the account in.
    page.wait_for_url(re.compile(r"/kite/callback\?"))
    expect(page.locator("h1")).to_have_text("Logged in to Kite")
    expect(page.locator("body")).to_contain_text(f"Account {ACCOUNT} is logged in to Kite")
    assert any(u.startswith(f"{paper_broker.root}/connect/login?") for u in visited), visited
    assert not any(key in u for u in visited), visited

    page.get_by_role("link", name="Back to the dashboard").click()
    page.wait_for_url(re.compile(r"/dashboard"))
    expect(page.locator(ROW)).to_have_attribute("data-state", "active")
    expect(page.locator(f"{ROW} td.detail")).to_have_text(COUNTDOWN)
    note = page.locator("#accounts-note")
    expect(note).to_be_visible()
    expect(note).to_contain_text(f"{ACCOUNT} logged in to Kite")
    expect(note).to_have_attribute("data-kind", "ok")
    assert "logged_in" not in page.url  # said once: a reload does not say it again
    expect(page.locator("#ticket-session")).to_be_hidden()

    after = _session()
    assert after["state"] == "active" and after["login_at"] != before["login_at"], (before, after)
    # The tab that stayed: active from the socket's session message, well before the 30 s poll.
    expect(watcher.locator(ROW)).to_have_attribute("data-state", "active", timeout=5_000)
    _no_page_errors(page)
    assert not watcher_errors, watcher_errors
    watcher.close()


def test_an_admin_key_sees_every_account_and_picks_one_from_the_panel(page, live_server, headers, accounts):
    page.goto(f"{live_server.url}/dashboard")
    page.fill("#api-key", headers["admin"]["X-API-Key"])
    page.click("#key-save")
    for account_id in accounts:
        expect(page.locator(f'#accounts-body tr[data-account-id="{account_id}"]')).to_have_attribute(
            "data-state", "active")
    for account_id in accounts:
        page.locator(f'#accounts-body tr[data-account-id="{account_id}"] td.acct').click()
        expect(page.locator("#account")).to_have_value(account_id)
        expect(page.locator("#accounts-body tr.selected")).to_have_attribute("data-account-id", account_id)
        expect(page.locator("#orders-state")).to_have_attribute("data-state", "open")
    _no_page_errors(page)
