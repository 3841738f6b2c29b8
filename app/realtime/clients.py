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
from datetime import date
from typing import Any, Callable, NamedTuple

_ids = itertools.count(1)


@dataclass(eq=False)
class Outgoing:
    """One text frame to send; `account_id`/`seq`/`published_at` only for order updates.

    `shared`: the same frame goes to many clients (a chain's watchers), so its WebSocket frame is
    built once, by the first sender to need it (`frame()`), and written as is by the others.
    """

    text: str
    account_id: str | None = None
    seq: int | None = None
    published_at: float | None = None  # epoch seconds of the message's timestamp
    shared: bool = False
    _frame: bytes | None = None

    def frame(self) -> bytes:
        """The whole server-to-client text frame (RFC 6455: FIN, opcode 1, unmasked, no compression)."""
        if self._frame is None:
            payload = self.text.encode()
            size = len(payload)
            if size < 126:
                header = bytes((0x81, size))
            elif size < 1 << 16:
                header = bytes((0x81, 126)) + size.to_bytes(2, "big")
            else:
                header = bytes((0x81, 127)) + size.to_bytes(8, "big")
            self._frame = header + payload
        return self._frame


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
        self._sending = False  # the sender took frames and has not written them all yet

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

    def offer_now(self, item: Outgoing, write: Callable[[bytes], int | None]) -> bool:
        """Write a shared frame at once with `write` (SerialSocket.try_send) when nothing is
        waiting or being written before it; False when it must be offered instead. A frame
        `write` began but could not finish wakes the sender to finish it."""
        with self._lock:
            if self._frames or self._replies or self._sending or self.closed or self.overflowed:
                return False
            left = write(item.frame())
            if left is None:
                return False
        if left:
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
            self._sending = bool(items)
        return items, dropped

    def sent(self) -> None:
        """The sender wrote what it took: the hub may write directly again."""
        with self._lock:
            self._sending = False

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
    # Writes a shared frame now if the socket takes it (SerialSocket.try_send; set by the connection
    # once its first frames are out); None: every frame goes through the outbox.
    write_now: Any = None


@dataclass(eq=False)
class OrderClient(Client):
    account_id: str | None = None  # None: every account (admin /ws/orders)


class Chain(NamedTuple):
    """One option chain: an underlying (lower-case, as in channel names) and an expiry ("YYYY-MM-DD")."""

    underlying: str
    expiry: str

    def __str__(self) -> str:  # as clients write it: "NIFTY:2026-12-03"
        return f"{self.underlying.upper()}:{self.expiry}"


@dataclass
class Subscription:
    """What one subscription message (or the query string) names."""

    underlyings: set[str] = field(default_factory=set)  # lower-case
    tokens: set[int] = field(default_factory=set)
    chains: set[Chain] = field(default_factory=set)


@dataclass(eq=False)
class TickClient(Client):
    underlyings: set[str] = field(default_factory=set)  # lower-case
    tokens: set[int] = field(default_factory=set)
    chains: set[Chain] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def update(self, action: str, named: Subscription) -> dict:
        """Apply a subscription message and return its answer; SubscriptionError (nothing changed) past a cap.

        The caps hold for the socket's whole subscription, however many messages built it. The hub
        calls this (RealtimeHub.resubscribe) so that its indexes follow.
        """
        with self._lock:
            if action == "subscribe":
                _check_cap("tokens", MAX_TOKENS, self.tokens, named.tokens)
                _check_cap("underlyings", MAX_UNDERLYINGS, self.underlyings, named.underlyings)
                _check_cap("chains", MAX_CHAINS, self.chains, named.chains)
                self.underlyings |= named.underlyings
                self.tokens |= named.tokens
                self.chains |= named.chains
            else:
                self.underlyings -= named.underlyings
                self.tokens -= named.tokens
                self.chains -= named.chains
            return self._answer(action, named)

    def subscription(self) -> dict:
        """The first message of the socket: its whole subscription (the query string's)."""
        with self._lock:
            return self._answer("subscribe", Subscription(self.underlyings, self.tokens, self.chains))

    def _answer(self, action: str, named: Subscription) -> dict:
        # Names only what the message named, so an answer is never much longer than its message.
        return {"type": "subscribed", "action": action, "underlying": sorted(named.underlyings),
                "tokens": sorted(named.tokens), "chains": sorted(map(str, named.chains)),
                "total": {"tokens": len(self.tokens), "underlying": len(self.underlyings),
                          "chains": len(self.chains)}}


class SubscriptionError(ValueError):
    """A tick subscription the client asked for is malformed."""


MAX_TOKENS = 5000  # per connection: the query string's and every subscribe message's together
MAX_UNDERLYINGS = 50
MAX_CHAINS = 25  # ~200 instruments each: about MAX_TOKENS' worth


def _check_cap(what: str, cap: int, held: set, adding: set) -> None:
    after = len(held | adding)
    if after > cap:
        raise SubscriptionError(f"at most {cap} {what} per connection: this one has {len(held)} and the message "
                                f"would make it {after}")


def _texts(values: Any, shape: str) -> list[str]:
    """A list of strings, or a comma-separated string, as its non-empty stripped items."""
    if values is None:
        return []
    if isinstance(values, str):
        values = values.split(",")
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise SubscriptionError(f"{shape} (or a comma-separated string)")
    return [v.strip() for v in values if v.strip()]


def parse_underlyings(values: Any) -> set[str]:
    names = {v.lower() for v in _texts(values, "underlying must be a list of names")}
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


def parse_chains(values: Any) -> set[Chain]:
    """`["NIFTY:2026-12-03", ...]` (or a comma-separated string): an underlying and an expiry date each."""
    chains = set()
    for value in _texts(values, "chains must be a list of 'UNDERLYING:YYYY-MM-DD'"):
        name, _, expiry = value.rpartition(":")
        try:
            (underlying,) = parse_underlyings([name]) if name.strip() else ()
            expiry = date.fromisoformat(expiry.strip()).isoformat()  # 2026-12-03; a real date
        except (SubscriptionError, ValueError):
            raise SubscriptionError(f"not a chain (UNDERLYING:YYYY-MM-DD): {value!r:.50}") from None
        chains.add(Chain(underlying, expiry))
    if len(chains) > MAX_CHAINS:
        raise SubscriptionError(f"at most {MAX_CHAINS} chains per connection")
    return chains


def parse_subscription_message(text: str) -> tuple[str, Subscription]:
    """`{"action": "subscribe"|"unsubscribe", "tokens": [...], "underlying": [...], "chains": [...]}`."""
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nesting too deep for the parser ([[[[...]]]])
        raise SubscriptionError("send 'ping' or a JSON subscription message") from None
    if not isinstance(body, dict):
        raise SubscriptionError("a subscription message is a JSON object")
    action = body.get("action", "subscribe")
    if action not in ("subscribe", "unsubscribe"):
        raise SubscriptionError("action must be 'subscribe' or 'unsubscribe'")
    named = Subscription(parse_underlyings(body.get("underlying", body.get("underlyings"))),
                         parse_tokens(body.get("tokens")), parse_chains(body.get("chains", body.get("chain"))))
    if not named.underlyings and not named.tokens and not named.chains:
        raise SubscriptionError("give 'tokens', 'underlying' and/or 'chains'")
    return action, named
