"""The slice plan, the freeze quantities in force, and a sliced order's aggregate."""
from __future__ import annotations

from datetime import date
from decimal import Decimal
from types import SimpleNamespace

import pytest

from app.core.config import parse_freeze_quantities
from app.market.freeze_quantities import freeze_quantities, freeze_quantity, shipped_freeze_quantities
from app.market.instruments import InstrumentInfo
from app.orders.parent_status import aggregate
from app.orders.slicing import MAX_SLICES, TooManySlices, slice_quantities


def option(name="NIFTY", lot=65, segment="NFO-OPT") -> InstrumentInfo:
    return InstrumentInfo(1, 1, f"{name}26DEC24000CE", name, "NFO", segment, "CE", date(2026, 12, 31),
                          24000.0, 0.05, lot)


def test_within_the_freeze_quantity_is_one_order():
    assert slice_quantities(1755, 65, 1755) == [1755]
    assert slice_quantities(65, 65, None) == [65]


def test_whole_freeze_sized_slices_then_the_remainder():
    assert slice_quantities(3 * 1755, 65, 1755) == [1755, 1755, 1755]
    assert slice_quantities(1755 + 130, 65, 1755) == [1755, 130]
    assert slice_quantities(1200, 30, 600) == [600, 600]


def test_ten_slices_at_most():
    assert len(slice_quantities(MAX_SLICES * 1755, 65, 1755)) == 10
    with pytest.raises(TooManySlices) as refused:
        slice_quantities(MAX_SLICES * 1755 + 65, 65, 1755)
    message = str(refused.value)
    assert "17615 (271 lots) needs 11 slices" in message
    assert "freeze quantity 1755 (27 lots)" in message and "at most 10" in message


def test_shipped_file_has_nifty_and_banknifty():
    assert shipped_freeze_quantities() == {"NIFTY": 1755, "BANKNIFTY": 600}


def test_override_parsing():
    assert parse_freeze_quantities("") == {}
    assert parse_freeze_quantities(" nifty=1800 , BANKNIFTY=600,") == {"NIFTY": 1800, "BANKNIFTY": 600}
    for bad in ("NIFTY", "NIFTY=", "NIFTY=0", "NIFTY=-5", "NIFTY=1.5e3", "=100"):
        with pytest.raises(ValueError, match="FREEZE_QUANTITIES"):
            parse_freeze_quantities(bad)


def test_override_replaces_only_the_underlyings_it_names(settings_override):
    settings_override(freeze_quantities={"NIFTY": 1300})
    assert freeze_quantities() == {"NIFTY": 1300, "BANKNIFTY": 600}
    assert freeze_quantity(option()) == 1300  # 20 lots of 65
    settings_override(freeze_quantities={"NIFTY": 1330})
    assert freeze_quantity(option()) == 1300  # rounded down to whole lots


def test_freeze_quantity_applies_to_derivatives_of_listed_underlyings():
    assert freeze_quantity(option("BANKNIFTY", 30)) == 600
    assert freeze_quantity(option("FINNIFTY", 60)) is None
    assert freeze_quantity(option(segment="NSE")) is None


def child(index, status, filled=0, price=None, error=None, quantity=1755):
    return SimpleNamespace(id=f"c{index}", slice_index=index, status=status, quantity=quantity,
                           filled_quantity=filled, average_price=Decimal(price) if price else None,
                           error=error, status_message=None)


def test_aggregate_while_slices_are_live():
    assert aggregate([child(0, "QUEUED"), child(1, "QUEUED")]).status == "QUEUED"
    assert aggregate([child(0, "SUBMITTING"), child(1, "QUEUED")]).status == "SUBMITTING"
    live = aggregate([child(0, "COMPLETE", 1755, "10"), child(1, "QUEUED")])
    assert (live.status, live.filled_quantity, live.error) == ("OPEN", 1755, None)


def test_aggregate_complete_with_the_weighted_average():
    done = aggregate([child(0, "COMPLETE", 1755, "10.00"), child(1, "COMPLETE", 585, "12.00", quantity=585)])
    assert (done.status, done.filled_quantity, done.average_price) == ("COMPLETE", 2340, Decimal("10.50"))


def test_aggregate_partial_rejected_and_cancelled():
    partial = aggregate([child(0, "COMPLETE", 1755, "10"), child(1, "REJECTED", error="RMS: margin")])
    assert (partial.status, partial.filled_quantity) == ("PARTIAL", 1755)
    assert partial.error == "slice 2/2 (order c1, quantity 1755) REJECTED: RMS: margin"
    assert aggregate([child(0, "DEAD_LETTER", error="gave up"), child(1, "CANCELLED")]).status == "REJECTED"
    assert aggregate([child(0, "CANCELLED"), child(1, "CANCELLED")]).status == "CANCELLED"
    assert aggregate([child(0, "CANCELLED", 650, "10"), child(1, "CANCELLED")]).status == "PARTIAL"


def test_cli_lists_the_figures_in_force_and_where_each_comes_from(settings_override):
    from click.testing import CliRunner
    from flask import Flask
    from flask.cli import ScriptInfo

    from app.cli import instruments_cli

    settings_override(freeze_quantities={"NIFTY": 1300})
    result = CliRunner().invoke(instruments_cli, ["freeze-quantities"],
                                obj=ScriptInfo(create_app=lambda: Flask("cli-test")))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["BANKNIFTY\t600\tfreeze_quantities.csv", "NIFTY\t1300\tFREEZE_QUANTITIES"]
