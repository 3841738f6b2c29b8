"""workers.stream.resp packs exactly what redis-py would send for the same commands."""
import redis

from workers.stream import resp


def redis_py_bytes(*commands) -> bytes:
    return b"".join(redis.Connection().pack_commands(commands))


def test_publishes_and_the_latest_hash_pack_as_redis_py_packs_them():
    messages = [("ticker:nifty:options", '{"type":"ticks","ticks":[{"a":1}]}'), ("ticker:nifty:underlying", "x" * 70_000),
                ("ticker:empty", "")]
    latest = {256265: '{"instrument_token":256265}', 12: "", 9_000_000_001: '{"k":"\\u00e9"}'}
    packed, count = resp.pack(messages, "ticks:latest", latest)
    hset = ["HSET", "ticks:latest"] + [part for token, text in latest.items() for part in (token, text)]
    assert count == 4
    assert packed == redis_py_bytes(*[("PUBLISH", channel, text) for channel, text in messages], hset)


def test_without_latest_ticks_only_the_publishes():
    packed, count = resp.pack([("c", "m")], "ticks:latest", {})
    assert count == 1 and packed == redis_py_bytes(("PUBLISH", "c", "m"))


def test_bytes_or_non_ascii_are_left_to_redis_py():
    assert resp.pack([("c", b"bytes")], "k", None) is None
    assert resp.pack([("c", "caf\u00e9")], "k", None) is None
    assert resp.pack([("c", "m")], "k", {1: b"bytes"}) is None
    assert resp.pack([("c", "m")], "k", {1: "\ud83d\ude00"}) is None
