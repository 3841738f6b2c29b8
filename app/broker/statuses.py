"""Kite's order statuses, in one place.

An order passes through intermediate statuses (`PUT ORDER REQ RECEIVED`, `VALIDATION PENDING`,
`OPEN PENDING`, …) before the broker's risk checks give their verdict: `OPEN` or
`TRIGGER PENDING` (live on the exchange), or one of the final ones. `UPDATE` is the
postback of a modification.
"""
from __future__ import annotations

OPEN, TRIGGER_PENDING = "OPEN", "TRIGGER PENDING"
COMPLETE, CANCELLED, REJECTED = "COMPLETE", "CANCELLED", "REJECTED"

FINAL = frozenset({COMPLETE, CANCELLED, REJECTED})
# Live at the broker: it may still fill, so a rollback must cancel it.
LIVE = frozenset({OPEN, TRIGGER_PENDING, "OPEN PENDING", "VALIDATION PENDING", "PUT ORDER REQ RECEIVED",
                  "MODIFY PENDING", "MODIFY VALIDATION PENDING", "CANCEL PENDING", "AMO REQ RECEIVED"})
# Past the risk checks: the broker has said whether the order stands.
VERDICT = frozenset({OPEN, TRIGGER_PENDING, COMPLETE, REJECTED, CANCELLED})
