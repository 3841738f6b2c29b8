"""Risk limits per account against the real stack: `GET/PUT /accounts/{id}/limits` (admin only, the
body validated), and each limit refusing at intake with 422 `risk_limit` — a single order, and a
batch refused whole before any leg is stored — while a request within the limits, or one already
placed under its Idempotency-Key, goes through. The daily loss is a real losing position at the
paper broker, its market moved down.

Each test trades on an account of its own (a paper-broker api key nobody else uses), so its open
orders and positions are only its own; its limits are removed afterwards.
"""
from __future__ import annotations

from decimal import Decimal

import pytest
from kiteconnect import KiteConnect
from sqlalchemy import delete, func, select

from app.core.db import session_scope
from app.models import AccountLimits, Batch, Order
from tests.support.accounts import paper_account, retire
from tests.support.batches import within_rate_limit
from tests.support.orders import market_order
from tests.support.waiting import wait_for


@pytest.fixture(scope="session")
def order_stack(live_server, paper_broker, instruments, celery_worker):
    """Accounts, instruments, a worker, postbacks to the live server (the broker faults are cleared
    around each test that uses it: tests/integration/conftest.py)."""
    return paper_broker


@pytest.fixture
def fresh_account(order_stack):
    """(account_id, creds): a service account on a paper-broker api key of its own; its limits are
    removed and it is retired after the test."""
    made = []

    def make() -> tuple[str, dict]:
        account_id, creds = paper_account(order_stack.root, "risk")
        made.append(account_id)
        return account_id, creds

    yield make
    with session_scope() as session:
        session.execute(delete(AccountLimits).where(AccountLimits.account_id.in_(made)))
    retire(made)


@pytest.fixture(scope="module")
def nifty_calls(instruments):
    """The nearest NIFTY expiry's calls, by strike."""
    calls = [i for i in instruments.all() if i.name == "NIFTY" and i.instrument_type == "CE"]
    expiry = min(c.expiry for c in calls)
    return sorted((c for c in calls if c.expiry == expiry), key=lambda c: c.strike)


@pytest.fixture(scope="module")
def banknifty_call(instruments):
    return next(i for i in instruments.all() if i.name == "BANKNIFTY" and i.instrument_type == "CE")


def at_the_money(broker, calls):
    spot = broker.market()["spot"]["NIFTY"]
    return min(calls, key=lambda c: abs(c.strike - spot))


def last_price(broker, instrument) -> float:
    token = str(instrument.instrument_token)
    return broker.market([instrument.instrument_token])["instruments"][token]["last_price"]


def resting(broker, instrument, lots: int = 1, **changes) -> dict:
    """A LIMIT BUY at half the market: it rests OPEN at the broker."""
    price = round(round(last_price(broker, instrument) * 0.5 / instrument.tick_size) * instrument.tick_size, 2)
    return market_order(instrument, quantity=instrument.lot_size * lots, order_type="LIMIT", price=price, **changes)


def put_limits(client, headers, account_id: str, **limits):
    response = client.put(f"/accounts/{account_id}/limits", json=limits, headers=headers["admin"])
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def place(client, headers, account_id: str, body: dict, key: str | None = None):
    extra = {"Idempotency-Key": key} if key else {}
    return client.post(f"/accounts/{account_id}/orders", json=body, headers={**headers["admin"], **extra})


def place_batch(client, headers, account_id: str, legs: list[dict]):
    return client.post(f"/accounts/{account_id}/batch-orders", json={"legs": legs, "margin_check": False, "wait": 0},
                       headers=headers["admin"])


def refused(response, limit: str) -> dict:
    """The answer is the 422 `risk_limit` naming `limit`; its details."""
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "risk_limit" and error["details"]["limit"] == limit, error
    assert limit in error["message"] and "nothing was placed" in error["message"]
    return error["details"]


def stored(account_id: str) -> dict:
    with session_scope() as session:
        return {"orders": session.scalar(select(func.count()).select_from(Order).where(Order.account_id == account_id)),
                "batches": session.scalar(select(func.count()).select_from(Batch).where(Batch.account_id == account_id))}


# --- the endpoint -------------------------------------------------------------------------------------

def test_limits_are_stored_shown_and_replaced_whole(client, headers, fresh_account):
    account_id, _ = fresh_account()
    shown = client.get(f"/accounts/{account_id}/limits", headers=headers["admin"]).get_json()
    assert shown == {"account_id": account_id, "max_lots_per_order": None, "max_order_value": None,
                     "max_open_orders": None, "max_daily_loss": None, "on_breach": "reject",
                     "updated_at": None, "updated_by": None, "daily_pnl": None}

    put = put_limits(client, headers, account_id, max_lots_per_order={"NIFTY": 10, "*": 2},
                     max_order_value=250000.5, max_open_orders=20, max_daily_loss=15000, on_breach="kill")
    shown = client.get(f"/accounts/{account_id}/limits", headers=headers["admin"]).get_json()
    assert shown == put
    assert {k: shown[k] for k in ("max_lots_per_order", "max_order_value", "max_open_orders", "max_daily_loss",
                                  "on_breach")} == {"max_lots_per_order": {"NIFTY": 10, "*": 2},
                                                    "max_order_value": 250000.5, "max_open_orders": 20,
                                                    "max_daily_loss": 15000.0, "on_breach": "kill"}
    assert shown["updated_at"] and shown["updated_by"]

    # A PUT is the whole set: what it leaves out is no longer a limit.
    put = put_limits(client, headers, account_id, max_open_orders=5)
    assert (put["max_lots_per_order"], put["max_order_value"], put["max_open_orders"], put["max_daily_loss"],
            put["on_breach"]) == (None, None, 5, None, "reject")


def test_only_an_admin_key_reads_or_sets_limits(client, headers, accounts):
    for role in ("primary", "other"):   # `primary`'s own key included
        assert client.get("/accounts/primary/limits", headers=headers[role]).status_code == 403
        response = client.put("/accounts/primary/limits", json={"max_open_orders": 1}, headers=headers[role])
        assert response.status_code == 403 and response.get_json()["error"]["code"] == "forbidden"
    assert client.get("/accounts/primary/limits").status_code == 401
    assert client.get("/accounts/primary/limits", headers=headers["admin"]).get_json()["max_open_orders"] is None
    for method in ("get", "put"):
        response = getattr(client, method)("/accounts/no-such-account/limits", json={}, headers=headers["admin"])
        assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("body, field", [
    ({"max_order_value": -1}, "max_order_value"),
    ({"max_open_orders": "3"}, "max_open_orders"),
    ({"max_lots_per_order": {"nifty": 2}}, "max_lots_per_order"),
    ({"on_breach": "panic"}, "on_breach"),
    ({"max_positions": 3}, "max_positions"),
])
def test_a_bad_limit_is_a_422_naming_it_and_changes_nothing(client, headers, fresh_account, body, field):
    account_id, _ = fresh_account()
    put_limits(client, headers, account_id, max_open_orders=7)
    response = client.put(f"/accounts/{account_id}/limits", json=body, headers=headers["admin"])
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_error" and field in error["details"] and field in error["message"]
    assert client.get(f"/accounts/{account_id}/limits", headers=headers["admin"]).get_json()["max_open_orders"] == 7
    response = client.put(f"/accounts/{account_id}/limits", json=[1], headers=headers["admin"])
    assert response.status_code == 422   # not an object


# --- each limit refuses at intake ------------------------------------------------------------------------

def test_the_lots_limit_refuses_per_underlying_with_the_star_default(client, headers, order_stack, fresh_account,
                                                                    nifty_calls, banknifty_call):
    account_id, _ = fresh_account()
    put_limits(client, headers, account_id, max_lots_per_order={"NIFTY": 3, "*": 1})
    call = at_the_money(order_stack, nifty_calls)

    details = refused(place(client, headers, account_id, resting(order_stack, call, lots=4)), "max_lots_per_order")
    assert details == {"limit": "max_lots_per_order", "limit_value": 3, "value": 4, "underlying": "NIFTY"}
    details = refused(place(client, headers, account_id, resting(order_stack, banknifty_call, lots=2)),
                      "max_lots_per_order")
    assert (details["underlying"], details["limit_value"], details["value"]) == ("BANKNIFTY", 1, 2)

    # The batch is checked whole: its first leg is within the limit, its second is not, and no leg is stored.
    legs = [resting(order_stack, call, lots=3), resting(order_stack, banknifty_call, lots=2)]
    details = refused(place_batch(client, headers, account_id, legs), "max_lots_per_order")
    assert (details["leg"], details["underlying"]) == (1, "BANKNIFTY")
    assert stored(account_id) == {"orders": 0, "batches": 0}

    assert place(client, headers, account_id, resting(order_stack, call, lots=3)).status_code == 202

    # An order above the freeze quantity (NIFTY: 27 lots) counts whole, not slice by slice.
    put_limits(client, headers, account_id, max_lots_per_order={"NIFTY": 30})
    details = refused(place(client, headers, account_id, resting(order_stack, call, lots=31)), "max_lots_per_order")
    assert details["value"] == 31
    assert stored(account_id)["orders"] == 1


def test_the_order_value_limit_refuses_a_priced_and_a_market_order(client, headers, order_stack, fresh_account,
                                                                   nifty_calls):
    account_id, _ = fresh_account()
    call = at_the_money(order_stack, nifty_calls)
    lot_value = Decimal(str(last_price(order_stack, call))) * call.lot_size
    limit = (lot_value * Decimal("1.5")).quantize(Decimal("0.01"))   # one lot fits, two do not
    put_limits(client, headers, account_id, max_order_value=float(limit))

    body = resting(order_stack, call, lots=4)      # at half the market: four lots are worth two
    details = refused(place(client, headers, account_id, body), "max_order_value")
    assert Decimal(str(details["value"])) == Decimal(str(body["price"])) * body["quantity"]
    assert details["limit_value"] == float(limit)

    details = refused(place(client, headers, account_id, market_order(call, quantity=2 * call.lot_size)),
                      "max_order_value")
    assert lot_value * Decimal("1.7") < Decimal(str(details["value"])) < lot_value * Decimal("2.3")   # the live price

    # Each leg of a batch is an order: the second is worth too much, so nothing is stored.
    legs = [resting(order_stack, call, lots=2), resting(order_stack, call, lots=4)]
    assert refused(place_batch(client, headers, account_id, legs), "max_order_value")["leg"] == 1
    assert stored(account_id) == {"orders": 0, "batches": 0}

    assert place(client, headers, account_id, resting(order_stack, call, lots=2)).status_code == 202


def test_the_open_orders_limit_counts_what_is_open_and_what_the_request_adds(client, headers, order_stack,
                                                                           fresh_account, nifty_calls):
    account_id, _ = fresh_account()
    call = at_the_money(order_stack, nifty_calls)
    put_limits(client, headers, account_id, max_open_orders=3)
    body = resting(order_stack, call)
    first = place(client, headers, account_id, body, key="risk-open-1")
    assert first.status_code == 202
    assert place(client, headers, account_id, resting(order_stack, call, lots=2)).status_code == 202

    # Two open, a batch of two legs would make four: refused whole.
    legs = [resting(order_stack, call), resting(order_stack, call, lots=2)]
    details = refused(place_batch(client, headers, account_id, legs), "max_open_orders")
    assert (details["limit_value"], details["value"]) == (3, 4)
    assert stored(account_id) == {"orders": 2, "batches": 0}

    assert place(client, headers, account_id, resting(order_stack, call, lots=3)).status_code == 202
    details = refused(place(client, headers, account_id, resting(order_stack, call, lots=4)), "max_open_orders")
    assert (details["limit_value"], details["value"]) == (3, 4)
    # The order already placed under its key is given back, not refused.
    again = place(client, headers, account_id, body, key="risk-open-1")
    assert again.status_code == 200 and again.get_json()["id"] == first.get_json()["id"]


# --- the daily loss -------------------------------------------------------------------------------------

@pytest.fixture
def losing_position(client, headers, order_stack, fresh_account, nifty_calls):
    """An account long one lot of an at-the-money NIFTY call, the index then moved 3 % down: (account_id,
    its kite client, its loss as the broker reports it). The index is put back afterwards."""
    account_id, creds = fresh_account()
    kite = KiteConnect(creds["api_key"], access_token=creds["access_token"], root=order_stack.root)
    call = at_the_money(order_stack, nifty_calls)
    spot = order_stack.market()["spot"]["NIFTY"]
    response = place(client, headers, account_id, market_order(call))
    assert response.status_code == 202, response.get_json()
    order_id = response.get_json()["id"]
    wait_for(lambda: client.get(f"/orders/{order_id}", headers=headers["admin"]).get_json()["status"] == "COMPLETE",
             20, what="the call bought")
    try:
        order_stack.set_market(spot={"NIFTY": spot * 0.97})
        rows = within_rate_limit(kite.positions)["net"]
        loss = -sum(Decimal(str(r["m2m"])) for r in rows)
        assert loss > 100, rows
        yield account_id, kite, loss
    finally:
        order_stack.set_market(spot={"NIFTY": spot})


def test_the_daily_loss_limit_refuses_new_orders_once_the_loss_reaches_it(client, headers, order_stack,
                                                                       losing_position, nifty_calls):
    account_id, _, loss = losing_position
    call = at_the_money(order_stack, nifty_calls)
    put_limits(client, headers, account_id, max_daily_loss=float((loss * 20).quantize(Decimal("0.01"))))
    assert place(client, headers, account_id, resting(order_stack, call)).status_code == 202

    shown = client.get(f"/accounts/{account_id}/limits", headers=headers["admin"]).get_json()["daily_pnl"]
    assert shown["pnl"] < 0 and shown["loss"] == -shown["pnl"] and shown["positions"] == 1 and shown["at"]
    assert abs(Decimal(str(shown["loss"])) - loss) < loss * Decimal("0.25")   # what the broker said, ± the walk

    limit = (loss / 2).quantize(Decimal("0.01"))
    put_limits(client, headers, account_id, max_daily_loss=float(limit))
    before = stored(account_id)
    details = refused(place(client, headers, account_id, resting(order_stack, call)), "max_daily_loss")
    assert details["limit_value"] == float(limit) and details["value"] >= float(limit)
    refused(place_batch(client, headers, account_id, [resting(order_stack, call)] * 2), "max_daily_loss")
    assert stored(account_id) == before


def test_a_daily_loss_that_cannot_be_read_refuses_the_order(client, headers, order_stack, fresh_account,
                                                           nifty_calls):
    account_id, _ = fresh_account()
    put_limits(client, headers, account_id, max_daily_loss=1000)
    order_stack.set_faults(error_next=1, error_status=503)     # the positions call fails once
    response = place(client, headers, account_id, resting(order_stack, at_the_money(order_stack, nifty_calls)))
    assert response.status_code == 503, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "risk_check_unavailable" and error["details"]["limit"] == "max_daily_loss"
    assert response.headers["Retry-After"]
    assert stored(account_id) == {"orders": 0, "batches": 0}


def test_a_daily_loss_breach_with_on_breach_kill_starts_the_kill_switch_once(client, headers, order_stack,
                                                                            losing_position, nifty_calls):
    """Intake sees the breach first: the order is refused and the kill switch started (halting the
    account); seeing it again — the beat's refresh — starts nothing more. The kill switch flattens the account."""
    from app.models import KillSwitch
    from app.risk import kill_switch
    from workers.tasks.risk_limits import refresh_daily_pnl

    account_id, kite, loss = losing_position
    call = at_the_money(order_stack, nifty_calls)
    put_limits(client, headers, account_id, max_daily_loss=float((loss / 2).quantize(Decimal("0.01"))),
               on_breach="kill")
    refused(place(client, headers, account_id, resting(order_stack, call)), "max_daily_loss")

    def operations() -> list:
        with session_scope() as session:
            return list(session.scalars(select(KillSwitch).where(KillSwitch.account_id == account_id)))

    [operation] = operations()
    assert operation.requested_by == "risk_limit" and "daily loss limit" in operation.reason
    seen = refresh_daily_pnl.run()
    assert account_id in seen["refreshed"] and account_id in seen["breached"]
    assert [o.id for o in operations()] == [operation.id]
    response = place(client, headers, account_id, resting(order_stack, call))
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "account_halted"

    ended = wait_for(lambda: kill_switch.get(operation.id), 60, until=lambda o: o.status != "running",
                     what="the kill switch to end")
    assert ended.status == "done", ended.error
    assert all(int(r["quantity"]) == 0 for r in within_rate_limit(kite.positions)["net"])


def test_a_modification_is_held_to_the_per_order_limits(client, headers, order_stack, fresh_account, nifty_calls):
    """More lots (or value) by PATCH is a new risk like a new order: refused, the order unchanged."""
    account_id, _ = fresh_account()
    call = at_the_money(order_stack, nifty_calls)
    put_limits(client, headers, account_id, max_lots_per_order={"NIFTY": 2})
    order_id = place(client, headers, account_id, resting(order_stack, call, lots=1)).get_json()["id"]

    def opened():
        record = client.get(f"/orders/{order_id}", headers=headers["admin"]).get_json()
        return record if record["status"] == "OPEN" else None
    wait_for(opened, 15, what="the resting order OPEN")

    response = client.patch(f"/orders/{order_id}", json={"quantity": 3 * call.lot_size}, headers=headers["admin"])
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "risk_limit" and error["details"]["value"] == 3
    assert error["message"].endswith("the order is unchanged")
    record = client.get(f"/orders/{order_id}", headers=headers["admin"]).get_json()
    assert record["quantity"] == call.lot_size and not any(
        (e.get("detail") or {}).get("request") == "modify" for e in record["events"])

    response = client.patch(f"/orders/{order_id}", json={"quantity": 2 * call.lot_size}, headers=headers["admin"])
    assert response.status_code == 202, response.get_json()  # within the limit: handed to the worker
    client.delete(f"/orders/{order_id}", headers=headers["admin"])
