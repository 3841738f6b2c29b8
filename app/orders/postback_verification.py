"""A postback's claim checked against the broker's own record of the order before it is applied.

The checksum proves only that the sender knows the account's api_secret, and that secret sits in
every Kite app's config: a postback signed with it could claim anything. So a postback that would
end an order (COMPLETE, CANCELLED, REJECTED), add fills or change its terms is confirmed first: the
order's history is read from the broker (`order_history`, through the account's client and within
Kite's 10 non-order calls a second) and the broker's latest row is applied instead of the posted one.

When the broker cannot be asked now (our rate limiter full, a timeout, an error), nothing of the claim
is applied: the order stays as it is and the reconciler, which reads the broker's order book for
every open order every few seconds, applies what the broker says. Counted in
`postback_verifications_total{outcome}`: `confirmed`; `refuted`, the claim is ahead of the broker
(a final status or fills it does not have: someone with the api_secret is forging postbacks);
`unverified`, the broker could not be asked.
"""
from __future__ import annotations

import logging
import time

import redis
from kiteconnect import exceptions as kite_errors

from app.broker.client import broker_client
from app.broker.errors import describe, is_transient
from app.broker.rate_limit import other_calls_rate_limiter
from app.core.cluster_metrics import ClusterCounter
from app.kite_session.refusals import noticed
from app.models import Order
from app.orders.states import BROKER_FINAL, from_broker_status

log = logging.getLogger(__name__)

# A postback waits this long at most for a slot under Kite's 10 non-order calls a second; beyond,
# the reconciler takes over (the broker does not wait for our answer: it does not retry).
MAX_RATE_WAIT_S = 1.0
# Calls our limiter does not see (order-book reads of the workers and the reconciler) share Kite's
# per-second count: its 429 is tried again in the next second, twice at most.
ATTEMPTS = 3
KITE_WINDOW_S = 1.0

OUTCOMES = ("confirmed", "refuted", "unverified")
postback_verifications_total = ClusterCounter(
    "postback_verifications_total",
    "Postbacks that would end an order or change its fills or terms, checked against the broker's order history",
    ("outcome",), series=[(outcome,) for outcome in OUTCOMES])


def _quantity(value) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0


def needs_confirmation(order: Order, claim: dict) -> bool:
    """Would applying the claim end the order, add fills or change its terms?"""
    if order.status in BROKER_FINAL:
        return False  # a final order takes no more updates: nothing to confirm
    status = str(claim.get("status") or "").upper()
    return (from_broker_status(status) in BROKER_FINAL
            or _quantity(claim.get("filled_quantity")) > (order.filled_quantity or 0)
            or status == "UPDATE" or bool(claim.get("modified")))


def is_refuted(claim: dict, truth: dict) -> bool:
    """The claim is ahead of the broker's record: a final status it has not reached, or more fills.
    (The broker being ahead of the claim is normal: a later update overtook this postback.)"""
    claimed = from_broker_status(claim.get("status"))
    if claimed in BROKER_FINAL and claimed != from_broker_status(truth.get("status")):
        return True
    return _quantity(claim.get("filled_quantity")) > _quantity(truth.get("filled_quantity"))


def broker_record(account_id: str, broker_order_id: str) -> dict | None:
    """The broker's latest row of the order's history; None when the broker cannot be asked now."""
    for attempt in range(1, ATTEMPTS + 1):
        if not _reserve_call(account_id):
            return None
        kite = broker_client(account_id)
        try:
            history = kite.order_history(broker_order_id)
        except Exception as exc:
            if not (isinstance(exc, kite_errors.KiteException) or is_transient(exc)):
                raise  # neither the broker's answer nor the network's: a bug, reported as one
            if getattr(exc, "code", None) == 429 and attempt < ATTEMPTS:
                time.sleep(KITE_WINDOW_S)
                continue
            noticed(account_id, exc, "postback", kite)  # a refused token: the session has expired
            log.warning("postback not verified: the broker did not answer; the reconciler applies its record",
                        extra={"account_id": account_id, "broker_order_id": broker_order_id, "error": describe(exc)})
            return None
        return history[-1] if history else None
    return None


def _reserve_call(account_id: str) -> bool:
    try:
        reservation = other_calls_rate_limiter().acquire(account_id, placement=False, max_wait_s=MAX_RATE_WAIT_S)
    except redis.RedisError as exc:
        log.warning("postback not verified: the rate limiter is unreachable",
                    extra={"account_id": account_id, "error": type(exc).__name__})
        return False
    if not reservation.granted:
        log.info("postback not verified now: Kite's limit of non-order calls is reached; "
                 "the reconciler applies the broker's record", extra={"account_id": account_id})
    return reservation.granted


def verified(order: Order, claim: dict) -> dict | None:
    """What to apply for a checksummed postback about `order`: the claim itself when it changes
    nothing that matters, else the broker's own latest record; None: nothing (see the module)."""
    if not needs_confirmation(order, claim):
        return claim
    broker_order_id = order.broker_order_id or str(claim["order_id"])
    truth = broker_record(order.account_id, broker_order_id)
    if truth is None:
        postback_verifications_total.inc(outcome="unverified")
        return None
    # Found by its tag, the order has no broker id yet: the one posted must be this order's.
    another_order = not order.broker_order_id and truth.get("tag") != order.tag
    if another_order or is_refuted(claim, truth):
        postback_verifications_total.inc(outcome="refuted")
        log.warning("postback refuted by the broker's order history: its claim is not applied (is the "
                    "api_secret known to someone else?)", extra={
                        "account_id": order.account_id, "order_id": order.id, "broker_order_id": broker_order_id,
                        "claimed_status": claim.get("status"), "claimed_filled": claim.get("filled_quantity"),
                        "broker_status": truth.get("status"), "broker_filled": truth.get("filled_quantity")})
        return None if another_order else truth  # the broker's own record is safe to apply
    postback_verifications_total.inc(outcome="confirmed")
    return truth
