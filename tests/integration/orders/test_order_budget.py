"""The daily order budget per Zerodha account, against the real stack: placements counted in Redis
when the worker sends them, the intake's 429 with Retry-After (orders, batches), accounts of one
Zerodha user sharing one budget, `GET /accounts/{id}`, the gauges, the paper broker's own count,
and a queued order the budget has no room for when its turn comes (the day window and the keying
without services: tests/unit/broker/test_order_budget.py).

Each test trades on accounts of its own (a paper-broker api key and, where it matters, a Zerodha
user nobody else has), so nothing counted before it counts in it; the budget is lowered for the
test in this process, where the intake and `submit_order` run.
"""
from __future__ import annotations

import secrets
from datetime import datetime, timezone

import pytest
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kite_errors

from app.broker.order_budget import budget_day
from app.core.timestamps import iso
from tests.support.accounts import paper_account
from tests.support.batches import leg
from tests.support.metric_series import samples
from tests.support.orders import market_order
from tests.support.waiting import wait_for


@pytest.fixture
def fresh_account(order_stack):
    """`fresh_account(cash=…, broker_user_id=…)` → (account_id, creds): a service account on a
    paper-broker api key of its own, logged in as `broker_user_id` when given."""
    from app import accounts as account_service
    from app.core.db import session_scope

    def make(cash: float = 1e9, broker_user_id: str | None = None) -> tuple[str, dict]:
        account_id, creds = paper_account(order_stack.root, "budget", cash)
        if broker_user_id:  # what POST /accounts/{id}/session stores from Kite's answer
            with session_scope() as session:
                account_service.set_access_token(session, account_id, creds["access_token"], broker_user_id)
        return account_id, creds
    return make


def zerodha_user() -> str:
    return f"ZT{secrets.token_hex(3).upper()}"


def place(client, headers, account_id: str, body: dict, key: str | None = None):
    extra = {"Idempotency-Key": key} if key else {}
    return client.post(f"/accounts/{account_id}/orders", json=body, headers={**headers["admin"], **extra})


def placed(client, headers, account_id: str, body: dict, key: str | None = None) -> str:
    response = place(client, headers, account_id, body, key)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def wait_final(client, headers, order_id: str, statuses=("COMPLETE",)) -> dict:
    def final():
        record = client.get(f"/orders/{order_id}", headers=headers["admin"]).get_json()
        return record if record["status"] in statuses else None
    return wait_for(final, 20, what=f"order {order_id} in {statuses}")


def budget_of(client, headers, account_id: str) -> dict:
    response = client.get(f"/accounts/{account_id}", headers=headers["admin"])
    assert response.status_code == 200, response.get_json()
    return response.get_json()["order_budget"]


def order_count(client, headers, account_id: str) -> int:
    return client.get(f"/accounts/{account_id}/orders", headers=headers["admin"]).get_json()["count"]


def assert_refused(response, needed: int) -> dict:
    """A 429 order_budget_exhausted whose Retry-After is the time left until midnight IST."""
    assert response.status_code == 429, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "order_budget_exhausted"
    assert error["message"].startswith("daily order budget exhausted: ")
    assert error["details"]["needed"] == needed
    now = datetime.now(timezone.utc)
    assert abs(int(response.headers["Retry-After"]) - budget_day(now).retry_after_s(now)) <= 2
    assert error["details"]["resets_at"] == iso(budget_day(now).resets_at)
    return error


def test_placements_count_and_an_order_beyond_the_budget_is_refused_at_intake(
        client, headers, order_stack, option, fresh_account, settings_override):
    settings_override(order_budget_per_day=3)
    account_id, creds = fresh_account()
    resets_at = iso(budget_day().resets_at)
    assert budget_of(client, headers, account_id) == {"used": 0, "queued": 0, "remaining": 3, "limit": 3,
                                                      "resets_at": resets_at}

    first = placed(client, headers, account_id, market_order(option), key="first-of-the-day")
    for order_id in [first] + [placed(client, headers, account_id, market_order(option)) for _ in range(2)]:
        wait_final(client, headers, order_id)
    assert len(order_stack.orders(creds["api_key"])) == 3
    assert budget_of(client, headers, account_id) == {"used": 3, "queued": 0, "remaining": 0, "limit": 3,
                                                      "resets_at": resets_at}

    error = assert_refused(place(client, headers, account_id, market_order(option)), needed=1)
    assert error["message"].startswith(f"daily order budget exhausted: account {account_id} may send 3 orders a day")
    assert error["details"] == {"used": 3, "queued": 0, "remaining": 0, "limit": 3, "resets_at": resets_at,
                                "needed": 1}
    # Nothing stored, nothing sent.
    assert order_count(client, headers, account_id) == 3
    assert len(order_stack.orders(creds["api_key"])) == 3
    # A client retrying a request that did go through gets its order back, not a 429.
    again = place(client, headers, account_id, market_order(option), key="first-of-the-day")
    assert again.status_code == 200 and again.get_json()["id"] == first

    exported = samples(client.get("/metrics").get_data(as_text=True))
    assert exported[("order_budget_used", (("account_id", account_id),))] == 3
    assert exported[("order_budget_used_ratio", (("account_id", account_id),))] == 1.0


def test_a_replay_beyond_the_budget_is_refused_and_the_order_stays_dead_lettered(
        client, headers, order_stack, option, fresh_account, settings_override):
    from app.core.db import session_scope
    from app.orders.schemas import validate_order
    from app.orders.service import new_order

    settings_override(order_budget_per_day=1)
    account_id, creds = fresh_account()
    wait_final(client, headers, placed(client, headers, account_id, market_order(option)))
    with session_scope() as session:
        dead = new_order(account_id, validate_order(market_order(option)))
        dead.status, dead.attempts, dead.error = "DEAD_LETTER", 5, "gave up after 5 attempts: ReadTimeout"
        session.add(dead)
        dead_id = dead.id

    assert_refused(client.post(f"/orders/{dead_id}/replay", headers=headers["admin"]), needed=1)
    record = client.get(f"/orders/{dead_id}", headers=headers["admin"]).get_json()
    assert record["status"] == "DEAD_LETTER" and record["attempts"] == 5  # replayable once the budget resets
    assert len(order_stack.orders(creds["api_key"])) == 1


def test_a_batch_whose_legs_do_not_all_fit_is_refused_whole(
        client, headers, order_stack, option, future, fresh_account, settings_override):
    from sqlalchemy import func, select

    from app.core.db import session_scope
    from app.models import Batch

    settings_override(order_budget_per_day=3)
    account_id, creds = fresh_account()
    wait_final(client, headers, placed(client, headers, account_id, market_order(option)))

    legs = [leg(option, "BUY"), leg(future, "BUY"), leg(option, "BUY")]
    refused = client.post(f"/accounts/{account_id}/batch-orders", headers=headers["admin"],
                          json={"legs": legs, "wait": 0, "margin_check": False})
    error = assert_refused(refused, needed=3)
    assert error["details"]["remaining"] == 2
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Batch).where(Batch.account_id == account_id)) == 0
    assert order_count(client, headers, account_id) == 1
    assert len(order_stack.orders(creds["api_key"])) == 1

    # Two legs fit exactly.
    fits = client.post(f"/accounts/{account_id}/batch-orders", headers=headers["admin"],
                       json={"legs": legs[:2], "wait": 15, "margin_check": False})
    assert fits.status_code == 200 and fits.get_json()["status"] == "COMPLETED", fits.get_json()
    assert len(order_stack.orders(creds["api_key"])) == 3
    assert budget_of(client, headers, account_id)["remaining"] == 0


def test_accounts_of_one_zerodha_user_share_one_budget(
        client, headers, order_stack, option, fresh_account, settings_override):
    from app.core.redis_client import get_redis

    settings_override(order_budget_per_day=2)
    user = zerodha_user()
    (desk_a, creds_a), (desk_b, creds_b) = fresh_account(broker_user_id=user), fresh_account(broker_user_id=user)
    elsewhere, _ = fresh_account(broker_user_id=zerodha_user())

    wait_final(client, headers, placed(client, headers, desk_a, market_order(option)))
    wait_final(client, headers, placed(client, headers, desk_b, market_order(option)))
    for desk in (desk_a, desk_b):
        assert budget_of(client, headers, desk)["used"] == 2 and budget_of(client, headers, desk)["remaining"] == 0
    listed = {a["account_id"]: a["order_budget"] for a in client.get("/accounts", headers=headers["admin"]).get_json()}
    assert listed[desk_a] == listed[desk_b] and listed[desk_a]["used"] == 2 and listed[elsewhere]["used"] == 0
    # Both placements went through the rate limiter of the one Zerodha account too.
    assert get_redis().zcard(f"ratelimit:orders:zerodha:{user}:placements") == 2

    error = assert_refused(place(client, headers, desk_a, market_order(option)), needed=1)
    assert error["message"].startswith(f"daily order budget exhausted: Zerodha account {user} may send 2 orders")
    assert len(order_stack.orders(creds_a["api_key"])) == 1 and len(order_stack.orders(creds_b["api_key"])) == 1
    # Another Zerodha user's budget is untouched.
    assert budget_of(client, headers, elsewhere)["remaining"] == 2


def test_the_paper_broker_counts_the_same_placements_rejected_ones_included(
        client, headers, order_stack, option, future, fresh_account, settings_override):
    """Our budget and the broker's own per-day limit set alike: the broker takes every placement
    we send (the RMS-rejected one counts at both), and the one we refuse would be its refusal too."""
    settings_override(order_budget_per_day=3)
    account_id, creds = fresh_account(cash=100_000)  # enough for an option's premium, not a future's margin
    original = order_stack.settings()["order_limits"]["per_day"]
    order_stack.settings(order_limits={"per_day": 3})
    try:
        short = placed(client, headers, account_id, market_order(future, transaction_type="SELL"))
        longs = [placed(client, headers, account_id, market_order(option)) for _ in range(2)]
        assert "Insufficient funds" in wait_final(client, headers, short, ("REJECTED",))["status_message"]
        for order_id in longs:
            wait_final(client, headers, order_id)
        at_broker = order_stack.orders(creds["api_key"])
        assert sorted(o["status"] for o in at_broker) == ["COMPLETE", "COMPLETE", "REJECTED"]
        assert budget_of(client, headers, account_id)["used"] == len(at_broker) == 3

        assert_refused(place(client, headers, account_id, market_order(option)), needed=1)
        assert len(order_stack.orders(creds["api_key"])) == 3
        # The broker's count is at its limit as well: what we refused it would have refused.
        kite = KiteConnect(creds["api_key"], access_token=creds["access_token"], root=order_stack.root)
        with pytest.raises(kite_errors.NetworkException, match="Maximum allowed order requests exceeded"):
            kite.place_order("regular", option.exchange, option.tradingsymbol, "BUY", option.lot_size, "NRML",
                             "MARKET", market_protection=-1)
    finally:
        order_stack.settings(order_limits={"per_day": original})


def test_an_order_queued_when_the_budget_runs_out_is_rejected_without_being_sent(
        client, headers, order_stack, option, fresh_account, settings_override):
    from app.core.db import session_scope
    from app.orders.execution import submit_order
    from app.orders.schemas import validate_order
    from app.orders.service import new_order
    from app.orders.states import QUEUED, record_event

    settings_override(order_budget_per_day=1)
    account_id, creds = fresh_account()
    wait_final(client, headers, placed(client, headers, account_id, market_order(option)))
    # An order accepted beside it before it was sent (two requests racing past the intake), still queued.
    with session_scope() as session:
        late = new_order(account_id, validate_order(market_order(option)))
        session.add(late)
        record_event(session, late, None, QUEUED, detail={"source": "api"})
        late_id = late.id
    assert budget_of(client, headers, account_id) | {"resets_at": None} == {
        "used": 1, "queued": 1, "remaining": 0, "limit": 1, "resets_at": None}

    outcome = submit_order(late_id)  # its turn in the worker (the worker's own code, in this process)
    assert outcome.action == "done" and outcome.status == "REJECTED"  # final: no retry, no deferral
    record = client.get(f"/orders/{late_id}", headers=headers["admin"]).get_json()
    assert record["status"] == "REJECTED" and record["broker_order_id"] is None
    assert record["error"].startswith(f"order budget exhausted: not sent, account {account_id} has sent 1 of its "
                                      f"1 orders a day")
    assert record["events"][-1]["detail"] == {"source": "order_budget"}
    assert len(order_stack.orders(creds["api_key"])) == 1
    assert budget_of(client, headers, account_id)["used"] == 1  # the refused order spent nothing
