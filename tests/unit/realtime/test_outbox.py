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
