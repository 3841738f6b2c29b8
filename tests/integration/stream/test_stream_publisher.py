"""RedisPublisher survives a Redis outage: breaker opens, batches are dropped and
counted, publishing resumes by itself once Redis is back (half-open probe)."""
import time
import uuid

import redis

from workers.stream.publisher import BreakerState, PublishBreaker, PublishResult, RedisPublisher


def test_publishes_every_channel_and_latest_ticks_in_one_round_trip(redis_url):
    # Channels of this test only: pub/sub is server-wide, and a stream may be publishing ticker:* now.
    options, underlying = (f"test:{uuid.uuid4().hex}:{kind}" for kind in ("options", "underlying"))
    publisher = RedisPublisher.from_url(redis_url)
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    pubsub.subscribe(options, underlying)
    confirmed, deadline = 0, time.monotonic() + 5
    while confirmed < 2 and time.monotonic() < deadline:
        msg = pubsub.get_message(timeout=1.0)
        confirmed += bool(msg and msg["type"] == "subscribe")
    result = publisher.publish({options: "A", underlying: "B"}, {42: "tick42"})
    assert result is PublishResult.PUBLISHED
    got = {}
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:
        msg = pubsub.get_message(timeout=1.0)
        if msg and msg["type"] == "message":
            got[msg["channel"].decode()] = msg["data"].decode()
    assert got == {options: "A", underlying: "B"}
    assert client.hget("ticks:latest", "42") == b"tick42"
    pubsub.close()


def test_survives_redis_stop_and_resumes_after_restart(private_redis):
    publisher = RedisPublisher.from_url(private_redis.url, timeout_s=0.3,
                                        breaker=PublishBreaker(failure_threshold=2, reset_timeout_s=0.5))
    assert publisher.publish({"ticker:nifty:options": "1"}, {1: "one"}) is PublishResult.PUBLISHED

    private_redis.stop()
    results = []
    started = time.monotonic()
    for _ in range(40):  # 2 s of 50 ms batches while Redis is down
        results.append(publisher.publish({"ticker:nifty:options": "x"}, {1: "x"}))
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    assert PublishResult.PUBLISHED not in results
    assert results.count(PublishResult.BREAKER_OPEN) > results.count(PublishResult.REDIS_ERROR)
    assert publisher.breaker.state in (BreakerState.OPEN, BreakerState.HALF_OPEN)
    assert publisher.dropped_batches == 40
    assert elapsed < 8  # fails fast: no client-side retries stalling every batch

    private_redis.start()  # same port, empty data
    deadline = time.monotonic() + 10
    result = None
    while time.monotonic() < deadline:
        result = publisher.publish({"ticker:nifty:options": "back"}, {1: "back"})
        if result is PublishResult.PUBLISHED:
            break
        time.sleep(0.1)
    assert result is PublishResult.PUBLISHED
    assert publisher.breaker.state is BreakerState.CLOSED
    assert redis.Redis.from_url(private_redis.url).hget("ticks:latest", "1") == b"back"


def test_an_error_reply_fails_the_batch_and_leaves_the_connection_in_step(redis_url):
    key = f"test:latest:{uuid.uuid4().hex}"
    publisher = RedisPublisher.from_url(redis_url, latest_key=key)
    client = redis.Redis.from_url(redis_url)
    client.set(key, "not a hash")  # HSET answers WRONGTYPE after the PUBLISH before it was answered
    try:
        assert publisher.publish([("test:errors", "m")], {1: "one"}) is PublishResult.REDIS_ERROR
        client.delete(key)
        # The next batch reads its own replies, not the failed one's.
        assert publisher.publish([("test:errors", "m"), ("test:errors", "n")], {1: "one", 2: "two"}) \
            is PublishResult.PUBLISHED
        assert client.hgetall(key) == {b"1": b"one", b"2": b"two"}
    finally:
        client.delete(key)
