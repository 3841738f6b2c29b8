"""The broker calls the risk-limit checks make (a live price, the net positions), through the account's
own client and within Kite's limit on non-order calls (app.broker.intake_calls).

A call that fails — the broker down or slow, Kite's 429 after one more try in the next second, an
expired session, our limiter full or unreachable — is a RiskCheckUnavailable: the check cannot be
made, so the request is refused, never placed unchecked.
"""
from __future__ import annotations

from typing import Callable, TypeVar

from app.broker.client import broker_client
from app.broker.errors import describe, is_transient
from app.broker.intake_calls import NotAnswered, call_in_turn
from app.risk.limit_errors import RiskCheckUnavailable

Answer = TypeVar("Answer")


def ask_broker(account_id: str, limit: str, call: Callable[[object], Answer]) -> Answer:
    """`call(kite)` with the account's client in a slot of its limiter; RiskCheckUnavailable (naming
    `limit`, the check that needed it) when the broker cannot answer."""
    kite = broker_client(account_id)
    try:
        return call_in_turn(account_id, lambda: call(kite), "risk_limits", kite)
    except NotAnswered as unanswered:
        if unanswered.error is None:  # no slot: our limiter full or unreachable
            raise RiskCheckUnavailable(limit, unanswered.cause, retry_after_s=unanswered.retry_after_s) from unanswered
        what = "the broker did not answer" if is_transient(unanswered.error) else "the broker refused it"
        raise RiskCheckUnavailable(limit, f"{what}: {describe(unanswered.error)}"[:300]) from unanswered.error
