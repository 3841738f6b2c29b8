"""The trader dashboard in headless Chromium against the real stack.

Live server (web + WebSocket relay), Celery worker, paper broker and the stream
process: the page loads, the key is entered, the chain fills with IV and Greeks
from the stream, an iron condor from the preset goes out as one batch and every
leg completes in the blotter; then a leg the broker rejects makes the batch roll
back, and the page shows it. The screenshot of the filled page goes to the test's
temporary directory, or to DASHBOARD_SCREENSHOT when set (the README's picture:
`DASHBOARD_SCREENSHOT=docs/dashboard.png make test`) — a test run leaves the tree as it was.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

NUMBER = re.compile(r"^[+-]?[\d,]+(\.\d+)?$")

pytestmark = pytest.mark.usefixtures("celery_worker", "stream")


def _number(text: str) -> float:
    return float(text.replace(",", "").replace("+", "").split()[0])


def _open_dashboard(page, live_server, key):
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{live_server.url}/")
    expect(page).to_have_title(re.compile("Ticker"))
    page.fill("#api-key", key)
    page.click("#key-save")
    expect(page.locator("#account")).to_have_value("primary")
    expect(page.locator("#orders-state")).to_have_attribute("data-state", "open")
    return requests


def _wait_for_greeks(page, rows_with_greeks=10, timeout=25_000):
    """Option rows whose CE and PE both show IV and delta as numbers."""
    page.wait_for_function(
        """(n) => {
            const rows = [...document.querySelectorAll('#chain-body tr')];
            const num = (td) => td && /^[+-]?[\\d,]+(\\.\\d+)?$/.test(td.textContent);
            return rows.filter((tr) => ['iv', 'delta', 'gamma', 'theta', 'vega', 'last_price']
                .every((f) => [...tr.querySelectorAll(`td[data-f=${f}][data-side]`)].length === 2
                    && [...tr.querySelectorAll(`td[data-f=${f}][data-side]`)].every(num))).length >= n;
        }""", arg=rows_with_greeks, timeout=timeout)


def _build_iron_condor(page):
    page.select_option("#preset-side", "short")
    page.fill("#preset-width", "2")
    page.fill("#preset-lots", "1")
    page.click("[data-preset=iron_condor]")
    legs = page.locator("#legs-body tr")
    expect(legs).to_have_count(4)
    return [legs.nth(i).get_attribute("data-symbol") for i in range(4)]


def _submit_and_wait(page, final_status, timeout=40_000):
    page.click("#submit-batch")
    batch = page.locator("#batch")
    expect(batch).to_be_visible()
    expect(batch).to_have_attribute("data-status", final_status, timeout=timeout)
    return page.locator("#batch-id").inner_text()


def test_chain_strategy_batch_and_rollback(page, live_server, headers, paper_broker, tmp_path):
    key = headers["primary"]["X-API-Key"]
    requests = _open_dashboard(page, live_server, key)

    # The chain: NIFTY by default, ATM highlighted, spot in the header, IV and Greeks from the stream.
    expect(page.locator("#underlying")).to_have_value("NIFTY")
    page.wait_for_function("() => document.querySelectorAll('#chain-body tr').length > 20")
    _wait_for_greeks(page)
    expect(page.locator("#spot-price")).to_have_text(NUMBER)
    expect(page.locator("#chain-body tr.atm")).to_have_count(1)
    assert page.locator("#expiry option").count() >= 1
    expect(page.locator("#ticks-state")).to_have_attribute("data-state", "open")

    # Ticks change cells in place: the rows are the same DOM nodes after updates arrive.
    page.evaluate("() => { window.__rows = [...document.querySelectorAll('#chain-body tr')]; "
                  "window.__applied = window.dashboard.chain.ticksApplied; }")
    page.wait_for_function("() => window.dashboard.chain.ticksApplied > window.__applied + 20", timeout=15_000)
    assert page.evaluate("() => { const now = [...document.querySelectorAll('#chain-body tr')]; "
                         "return now.length === window.__rows.length && now.every((tr, i) => tr === window.__rows[i]); }")

    # Iron condor around ATM: 4 legs, net premium = sum(side sign x LTP x qty) of the legs shown.
    symbols = _build_iron_condor(page)
    assert len(set(symbols)) == 4 and sum(s.endswith("CE") for s in symbols) == 2
    sides = [page.locator("#legs-body tr").nth(i).locator("button.side").inner_text() for i in range(4)]
    assert sorted(sides) == ["BUY", "BUY", "SELL", "SELL"]
    paper_broker.set_market(frozen=True)  # hold prices still so the page's figures can be recomputed here
    try:
        page.wait_for_timeout(600)
        # One snapshot of the page (a tick still in flight must not land between two reads).
        ltps, qtys, shown = page.evaluate("""() => {
            const rows = [...document.querySelectorAll('#legs-body tr')];
            return [rows.map(r => r.querySelector('td.ltp').innerText),
                    rows.map(r => r.querySelector('td.qty').innerText),
                    document.getElementById('net-premium').innerText]; }""")
        expected = 0.0
        for i in range(4):
            ltp, qty = _number(ltps[i]), int(qtys[i])
            expected += (ltp if sides[i] == "SELL" else -ltp) * qty
        assert abs(_number(shown) - expected) <= 0.02 * 4 + 0.01, (shown, expected)
        assert ("credit" in shown) == (expected >= 0)
        for greek in ("delta", "gamma", "theta", "vega"):
            expect(page.locator(f"#net-{greek}")).to_have_text(NUMBER)
    finally:
        paper_broker.set_market(frozen=False)

    # One batch with rollback on; every leg completes, in the batch panel and in the blotter.
    batch_id = _submit_and_wait(page, "COMPLETED")
    leg_rows = page.locator("#batch-legs tr")
    expect(leg_rows).to_have_count(4)
    order_ids = [leg_rows.nth(i).get_attribute("data-order-id") for i in range(4)]
    assert all(order_ids)
    for order_id in order_ids:
        row = page.locator(f'#blotter-body tr[data-order-id="{order_id}"]')
        expect(row).to_have_attribute("data-status", "COMPLETE", timeout=15_000)
        expect(row).to_have_attribute("data-batch-id", batch_id)
    expect(page.locator("#batch-rollback-wrap")).to_be_hidden()

    # A leg the broker rejects: the batch rolls back and the page shows each rollback action.
    symbols = _build_iron_condor(page)
    rejected = symbols[-1]
    paper_broker.set_faults(reject_symbols=[rejected])
    try:
        batch_id = _submit_and_wait(page, "ROLLED_BACK")
    finally:
        paper_broker.clear_faults()
    rejected_leg = page.locator("#batch-legs tr", has_text=rejected)
    expect(rejected_leg).to_have_attribute("data-status", "REJECTED")
    actions = page.locator("#batch-rollback li")
    expect(page.locator("#batch-rollback-wrap")).to_be_visible()
    assert actions.count() >= 1
    for i in range(actions.count()):
        assert actions.nth(i).get_attribute("data-action") in ("cancel", "reverse")
    rejected_row = page.locator(f'#blotter-body tr[data-batch-id="{batch_id}"][data-symbol="{rejected}"]')
    expect(rejected_row).to_have_attribute("data-status", "REJECTED", timeout=15_000)
    rollback_rows = page.locator(f'#blotter-body tr[data-batch-id="{batch_id}"][data-role="rollback"]')
    expect(rollback_rows.first).to_be_visible(timeout=15_000)
    expect(page.locator("#batch-legs tr")).to_have_count(4)

    page.locator("#chain-center").click()
    screenshot = Path(os.environ.get("DASHBOARD_SCREENSHOT") or tmp_path / "dashboard.png")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshot))
    assert screenshot.stat().st_size > 10_000

    # The key travels in the X-API-Key header; only WebSocket URLs carry it.
    http_with_key = [u for u in requests if key in u and not u.startswith("ws")]
    assert not http_with_key, http_with_key
    assert not [e for e in page.js_errors if e.startswith("pageerror")], page.js_errors


def test_order_socket_reconnects_and_resyncs_on_a_seq_gap(page, live_server, headers, test_env):
    """The page reconnects by itself and refetches the orders when a seq jumps."""
    import json

    import redis

    _open_dashboard(page, live_server, headers["primary"]["X-API-Key"])
    # A dropped socket (here closed under the page): back by itself, with a fresh snapshot.
    page.wait_for_function("() => window.dashboard.blotter.snapshots === 1")
    page.evaluate("() => window.dashboard.orders.ws.close()")
    page.wait_for_function("() => window.dashboard.blotter.snapshots === 2", timeout=10_000)
    expect(page.locator("#orders-state")).to_have_attribute("data-state", "open")
    page.wait_for_function("() => !window.dashboard.blotter.resyncing")

    # An update whose seq skips ahead: the page refetches the account's orders.
    seq = int(page.locator("#orders-seq").inner_text().lstrip("#") or 0)
    client = redis.Redis.from_url(test_env.redis_url)
    message = {"type": "order_update", "account_id": "primary", "seq": seq + 5,
               "data": {"id": "gap-probe", "account_id": "primary", "status": "OPEN", "tradingsymbol": "PROBE",
                        "transaction_type": "BUY", "quantity": 1, "created_at": "2030-01-01T00:00:00.000Z",
                        "updated_at": "2030-01-01T00:00:00.000Z"},
               "timestamp": "2030-01-01T00:00:00.000Z"}
    with page.expect_request(re.compile(r"/accounts/primary/orders\?"), timeout=10_000):
        client.publish("orders:primary", json.dumps(message))
    expect(page.locator('#blotter-body tr[data-order-id="gap-probe"]')).to_have_attribute("data-status", "OPEN")
    expect(page.locator("#orders-seq")).to_have_text(f"#{seq + 5}")
    client.close()


# Where the ATM row sits in the chain's scroll box, in one read: the box's visible part
# starts under the sticky header.
ATM_GEOMETRY = """() => {
    const wrap = document.getElementById('chain-wrap');
    const row = document.querySelector('#chain-body tr.atm');
    if (!row) return null;
    const box = wrap.getBoundingClientRect();
    const head = document.querySelector('#chain thead tr:last-child th').getBoundingClientRect(); // sticky cells
    const r = row.getBoundingClientRect();
    const top = head.bottom, bottom = box.top + wrap.clientTop + wrap.clientHeight;
    return {strike: row.dataset.strike, rowTop: r.top, rowBottom: r.bottom, viewTop: top, viewBottom: bottom,
            scrollTop: wrap.scrollTop, visible: r.top >= top - 1 && r.bottom <= bottom + 1,
            // the middle half of the visible part: centred, give or take a strike or two the spot moved
            centred: Math.abs((r.top + r.bottom) / 2 - (top + bottom) / 2) <= (bottom - top) / 4};
}"""


def _expect_atm_centred(page, what, timeout=30_000):  # a cold chain waits for the index's first tick
    """The ATM row is inside the chain's visible box, about its middle."""
    try:
        page.wait_for_function(f"() => {{ const g = ({ATM_GEOMETRY})(); return g && g.visible && g.centred; }}",
                               timeout=timeout)
    except Exception:
        pytest.fail(f"{what}: ATM row not centred in the chain: {page.evaluate(ATM_GEOMETRY)}")
    return page.evaluate(ATM_GEOMETRY)


def _scroll_chain_to_top(page):
    """What a trader does: the wheel over the chain, up to the deepest ITM calls."""
    box = page.locator("#chain-wrap").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -100_000)
    page.wait_for_function("() => document.getElementById('chain-wrap').scrollTop === 0")


def test_chain_opens_at_atm_and_keeps_the_traders_scroll(page, live_server, headers):
    """First view: the ATM strike is centred on load and on every underlying or expiry change;
    ticks do not pull the chain back once the trader has scrolled it."""
    # A cold stream: the chain arrives before the index is priced, so its ATM only comes with
    # the first spot tick (the first load of the day, or an underlying nobody watched yet).
    cold = {"on": True}

    def chain_response(route):
        response = route.fetch()
        body = response.json()
        if cold["on"]:
            body["atm_strike"] = None
            for leg in ("spot", "future"):
                if body.get(leg):
                    body[leg]["last_price"] = None
        route.fulfill(response=response, json=body)

    page.route(re.compile(r"/option-chain\?"), chain_response)
    _open_dashboard(page, live_server, headers["primary"]["X-API-Key"])
    expect(page.locator("#underlying")).to_have_value("NIFTY")
    page.wait_for_function("() => document.querySelectorAll('#chain-body tr').length > 20")
    first = _expect_atm_centred(page, "first load")
    assert first["scrollTop"] > 0  # the deepest ITM strikes are above it, out of view

    # The trader scrolls away: live ticks (ATM included) leave the chain where the trader put it.
    _scroll_chain_to_top(page)
    page.evaluate("() => { window.__applied = window.dashboard.chain.ticksApplied; }")
    page.wait_for_function("() => window.dashboard.chain.ticksApplied > window.__applied + 50", timeout=15_000)
    page.wait_for_timeout(300)
    assert page.evaluate("() => document.getElementById('chain-wrap').scrollTop") == 0

    # Another expiry (the index is priced by now: the ATM comes with the chain): centred again.
    cold["on"] = False
    expiries = page.locator("#expiry option").all_inner_texts()
    assert len(expiries) >= 2, expiries
    current = page.locator("#expiry").input_value()
    other = next(e for e in expiries if e != current)
    page.select_option("#expiry", other)
    page.wait_for_function("(e) => window.dashboard.chain.chain && window.dashboard.chain.chain.expiry === e", arg=other)
    _expect_atm_centred(page, f"expiry {other}")

    # Another underlying, cold again: BANKNIFTY centres on its own ATM once its index ticks.
    _scroll_chain_to_top(page)
    cold["on"] = True
    page.select_option("#underlying", "BANKNIFTY")
    page.wait_for_function("() => window.dashboard.chain.chain && window.dashboard.chain.chain.underlying === 'BANKNIFTY'")
    banknifty = _expect_atm_centred(page, "BANKNIFTY")
    assert float(banknifty["strike"]) > 40_000, banknifty  # its own strikes, not NIFTY's
    assert not [e for e in page.js_errors if e.startswith("pageerror")], page.js_errors
