"""A broker call a check at intake makes (the margin check, the risk limits): one of Kite's non-order
endpoints, in a slot of the account's limiter (app.broker.rate_limit.other_calls_rate_limiter), with one
more try in Kite's next second after a 429. A request cannot wait: no slot within MAX_RATE_WAIT_S, the
limiter unreachable or the broker failing is NotAnswered, which each check turns into its own refusal."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

import redis
from kiteconnect import exceptions as kite_errors

from app.broker.errors import describe, is_transient
from app.broker.rate_limit import other_calls_rate_limiter
from app.kite_session.refusals import noticed

Answer = TypeVar("Answer")

MAX_RATE_WAIT_S = 1.0  # a request waits this long at most for a slot; beyond, it is refused
KITE_WINDOW_S = 1.0    # Kite counts calls per calendar second: after a 429 the next try is in the next one


class NotAnswered(Exception):
    """The call could not be made or the broker failed it. `error`: the broker's (or the network's)
    exception, None when no slot could be had; `retry_after_s`: when a slot frees, if known."""

    def __init__(self, cause: str, error: BaseException | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(cause)
        self.cause, self.error, self.retry_after_s = cause, error, retry_after_s


def is_broker_failure(exc: BaseException) -> bool:
    """An error from the broker (a Kite exception) or on the way to it (network, timeout)."""
    return isinstance(exc, kite_errors.KiteException) or is_transient(exc)


def call_in_turn(account_id: str, call: Callable[[], Answer], source: str, kite=None) -> Answer:
    """`call()` in a slot of the account's limiter. Our limiter counts only these calls, so a 429 means
    other calls on the api key used up Kite's second: one more try in the next. An exception that is
    neither the broker's nor the network's is a bug and propagates as it is; a refused token marks the
    account's session expired (app.kite_session.refusals, `source` naming who noticed)."""
    for attempt in (1, 2):
        _reserve_call(account_id)
        try:
            return call()
        except Exception as exc:
            if not is_broker_failure(exc):
                raise
            if attempt == 1 and getattr(exc, "code", None) == 429:
                time.sleep(KITE_WINDOW_S)
                continue
            noticed(account_id, exc, source, kite)
            raise NotAnswered(describe(exc), error=exc) from exc
    raise AssertionError("unreachable")


def _reserve_call(account_id: str) -> None:
    try:
        reservation = other_calls_rate_limiter().acquire(account_id, placement=False, max_wait_s=MAX_RATE_WAIT_S)
    except redis.RedisError as exc:
        raise NotAnswered(f"the rate limiter is unreachable: {type(exc).__name__}") from exc
    if not reservation.granted:
        raise NotAnswered("Kite's limit of 10 requests per second for this account is reached",
                          retry_after_s=round(reservation.wait_s, 3))
