"""Order request bodies and a small client for the order API, for integration tests."""
from __future__ import annotations

import time

from tests.support.environment import BROKER_ACCOUNTS
from tests.support.waiting import wait_for


def cancel_at_broker(broker_order_id: str, account: str = "primary") -> None:
    """Cancel an order at the broker behind the service's back, with the account's own credentials,
    within the account's order rate that the workers share."""
    from app.accounts import Credentials
    from app.broker.client import kite_client

    creds = BROKER_ACCOUNTS[account]
    kite = kite_client(Credentials(account, creds["api_key"], creds["api_secret"], creds["access_token"]))
    _within_order_rate(account, False, lambda: kite.cancel_order("regular", broker_order_id))


def place_at_broker(kite, account: str = "primary", **order) -> str:
    """Place an order at the broker behind the service's back, within the account's order rate that the
    workers share."""
    return _within_order_rate(account, True, lambda: kite.place_order(**order))


def _within_order_rate(account: str, placement: bool, call):
    """`call()` in a slot of the account's order rate. Our limiter and the broker's count the same window
    from two clocks, so a call at the window's edge can still meet the broker's 429: that one is retried,
    as the workers retry it."""
    from kiteconnect import exceptions as kite_errors

    from app.broker.order_limit_keys import order_limit_key_of
    from app.broker.rate_limit import order_rate_limiter

    limit_key = order_limit_key_of(account)  # the workers' key: Kite counts per Zerodha user
    for attempt in range(5):
        order_rate_limiter().acquire(limit_key, placement=placement, max_wait_s=65)
        try:
            return call()
        except kite_errors.NetworkException as exc:
            if "Too many requests" not in str(exc) or attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def market_order(instrument, **changes) -> dict:
    body = {"exchange": instrument.exchange, "tradingsymbol": instrument.tradingsymbol,
            "transaction_type": "BUY", "quantity": instrument.lot_size, "product": "NRML",
            "order_type": "MARKET"}
    body.update(changes)
    return body


def resting_limit_order(broker, instrument, **changes) -> dict:
    """A LIMIT BUY far below the market: it stays OPEN at the broker."""
    ltp = broker.market([instrument.instrument_token])["instruments"][str(instrument.instrument_token)]["last_price"]
    tick = instrument.tick_size
    price = round(round(ltp * 0.5 / tick) * tick, 2)
    return market_order(instrument, order_type="LIMIT", price=price, **changes)


class Orders:
    """Small client for the order API in tests."""

    def __init__(self, client, headers, broker):
        self.client, self.headers, self.broker = client, headers, broker

    def place(self, body, role="primary", account="primary", key=None):
        headers = dict(self.headers[role])
        if key:
            headers["Idempotency-Key"] = key
        return self.client.post(f"/accounts/{account}/orders", json=body, headers=headers)

    def get(self, order_id, role="primary"):
        return self.client.get(f"/orders/{order_id}", headers=self.headers[role])

    def wait_status(self, order_id, statuses, timeout=15.0, role="primary"):
        statuses = {statuses} if isinstance(statuses, str) else set(statuses)

        def check():
            record = self.get(order_id, role).get_json()
            return record if record["status"] in statuses else None
        return wait_for(check, timeout, what=f"order {order_id} in {statuses}")

    def broker_orders(self, tag, account="primary"):
        return [o for o in self.broker.orders(BROKER_ACCOUNTS[account]["api_key"]) if o["tag"] == tag]
