"""The broker calls the risk-limit checks make (a live price, the net positions), through the account's
own client and within Kite's limit on non-order calls (app.broker.rate_limit.other_calls_rate_limiter).

A call that fails — the broker down or slow, Kite's 429 after one more try in the next second, an
expired session, our limiter full or unreachable — is a RiskCheckUnavailable: the check cannot be
made, so the request is refused, never placed unchecked.
"""
from __future__ import annotations

import time
from typing import Callable, TypeVar

import redis

from app.broker.client import broker_client
from app.broker.errors import describe, is_transient
from app.broker.margin_check import is_broker_failure
from app.broker.rate_limit import other_calls_rate_limiter
from app.kite_session.refusals import noticed
from app.risk.limit_errors import RiskCheckUnavailable

Answer = TypeVar("Answer")

MAX_RATE_WAIT_S = 1.0  # a request waits this long at most for a slot; beyond, it is refused
KITE_WINDOW_S = 1.0    # Kite counts calls per calendar second: after a 429 the next try is in the next one


def ask_broker(account_id: str, limit: str, call: Callable[[object], Answer]) -> Answer:
    """`call(kite)` with the account's client in a slot of its limiter; RiskCheckUnavailable (naming
    `limit`, the check that needed it) when the broker cannot answer."""
    kite = broker_client(account_id)
    for attempt in (1, 2):
        _reserve_call(account_id, limit)
        try:
            return call(kite)
        except Exception as exc:
            if not is_broker_failure(exc):
                raise  # neither the broker's answer nor the network's: a bug, reported as one
            if attempt == 1 and getattr(exc, "code", None) == 429:
                time.sleep(KITE_WINDOW_S)
                continue
            noticed(account_id, exc, "risk_limits", kite)  # a refused token: the session has expired
            what = "the broker did not answer" if is_transient(exc) else "the broker refused it"
            raise RiskCheckUnavailable(limit, f"{what}: {describe(exc)}"[:300]) from exc
    raise AssertionError("unreachable")


def _reserve_call(account_id: str, limit: str) -> None:
    try:
        reservation = other_calls_rate_limiter().acquire(account_id, placement=False, max_wait_s=MAX_RATE_WAIT_S)
    except redis.RedisError as exc:
        raise RiskCheckUnavailable(limit, f"the rate limiter is unreachable: {type(exc).__name__}") from exc
    if not reservation.granted:
        raise RiskCheckUnavailable(limit, "Kite's limit of 10 requests per second for this account is reached",
                                   retry_after_s=round(reservation.wait_s, 3))
