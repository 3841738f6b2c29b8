"""The per-client outbox of the WebSocket relay: bounded, dropping the oldest ticks or refusing orders."""
from __future__ import annotations

from app.realtime.clients import Outbox


def test_outbox_bounds():
    orders = Outbox(2, drop_oldest=False)
    from app.realtime.clients import Outgoing

    assert orders.offer(Outgoing("a")) and orders.offer(Outgoing("b"))
    assert not orders.offer(Outgoing("c")) and orders.overflowed
    ticks = Outbox(2, drop_oldest=True)
    for text in "abcd":
        ticks.offer(Outgoing(text))
    items, dropped = ticks.take(0)
    assert [i.text for i in items] == ["c", "d"] and dropped == 2 and ticks.dropped_total == 2
    ticks.reply(Outgoing("pong"))
    assert [i.text for i in ticks.take(0)[0]] == ["pong"]


def test_replies_are_bounded_too_and_overflow_any_outbox():
    from app.realtime.clients import REPLY_LIMIT, Outgoing

    ticks = Outbox(2, drop_oldest=True)
    assert all(ticks.reply(Outgoing("pong")) for _ in range(REPLY_LIMIT))
    assert not ticks.reply(Outgoing("pong")) and ticks.overflowed and ticks.overflowed_at is not None
    assert ticks.overflow == f"client not reading: {REPLY_LIMIT} replies pending"
    assert not ticks.offer(Outgoing("batch"))  # an overflowed outbox takes nothing more

    orders = Outbox(5, drop_oldest=False)
    assert orders.reply(Outgoing("x" * 600_000)) and not orders.reply(Outgoing("x" * 600_000))  # past 1 MiB
    assert orders.overflowed
    emptied = Outbox(5, drop_oldest=False)
    for _ in range(3 * REPLY_LIMIT):  # a client that reads its replies is never closed
        assert emptied.reply(Outgoing("pong"))
        emptied.take(0)
