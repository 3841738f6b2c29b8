"""A flush's Redis commands packed as one buffer: a PUBLISH per message, then the HSET of the newest ticks.

redis-py packs a command argument by argument in Python (an encode, a length and a header each): the
HSET of ``ticks:latest`` has two arguments per tick, ~50,000 a flush at market scale, and packing them
was an eighth of the stream's CPU. Tick JSON is ASCII, so each command's text is joined in one pass
and encoded once; anything else (bytes payloads, non-ASCII text) is left to redis-py.
"""
from __future__ import annotations

from itertools import chain, repeat
from typing import Iterable


def pack(messages: Iterable[tuple[str, str]], key: str, latest: dict[int, str] | None) -> tuple[bytes, int] | None:
    """(the RESP bytes, the number of commands), or None when a payload is not text or not ASCII."""
    parts: list[str] = []
    count = 0
    for channel, payload in messages:
        if not isinstance(payload, str) or not isinstance(channel, str):
            return None
        parts.append(f"*3\r\n$7\r\nPUBLISH\r\n${len(channel)}\r\n{channel}\r\n${len(payload)}\r\n")
        parts.append(payload)
        parts.append("\r\n")
        count += 1
    if latest:
        parts.append(f"*{2 + 2 * len(latest)}\r\n$4\r\nHSET\r\n${len(key)}\r\n{key}\r\n")
        fields, texts = list(map(str, latest)), latest.values()
        # "$<len>\r\n<field>\r\n$<len>\r\n<text>\r\n" per tick, its pieces streamed by C iterators (no
        # Python code per tick: 2.7x faster than an f-string each)
        parts.extend(chain.from_iterable(zip(
            repeat("$"), map(str, map(len, fields)), repeat("\r\n"), fields,
            repeat("\r\n$"), map(str, map(len, texts)), repeat("\r\n"), texts, repeat("\r\n"))))
        count += 1
    try:
        text = "".join(parts)
    except TypeError:  # a tick given as bytes
        return None
    if not text.isascii():  # lengths above are in characters: equal to bytes for ASCII only
        return None
    return text.encode("ascii"), count
