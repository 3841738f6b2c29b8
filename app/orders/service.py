"""Order requests from clients: accept (idempotently), read, list, modify, cancel, replay.

Requests arrive loaded by the schemas (app.orders.schemas); what is checked here needs the
database. The web process only records and enqueues; the workers talk to the broker
(app.orders.execution) — except for the margin check a request may ask for, made before anything
is recorded (app.broker.margin_check). No Flask here: errors are domain exceptions the API maps.
"""
from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timezone
from typing import Iterable

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value

from app.core.db import new_session, session_scope
from app.models import Account, Order, OrderEvent, new_id, utcnow
from app.orders.updates import order_changed
from app.orders import admission, dispatch, parents
from app.orders.budget import require_room
from app.kite_session.state import require_live_session
from app.orders.pre_trade import check_before_storing
from app.risk.halt import require_not_halted
from app.risk.limits import check_modified_order
from app.orders.parents import PARENT, SLICE, slices_of
from app.orders.schemas import check_modification
from app.orders.slicing import TooManySlices, plan_for_columns
from app.orders.states import CANCELLED, DEAD_LETTER, FINAL, OPEN, QUEUED, record_event

TAG_PREFIX = "ts"


class OrderError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class OrderNotFound(OrderError):
    status, code = 404, "not_found"


class IdempotencyConflict(OrderError):
    status, code = 409, "idempotency_conflict"


class OrderStateConflict(OrderError):
    status, code = 409, "conflict"


class SliceLimitExceeded(OrderError):
    status, code = 422, "validation_error"


def broker_tag(order_id: str) -> str:
    """The tag the broker keeps with the order (Kite: ≤ 20 chars): how a retry finds it."""
    return (TAG_PREFIX + order_id)[:20]


def request_hash(account_id: str, fields: dict) -> str:
    canonical = json.dumps({"account_id": account_id, **fields}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _require_account(session, account_id: str) -> Account:
    account = session.get(Account, account_id)
    if account is None or not account.active:
        raise OrderNotFound(f"account {account_id!r} not found")
    return account


def _as_shown():
    """What an order record shows: its events and, for a sliced order, its slices."""
    return (selectinload(Order.events), selectinload(Order.children))


def _with_events(session, order_id: str) -> Order | None:
    return session.scalars(select(Order).options(*_as_shown()).where(Order.id == order_id)).first()


def new_order(account_id: str, fields: dict, idempotency_key: str | None = None, digest: str | None = None,
              **extra) -> Order:
    """An Order row in QUEUED with its first event (not added to a session). Batches build legs with it."""
    order_id = new_id()
    accepted_at = utcnow()
    if admission.expires(extra.get("role")):
        extra.setdefault("expires_at", admission.expiry_for(accepted_at, fields.get("expire_after_s")))
    order = Order(id=order_id, account_id=account_id, status=QUEUED, tag=broker_tag(order_id), attempts=0,
                  idempotency_key=idempotency_key, request_hash=digest, accepted_at=accepted_at, **fields, **extra)
    order.created_at = order.updated_at = order.accepted_at
    return order


def _order_under_key(session, account_id: str, idempotency_key: str, digest: str) -> Order | None:
    """The order first placed with this Idempotency-Key, if any; IdempotencyConflict when it differs."""
    existing = session.scalars(select(Order).options(*_as_shown()).where(
        Order.account_id == account_id, Order.idempotency_key == idempotency_key)).first()
    if existing is not None and existing.request_hash != digest:
        raise IdempotencyConflict("this Idempotency-Key was used with a different request body",
                                  {"order_id": existing.id})
    return existing


def _earlier_order(account_id: str, idempotency_key: str | None, digest: str) -> Order | None:
    with new_session() as session:
        _require_account(session, account_id)
        return _order_under_key(session, account_id, idempotency_key, digest) if idempotency_key else None


# What a slice takes from the order it is cut from (all but the quantity).
SLICE_COLUMNS = ("exchange", "tradingsymbol", "instrument_token", "transaction_type", "product", "order_type",
                 "variety", "validity", "validity_ttl", "price", "trigger_price", "disclosed_quantity",
                 "market_protection", "client_tag", "expire_after_s")


def slice_fields(fields: dict, quantity: int) -> dict:
    """One slice's Order columns: the order's, with its own quantity (a disclosed quantity within it)."""
    columns = {name: fields.get(name) for name in SLICE_COLUMNS}
    disclosed = columns["disclosed_quantity"]
    return {**columns, "quantity": quantity, "disclosed_quantity": min(disclosed, quantity) if disclosed else disclosed}


def _slice_quantities(fields: dict) -> list[int]:
    try:
        return plan_for_columns(fields)
    except TooManySlices as exc:
        raise SliceLimitExceeded(str(exc), {"quantity": [str(exc)]}) from None


def _new_slices(session, parent: Order, quantities: list[int]) -> list[tuple[Order, OrderEvent]]:
    """The parent's slices, QUEUED, each an order of its own with its own broker tag (with their first events)."""
    fields = {name: getattr(parent, name) for name in SLICE_COLUMNS}
    slices = []
    for index, quantity in enumerate(quantities):
        child = new_order(parent.account_id, slice_fields(fields, quantity),
                          role=SLICE, parent_id=parent.id, slice_index=index)
        session.add(child)
        event = record_event(session, child, None, QUEUED, detail={"source": "slicing", "parent_id": parent.id})
        slices.append((child, event))
    return slices


def place(account_id: str, fields: dict, idempotency_key: str | None = None,
          margin_check: bool = False) -> tuple[Order, bool]:
    """Record and enqueue one order, given as its Order columns (OrderRequestSchema). Returns (order, created).

    With an Idempotency-Key the same key and order give back the first order
    (created=False); the same key with another order is an IdempotencyConflict.
    The order is compared as loaded (normalised), so a body that differs only in
    spelling (case, defaults written out) is the same order.
    The unique (account_id, idempotency_key) constraint settles concurrent requests.
    With `margin_check` the broker's margin for the order (a one-order basket) is checked first
    (app.broker.margin_check): a refused order stores nothing, so its key stays unused for a
    retry; the order already placed under the key is given back without a second check.
    An order that does not fit in the day's order budget (app.orders.budget) is refused
    (OrderBudgetExhausted) before anything else, unless it was placed under its key already.

    An order above the freeze quantity is stored as a parent and its slices in the same
    transaction (app.orders.parents); the slices are enqueued, never the parent, and the
    Idempotency-Key belongs to the parent, so a replay gives back the parent and its slices.
    """
    quantities = _slice_quantities(fields)
    sliced = len(quantities) > 1
    digest = request_hash(account_id, fields)
    earlier = check_before_storing(account_id, len(quantities), [fields], "order", margin_check,  # a slice each
                                   lambda: _earlier_order(account_id, idempotency_key, digest))
    if earlier is not None:
        return earlier, False
    session = new_session()
    try:
        _require_account(session, account_id)
        order = new_order(account_id, fields, idempotency_key, digest, **({"role": PARENT} if sliced else {}))
        session.add(order)
        event = record_event(session, order, None, QUEUED,
                             detail={"source": "api", **({"slices": quantities} if sliced else {})})
        slices = _new_slices(session, order, quantities) if sliced else []
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            if idempotency_key is None:
                raise
            existing = _order_under_key(session, account_id, idempotency_key, digest)
            if existing is None:  # the constraint that failed was another one
                raise
            return existing, False
        # The record as committed, without reading it back.
        set_committed_value(order, "events", [event])
        for child, child_event in slices:
            set_committed_value(child, "events", [child_event])
        slices = [child for child, _ in slices]
        set_committed_value(order, "children", slices)
    finally:
        session.close()
    if sliced:
        # Published before the slices are enqueued, so no subscriber sees QUEUED after what follows.
        order_changed(order)
        for child in slices:
            order_changed(child)
        unsent = [child.id for child in slices if not dispatch.enqueue_placement(child.id, account_id)]
        if unsent:
            mark_enqueue_failed(unsent)
        return order, True
    if not dispatch.enqueue_placement(order.id, account_id):
        mark_enqueue_failed([order.id])
    order_changed(order)
    return order, True


def mark_enqueue_failed(order_ids: list[str]) -> None:
    """Note on the record that no task carries these QUEUED orders (Redis refused the enqueue), so
    the reconciler re-enqueues them at its next run instead of waiting out the lost-task delay."""
    with session_scope() as session:
        for order in session.scalars(select(Order).where(Order.id.in_(order_ids), Order.status == QUEUED)):
            record_event(session, order, QUEUED, QUEUED, detail={"enqueue_failed": True})


def get(order_id: str) -> Order:
    with new_session() as session:
        order = _with_events(session, order_id)
    if order is None:
        raise OrderNotFound(f"order {order_id!r} not found")
    return order


def _encode_cursor(order: Order) -> str:
    raw = f"{order.created_at.astimezone(timezone.utc).isoformat()}|{order.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor.encode()).decode()
        at, order_id = raw.split("|", 1)
        if not order_id.isalnum():  # our ids are hex; anything else (NUL included) is forged
            raise ValueError("bad order id")
        return datetime.fromisoformat(at).astimezone(timezone.utc), order_id
    except Exception:
        raise OrderError("cursor is not valid", {"cursor": ["not a cursor from a previous page"]})


def list_orders(account_ids: Iterable[str] | None, statuses: list[str] | None = None,
                since: datetime | None = None, limit: int = 100, cursor: str | None = None) -> tuple[list[Order], str | None]:
    """Newest first; `cursor` continues after the last order of the previous page."""
    query = select(Order).options(*_as_shown())
    if account_ids is not None:
        query = query.where(Order.account_id.in_(list(account_ids)))
    if statuses:
        query = query.where(Order.status.in_(statuses))
    if since is not None:
        query = query.where(Order.created_at >= since)
    if cursor:
        at, order_id = _decode_cursor(cursor)
        query = query.where(or_(Order.created_at < at, and_(Order.created_at == at, Order.id < order_id)))
    query = query.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit + 1)
    with new_session() as session:
        orders = list(session.scalars(query))
    more = len(orders) > limit
    orders = orders[:limit]
    return orders, (_encode_cursor(orders[-1]) if more and orders else None)


def dead_letter_count() -> int:
    with new_session() as session:
        return int(session.scalar(select(func.count()).select_from(Order).where(Order.status == DEAD_LETTER)) or 0)


def _as_modified(order: Order, params: dict) -> dict:
    """The order's columns as they would stand after the modification (what the risk limits check)."""
    columns = {name: getattr(order, name) for name in ("exchange", "tradingsymbol", "instrument_token",
                                                        "transaction_type", "quantity", "order_type", "price",
                                                        "trigger_price")}
    return {**columns, **{name: params[name] for name in ("quantity", "order_type", "price", "trigger_price")
                          if name in params}}


def request_modify(order_id: str, changes: dict) -> Order:
    """Check loaded changes (ModifyRequestSchema) against the order and hand them to the worker;
    only an OPEN order can be modified."""
    with session_scope() as session:
        order = session.get(Order, order_id, with_for_update=True)
        if order is None:
            raise OrderNotFound(f"order {order_id!r} not found")
        if order.role == PARENT:
            slice_ids = [child.id for child in slices_of(session, order_id)]
            raise OrderStateConflict("a sliced order cannot be modified as a whole: modify its slices one by "
                                     "one, or cancel it", {"status": order.status, "slice_ids": slice_ids})
        if order.status != OPEN or not order.broker_order_id:
            raise OrderStateConflict(f"order is {order.status}; only an OPEN order can be modified",
                                     {"status": order.status})
        params = check_modification(order, changes)
        require_not_halted(order.account_id)  # a halted account trades no more (it may still cancel)
        check_modified_order(order.account_id, _as_modified(order, params))  # more lots or value: a new risk
        require_live_session(order.account_id)  # a change goes to the broker: it needs the session
        record_event(session, order, OPEN, OPEN, detail={"request": "modify", "params": params})
        account_id = order.account_id
    dispatch.enqueue_modification(order_id, account_id, params)
    return get(order_id)


def _cancel_sliced(order_id: str) -> Order:
    """Cancel a parent's slices: those not yet sent here, the OPEN ones through the worker; a slice
    still being placed is cancelled once it is OPEN (the parent keeps cancel_requested_at)."""
    cancelled_here = []
    with session_scope() as session:
        parent = session.get(Order, order_id, with_for_update=True)
        if parent.status in FINAL:
            raise OrderStateConflict(f"order is already {parent.status}", {"status": parent.status})
        parent.cancel_requested_at = utcnow()
        record_event(session, parent, parent.status, parent.status, detail={"request": "cancel", "source": "api"})
        for child in slices_of(session, order_id):
            result = session.execute(  # the compare-and-set of a single order's cancel (request_cancel)
                update(Order).where(Order.id == child.id, Order.status == QUEUED, Order.attempts == 0)
                .values(status=CANCELLED, updated_at=utcnow(), error="cancelled before submission")
                .execution_options(synchronize_session=False))
            if result.rowcount == 1:
                session.refresh(child)
                record_event(session, child, QUEUED, CANCELLED, detail={"request": "cancel", "source": "parent"})
                cancelled_here.append(child)
    for child in cancelled_here:
        order_changed(child)
    parents.refresh_parent(order_id)  # asks the worker to cancel the OPEN slices
    return get(order_id)


def request_cancel(order_id: str) -> Order:
    """An order not yet sent is cancelled here; an OPEN one by the worker at the broker; a sliced one
    slice by slice."""
    with new_session() as session:
        sliced = session.scalar(select(Order.role).where(Order.id == order_id)) == PARENT
    if sliced:
        return _cancel_sliced(order_id)
    with session_scope() as session:
        # Compare-and-set: never sent (attempts 0) and still QUEUED, so no worker holds it.
        result = session.execute(
            update(Order).where(Order.id == order_id, Order.status == QUEUED, Order.attempts == 0)
            .values(status=CANCELLED, updated_at=utcnow(), error="cancelled before submission")
            .execution_options(synchronize_session=False))
        if result.rowcount == 1:
            order = session.get(Order, order_id)
            session.refresh(order)
            record_event(session, order, QUEUED, CANCELLED, detail={"request": "cancel", "source": "api"})
            cancelled_here = True
        else:
            order = session.get(Order, order_id, with_for_update=True)
            if order is None:
                raise OrderNotFound(f"order {order_id!r} not found")
            if order.status in FINAL:
                raise OrderStateConflict(f"order is already {order.status}", {"status": order.status})
            if order.status != OPEN or not order.broker_order_id:
                raise OrderStateConflict(f"order is {order.status} (being submitted); cancel it once it is OPEN",
                                         {"status": order.status})
            require_live_session(order.account_id)  # at the broker: only a live session can cancel it
            record_event(session, order, OPEN, OPEN, detail={"request": "cancel"})
            cancelled_here = False
        account_id = order.account_id
    if cancelled_here:
        order = get(order_id)
        order_changed(order)
        return order
    dispatch.enqueue_cancellation(order_id, account_id)
    return get(order_id)


def replay(order_id: str) -> Order:
    """A dead-lettered order back to QUEUED with a fresh attempt budget, through the same exactly-once path.

    Its last error stays on the record: a prior failure is what makes the worker
    look the tag up at the broker before placing again. A replay is a placement: refused
    (OrderBudgetExhausted) when the day's order budget has no room for it.
    """
    with new_session() as session:
        dead = session.scalar(select(Order).where(Order.id == order_id, Order.status == DEAD_LETTER))
        account_id = dead.account_id if dead is not None else None
        expire_after_s = dead.expire_after_s if dead is not None else None
    if account_id is not None:
        require_not_halted(account_id)  # a replay is a placement: none while a kill switch has the account halted
        require_live_session(account_id)
        require_room(account_id, 1)
    with session_scope() as session:
        result = session.execute(
            update(Order).where(Order.id == order_id, Order.status == DEAD_LETTER)
            .values(status=QUEUED, attempts=0, updated_at=utcnow(), send_at=None,  # a new expiry, from now
                    expires_at=admission.expiry_for(utcnow(), expire_after_s))
            .execution_options(synchronize_session=False))
        order = session.get(Order, order_id)
        if order is None:
            raise OrderNotFound(f"order {order_id!r} not found")
        if result.rowcount != 1:
            raise OrderStateConflict(f"order is {order.status}; only a DEAD_LETTER order can be replayed",
                                     {"status": order.status})
        session.refresh(order)
        record_event(session, order, DEAD_LETTER, QUEUED, detail={"request": "replay"})
        account_id = order.account_id
    order = get(order_id)
    order_changed(order)
    if not dispatch.enqueue_placement(order_id, account_id):
        mark_enqueue_failed([order_id])
    return order
