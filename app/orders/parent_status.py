"""A sliced order's aggregate: its status, fill and reasons, from its slices (pure).

While any slice is live the parent is in flight (QUEUED until one is claimed, OPEN once one
reached the broker or ended). Once all are final: COMPLETE when every slice completed; PARTIAL
when some quantity filled but not all of it; REJECTED when nothing filled and a slice failed
(rejected, or dead-lettered after its retries); EXPIRED when nothing filled, none failed and a
slice expired unsent (app.orders.admission); CANCELLED when nothing filled and the slices were
cancelled. A dead-lettered slice that is replayed makes its parent live again.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from app.orders.states import (CANCELLED, COMPLETE, DEAD_LETTER, EXPIRED, FINAL, OPEN, PARTIAL, QUEUED,
                               REJECTED, SUBMITTING)

FAILED = frozenset({REJECTED, DEAD_LETTER})


@dataclass(frozen=True)
class Aggregate:
    status: str
    filled_quantity: int
    average_price: Decimal | None
    error: str | None


def _average(slices) -> Decimal | None:
    filled = [(s.filled_quantity or 0, s.average_price) for s in slices
              if (s.filled_quantity or 0) > 0 and s.average_price is not None]
    quantity = sum(q for q, _ in filled)
    if not quantity:
        return None
    return (sum(Decimal(q) * Decimal(p) for q, p in filled) / quantity).quantize(Decimal("0.01"))


def _reasons(slices) -> str | None:
    """Why slices did not complete, each named: what a trader reads on the parent."""
    count = len(slices)
    reasons = [f"slice {s.slice_index + 1}/{count} (order {s.id}, quantity {s.quantity}) {s.status}: "
               f"{s.error or s.status_message or 'no reason given'}"
               for s in slices if s.status in FINAL and s.status != COMPLETE]
    return "; ".join(reasons) or None


def _status(slices, filled: int) -> str:
    statuses = [s.status for s in slices]
    if any(status not in FINAL for status in statuses):
        if all(status == QUEUED for status in statuses):
            return QUEUED
        if all(status in (QUEUED, SUBMITTING) for status in statuses):
            return SUBMITTING
        return OPEN
    if all(status == COMPLETE for status in statuses):
        return COMPLETE
    if filled > 0:
        return PARTIAL
    if any(status in FAILED for status in statuses):
        return REJECTED
    return EXPIRED if EXPIRED in statuses else CANCELLED


def aggregate(slices) -> Aggregate:
    """The parent's record from its slices (Order rows or anything with their fields)."""
    filled = sum(s.filled_quantity or 0 for s in slices)
    status = _status(slices, filled)
    return Aggregate(status, filled, _average(slices), _reasons(slices) if status in FINAL else None)
