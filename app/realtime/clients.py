"""What the hub knows of one WebSocket client: its interest and its bounded outbox.

The hub thread only ever *offers* to an outbox (never blocks), so one slow client
cannot delay the others; each connection's own sender drains its outbox.
"""
from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

_ids = itertools.count(1)


@dataclass
class Outgoing:
    """One text frame to send; `account_id`/`seq`/`published_at` only for order updates."""

    text: str
    account_id: str | None = None
    seq: int | None = None
    published_at: float | None = None  # epoch seconds of the message's timestamp


# Replies (pong, subscription answers, errors) a client may leave unread. A client that sends
# without reading would otherwise make the server hold every answer (1M pings: +96 MB).
REPLY_LIMIT = 100
REPLY_BYTES_LIMIT = 1024 * 1024


class Outbox:
    """A bounded queue of frames plus a bounded lane for replies (pong, acks).

    ``drop_oldest=False`` (order clients): offering to a full outbox marks it
    overflowed, and the connection is closed. ``drop_oldest=True`` (tick clients):
    the oldest frame makes room and is counted. Replies are never dropped: more
    than REPLY_LIMIT (or REPLY_BYTES_LIMIT) of them pending overflows any outbox.
    ``overflow`` says why, as the close reason.
    """

    def __init__(self, limit: int, drop_oldest: bool) -> None:
        self.limit = max(1, limit)
        self.drop_oldest = drop_oldest
        self._frames: deque[Outgoing] = deque()
        self._replies: deque[Outgoing] = deque()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._reply_bytes = 0
        self.closed = False
        self.overflow: str | None = None
        self.overflowed_at: float | None = None  # time.monotonic() of the overflow
        self.dropped_total = 0
        self._dropped_unreported = 0

    @property
    def overflowed(self) -> bool:
        return self.overflow is not None

    def _overflow(self, reason: str) -> None:  # with the lock held
        self.overflow, self.overflowed_at = reason, time.monotonic()
        self._ready.set()

    def offer(self, item: Outgoing) -> bool:
        with self._lock:
            if self.closed or self.overflowed:
                return False
            if len(self._frames) >= self.limit:
                if not self.drop_oldest:
                    self._overflow(f"client too slow: more than {self.limit} updates pending")
                    return False
                self._frames.popleft()
                self.dropped_total += 1
                self._dropped_unreported += 1
            self._frames.append(item)
        self._ready.set()
        return True

    def reply(self, item: Outgoing) -> bool:
        with self._lock:
            if self.closed or self.overflowed:
                return False
            if len(self._replies) >= REPLY_LIMIT or self._reply_bytes + len(item.text) > REPLY_BYTES_LIMIT:
                self._overflow(f"client not reading: {len(self._replies)} replies pending")
                return False
            self._replies.append(item)
            self._reply_bytes += len(item.text)
        self._ready.set()
        return True

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    def take(self, timeout: float | None) -> tuple[list[Outgoing], int]:
        """Wait for frames; return (replies first, then frames) and drops since the last take."""
        if not self._ready.wait(timeout):
            return [], 0
        with self._lock:
            self._ready.clear()
            items = list(self._replies) + list(self._frames)
            self._replies.clear()
            self._reply_bytes = 0
            self._frames.clear()
            dropped, self._dropped_unreported = self._dropped_unreported, 0
        return items, dropped

    def __len__(self) -> int:
        return len(self._frames)


@dataclass(eq=False)
class Client:
    endpoint: str  # "orders", "orders_all" or "ticks"
    outbox: Outbox
    key_id: str = "-"
    owner: str | None = None  # the credential it counts against for WS_MAX_CLIENTS_PER_KEY; None: no per-key cap
    id: int = field(default_factory=lambda: next(_ids))
    connected_at: float = field(default_factory=time.time)
    abort: Any = None  # callable that tears the socket down (set by the connection)


@dataclass(eq=False)
class OrderClient(Client):
    account_id: str | None = None  # None: every account (admin /ws/orders)


@dataclass(eq=False)
class TickClient(Client):
    underlyings: set[str] = field(default_factory=set)  # lower-case
    tokens: set[int] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wants_channel(self, underlying: str) -> bool:
        return underlying in self.underlyings

    def update(self, action: str, underlyings: set[str], tokens: set[int]) -> dict:
        """Apply a subscription message and return its answer; SubscriptionError (nothing changed) past a cap.

        The caps hold for the socket's whole subscription, however many messages built it.
        """
        with self._lock:
            if action == "subscribe":
                _check_cap("tokens", MAX_TOKENS, self.tokens, tokens)
                _check_cap("underlyings", MAX_UNDERLYINGS, self.underlyings, underlyings)
                self.underlyings |= underlyings
                self.tokens |= tokens
            else:
                self.underlyings -= underlyings
                self.tokens -= tokens
            return self._answer(action, underlyings, tokens)

    def subscription(self) -> dict:
        """The first message of the socket: its whole subscription (the query string's)."""
        with self._lock:
            return self._answer("subscribe", self.underlyings, self.tokens)

    def _answer(self, action: str, underlyings: set[str], tokens: set[int]) -> dict:
        # Names only what the message named, so an answer is never much longer than its message.
        return {"type": "subscribed", "action": action, "underlying": sorted(underlyings), "tokens": sorted(tokens),
                "total": {"tokens": len(self.tokens), "underlying": len(self.underlyings)}}


class SubscriptionError(ValueError):
    """A tick subscription the client asked for is malformed."""


MAX_TOKENS = 5000  # per connection: the query string's and every subscribe message's together
MAX_UNDERLYINGS = 50


def _check_cap(what: str, cap: int, held: set, adding: set) -> None:
    after = len(held | adding)
    if after > cap:
        raise SubscriptionError(f"at most {cap} {what} per connection: this one has {len(held)} and the message "
                                f"would make it {after}")


def parse_underlyings(values: Any) -> set[str]:
    if values is None:
        return set()
    if isinstance(values, str):
        values = values.split(",")
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise SubscriptionError("underlying must be a list of names (or a comma-separated string)")
    names = {v.strip().lower() for v in values if v.strip()}
    for name in names:
        if not name.replace("_", "").replace("-", "").isalnum() or len(name) > 40:
            raise SubscriptionError(f"not an underlying name: {name!r:.50}")
    if len(names) > MAX_UNDERLYINGS:
        raise SubscriptionError(f"at most {MAX_UNDERLYINGS} underlyings per connection")
    return names


def parse_tokens(values: Any) -> set[int]:
    if values is None:
        return set()
    if isinstance(values, str):
        values = [v for v in values.split(",") if v.strip()]
    if not isinstance(values, list):
        raise SubscriptionError("tokens must be a list of instrument tokens (or a comma-separated string)")
    tokens = set()
    for value in values:
        try:
            token = int(str(value).strip()) if not isinstance(value, bool) else None
        except ValueError:
            token = None
        if token is None or token <= 0:
            raise SubscriptionError(f"not an instrument token: {value!r:.50}")
        tokens.add(token)
    if len(tokens) > MAX_TOKENS:
        raise SubscriptionError(f"at most {MAX_TOKENS} tokens per connection")
    return tokens


def parse_subscription_message(text: str) -> tuple[str, set[str], set[int]]:
    """`{"action": "subscribe"|"unsubscribe", "tokens": [...], "underlying": [...]}`."""
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nesting too deep for the parser ([[[[...]]]])
        raise SubscriptionError("send 'ping' or a JSON subscription message") from None
    if not isinstance(body, dict):
        raise SubscriptionError("a subscription message is a JSON object")
    action = body.get("action", "subscribe")
    if action not in ("subscribe", "unsubscribe"):
        raise SubscriptionError("action must be 'subscribe' or 'unsubscribe'")
    underlyings = parse_underlyings(body.get("underlying", body.get("underlyings")))
    tokens = parse_tokens(body.get("tokens"))
    if not underlyings and not tokens:
        raise SubscriptionError("give 'tokens' and/or 'underlying'")
    return action, underlyings, tokens
