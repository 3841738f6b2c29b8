"""The halted state of an account: what a kill switch leaves behind until someone resumes it.

A halted account takes no new order (intake answers 409 `account_halted`), replays none, modifies
none; cancels still go through. An order accepted just before the halt is not sent either: the
worker withdraws it when its turn comes (`refuse_if_halted`, called at the top of
app.orders.execution.submit_order) — cancelled unsent, or adopted from the broker's order book when
an earlier attempt did reach it, so the kill switch cancels it there. Only the kill switch's own
square-off orders (role `square_off`) are sent for a halted account.
"""
from __future__ import annotations

import logging

from sqlalchemy import select

from app.core.config import get_settings
from app.core.db import new_session
from app.core.timestamps import iso
from app.models import Account, KillSwitch, Order, utcnow
from app.kite_session.state import is_live
from app.orders.attempts import Outcome, apply_locked, submission_lease_s
from app.orders.parents import PARENT
from app.orders.states import CANCELLED, QUEUED, SUBMITTING, transition

log = logging.getLogger(__name__)

SQUARE_OFF = "square_off"  # the role of a kill switch's own orders: the only ones a halted account sends
HALTED_ERROR = "not sent: the account is halted (kill switch)"
SQUARE_OFF_ENDED = "not sent: its kill switch ended before it went out"
RETRY_WITHDRAWAL_S = 1.0  # an order inside its broker call (or a lookup that failed): looked at again after


class AccountHalted(Exception):
    """A new order (or a replay, or a change) for a halted account."""

    def __init__(self, account_id: str, view: dict) -> None:
        self.account_id, self.view = account_id, view
        super().__init__(f"account {account_id!r} is halted since {view['at']} ({view['reason'] or 'kill switch'}): "
                         f"no new orders until POST /accounts/{account_id}/resume")

    @property
    def details(self) -> dict:
        return {"account_id": self.account_id, "halted": self.view}


def halted_view(account: Account) -> dict | None:
    """How the API, the dashboard and the order stream show the halt (None: not halted)."""
    if account.halted_at is None:
        return None
    return {"at": iso(account.halted_at), "reason": account.halted_reason, "by": account.halted_by,
            "kill_switch_id": account.halted_kill_switch_id}


def halted_views(account_ids: list[str]) -> dict[str, dict | None]:
    with new_session() as session:
        accounts = session.scalars(select(Account).where(Account.id.in_(account_ids)))
        found = {account.id: halted_view(account) for account in accounts}
    return {account_id: found.get(account_id) for account_id in account_ids}


def require_not_halted(account_id: str) -> None:
    """Raise AccountHalted when the account is halted (an unknown account passes: the caller's 404)."""
    with new_session() as session:
        account = session.get(Account, account_id)
        view = halted_view(account) if account is not None else None
    if view is not None:
        raise AccountHalted(account_id, view)


def halt(account: Account, reason: str | None, by: str | None, kill_switch_id: str) -> None:
    """Mark `account` (loaded in the caller's transaction, which commits) halted by this kill switch."""
    account.halted_at = account.halted_at or utcnow()  # halted already: since the first time
    account.halted_reason = reason
    account.halted_by = by
    account.halted_kill_switch_id = kill_switch_id


def clear(account: Account) -> None:
    for name in ("halted_at", "halted_reason", "halted_by", "halted_kill_switch_id"):
        setattr(account, name, None)


def _may_be_at_broker(order: Order) -> bool:
    """As the worker decides before a retry: an earlier attempt may have placed it."""
    return order.status == SUBMITTING or order.attempts > 0 or order.error is not None


def withdraw(order_id: str, book_by_tag: dict[str, dict] | None = None, error: str = HALTED_ERROR) -> str | None:
    """Take back an order of a halted account that is not at the broker yet: CANCELLED unsent — or, when an
    earlier attempt did place it (its tag is in the broker's order book), adopted from there. Returns the
    order's status; None while a worker is inside its broker call (SUBMITTING within its lease) or the
    order moved meanwhile: ask again later. `book_by_tag`: the broker's order book by tag, if already read;
    `error`: why, on the cancelled order."""
    with new_session() as session:
        order = session.get(Order, order_id)
        if order is None:
            return None
        seen = (order.status, order.attempts, order.updated_at)
        account_id, tag, role, may_exist = order.account_id, order.tag, order.role, _may_be_at_broker(order)
    if seen[0] not in (QUEUED, SUBMITTING) or role == PARENT:  # at the broker or final; a parent follows its slices
        return seen[0]
    if seen[0] == SUBMITTING and (utcnow() - seen[2]).total_seconds() < submission_lease_s():
        return None  # a worker is inside the broker call: its answer decides
    found = None
    if may_exist:
        if book_by_tag is None:
            from app.broker.client import broker_client
            from app.orders.reconciliation import broker_orders_by_tag

            book_by_tag = broker_orders_by_tag(broker_client(account_id).orders())
        found = book_by_tag.get(tag)
    result: dict = {}

    def apply(session, order):
        if (order.status, order.attempts, order.updated_at) != seen:  # a worker claimed or moved it meanwhile
            return False
        if found is not None:
            from app.orders.reconciliation import apply_to_order

            changed = apply_to_order(session, order, found, source="tag_lookup")
            result["status"] = order.status
            return changed
        transition(session, order, CANCELLED, error=error, detail={"source": "halted"})
        result["status"] = CANCELLED
        return True

    apply_locked(order_id, apply)
    return result.get("status")


def refuse_if_halted(order_id: str) -> Outcome | None:
    """The worker's guard before sending: None to go on; otherwise what the task does instead, the order
    withdrawn (see `withdraw`): an ordinary order of a halted account, or a square-off order whose kill
    switch has ended. One query when the account is not halted."""
    with new_session() as session:
        row = session.execute(
            select(Order.role, Order.account_id, Account.halted_at, KillSwitch.status.label("kill_switch_status"))
            .join(Account, Account.id == Order.account_id)
            .outerjoin(KillSwitch, KillSwitch.id == Order.kill_switch_id)
            .where(Order.id == order_id)).first()
    if row is None or row.role == PARENT:
        return None
    if row.role == SQUARE_OFF:
        if row.kill_switch_status == "running":
            return None
        error = SQUARE_OFF_ENDED
    elif row.halted_at is None:
        return None
    else:
        error = HALTED_ERROR
    try:
        status = withdraw(order_id, error=error)
    except Exception as exc:  # the broker's order book could not be read: the order stays unsent meanwhile
        log.warning("order of a halted account not withdrawn yet", extra={"order_id": order_id, "error": str(exc)})
        if not is_live(row.account_id):  # held, as every order of a dead session: a login sends it here again
            return Outcome("done", status=QUEUED, error=error)
        return Outcome("defer", countdown=max(RETRY_WITHDRAWAL_S, get_settings().order_retry_cap_s))
    if status is None:
        return Outcome("defer", countdown=RETRY_WITHDRAWAL_S)
    return Outcome("done", status=status, error=error if status == CANCELLED else None)
