"""Admission under overload, through the real worker and the paper broker: 5× the account's order rate
for a moment, and every order accepted is either placed before its expiry or EXPIRED (and then nowhere
at the broker), in arrival order; past the backlog intake answers 429 with Retry-After; an order waiting
for its slot shows it and the reconciler leaves it alone; batch legs go before the single orders still
waiting. The worker runs the test environment's rate, 10 orders a second (ORDER_RATE_PER_SECOND)."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest

from app.broker.rate_limit import SECOND_WINDOW_S
from tests.support.accounts import paper_account
from tests.support.batches import leg
from tests.support.orders import market_order
from tests.support.waiting import wait_for

RATE = 10          # the worker's ORDER_RATE_PER_SECOND in the test environment
FINAL = ("COMPLETE", "OPEN", "REJECTED", "EXPIRED", "CANCELLED", "DEAD_LETTER")


@pytest.fixture
def own_account(order_stack):
    """A service account on a paper-broker api key of its own: its rate limiter starts empty."""
    account_id, creds = paper_account(order_stack.root, "admit")
    return account_id, creds["api_key"]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def record_of(client, headers, order_id: str) -> dict:
    return client.get(f"/orders/{order_id}", headers=headers["admin"]).get_json()


def wait_final(client, headers, order_ids, timeout: float = 20.0) -> list[dict]:
    def settled():
        records = [record_of(client, headers, order_id) for order_id in order_ids]
        return records if all(r["status"] in FINAL for r in records) else None
    return wait_for(settled, timeout, interval=0.2, what="every order final")


def _deferred_orders(account_id: str) -> dict[str, str]:
    """The account's orders waiting for a send slot a while ahead still (send_at by id, as shown)."""
    from datetime import timedelta

    from sqlalchemy import select

    from app.core.db import new_session
    from app.core.timestamps import iso
    from app.models import Order, utcnow

    with new_session() as session:
        return {row.id: iso(row.send_at) for row in session.execute(select(Order.id, Order.send_at).where(
            Order.account_id == account_id, Order.status == "QUEUED",
            Order.send_at > utcnow() + timedelta(seconds=0.5)))}


def _with_times(records: list[dict]) -> dict[str, dict]:
    """accepted_at and acked_at, which the order record does not show."""
    from sqlalchemy import select

    from app.core.db import new_session
    from app.models import Order

    with new_session() as session:
        rows = session.execute(select(Order.id, Order.accepted_at, Order.acked_at)
                               .where(Order.id.in_([r["id"] for r in records])))
        return {row.id: {"accepted_at": row.accepted_at, "acked_at": row.acked_at} for row in rows}


def test_an_overload_places_each_order_within_its_expiry_or_expires_it(
        app, client, headers, order_stack, option, own_account, settings_override):
    settings_override(order_backlog_max=20)  # intake (this process): 2 s of the rate
    account_id, api_key = own_account
    warm_up = [client.post(f"/accounts/{account_id}/orders", json=market_order(option), headers=headers["admin"])
               for _ in range(2)]  # both worker processes hold the account's broker client
    wait_final(client, headers, [r.get_json()["id"] for r in warm_up])
    time.sleep(SECOND_WINDOW_S)  # the warm-up's calls out of the limiter's window
    body = market_order(option, expire_after_s=2)  # 2 s: about 20 orders at 10 a second

    def send(_):
        response = app.test_client().post(f"/accounts/{account_id}/orders", json=body, headers=headers["admin"])
        return time.monotonic(), response.status_code, response.get_json(), response.headers.get("Retry-After")

    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:  # 5× the rate: 75 requests in about 1.5 s
        answers = []
        for _ in range(5):
            answers += list(pool.map(send, range(15)))
            time.sleep(max(0.0, started + 0.3 * (len(answers) // 15) - time.monotonic()))
    burst_s = max(a[0] for a in answers) - started
    accepted = [a[2] for a in answers if a[1] == 202]
    refused = [a for a in answers if a[1] == 429]
    assert len(answers) / burst_s > 2 * RATE, f"{len(answers)} requests in {burst_s:.2f} s is not an overload"
    assert accepted and refused and len(accepted) + len(refused) == len(answers), {a[1] for a in answers}
    for _, _, error, retry_after in refused:
        assert error["error"]["code"] == "order_backlog_full", error
        assert int(retry_after) >= 1 and error["error"]["details"]["backlog_max"] == 20

    records = wait_final(client, headers, [o["id"] for o in accepted])
    placed = [r for r in records if r["status"] in ("COMPLETE", "OPEN")]
    expired = [r for r in records if r["status"] == "EXPIRED"]
    assert placed and expired and len(placed) + len(expired) == len(records), [r["status"] for r in records]
    at_broker = {o["tag"]: o for o in order_stack.orders(api_key)}
    assert len(at_broker) == len(placed) + len(warm_up)
    with_times = _with_times(records)
    for record in placed:
        assert record["tag"] in at_broker
        assert with_times[record["id"]]["acked_at"] <= at(record["expires_at"])  # placed within its expiry
    for record in expired:
        # Never sent: expired waiting (QUEUED), or claimed and then found too late to send (its task came late
        # for its slot and the next free one was past the expiry) — nothing at the broker either way.
        assert record["tag"] not in at_broker and record["error"].startswith("expired: not sent"), record
        last = record["events"][-1]
        assert last["to_status"] == "EXPIRED" and last["from_status"] in ("QUEUED", "SUBMITTING"), last
    assert_arrival_order(placed, with_times, some_waited=False)  # (the next test has orders wait for sure)


def assert_arrival_order(placed: list[dict], with_times: dict, some_waited: bool = True) -> None:
    """The orders that waited for a slot were sent at theirs in the order they were accepted — but for one
    whose task came late for its slot (a busy worker), which went at the next free one. (One that found a
    free slot when its task ran went at once, beside the others the worker processes were sending.)"""
    def waited(record) -> bool:
        details = [e["detail"] or {} for e in record["events"]]
        return any("deferred_until" in d for d in details) and not any(d.get("late_for_slot") for d in details)

    in_order = sorted(placed, key=lambda r: with_times[r["id"]]["accepted_at"])
    slots = [at(r["send_at"]) for r in in_order if waited(r)]
    assert slots == sorted(slots) and (slots or not some_waited), slots


def test_waiting_orders_show_their_slot_keep_it_and_let_batch_legs_go_first(
        client, headers, order_stack, option, future, own_account):
    from app.orders.reconciliation import reconcile_account

    from app.broker.rate_limit import order_rate_limiter

    account_id, api_key = own_account
    # The Zerodha user's other desk has just taken three seconds of its rate (Kite counts per Zerodha
    # account): the orders below wait for their slots however fast the worker picks them up.
    for _ in range(3 * RATE):
        assert order_rate_limiter().reserve(account_id, max_wait_s=10).granted
    singles = []
    for _ in range(3 * RATE):
        response = client.post(f"/accounts/{account_id}/orders", json=market_order(option, expire_after_s=30),
                               headers=headers["admin"])
        assert response.status_code == 202, response.get_json()
        singles.append(response.get_json()["id"])
    batch = client.post(f"/accounts/{account_id}/batch-orders", headers=headers["admin"],
                        json={"legs": [leg(option, "BUY"), leg(future, "BUY")], "wait": 0, "margin_check": False})
    assert batch.status_code == 202, batch.get_json()

    # An order waiting for its slot says so, and the reconciler does not take it for lost (not even told
    # that every QUEUED order untouched for 0 s is): no second task, no churn.
    deferred = wait_for(lambda: _deferred_orders(account_id), 5, what="orders waiting for their slot")
    report = reconcile_account(account_id, queued_lost_after=0)
    assert not set(deferred) & set(report["requeue"])
    for order_id, send_at in deferred.items():
        events = record_of(client, headers, order_id)["events"]
        assert any((e["detail"] or {}).get("deferred_until") == send_at for e in events), (send_at, events)

    records = wait_final(client, headers, singles)
    assert all(r["status"] in ("COMPLETE", "OPEN") for r in records)
    assert_arrival_order(records, _with_times(records))  # the singles among themselves
    settled = wait_for(lambda: (lambda b: b if b["status"] != "RUNNING" else None)(
        client.get(f"/batches/{batch.get_json()['batch_id']}", headers=headers["admin"]).get_json()), 15,
        what="the batch settled")
    assert settled["status"] == "COMPLETED", settled
    leg_slots = [at(record_of(client, headers, order_id)["send_at"]) for order_id in settled["order_ids"]]
    # Accepted after every single order, the legs went out before those still waiting then.
    waited = [r for r in records if at(r["send_at"]) > max(leg_slots)]
    assert len(waited) >= RATE // 2, (leg_slots, [r["send_at"] for r in records])
    assert len(order_stack.orders(api_key)) == len(singles) + 2


def test_an_order_whose_turn_would_come_after_its_expiry_is_refused(client, headers, option, own_account):
    """Kite's minute limit (or other orders of the Zerodha user) can leave no slot before an order expires
    with far fewer than ORDER_BACKLOG_MAX waiting: intake sees the limiter's schedule, not only the count."""
    from app.broker.rate_limit import order_rate_limiter

    account_id, _ = own_account
    for _ in range(3 * RATE):  # three seconds of the rate taken elsewhere
        assert order_rate_limiter().reserve(account_id, max_wait_s=10).granted
    refused = client.post(f"/accounts/{account_id}/orders", json=market_order(option, expire_after_s=2),
                          headers=headers["admin"])
    assert refused.status_code == 429, refused.get_json()
    error = refused.get_json()["error"]
    assert error["code"] == "order_backlog_full" and error["details"]["unsent"] == 0
    assert 1.5 < error["details"]["turn_in_s"] < 3.5 and int(refused.headers["Retry-After"]) >= 1
    accepted = client.post(f"/accounts/{account_id}/orders", json=market_order(option, expire_after_s=10),
                           headers=headers["admin"])
    assert accepted.status_code == 202, accepted.get_json()
    assert wait_final(client, headers, [accepted.get_json()["id"]])[0]["status"] in ("COMPLETE", "OPEN")
