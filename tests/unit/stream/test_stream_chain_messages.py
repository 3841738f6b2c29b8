"""Option ticks go out as one message per chain (underlying, expiry) on the underlying's options channel,
with the expiry in the message's head, so the relay routes a chain without reading its ticks."""
from __future__ import annotations

import json
from datetime import date

from tests.support.stream_frames import INDICES, NFO, frame, ltp_packet, token
from workers.stream import frames
from workers.stream.batcher import TickBatcher
from workers.stream.instruments import InstrumentBook, OptionMeta, UnderlyingTokens
from workers.stream.publisher import PublishResult

NEAR, FAR = date(2031, 1, 30), date(2031, 2, 27)
SPOT, FUT = token(256, INDICES), token(9000, NFO)
NEAR_CALLS = [token(9100 + i, NFO) for i in range(3)]
FAR_CALLS = [token(9200 + i, NFO) for i in range(2)]


class Recorder:
    def __init__(self):
        self.calls = []

    def publish(self, messages, latest=None):
        self.calls.append(messages)
        return PublishResult.PUBLISHED


def test_one_message_per_chain_with_the_expiry_in_its_head():
    options = {t: OptionMeta(t, "NIFTY", 19000.0 + 50 * i, expiry, True, 50, f"{expiry}-{i}")
               for tokens, expiry in ((NEAR_CALLS, NEAR), (FAR_CALLS, FAR)) for i, t in enumerate(tokens)}
    book = InstrumentBook(options, {"NIFTY": UnderlyingTokens("NIFTY", SPOT, (FUT,), (NEAR,))})
    batcher = TickBatcher(Recorder(), book, window_ms=100)
    tokens = [FAR_CALLS[0], SPOT, *NEAR_CALLS, FUT, FAR_CALLS[1]]  # the chains interleaved
    batcher.add(frames.decode_frame(frame([ltp_packet(t, 100_00 + i) for i, t in enumerate(tokens)])))
    report = batcher.flush()

    assert report.channels == {"ticker:nifty:options": 5, "ticker:nifty:underlying": 2}
    assert report.chains == {"NIFTY:2031-01-30": 3, "NIFTY:2031-02-27": 2}
    messages = batcher.publisher.calls[-1]
    assert [channel for channel, _ in messages] == ["ticker:nifty:options", "ticker:nifty:underlying",
                                                    "ticker:nifty:options"]
    by_expiry = {}
    for channel, text in messages:
        body = json.loads(text)
        head = text[:text.index('"ticks":')]
        if channel.endswith(":options"):
            assert f'"expiry":"{body["expiry"]}"' in head and body["kind"] == "options"
            assert {t["expiry"] for t in body["ticks"]} == {body["expiry"]}
            by_expiry[body["expiry"]] = [t["instrument_token"] for t in body["ticks"]]
        else:
            assert "expiry" not in body and '"expiry"' not in head
            assert [t["instrument_token"] for t in body["ticks"]] == [SPOT, FUT]
        assert body["count"] == len(body["ticks"])
    assert by_expiry == {"2031-01-30": NEAR_CALLS, "2031-02-27": FAR_CALLS}
