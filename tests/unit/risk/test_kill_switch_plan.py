"""The kill switch without services: its square-off plan (sides, products, freeze-sized slices, shorts
first), the positions a round should leave, and its place in the beat schedule and the task routes."""
from __future__ import annotations

from app.risk.kill_square_off import expected_after, open_positions, plan, slices

NIFTY_LIMIT = 1755  # 27 lots of 65


def limits(exchange: str, tradingsymbol: str) -> int | None:
    return NIFTY_LIMIT if tradingsymbol.startswith("NIFTY") else None


def net(tradingsymbol: str, quantity: int, product: str = "NRML", exchange: str = "NFO") -> dict:
    return {"exchange": exchange, "tradingsymbol": tradingsymbol, "product": product, "quantity": quantity,
            "instrument_token": 1, "pnl": 12.5}


def test_slices_are_freeze_sized_with_the_remainder_last_and_uncapped():
    assert slices(1950, NIFTY_LIMIT) == [1755, 195]
    assert slices(1755, NIFTY_LIMIT) == [1755]
    assert slices(130, None) == [130]
    assert slices(12 * 1755, NIFTY_LIMIT) == [1755] * 12  # more than ten: getting out comes first


def test_the_plan_buys_back_shorts_first_then_sells_longs_each_in_its_product():
    positions = open_positions([net("NIFTY26D0826150CE", 1950), net("INFY", 10, "CNC", "NSE"),
                                net("NIFTY26D0826200CE", -130, "MIS"), net("NIFTY26D0826300PE", 0)])
    assert [p["tradingsymbol"] for p in positions] == ["NIFTY26D0826150CE", "INFY", "NIFTY26D0826200CE"]
    orders = plan(positions, limits)
    assert [(o["tradingsymbol"], o["transaction_type"], o["quantity"], o["product"]) for o in orders] == [
        ("NIFTY26D0826200CE", "BUY", 130, "MIS"),
        ("NIFTY26D0826150CE", "SELL", 1755, "NRML"),
        ("NIFTY26D0826150CE", "SELL", 195, "NRML"),
        ("INFY", "SELL", 10, "CNC"),
    ]
    assert {(o["order_type"], o["market_protection"], o["variety"], o["validity"]) for o in orders} == {
        ("MARKET", -1.0, "regular", "DAY")}
    assert plan([], limits) == []


def test_a_round_is_expected_to_leave_what_its_fills_did_not_close():
    positions = open_positions([net("NIFTY26D0826150CE", 1950), net("NIFTY26D0826200CE", -130)])
    filled = [{**o, "filled_quantity": o["quantity"]} for o in plan(positions, limits)]
    assert set(expected_after(positions, filled).values()) == {0}
    filled[-1]["filled_quantity"] = 65  # the last slice half filled, the rest cancelled
    assert expected_after(positions, filled)[("NFO", "NIFTY26D0826150CE", "NRML")] == 130


def test_the_kill_switch_runs_beside_the_batches_and_beat_resumes_a_silent_one():
    import celeryconfig

    from app.risk.kill_switch import RUN_TASK

    assert celeryconfig.task_routes["workers.tasks.risk.*"] == {"queue": "batches"}
    assert RUN_TASK.startswith("workers.tasks.risk.")
    scheduled = {entry["task"] for entry in celeryconfig.beat_schedule.values()}
    assert "workers.tasks.risk.resume_stalled_kill_switches" in scheduled
