"""What every broker attempt on an order shares: its outcome for the task, the backoff,
the lease of a claim, and applying a change to the locked order record."""
from __future__ import annotations

import random
from dataclasses import dataclass

from app.core.config import Settings, get_settings
from app.core.db import session_scope
from app.models import Order
from app.orders.updates import order_changed

# How long a worker may wait in-process for its rate-limit slot before re-scheduling instead.
MAX_INLINE_RATE_WAIT_S = 2.0
LEASE_MARGIN_S = 2.0


@dataclass(frozen=True)
class Outcome:
    action: str             # "done" | "retry" (an attempt failed) | "defer" (no attempt spent)
    countdown: float = 0.0
    status: str | None = None
    error: str | None = None


def submission_lease_s(settings: Settings | None = None) -> float:
    """How long a SUBMITTING claim is exclusive: a lookup plus a placement, each bounded by the broker timeout."""
    settings = settings or get_settings()
    return 2 * settings.broker_timeout_s + LEASE_MARGIN_S


def backoff_s(attempt: int, settings: Settings | None = None) -> float:
    """Exponential backoff with jitter: half of min(cap, base·2^(n-1)) plus up to the other half."""
    settings = settings or get_settings()
    delay = min(settings.order_retry_cap_s, settings.order_retry_base_s * (2 ** max(0, attempt - 1)))
    return delay / 2 + random.uniform(0, delay / 2)


def apply_locked(order_id: str, apply) -> Order | None:
    """Lock the order, let `apply(session, order)` change it; publish if it returns True."""
    with session_scope() as session:
        order = session.get(Order, order_id, with_for_update=True)
        if order is None:
            return None
        changed = apply(session, order)
    if changed:
        order_changed(order)
    return order
