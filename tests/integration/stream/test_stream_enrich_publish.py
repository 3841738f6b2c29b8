"""GreeksEnricher inside the TickBatcher: the Greeks go out with the option ticks, to a real Redis."""
import json

import redis

from tests.support.option_book import NOW, SPOT, make_book
from tests.support.stream_frames import frame, ltp_packet
from workers.stream import frames
from workers.stream.batcher import TickBatcher
from workers.stream.enrich import GreeksEnricher
from workers.stream.publisher import RedisPublisher


def test_batcher_publishes_greeks_with_the_option_ticks(redis_url):
    book = make_book()
    now = [0.0]
    batcher = TickBatcher(RedisPublisher.from_url(redis_url), book, GreeksEnricher(0.10, 0.0, now=lambda: NOW),
                          clock=lambda: now[0])
    call = book.option_meta[2]  # 19500 CE
    batcher.add(frames.decode_frame(frame([ltp_packet(call.token, 250_00)])))  # before any spot tick
    batcher.add(frames.decode_frame(frame([ltp_packet(SPOT, 19480_00)])))
    now[0] = 1.0
    assert batcher.flush_if_due().channels == {"ticker:nifty:options": 1, "ticker:nifty:underlying": 1}
    tick = json.loads(redis.Redis.from_url(redis_url).hget("ticks:latest", str(call.token)))
    # The spot tick of the same batch is applied before the options are priced.
    assert tick["underlying_price"] == 19480.0 and tick["underlying_source"] == "spot"
    assert set(tick["greeks"]) == {"iv", "delta", "gamma", "theta", "vega", "rho"}
    assert 0.05 < tick["greeks"]["iv"] < 1.0 and 0.3 < tick["greeks"]["delta"] < 0.7
