"""The hub's tick indexes: a message reaches the clients that watch it (underlying, chain, tokens) and no
other, read from its channel and head; chains are validated as UNDERLYING:YYYY-MM-DD."""
from __future__ import annotations

import json

import pytest

from app.realtime.clients import (MAX_CHAINS, Chain, Outbox, Outgoing, Subscription, SubscriptionError, TickClient,
                                  parse_chains, parse_subscription_message)
from app.realtime.hub import RealtimeHub, chain_expiry


def tick_client(**watching) -> TickClient:
    return TickClient(endpoint="ticks", outbox=Outbox(50, drop_oldest=True), **watching)


def message(underlying: str, kind: str, tokens: list[int], expiry: str | None = None) -> tuple[str, str]:
    """(channel, text) laid out as workers/stream/batcher.py writes them: head first, then ticks."""
    channel = f"ticker:{underlying}:{kind}"
    head = {"type": "ticks", "channel": channel, "underlying": underlying.upper(), "kind": kind}
    if expiry:
        head["expiry"] = expiry
    head.update(published_at="2026-12-01T09:15:00.000Z", count=len(tokens))
    ticks = [{"instrument_token": t, "last_price": 1.5, "expiry": "2099-01-01"} for t in tokens]
    return channel, json.dumps({**head, "ticks": ticks}, separators=(",", ":"))


def received(client: TickClient) -> list[str]:
    items, _ = client.outbox.take(0)
    return [i.text for i in items]


@pytest.fixture
def hub():
    return RealtimeHub("redis://127.0.0.1:1/0")  # never started: the hub's routing alone


def test_a_chain_watcher_gets_its_chain_and_its_underlying_only(hub):
    near, far = Chain("nifty", "2026-12-03"), Chain("nifty", "2026-12-10")
    watchers = [tick_client(chains={near}) for _ in range(3)]
    other_expiry, other_underlying = tick_client(chains={far}), tick_client(chains={Chain("banknifty", "2026-12-03")})
    whole = tick_client(underlyings={"nifty"})
    for client in (*watchers, other_expiry, other_underlying, whole):
        hub.add(client)

    hub._relay_ticks(*message("nifty", "options", [1, 2], "2026-12-03"))
    hub._relay_ticks(*message("nifty", "options", [3], "2026-12-10"))
    hub._relay_ticks(*message("nifty", "underlying", [9]))
    hub._relay_ticks(*message("banknifty", "underlying", [8]))
    hub._relay_ticks(*message("nifty", "options", [4]))  # no expiry in the head: no chain's

    seen = [json.loads(t) for t in received(watchers[0])]
    assert [(m["kind"], m.get("expiry")) for m in seen] == [("options", "2026-12-03"), ("underlying", None)]
    assert [m["channel"] for m in seen] == ["ticker:nifty:options", "ticker:nifty:underlying"]
    # One shared frame for every watcher of the chain: the same text object, not a copy per client.
    items = [w.outbox.take(0)[0] for w in watchers[1:]]
    assert all(len(i) == 2 for i in items) and items[0][0] is items[1][0]
    assert [json.loads(t).get("expiry") for t in received(other_expiry)] == ["2026-12-10", None]
    assert [json.loads(t)["underlying"] for t in received(other_underlying)] == ["BANKNIFTY"]
    assert len(received(whole)) == 4  # an underlying watcher still gets all of its channels


def test_token_filters_have_their_own_index_and_see_only_their_ticks(hub):
    chain = Chain("nifty", "2026-12-03")
    both = tick_client(chains={chain}, tokens={3})
    tokens_only = tick_client(tokens={2, 3})
    hub.add(both)
    hub.add(tokens_only)
    hub._relay_ticks(*message("nifty", "options", [1, 2], "2026-12-03"))
    hub._relay_ticks(*message("nifty", "options", [3], "2026-12-10"))
    hub._relay_ticks(*message("nifty", "options", [7], "2026-12-10"))  # nobody's token: sent to no one
    assert [[t["instrument_token"] for t in json.loads(m)["ticks"]] for m in received(both)] == [[1, 2], [3]]
    filtered = [json.loads(m) for m in received(tokens_only)]
    assert [([t["instrument_token"] for t in m["ticks"]], m["count"]) for m in filtered] == [([2], 1), ([3], 1)]


def test_resubscribing_moves_a_client_between_indexes_and_removal_leaves_none_behind(hub):
    client = tick_client(chains={Chain("nifty", "2026-12-03")})
    hub.add(client)
    answer = hub.resubscribe(client, "subscribe", Subscription(chains={Chain("nifty", "2026-12-10")}, tokens={5}))
    assert answer == {"type": "subscribed", "action": "subscribe", "underlying": [], "tokens": [5],
                      "chains": ["NIFTY:2026-12-10"], "total": {"tokens": 1, "underlying": 0, "chains": 2}}
    hub.resubscribe(client, "unsubscribe", Subscription(chains={Chain("nifty", "2026-12-03")}))
    hub._relay_ticks(*message("nifty", "options", [1], "2026-12-03"))
    hub._relay_ticks(*message("nifty", "options", [1], "2026-12-10"))
    hub._relay_ticks(*message("nifty", "underlying", [9]))  # still watches one NIFTY chain
    assert [json.loads(t).get("expiry") for t in received(client)] == ["2026-12-10", None]
    with pytest.raises(SubscriptionError, match=f"at most {MAX_CHAINS} chains"):
        too_many = {Chain("x", f"2027-01-{d:02d}") for d in range(1, 30)}
        hub.resubscribe(client, "subscribe", Subscription(chains=too_many))
    assert hub.status()["tick_subscriptions"] == {"underlyings": 0, "chains": 1, "chain_watchers": 1, "tokens": 1}
    hub.remove(client)
    index = hub._ticks
    assert (index.clients, index.by_underlying, index.by_chain, index.chain_watchers, index.by_token) == (
        set(), {}, {}, {}, {})


def test_the_expiry_is_read_from_the_head_only():
    _, text = message("nifty", "options", [1], "2026-12-03")
    assert chain_expiry(text) == "2026-12-03"
    _, headless = message("nifty", "options", [1])
    assert '"expiry":"2099-01-01"' in headless and chain_expiry(headless) is None  # a tick's expiry is no head's
    assert chain_expiry('{"type":"ticks"' + " " * 600 + ',"expiry":"2026-12-03","ticks":[]}') is None


@pytest.mark.parametrize("value", ["NIFTY", "NIFTY:2026-13-01", "NIFTY:03-12-2026", ":2026-12-03", "NI FTY:2026-12-03",
                                   "NIFTY:2026-12-03:x"])
def test_a_bad_chain_is_a_subscription_error(value):
    with pytest.raises(SubscriptionError, match="not a chain"):
        parse_chains(value)


def test_chains_parse_from_a_query_string_or_a_message():
    assert parse_chains(" NIFTY:2026-12-03,banknifty:2026-12-31 ") == {Chain("nifty", "2026-12-03"),
                                                                         Chain("banknifty", "2026-12-31")}
    action, named = parse_subscription_message(json.dumps({"action": "unsubscribe", "chains": ["NIFTY:2026-12-03"]}))
    assert (action, named.chains, named.tokens) == ("unsubscribe", {Chain("nifty", "2026-12-03")}, set())
    with pytest.raises(SubscriptionError, match=f"at most {MAX_CHAINS} chains"):
        parse_chains([f"NIFTY:2027-01-{d:02d}" for d in range(1, MAX_CHAINS + 2)])
    with pytest.raises(SubscriptionError, match="chains must be a list"):
        parse_subscription_message(json.dumps({"chains": [1]}))


@pytest.mark.parametrize("size", [5, 300, 70_000])
def test_a_shared_frame_is_a_text_frame_any_client_reads(size):
    from wsproto.frame_protocol import FrameProtocol

    text = "é" + "x" * size  # not ASCII: the length is the UTF-8 payload's
    frame = Outgoing(text=text, shared=True).frame()
    reader = FrameProtocol(client=True, extensions=[])  # a client's side of the connection
    reader.receive_bytes(frame)
    (received,) = list(reader.received_frames())
    assert received.payload == text and received.message_finished
