"""The stream process end to end: paper broker → KiteTicker pool → Greeks → Redis → /ws/ticks."""
from __future__ import annotations

import json
import time

import websocket

from tests.support.channels import ChannelListener
from tests.support.orders import place_at_broker
from tests.support.processes import StreamProcess
from tests.support.waiting import wait_for

WINDOW_S = 0.1


def test_enriched_batches_reach_redis(stream, test_env, nifty_book, paper_broker):
    index, future, options = nifty_book
    listener = ChannelListener(test_env.redis_url, "ticker:nifty:*")
    try:
        found = listener.first(lambda m: m[1] == "ticker:nifty:options" and any(
            (t.get("greeks") or {}).get("iv") for t in m[2]["ticks"]), timeout=30)
        assert found, f"no enriched option batch; stream log:\n{stream.log()}"
        _, channel, batch = found
        assert batch["type"] == "ticks" and batch["kind"] == "options" and batch["count"] == len(batch["ticks"])
        tick = next(t for t in batch["ticks"] if t["greeks"]["iv"])
        assert {"iv", "delta", "gamma", "theta", "vega", "rho"} <= set(tick["greeks"])
        assert 0.01 < tick["greeks"]["iv"] < 2.0
        assert tick["option_type"] in ("CE", "PE") and tick["underlying_price"] > 0
        # The IV recovers the volatility the paper broker priced the option with (its smile,
        # plus small noise and the 0.05 tick rounding).
        smile = paper_broker.market([tick["instrument_token"]])["instruments"][str(tick["instrument_token"])]
        assert abs(tick["greeks"]["iv"] - smile["smile_vol"]) < 0.03, (tick, smile)
        underlying = listener.first(lambda m: m[1] == "ticker:nifty:underlying", timeout=10)
        assert underlying and {t["instrument_token"] for t in underlying[2]["ticks"]} <= {
            index.instrument_token, future.instrument_token}
    finally:
        listener.close()


def test_at_most_one_publish_per_chain_per_window(stream, test_env, paper_broker):
    paper_broker.settings(tick_rate=20)  # 42 instruments × 20/s: every window has ticks
    listener = ChannelListener(test_env.redis_url, "ticker:nifty:*")
    try:
        listener.collect(1.0)  # settle at the new rate
        messages = listener.collect(3.0)
    finally:
        listener.close()
        paper_broker.settings(tick_rate=1)
    by_chain: dict[tuple[str, str | None], list[float]] = {}  # option messages: one per chain (expiry)
    for at, channel, batch in messages:
        by_chain.setdefault((channel, batch.get("expiry")), []).append(at)
    assert {channel for channel, _ in by_chain} == {"ticker:nifty:options", "ticker:nifty:underlying"}
    for (channel, expiry), times in by_chain.items():
        assert (expiry is not None) == channel.endswith(":options")
        # 3 s of 100 ms windows: at most ~30 publishes (plus one for a window cut by the edges).
        assert len(times) <= 3.0 / WINDOW_S + 2, (channel, expiry, len(times))
    for channel in ("ticker:nifty:options", "ticker:nifty:underlying"):  # and it did batch continuously
        assert max(len(t) for (c, _), t in by_chain.items() if c == channel) >= 10, channel


def test_new_subscription_applies_within_a_second(stream, client, headers, test_env, nifty_book, instruments):
    _, _, options = nifty_book
    taken = {o.instrument_token for o in options}
    extra = next(i for i in instruments.all() if i.name == "NIFTY" and i.is_option and i.instrument_token not in taken)
    listener = ChannelListener(test_env.redis_url, "ticker:nifty:options")
    try:
        started = time.monotonic()
        response = client.post("/subscriptions", headers=headers["admin"],
                               json={"instrument_token": extra.instrument_token, "requested_mode": "QUOTE"})
        assert response.status_code == 201
        found = listener.first(lambda m: any(t["instrument_token"] == extra.instrument_token for t in m[2]["ticks"]),
                               timeout=10)
        assert found, "the new subscription never ticked"
        # Applied within a second (the broker then ticks it within its 1 s tick interval).
        assert found[0] - started < 2.5
    finally:
        listener.close()
        client.delete(f"/subscriptions/{extra.instrument_token}", headers=headers["admin"])


def test_ticks_reach_websocket_clients(stream, live_server, headers, nifty_book):
    index, _, _ = nifty_book
    ws = websocket.create_connection(f"{live_server.ws_url}/ws/ticks?underlying=nifty&api_key={headers['admin']['X-API-Key']}",
                                     timeout=15)
    try:
        deadline = time.monotonic() + 20
        seen = set()
        while time.monotonic() < deadline and not {"options", "underlying"} <= seen:
            message = json.loads(ws.recv())
            if message.get("type") == "ticks":
                seen.add(message["kind"])
        assert {"options", "underlying"} <= seen
    finally:
        ws.close()


def test_broker_drops_sockets_and_ticks_resume(stream, test_env, paper_broker, subscribed):
    listener = ChannelListener(test_env.redis_url, "ticker:nifty:*")
    try:
        listener.collect(0.5)
        paper_broker.set_faults(drop_ws=True)
        dropped_at = time.monotonic()
        seen: set[int] = set()
        while time.monotonic() - dropped_at < 15 and not set(subscribed) <= seen:
            for _, _, batch in listener.collect(0.5):
                seen.update(t["instrument_token"] for t in batch["ticks"])
        assert set(subscribed) <= seen, f"missing after reconnect: {set(subscribed) - seen}"
        assert stream.alive()
    finally:
        listener.close()
        paper_broker.clear_faults()


def test_order_updates_from_the_ticker_reach_the_order_record(stream, paper_broker, accounts, instruments, live_server):
    """With postbacks off, the broker's WebSocket order message is the only way the fill arrives."""
    from kiteconnect import KiteConnect

    from app.core.db import session_scope
    from app.models import Order, OrderEvent
    from app.orders.service import new_order

    option = next(i for i in instruments.all() if i.name == "NIFTY" and i.is_option)
    with session_scope() as session:
        order = new_order("primary", {"exchange": "NFO", "tradingsymbol": option.tradingsymbol,
                                      "instrument_token": option.instrument_token, "transaction_type": "BUY",
                                      "quantity": option.lot_size, "product": "NRML", "order_type": "MARKET",
                                      "variety": "regular", "validity": "DAY", "market_protection": -1.0})
        order.status = "SUBMITTING"
        session.add(order)
        order_id, tag = order.id, order.tag
    paper_broker.settings(postback_url="")
    try:
        creds = accounts["primary"]
        kite = KiteConnect(creds["api_key"], access_token=creds["access_token"], root=paper_broker.root)
        place_at_broker(kite, variety="regular", exchange="NFO", tradingsymbol=option.tradingsymbol,
                        transaction_type="BUY", quantity=option.lot_size, product="NRML", order_type="MARKET",
                        market_protection=-1, tag=tag)

        def complete():
            with session_scope() as session:
                return session.get(Order, order_id).status == "COMPLETE"

        wait_for(complete, 15, what="the order to complete from the ticker's order message")
        with session_scope() as session:
            sources = [e.detail.get("source") for e in session.query(OrderEvent).filter_by(order_id=order_id)
                       if e.detail]
        assert "websocket" in sources
    finally:
        paper_broker.settings(postback_url=f"{live_server.url}/postback/kite")


def test_killed_stream_hands_its_account_over(stream, test_env, accounts):
    import redis

    client = redis.Redis.from_url(test_env.redis_url)

    def holders() -> dict[str, str]:
        return {a: (client.get(f"stream:lease:{a}") or b"").decode() for a in accounts}

    second = StreamProcess().start()
    try:
        # Fair share: with two processes and two accounts, each ends up holding one.
        wait_for(lambda: sorted(holders().values()) == sorted([stream.holder, second.holder]), 30,
                 what="the accounts to be shared")
        second.kill()
        killed_at = time.monotonic()
        wait_for(lambda: set(holders().values()) == {stream.holder}, 20, interval=0.2,
                 what="the survivor to take the killed process's account")
        assert time.monotonic() - killed_at <= 15
        wait_for(lambda: len((stream.heartbeat() or {}).get("accounts", [])) == 2, 10,
                 what="the survivor to stream both accounts")
    finally:
        second.stop()
