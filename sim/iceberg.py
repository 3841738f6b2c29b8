"""Kite's iceberg variety: one order shown to the exchange a leg at a time.

2–50 legs (`iceberg_legs`); `iceberg_quantity` must be quantity/legs (with odd lots the first legs
get the extra lot: 31 lots in 2 legs → 16 then 15). Each leg is an order of its own, created when
the previous one has filled completely, sharing `parent_order_id` (the first leg's id, the one the
place call answers). A leg that ends any other way (cancelled, rejected, lapsed) ends the iceberg.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .errors import input_error
from .orders import OrderRequest

MIN_LEGS, MAX_LEGS = 2, 50


def _int(params: dict, name: str) -> int:
    try:
        return int(float(params.get(name) or 0))
    except (TypeError, ValueError, OverflowError):
        raise input_error(f"Invalid `{name}`.")


def leg_sizes(request: OrderRequest, params: dict) -> list[int]:
    legs = _int(params, "iceberg_legs")
    if not MIN_LEGS <= legs <= MAX_LEGS:
        raise input_error(f"Invalid `iceberg_legs`. Iceberg legs should be between {MIN_LEGS} and {MAX_LEGS}.")
    if request.order_type not in ("LIMIT", "SL"):
        raise input_error("Iceberg orders can only be LIMIT or SL orders.")
    lot = request.instrument.lot_size or 1
    lots = request.quantity // lot
    if lots < legs:
        raise input_error("Invalid `iceberg_legs`. Each leg needs at least one lot.")
    allowed = {math.floor(lots / legs) * lot, math.ceil(lots / legs) * lot}
    if _int(params, "iceberg_quantity") not in allowed:
        raise input_error("Invalid `iceberg_quantity`.")
    base, extra = divmod(lots, legs)
    return [(base + (1 if k < extra else 0)) * lot for k in range(legs)]


@dataclass
class Iceberg:
    request: OrderRequest
    sizes: list[int]
    parent_order_id: str | None = None
    leg: int = 0            # legs created so far

    def meta(self) -> dict:
        size = self.sizes[self.leg - 1]
        total = sum(self.sizes)
        return {"iceberg": {"leg": self.leg, "legs": len(self.sizes), "leg_quantity": size,
                            "total_quantity": total, "remaining_quantity": total - sum(self.sizes[:self.leg])}}

    def next_request(self) -> OrderRequest | None:
        if self.leg >= len(self.sizes):
            return None
        self.leg += 1
        return replace(self.request, quantity=self.sizes[self.leg - 1])
