"""Freeze quantities: the largest F&O order the exchange accepts, per underlying.

Kite publishes them nowhere (it only refuses a larger order), so they ship with the service in
`app/market/data/freeze_quantities.csv`; FREEZE_QUANTITIES (app.core.config) overrides single
underlyings when NSE revises them before a release does.
"""
from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

from app.core.config import get_settings
from app.market.instruments import InstrumentInfo

DATA_FILE = Path(__file__).parent / "data" / "freeze_quantities.csv"


@lru_cache(maxsize=None)
def shipped_freeze_quantities(path: Path = DATA_FILE) -> dict[str, int]:
    """The data file's figures (lines starting with # are comments)."""
    with open(path, newline="") as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        return {row["underlying"].strip().upper(): int(row["max_quantity"]) for row in rows}


def freeze_quantities() -> dict[str, int]:
    """The figures in force: the data file's, with the FREEZE_QUANTITIES override on top."""
    return {**shipped_freeze_quantities(), **get_settings().freeze_quantities}


def freeze_quantity(info: InstrumentInfo) -> int | None:
    """The largest legal quantity of one order in this instrument, in whole lots (None: no limit)."""
    if not info.is_derivative:
        return None
    limit = freeze_quantities().get(info.name.upper())
    if limit is None:
        return None
    lot = info.lot_size or 1
    return max(lot, limit // lot * lot)  # a figure below one lot still lets one lot through
