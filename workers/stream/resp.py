"""A flush's Redis commands packed as one buffer: a PUBLISH per message, then the HSET of the newest ticks.

redis-py packs a command argument by argument in Python (an encode, a length and a header each): the
HSET of ``ticks:latest`` has two arguments per tick, ~50,000 a flush at market scale, and packing them
was an eighth of the stream's CPU. Tick JSON is ASCII, so each command's text is joined in one pass
and encoded once; anything else (bytes payloads, non-ASCII text) is left to redis-py.
"""
from __future__ import annotations

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
        if not all(isinstance(text, str) for text in latest.values()):
            return None
        parts.append(f"*{2 + 2 * len(latest)}\r\n$4\r\nHSET\r\n${len(key)}\r\n{key}\r\n")
        fields = map(str, latest)
        parts.extend(f"${len(field)}\r\n{field}\r\n${len(text)}\r\n{text}\r\n"
                     for field, text in zip(fields, latest.values()))
        count += 1
    text = "".join(parts)
    if not text.isascii():  # lengths above are in characters: equal to bytes for ASCII only
        return None
    return text.encode("ascii"), count
