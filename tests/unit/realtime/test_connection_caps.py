"""The relay's connection caps: per key (WS_MAX_CLIENTS_PER_KEY) and per process (WS_MAX_CLIENTS)."""
from __future__ import annotations

import pytest

from app.realtime.clients import OrderClient, Outbox, TickClient
from app.realtime.hub import OverCap, RealtimeHub


def tick(owner: str | None) -> TickClient:
    return TickClient(endpoint="ticks", outbox=Outbox(5, drop_oldest=True), owner=owner)


def test_a_key_gets_its_cap_the_process_its_own_and_a_closed_socket_makes_room():
    hub = RealtimeHub("redis://127.0.0.1:1/0")  # never started: the registry alone
    hub.max_clients, hub.max_clients_per_key = 4, 2
    mine = [tick("k1=primary"), tick("k1=primary")]
    for client in mine:
        hub.add(client)
    with pytest.raises(OverCap) as refused:
        hub.add(tick("k1=primary"))
    assert refused.value.code == 1008 and "at most 2 per key" in refused.value.reason
    hub.add(tick("k2=other"))
    hub.add(OrderClient(endpoint="orders_all", outbox=Outbox(5, drop_oldest=False), owner=None))  # admin
    with pytest.raises(OverCap) as busy:
        hub.add(tick(None))
    assert busy.value.code == 1013 and "at most 4 WebSockets per process" in busy.value.reason

    hub.remove(mine[0])
    hub.remove(mine[0])  # twice: counted once
    hub.add(tick("k1=primary"))
    assert len(hub.clients()) == 4


def test_the_defaults_leave_room_for_plain_requests(monkeypatch):
    from app.core.config import Settings

    monkeypatch.delenv("WS_MAX_CLIENTS", raising=False)
    monkeypatch.setenv("WEB_WORKER_CONNECTIONS", "1500")
    assert Settings().ws_max_clients == 1350  # gunicorn's pool of 1,500 keeps 150 for requests
    monkeypatch.setenv("WS_MAX_CLIENTS", "10")
    assert Settings().ws_max_clients == 10
