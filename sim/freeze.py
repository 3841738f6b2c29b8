"""Exchange freeze quantities: the largest F&O order NSE accepts, and Kite's autoslice around it.

Figures come from `sim/data/freeze_quantities.csv` (NSE revises them); `POST /_sim/settings
{"freeze_quantities": {"NIFTY": 1755}}` overrides them at run time. Underlyings not in the file (the
fno universe's other indices and its stocks) freeze at DEFAULT_FREEZE_LOTS lots: NSE derives a
stock's limit from its market-wide position limit, which the paper broker does not model.
"""
from __future__ import annotations

import csv
from pathlib import Path

from .errors import input_error
from .universe import Instrument

DATA_FILE = Path(__file__).parent / "data" / "freeze_quantities.csv"
DEFAULT_FREEZE_LOTS = 20
MAX_SLICES = 10   # SEBI's 2026 retail-algo rule: "Order slicing should be capped at a maximum of 10 slices."

FREEZE_MESSAGE = ("The order quantity {quantity} ({lots} lots) is higher than the maximum quantity of {limit} "
                  "({limit_lots} lots) allowed by the exchanges. Please reduce the order quantity or use "
                  "iceberg orders.")


def load(path: Path = DATA_FILE) -> dict[str, int]:
    with open(path, newline="") as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        return {row["underlying"].strip(): int(row["max_quantity"]) for row in rows}


class FreezeLimits:
    def __init__(self, limits: dict[str, int] | None = None):
        self.limits = dict(load() if limits is None else limits)

    def update(self, changes: dict) -> None:
        for name, value in changes.items():
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"freeze quantity of {name} must be a positive integer")
        self.limits.update(changes)

    def limit(self, instrument: Instrument) -> int | None:
        """The largest legal quantity in one order, a whole number of lots (None: no limit)."""
        if instrument.exchange != "NFO":   # indices, and stocks traded on NSE itself
            return None
        lot = instrument.lot_size or 1
        limit = self.limits.get(instrument.underlying, DEFAULT_FREEZE_LOTS * lot)
        return limit // lot * lot

    def check(self, instrument: Instrument, quantity: int) -> None:
        """Kite's synchronous refusal of an order above the freeze quantity (HTTP 400 InputException)."""
        limit = self.limit(instrument)
        if limit is not None and quantity > limit:
            lot = instrument.lot_size or 1
            raise input_error(FREEZE_MESSAGE.format(quantity=quantity, lots=quantity // lot, limit=limit,
                                                    limit_lots=limit // lot))

    def slices(self, instrument: Instrument, quantity: int) -> list[int]:
        """Autoslice: freeze-sized children, the remainder last; refused when slicing is not needed
        (Kite: "Quantity should be greater than or equal to 3510 for order slicing." for NIFTY, twice the
        freeze quantity) or would take more than ten slices."""
        limit = self.limit(instrument)
        minimum = 2 * limit if limit else None
        if minimum is None or quantity < minimum:
            raise input_error(f"Quantity should be greater than or equal to {minimum or 'the freeze quantity'} "
                              f"for order slicing.")
        count = -(-quantity // limit)
        if count > MAX_SLICES:
            raise input_error(f"The order quantity {quantity} needs {count} slices of at most {limit}; "
                              f"order slicing is capped at a maximum of {MAX_SLICES} slices.")
        full, rest = divmod(quantity, limit)
        return [limit] * full + ([rest] if rest else [])
