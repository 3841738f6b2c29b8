"""`--stamp-token`: the benchmark marker that carries a frame's send time (off by default)."""
from __future__ import annotations

import time

from kiteconnect import KiteConnect

from sim.harness import PaperBroker

from tests.support.paper_broker import TickerRecorder
from tests.support.waiting import wait_for


def test_stamp_token_carries_send_time_in_last_quantity_of_one_instrument(start_ticker):
    with PaperBroker(seed=11, frozen=True) as probe:  # same seed, same instruments
        options = [i for i in KiteConnect("k", access_token="t", root=probe.root).instruments("NFO")
                   if i["segment"] == "NFO-OPT"]
    marker, other = options[0]["instrument_token"], options[1]["instrument_token"]
    with PaperBroker(seed=11, tick_rate=20, frozen=True, extra_args=["--stamp-token", str(marker)]) as broker:
        kite = KiteConnect("stampkey", access_token="tokenstampkey", root=broker.root)
        recorder = start_ticker(TickerRecorder("stampkey", "tokenstampkey", broker.ws_root))
        assert wait_for(lambda: recorder.connects >= 1, 10)
        recorder.subscribe([marker, other], "full")
        assert wait_for(lambda: sum(t["instrument_token"] == marker and t["mode"] == "full"
                                    for t in list(recorder.ticks)) >= 5, 10)
        now_ms = int(time.time() * 1000)
        stamps = [t["last_traded_quantity"] for t in list(recorder.ticks) if t["instrument_token"] == marker
                  and t["mode"] == "full"]
        ages = [(now_ms - s) % (1 << 32) for s in stamps]
        assert all(0 <= age < 5000 for age in ages), ages
        assert stamps == sorted(stamps) and len(set(stamps)) > 1  # one stamp per frame, rising
        # Every other instrument keeps its real last quantity.
        q = kite.quote(f"NFO:{options[1]['tradingsymbol']}")[f"NFO:{options[1]['tradingsymbol']}"]
        assert recorder.latest(other, "full")["last_traded_quantity"] == q["last_quantity"]
        recorder.close()


def test_unknown_stamp_token_refuses_to_start():
    try:
        PaperBroker(extra_args=["--stamp-token", "12345"], startup_timeout=10).start()
    except RuntimeError as exc:
        assert "no such instrument" in str(exc)
    else:
        raise AssertionError("the broker started with an unknown --stamp-token")
