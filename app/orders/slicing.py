"""The slice plan: how an order above the freeze quantity is split into orders the exchange accepts.

Children are as large as the freeze quantity allows (whole lots), the remainder last, like Kite's
own autoslice; SEBI's 2026 retail-algo rules cap slicing at ten slices, so a larger order is refused
before anything is stored or sent.
"""
from __future__ import annotations

from app.market.freeze_quantities import freeze_quantity
from app.market.instruments import InstrumentInfo, registry

MAX_SLICES = 10


class TooManySlices(ValueError):
    """The order would need more than MAX_SLICES child orders."""


def slice_quantities(quantity: int, lot_size: int, limit: int | None) -> list[int]:
    """The child quantities of an order of `quantity` under the freeze quantity `limit` (a whole
    number of lots; None: no limit). One element when the order needs no slicing."""
    if limit is None or quantity <= limit:
        return [quantity]
    full, rest = divmod(quantity, limit)
    count = full + (1 if rest else 0)
    if count > MAX_SLICES:
        lot = lot_size or 1
        raise TooManySlices(
            f"quantity {quantity} ({quantity // lot} lots) needs {count} slices of at most the freeze "
            f"quantity {limit} ({limit // lot} lots); orders are sliced into at most {MAX_SLICES}, so the "
            f"largest order is {limit * MAX_SLICES} ({limit // lot * MAX_SLICES} lots)")
    return [limit] * full + ([rest] if rest else [])


def slice_plan(info: InstrumentInfo, quantity: int) -> list[int]:
    """The child quantities of an order in `info` (see slice_quantities)."""
    return slice_quantities(quantity, info.lot_size, freeze_quantity(info))


def plan_for_columns(columns: dict) -> list[int]:
    """The child quantities of an order given as its Order columns (OrderRequestSchema's output)."""
    info = registry().by_symbol(columns["exchange"], columns["tradingsymbol"])
    if info is None:  # the schema checked the instrument; without it there is no freeze quantity to apply
        return [columns["quantity"]]
    return slice_plan(info, columns["quantity"])
