"""Creating, reading and waiting for batches (the web side; execution is in settlement.py).

Legs arrive loaded (app.batches.schemas); what is checked here needs the database, or the broker
(the basket's margin, app.broker.margin_check, before anything is stored).
"""
from __future__ import annotations

import hashlib
import json
import time

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value

from app.accounts import AccountNotFound
from app.batches.schemas import validate_legs
from app.core.db import new_session
from app.models import Account, Batch, Order, new_id
from app.core.timestamps import iso
from app.orders.pre_trade import check_before_storing
from app.orders.parents import PARENT
from app.orders.service import new_order, slice_fields
from app.orders.slicing import plan_for_columns
from app.orders.states import COMPLETE, OPEN, QUEUED, record_event
from app.core.wakeups import Waiter, batch_channel

RUNNING, COMPLETED, PARTIAL = "RUNNING", "COMPLETED", "PARTIAL"
ROLLED_BACK, ROLLBACK_FAILED = "ROLLED_BACK", "ROLLBACK_FAILED"
FINAL_BATCH = frozenset({COMPLETED, PARTIAL, ROLLED_BACK, ROLLBACK_FAILED})
# A leg succeeded when the broker accepted it (a LIMIT leg may still be open).
LEG_SUCCESS = frozenset({OPEN, COMPLETE})


class BatchNotFound(LookupError):
    def __init__(self, batch_id: str) -> None:
        super().__init__(f"batch {batch_id!r} not found")


class BatchConflict(Exception):
    def __init__(self, batch_id: str) -> None:
        super().__init__("this Idempotency-Key was used with a different batch")
        self.batch_id = batch_id


def _digest(account_id: str, legs: list[dict], options: dict) -> str:
    body = json.dumps({"account_id": account_id, "legs": legs, **options}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def load(session, batch_id: str) -> Batch | None:
    return session.scalars(select(Batch).options(selectinload(Batch.legs), selectinload(Batch.rollback_actions))
                           .where(Batch.id == batch_id)).first()


def create_batch(account_id: str, legs: list, rollback_on_failure: bool, execution: str,
                 idempotency_key: str | None = None) -> tuple[Batch, bool]:
    """A batch from legs as a client would send them, for callers outside a request (the API loads
    the legs with its schema and calls place_batch)."""
    return place_batch(account_id, validate_legs(legs, account_id), rollback_on_failure, execution, idempotency_key)


def _require_account(session, account_id: str) -> None:
    account = session.get(Account, account_id)
    if account is None or not account.active:
        raise AccountNotFound(account_id)


def _batch_under_key(session, account_id: str, idempotency_key: str, digest: str) -> Batch | None:
    """The batch first placed with this Idempotency-Key, if any; BatchConflict when it has other legs."""
    existing = session.scalars(select(Batch).where(Batch.account_id == account_id,
                                                   Batch.idempotency_key == idempotency_key)).first()
    if existing is not None and existing.request_hash != digest:
        raise BatchConflict(existing.id)
    return load(session, existing.id) if existing is not None else None


def _earlier_batch(account_id: str, idempotency_key: str | None, digest: str) -> Batch | None:
    with new_session() as session:
        _require_account(session, account_id)
        return _batch_under_key(session, account_id, idempotency_key, digest) if idempotency_key else None


def place_batch(account_id: str, legs: list[dict], rollback_on_failure: bool, execution: str,
                idempotency_key: str | None = None, margin_check: bool = False) -> tuple[Batch, bool]:
    """Store the batch and its legs, given as Order columns, QUEUED. Returns (batch, created).

    The same Idempotency-Key and legs give back the first batch; another batch under the key is
    a BatchConflict. With `margin_check` the broker's basket margin is checked first
    (app.broker.margin_check): a refused batch stores nothing, so its key stays unused for a
    retry; the batch already placed under the key is given back without a second check.
    Legs that do not all fit in the day's order budget (app.orders.budget) refuse the whole batch
    (OrderBudgetExhausted) before anything else, unless it was placed under its key already."""
    options = {"rollback_on_failure": rollback_on_failure, "execution": execution}
    digest = _digest(account_id, legs, options)
    plans = [plan_for_columns(fields) for fields in legs]   # a leg above the freeze quantity: its slices
    broker_legs = sum(len(quantities) for quantities in plans)
    earlier = check_before_storing(account_id, broker_legs, legs, "batch", margin_check,
                                   lambda: _earlier_batch(account_id, idempotency_key, digest))
    if earlier is not None:
        return earlier, False
    session = new_session()
    try:
        _require_account(session, account_id)
        # Its id up front, not from a flush: a second batch under the same Idempotency-Key must
        # fail at the commit below, where the first one is looked up.
        batch = Batch(id=new_id(), account_id=account_id, status=RUNNING, total_orders=broker_legs,
                      idempotency_key=idempotency_key, request_hash=digest, **options)
        session.add(batch)
        orders = []
        for fields, quantities in zip(legs, plans):
            orders += _broker_legs(session, batch, account_id, fields, quantities, first_index=len(orders))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            if idempotency_key is None:
                raise
            existing = _batch_under_key(session, account_id, idempotency_key, digest)
            if existing is None:
                raise
            return existing, False
        # What was just stored is the whole batch: no need to read it back before launching it.
        set_committed_value(batch, "legs", orders)
        set_committed_value(batch, "rollback_actions", [])
        return batch, True
    finally:
        session.close()


def _broker_legs(session, batch: Batch, account_id: str, fields: dict, quantities: list[int],
                 first_index: int) -> list[Order]:
    """The legs the chord places for one requested leg: the leg itself, or — above the freeze
    quantity — its slices, each a leg of the batch (so the verdict and the rollback treat every
    broker order alike) and a slice of a parent order that shows them together (app.orders.parents).
    The parent belongs to no batch: it is never sent."""
    parent = None
    if len(quantities) > 1:
        parent = new_order(account_id, fields, role=PARENT)
        session.add(parent)
        record_event(session, parent, None, QUEUED,
                     detail={"source": "batch", "batch_id": batch.id, "slices": quantities})
    legs = []
    for slice_index, quantity in enumerate(quantities):
        extra = {"parent_id": parent.id, "slice_index": slice_index} if parent else {}
        leg = new_order(account_id, slice_fields(fields, quantity) if parent else fields, batch_id=batch.id,
                        leg_index=first_index + slice_index, role="leg", **extra)
        session.add(leg)
        record_event(session, leg, None, QUEUED, detail={"source": "batch", "batch_id": batch.id})
        legs.append(leg)
    return legs


def get_batch(batch_id: str) -> Batch:
    with new_session() as session:
        batch = load(session, batch_id)
        if batch is None:
            raise BatchNotFound(batch_id)
        return batch


def wait_until_final(batch_id: str, timeout_s: float) -> Batch:
    """Wait until the batch settles (its settlement wakes this wait) or the time is up."""
    deadline = time.monotonic() + timeout_s
    with Waiter(batch_channel(batch_id)) as waiter:
        while True:
            batch = get_batch(batch_id)
            remaining = deadline - time.monotonic()
            if batch.status in FINAL_BATCH or remaining <= 0:
                return batch
            waiter.wait(remaining)


def leg_view(order: Order) -> dict:
    return {"order_id": order.id, "leg_index": order.leg_index, "tradingsymbol": order.tradingsymbol,
            "transaction_type": order.transaction_type, "quantity": order.quantity, "status": order.status,
            "broker_order_id": order.broker_order_id, "filled_quantity": order.filled_quantity,
            "average_price": float(order.average_price) if order.average_price is not None else None,
            "error": order.error, **({"parent_id": order.parent_id} if order.parent_id else {})}


def batch_view(batch: Batch) -> dict:
    legs = [o for o in batch.legs if o.role == "leg"]
    succeeded = sum(1 for o in legs if o.status in LEG_SUCCESS)
    failed = sum(1 for o in legs if o.status not in LEG_SUCCESS and o.status not in ("QUEUED", "SUBMITTING"))
    if batch.status in FINAL_BATCH:  # the counts the batch settled with
        succeeded, failed = batch.succeeded, batch.failed
    return {
        "batch_id": batch.id,
        "account_id": batch.account_id,
        "status": batch.status,
        "success": batch.status == COMPLETED,
        "total_orders": batch.total_orders,
        "succeeded": succeeded,
        "failed": failed,
        "order_ids": [o.id for o in legs],
        "legs": [leg_view(o) for o in legs],
        "rollback": [{"action": a.action, "leg_order_id": a.leg_order_id, "order_id": a.reversal_order_id,
                      "quantity": a.quantity, "result": a.result, "error": a.error,
                      "completed_at": iso(a.completed_at)} for a in batch.rollback_actions],
        "rollback_on_failure": batch.rollback_on_failure,
        "execution": batch.execution,
        "error": batch.error,
        "created_at": iso(batch.created_at),
        "completed_at": iso(batch.completed_at),
    }
