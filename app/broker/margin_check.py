"""The margin check before a basket (a batch's legs, or one order) is sent: does it fit the funds?

The broker is asked, through the account's own client and within Kite's limit on non-order calls
(10/s per api key, app.broker.rate_limit), for the basket's margin with the open positions
considered — `final`, which counts the hedge benefit, so an iron condor needs a fraction of its
legs' sum (`initial`) — and for the margin the account has available (`margins("equity")["net"]`).
A basket whose `final.total` exceeds it is refused (InsufficientMargin) before anything is stored
or sent.

When the check cannot be made — the broker down or slow, Kite's 429 (after one more try in the
next second: other calls on the api key share Kite's limit), an expired session, an answer we
cannot read, our rate limiter full or unreachable — the request is refused as well
(MarginCheckUnavailable): never placed unchecked. The caller may retry, or send
`"margin_check": false` to place without the check.
"""
from __future__ import annotations

import logging
from decimal import Decimal, InvalidOperation

from kiteconnect import exceptions as kite_errors

from app.broker.client import broker_client, forget_client
from app.broker.errors import describe, is_transient
from app.broker.intake_calls import NotAnswered, call_in_turn
from app.core.cluster_metrics import ClusterCounter

log = logging.getLogger(__name__)

PAISA = Decimal("0.01")

REQUESTS = ("batch", "order")
REASONS = ("insufficient_margin", "unavailable")
margin_check_refusals_total = ClusterCounter(
    "margin_check_refusals_total", "Baskets refused by the margin check before anything was stored or sent",
    ("request", "reason"), series=[(request, reason) for request in REQUESTS for reason in REASONS])


class InsufficientMargin(Exception):
    """The basket needs more margin than the account has available (rupees, to the paisa)."""

    def __init__(self, required: Decimal, available: Decimal) -> None:
        self.required, self.available = required, available
        super().__init__(f"insufficient margin: the basket needs ₹{required:,.2f} but the account has "
                         f"₹{available:,.2f} available (₹{required - available:,.2f} short); nothing was placed")

    @property
    def details(self) -> dict:
        return {"required": float(self.required), "available": float(self.available),
                "shortfall": float(self.required - self.available)}


class MarginCheckUnavailable(Exception):
    """The margin could not be checked; nothing was placed."""

    def __init__(self, cause: str, retryable: bool = True, retry_after_s: float | None = None) -> None:
        self.cause, self.retryable, self.retry_after_s = cause, retryable, retry_after_s
        super().__init__(f"the margin check could not be made ({cause}); nothing was placed. Retry, or send "
                         f'"margin_check": false to place without the check')

    @property
    def details(self) -> dict:
        details = {"cause": self.cause, "retryable": self.retryable}
        if self.retry_after_s is not None:
            details["retry_after_s"] = self.retry_after_s
        return details


def margin_orders(legs: list[dict]) -> list[dict]:
    """Legs as Order columns → the orders Kite's margin calculator takes (MARKET orders without a
    price: the broker values them at the touch)."""
    return [{"exchange": leg["exchange"], "tradingsymbol": leg["tradingsymbol"],
             "transaction_type": leg["transaction_type"], "variety": leg.get("variety") or "regular",
             "product": leg["product"], "order_type": leg["order_type"], "quantity": leg["quantity"],
             "price": float(leg.get("price") or 0), "trigger_price": float(leg.get("trigger_price") or 0)}
            for leg in legs]


def rupees(value) -> Decimal:
    """A broker figure in rupees, to the paisa; ValueError when it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise ValueError(f"not an amount: {value!r}")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not an amount: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not an amount: {value!r}")
    return amount.quantize(PAISA)


def margin_shortfall(basket_margin: dict, equity: dict) -> InsufficientMargin | None:
    """Kite's answers (basket_order_margins, margins("equity")) → the refusal when the basket's
    `final` margin exceeds the available margin; None when it fits. A malformed answer is a
    MarginCheckUnavailable: without both figures nothing is known."""
    try:
        required = rupees(basket_margin["final"]["total"])
        available = rupees(equity["net"])
    except (KeyError, TypeError, ValueError) as exc:
        raise MarginCheckUnavailable(f"the broker's margin answer could not be read: {exc!r}"[:300]) from None
    return InsufficientMargin(required, available) if required > available else None


def check_basket_margin(account_id: str, legs: list[dict], request: str) -> None:
    """Return when the basket fits the account's available margin; otherwise raise
    InsufficientMargin or MarginCheckUnavailable (counted by `request`: batch or order)."""
    try:
        basket_margin, equity = _ask_broker(account_id, margin_orders(legs))
        refusal = margin_shortfall(basket_margin, equity)
    except MarginCheckUnavailable as unavailable:
        margin_check_refusals_total.inc(request=request, reason="unavailable")
        log.warning("margin check unavailable", extra={"account_id": account_id, "error": unavailable.cause})
        raise
    if refusal is not None:
        margin_check_refusals_total.inc(request=request, reason="insufficient_margin")
        log.info("basket refused for insufficient margin", extra={
            "account_id": account_id, "required": str(refusal.required), "available": str(refusal.available)})
        raise refusal


def _ask_broker(account_id: str, orders: list[dict]) -> tuple[dict, dict]:
    kite = broker_client(account_id)
    basket_margin = _call_in_turn(account_id, lambda: kite.basket_order_margins(orders, consider_positions=True))
    equity = _call_in_turn(account_id, lambda: kite.margins("equity"))
    return basket_margin, equity


def _call_in_turn(account_id: str, call):
    try:
        return call_in_turn(account_id, call, "margin_check")
    except NotAnswered as unanswered:
        if unanswered.error is None:
            raise MarginCheckUnavailable(unanswered.cause, retry_after_s=unanswered.retry_after_s) from unanswered
        raise unavailable_because(account_id, unanswered.error) from unanswered.error


def unavailable_because(account_id: str, exc: BaseException) -> MarginCheckUnavailable:
    """What a failed broker call means for the check: retryable when the broker could not answer
    (down, slow, rate limited), not when it refused (an expired session, a bad instrument)."""
    if isinstance(exc, kite_errors.TokenException):
        forget_client(account_id)  # a session renewed meanwhile is read at the next call
    retryable = is_transient(exc)
    what = "the broker did not answer" if retryable else "the broker refused it"
    return MarginCheckUnavailable(f"{what}: {describe(exc)}"[:300], retryable=retryable)
