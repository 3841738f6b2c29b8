"""The kill switch end to end against the paper broker, through the real worker.

An account of its own (a paper-broker api key nobody else trades on) holds resting LIMIT orders (two
placed through the service, one placed at the broker behind its back), an order accepted but never sent,
a short position and a long one above the freeze quantity. The kill switch halts the account at once,
then flattens it; the worker running it is killed in the middle of the square-off (a buy-back at the
broker, the sells not sent yet) and beat's watch hands the operation to the restarted worker. In the
end the broker's own positions are flat, its order book holds each square-off order once and no live
order, the account refuses orders with 409 `account_halted` until it resumes, and the order stream
told every step.
"""
from __future__ import annotations

from collections import Counter

import pytest
from kiteconnect import KiteConnect

from tests.support.accounts import paper_account, retire
from tests.support.channels import ChannelListener
from tests.support.orders import market_order, place_at_broker, resting_limit_order
from tests.support.waiting import wait_for

FILL_DELAY_MS = 2000  # a square-off order stays OPEN this long at the broker: the window the worker dies in


@pytest.fixture(scope="session")
def order_stack(live_server, paper_broker, instruments, celery_worker):
    """Accounts, instruments, the session's worker, postbacks to the live server (faults cleared around each test)."""
    return paper_broker


@pytest.fixture
def fresh_account(order_stack):
    """(account_id, KiteConnect of it): a service account on a paper-broker api key of its own, retired
    after the test (halted, its session perhaps expired)."""
    account_id, creds = paper_account(order_stack.root, "kill")
    yield account_id, KiteConnect(creds["api_key"], access_token=creds["access_token"], root=order_stack.root)
    retire([account_id])


@pytest.fixture(scope="module")
def nifty_options(instruments):
    """Two NIFTY calls of the nearest expiry near the money (market orders fill at once)."""
    calls = [i for i in instruments.all() if i.name == "NIFTY" and i.instrument_type == "CE"]
    expiry = min(c.expiry for c in calls)
    calls = sorted((c for c in calls if c.expiry == expiry), key=lambda c: c.strike)
    middle = len(calls) // 2
    return calls[middle], calls[middle + 1]


def placed(client, headers, account_id: str, body: dict) -> dict:
    response = client.post(f"/accounts/{account_id}/orders", json=body, headers=headers["admin"])
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def order(client, headers, order_id: str) -> dict:
    return client.get(f"/orders/{order_id}", headers=headers["admin"]).get_json()


def wait_status(client, headers, order_id: str, statuses, timeout: float = 15.0) -> dict:
    return wait_for(lambda: order(client, headers, order_id), timeout,
                    what=f"order {order_id} in {statuses}", until=lambda o: o["status"] in statuses)


def net_positions(kite) -> dict[str, int]:
    return {p["tradingsymbol"]: p["quantity"] for p in kite.positions()["net"]}


def queued_unsent(account_id: str, instrument) -> str:
    """An order the intake accepted whose task has not run yet (stored QUEUED, never sent)."""
    from app.core.db import session_scope
    from app.orders.schemas import validate_order
    from app.orders.service import new_order, request_hash
    from app.orders.states import QUEUED, record_event

    fields = validate_order(market_order(instrument))
    with session_scope() as session:
        stored = new_order(account_id, fields, digest=request_hash(account_id, fields))
        session.add(stored)
        record_event(session, stored, None, QUEUED, detail={"source": "api"})
    return stored.id


def kill_switch(client, headers, kill_switch_id: str) -> dict:
    return client.get(f"/kill-switches/{kill_switch_id}", headers=headers["admin"]).get_json()


def square_off_orders(operation: dict) -> list[dict]:
    return [o for step in operation["steps"] if step["step"] == "square_off" for o in step["detail"]["orders"]]


def restart(worker) -> None:
    """SIGKILL the worker with its pool, like a lost machine, and start it again."""
    readies = worker.log_path.read_bytes().count(b"ready.")
    worker.kill()
    worker.start(wait_ready=False)
    worker.wait_until(lambda: worker.log_path.read_bytes().count(b"ready.") > readies, 60, "ready again")


def test_the_kill_switch_flattens_the_account_once_despite_a_killed_worker_and_halts_it_until_resumed(
        client, headers, order_stack, celery_worker, fresh_account, nifty_options, test_env):
    from app.orders.dispatch import enqueue_placement
    from app.risk import kill_switch as kill_switches
    from app.risk.halt import HALTED_ERROR

    account_id, kite = fresh_account
    long_call, short_call = nifty_options
    lots_long = 1755 // long_call.lot_size + 3  # above NIFTY's freeze quantity (1755): two square-off slices
    quantity_long = lots_long * long_call.lot_size

    # Resting LIMIT orders (two through the service, one behind its back) and the positions.
    resting = [placed(client, headers, account_id, resting_limit_order(order_stack, long_call))["id"] for _ in range(2)]
    outside = place_at_broker(kite, account=account_id, variety="regular",
                              **{**resting_limit_order(order_stack, short_call), "tag": "outside"})
    ltp = order_stack.market([short_call.instrument_token])["instruments"][str(short_call.instrument_token)]["last_price"]
    gtt = kite.place_gtt(kite.GTT_TYPE_SINGLE, short_call.tradingsymbol, short_call.exchange, [round(ltp * 3, 1)], ltp,
                         [{"transaction_type": "BUY", "quantity": short_call.lot_size, "order_type": "LIMIT",
                           "product": "NRML", "price": round(ltp * 3, 1)}])["trigger_id"]
    long_buy = placed(client, headers, account_id, market_order(long_call, quantity=quantity_long))
    short_sell = placed(client, headers, account_id, market_order(short_call, transaction_type="SELL",
                                                                  quantity=2 * short_call.lot_size))
    for order_id in resting:
        wait_status(client, headers, order_id, {"OPEN"})
    for order_id in (long_buy["id"], short_sell["id"]):
        wait_status(client, headers, order_id, {"COMPLETE"})
    assert net_positions(kite) == {long_call.tradingsymbol: quantity_long,
                                   short_call.tradingsymbol: -2 * short_call.lot_size}
    unsent = queued_unsent(account_id, long_call)

    stream = ChannelListener(test_env.redis_url, f"orders:{account_id}")
    order_stack.set_faults(fill_delay_ms=FILL_DELAY_MS)
    try:
        started = client.post(f"/accounts/{account_id}/kill-switch", json={"reason": "desk limit"},
                              headers={**headers["admin"], "Idempotency-Key": "kill-1"})
        assert started.status_code == 202, started.get_json()
        operation = started.get_json()
        assert started.headers["Location"] == f"/kill-switches/{operation['id']}"
        assert operation["status"] == "running" and operation["reason"] == "desk limit"
        assert [(s["step"], s["status"]) for s in operation["steps"]] == [("halt", "done")]

        # Halted at once: no new order; the same operation for a second call, with or without the key.
        refused = client.post(f"/accounts/{account_id}/orders", json=market_order(long_call), headers=headers["admin"])
        assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "account_halted"
        assert refused.get_json()["error"]["details"]["halted"]["kill_switch_id"] == operation["id"]
        for extra in ({"Idempotency-Key": "kill-1"}, {}):
            again = client.post(f"/accounts/{account_id}/kill-switch", headers={**headers["admin"], **extra})
            assert again.status_code == 200 and again.get_json()["id"] == operation["id"]
        halted = client.get(f"/accounts/{account_id}", headers=headers["admin"]).get_json()["halted"]
        assert halted["kill_switch_id"] == operation["id"] and halted["reason"] == "desk limit"
        busy = client.post(f"/accounts/{account_id}/resume", headers=headers["admin"])
        assert busy.status_code == 409 and busy.get_json()["error"]["code"] == "kill_switch_running"
        for role in ("primary", "other"):  # another account's key: as if it did not exist
            assert client.get(f"/kill-switches/{operation['id']}", headers=headers[role]).status_code == 404

        # Mid square-off: the buy-back is at the broker (filling), the sells wait for it. The worker dies.
        def buy_back_in_flight():
            orders = square_off_orders(kill_switch(client, headers, operation["id"]))
            buys = [order(client, headers, o["id"]) for o in orders if o["transaction_type"] == "BUY"]
            return orders if buys and all(b["broker_order_id"] and b["status"] == "OPEN" for b in buys) else None
        planned = wait_for(buy_back_in_flight, 20, interval=0.05, what="the buy-back at the broker")
        restart(celery_worker)
        sells = [order(client, headers, o["id"]) for o in planned if o["transaction_type"] == "SELL"]
        assert sells and all(s["status"] == "QUEUED" and not s["broker_order_id"] for s in sells)

        # Beat's watch hands the silent operation to the restarted worker, which finishes it.
        wait_for(lambda: kill_switches.resume_stalled(stale_after=1.0), 20, interval=0.2,
                 what="the operation's run to go silent")
        done = wait_for(lambda: kill_switch(client, headers, operation["id"]), 40, interval=0.2,
                        what="the kill switch to end", until=lambda o: o["status"] != "running")
        messages = [m for _, _, m in stream.collect(0.5)]
    finally:
        stream.close()
        order_stack.clear_faults()

    assert done["status"] == "done", done
    assert done["runs"] >= 2  # carried on by a second run after the first one's worker died
    steps = {(s["step"], s.get("round")): s for s in done["steps"]}
    assert [s["step"] for s in done["steps"]] == ["halt", "cancel_queued", "cancel_open", "square_off", "verify"]
    assert steps[("cancel_queued", None)]["detail"]["cancelled"] == 1
    broker_ids = {order(client, headers, order_id)["broker_order_id"] for order_id in resting} | {outside}
    assert broker_ids <= set(steps[("cancel_open", None)]["detail"]["cancelled"])
    assert steps[("cancel_open", None)]["detail"]["gtts"] == {"deleted": [gtt], "refused": {}}
    assert kite.get_gtt(gtt)["status"] == "deleted"  # a trigger firing later would trade a halted account

    # The broker's own word: flat, nothing live, every square-off order there once and within the freeze.
    assert set(net_positions(kite).values()) == {0}
    book = kite.orders()
    assert not [o for o in book if o["status"] in ("OPEN", "TRIGGER PENDING")]
    square_offs = [order(client, headers, o["id"]) for o in square_off_orders(done)]
    assert [o["transaction_type"] for o in square_offs] == ["BUY", "SELL", "SELL"]  # short bought back first
    assert all(o["role"] == "square_off" and o["order_type"] == "MARKET" and o["market_protection"] == -1
               and o["status"] == "COMPLETE" for o in square_offs)
    tags = Counter(o["tag"] for o in book)
    assert all(tags[o["tag"]] == 1 for o in square_offs)
    sold = [o for o in book if o["tradingsymbol"] == long_call.tradingsymbol and o["transaction_type"] == "SELL"]
    assert sorted(o["quantity"] for o in sold) == sorted([1755, quantity_long - 1755])  # no sell sent twice
    bought_back = [o for o in book if o["tradingsymbol"] == short_call.tradingsymbol and o["transaction_type"] == "BUY"
                   and o["tag"] != "outside"]
    assert [o["quantity"] for o in bought_back] == [2 * short_call.lot_size]
    for order_id in resting:
        assert order(client, headers, order_id)["status"] == "CANCELLED"
    never_sent = order(client, headers, unsent)
    assert never_sent["status"] == "CANCELLED" and never_sent["error"] == HALTED_ERROR
    assert never_sent["tag"] not in tags

    # Every step on the order stream, the last one saying done.
    reported = [m["data"] for m in messages if m["type"] == "kill_switch"]
    assert {s["step"] for m in reported for s in m["steps"]} >= {"halt", "cancel_queued", "cancel_open",
                                                                 "square_off", "verify"}
    assert reported[-1]["status"] == "done"

    # Still halted: an order accepted in the instant of the halt is withdrawn by the worker, never sent.
    late = queued_unsent(account_id, long_call)
    enqueue_placement(late, account_id)
    assert wait_status(client, headers, late, {"CANCELLED"})["error"] == HALTED_ERROR
    refused = client.post(f"/accounts/{account_id}/orders", json=market_order(long_call), headers=headers["admin"])
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "account_halted"

    # Resumed: trading again.
    resumed = client.post(f"/accounts/{account_id}/resume", headers=headers["admin"])
    assert resumed.status_code == 200, resumed.get_json()
    assert resumed.get_json()["halted"] is None and resumed.get_json()["was"]["kill_switch_id"] == done["id"]
    assert client.get(f"/accounts/{account_id}", headers=headers["admin"]).get_json()["halted"] is None
    after = placed(client, headers, account_id, market_order(long_call))
    assert wait_status(client, headers, after["id"], {"COMPLETE"})["filled_quantity"] == long_call.lot_size


def test_a_flat_account_is_done_at_once_a_dead_session_fails_it_and_only_its_keys_may_act(
        client, headers, order_stack, fresh_account):
    from app.kite_session.state import mark_expired
    from app.risk import kill_switch as kill_switches

    account_id, _ = fresh_account
    for path in (f"/accounts/{account_id}/kill-switch", f"/accounts/{account_id}/resume"):
        assert client.post(path, headers=headers["primary"]).status_code == 403
    assert client.post("/accounts/nobody/kill-switch", headers=headers["admin"]).status_code == 404
    assert client.get("/kill-switches/nothing", headers=headers["admin"]).status_code == 404
    assert client.post(f"/accounts/{account_id}/kill-switch", json=["not", "an", "object"],
                       headers=headers["admin"]).status_code == 422

    # Nothing to flatten: done at once. The risk limits' entry point finds the same operation.
    started = client.post(f"/accounts/{account_id}/kill-switch", headers=headers["admin"])
    assert started.status_code == 202, started.get_json()
    operation, created = kill_switches.start(account_id, "daily loss", "risk_limits")
    assert not created and operation.id == started.get_json()["id"]
    done = wait_for(lambda: client.get(f"/kill-switches/{operation.id}", headers=headers["admin"]).get_json(), 30,
                    interval=0.2, what="the kill switch to end", until=lambda o: o["status"] != "running")
    assert done["status"] == "done" and done["steps"][-1]["detail"]["positions"] == "flat", done
    assert done["requested_by"].startswith("test")
    assert client.post(f"/accounts/{account_id}/resume", headers=headers["admin"]).get_json()["halted"] is None
    assert client.post(f"/accounts/{account_id}/resume", headers=headers["admin"]).get_json()["was"] is None

    # A dead Kite session: nothing can reach the broker, so it fails saying why, and the account stays halted.
    mark_expired(account_id, "token expired", "test")
    again = client.post(f"/accounts/{account_id}/kill-switch", json={"reason": "again"}, headers=headers["admin"])
    assert again.status_code == 202 and again.get_json()["id"] != operation.id
    failed = wait_for(lambda: client.get(f"/kill-switches/{again.get_json()['id']}",
                                         headers=headers["admin"]).get_json(), 30, interval=0.2,
                      what="the kill switch to end", until=lambda o: o["status"] != "running")
    assert failed["status"] == "failed" and "log in again" in failed["error"], failed
    assert client.get(f"/accounts/{account_id}", headers=headers["admin"]).get_json()["halted"]["reason"] == "again"
    assert client.post(f"/accounts/{account_id}/resume", headers=headers["admin"]).status_code == 200
