"""A full chain (200 strikes x CE/PE) updating ten times a second: the page
coalesces ticks per animation frame and changes cells in place.

Drives the page's own chain module in Chromium with a synthetic chain, so the
load is the size the page must handle whatever the paper market's size is.
"""
from __future__ import annotations

STRIKES = 200

SETUP = """(n) => {
    const strikes = [];
    for (let i = 0; i < n; i++) {
        const strike = 20000 + 50 * i;
        const q = (t, side) => ({instrument_token: t, tradingsymbol: `X${strike}${side}`, lot_size: 65,
            last_price: 100, change: 0, oi: 1000, volume: 0, iv: 0.12, delta: 0.5, gamma: 0.001, theta: -5, vega: 10, rho: 1});
        strikes.push({strike, CE: q(1000 + 2 * i, "CE"), PE: q(1001 + 2 * i, "PE")});
    }
    window.dashboard.chain.load({underlying: "SYN", expiry: "2030-01-01", expiries: ["2030-01-01"],
        spot: {instrument_token: 1, last_price: 25000}, future: null, atm_strike: 25000, lot_size: 65, strikes});
    window.__rows = [...document.querySelectorAll('#chain-body tr')];
}"""

# Ten batches of every option's tick, delivered in one go (what ten 100 ms batches look
# like to a page that was busy): one frame must paint only the newest of each.
BURST = """([n, batches]) => {
    const chain = window.dashboard.chain;
    const before = chain.flushes;
    for (let b = 1; b <= batches; b++) {
        const ticks = [];
        for (let i = 0; i < 2 * n; i++) ticks.push({instrument_token: 1000 + i, last_price: 100 + b, change: b / 10,
            oi: 1000 + b, greeks: {iv: 0.1 + b / 100, delta: 0.5, gamma: 0.001, theta: -5, vega: 10, rho: 1}});
        chain.ingest({type: "ticks", ticks});
    }
    return new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(() =>
        resolve({flushes: chain.flushes - before}))));
}"""


def test_full_chain_updates_are_coalesced_and_in_place(page, live_server):
    page.goto(f"{live_server.url}/dashboard")
    page.wait_for_function("() => window.dashboard && window.dashboard.chain")
    page.evaluate(SETUP, STRIKES)
    assert page.locator("#chain-body tr").count() == STRIKES
    expect_atm = page.locator('#chain-body tr.atm')
    assert expect_atm.get_attribute("data-strike") == "25000"

    result = page.evaluate(BURST, [STRIKES, 10])
    assert result["flushes"] == 1  # 10 x 400 ticks, one paint

    # Every option shows the newest of the ten batches.
    shown = page.evaluate("""() => [...document.querySelectorAll('#chain-body td[data-f=last_price]')].map(td => td.textContent)""")
    assert len(shown) == 2 * STRIKES and set(shown) == {"110.00"}
    ivs = page.evaluate("""() => [...document.querySelectorAll('#chain-body td[data-f=iv]')].map(td => td.textContent)""")
    assert set(ivs) == {"20.00"}
    # Same row nodes: nothing re-rendered.
    assert page.evaluate("""() => { const now = [...document.querySelectorAll('#chain-body tr')];
        return now.length === window.__rows.length && now.every((tr, i) => tr === window.__rows[i]); }""")
    # Cells whose value did not change are not rewritten (same text node).
    page.evaluate("""() => { window.__gamma = document.querySelector('#chain-body td[data-f=gamma]').firstChild; }""")
    page.evaluate(BURST, [STRIKES, 1])
    assert page.evaluate("() => document.querySelector('#chain-body td[data-f=gamma]').firstChild === window.__gamma")
    assert not [e for e in page.js_errors if e.startswith("pageerror")], page.js_errors
