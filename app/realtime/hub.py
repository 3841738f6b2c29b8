"""The per-process fan-out hub: ONE Redis pattern subscription shared by every WebSocket.

A background thread (a greenlet under gunicorn's gevent worker) pattern-subscribes
``orders:*`` and ``ticker:*``, parses each message once, and offers it to the
outboxes of the clients that want it. It never blocks on a client. When Redis
goes away it reconnects by itself with a capped backoff, and tells order clients
to resync because updates published meanwhile were missed.

Tick messages are routed through indexes (TickIndex), so a message costs in proportion to
the clients that want it, not to every tick client: by underlying, by chain (read from the
channel and the message's head, never its ticks) and by token. The same text goes to every
client that wants the whole message; only token filters need the ticks parsed, and only
when the message holds one of their tokens.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from datetime import datetime
from typing import Iterable

import redis

from app.core.config import get_settings
from app.core.timestamps import iso
from app.realtime import metrics
from app.realtime.clients import Chain, Client, OrderClient, Outgoing, Subscription, TickClient

log = logging.getLogger(__name__)

PATTERNS = ("orders:*", "ticker:*")
ORDER_PREFIX = "orders:"
TICK_PREFIX = "ticker:"
POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
# The hub reads Redis (while it has messages buffered) for at most this long before the senders' turn.
# A turn of 2,000 senders takes ~0.1 s: 50 ms of reading a turn keeps the hub well ahead of the stream.
YIELD_EVERY_S = 0.05


class OverCap(Exception):
    """No room for another socket under the connection caps: close it with `code` and `reason`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


# A chain message's head (workers/stream/batcher.py): everything before "ticks", a few hundred characters.
HEAD_CHARS = 512
_HEAD_EXPIRY = re.compile(r'"expiry":\s*"(\d{4}-\d{2}-\d{2})"')
_TICK_TOKEN = re.compile(r'"instrument_token":\s*(\d+)')


def chain_expiry(text: str) -> str | None:
    """The expiry in a message's head, or None; the ticks (which carry their own) are not read."""
    head_end = text.find('"ticks":', 0, HEAD_CHARS)  # the key (the head's "type" is "ticks" too)
    found = _HEAD_EXPIRY.search(text, 0, head_end) if head_end > 0 else None
    return found.group(1) if found else None


class TickIndex:
    """Tick clients by what they watch. Not thread-safe: the hub holds its lock around every call."""

    def __init__(self) -> None:
        self.clients: set[TickClient] = set()
        self.by_underlying: dict[str, set[TickClient]] = {}
        self.by_chain: dict[Chain, set[TickClient]] = {}
        # Chain watchers also get their underlying's ticker:{u}:underlying messages (spot, futures):
        # per underlying, each watcher and how many of its chains it watches.
        self.chain_watchers: dict[str, dict[TickClient, int]] = {}
        self.by_token: dict[int, set[TickClient]] = {}

    def add(self, client: TickClient) -> None:
        self.clients.add(client)
        for name in client.underlyings:
            self.by_underlying.setdefault(name, set()).add(client)
        for chain in client.chains:
            self.by_chain.setdefault(chain, set()).add(client)
            watchers = self.chain_watchers.setdefault(chain.underlying, {})
            watchers[client] = watchers.get(client, 0) + 1
        for token in client.tokens:
            self.by_token.setdefault(token, set()).add(client)

    def remove(self, client: TickClient) -> None:
        self.clients.discard(client)
        for name in client.underlyings:
            _discard(self.by_underlying, name, client)
        for chain in client.chains:
            _discard(self.by_chain, chain, client)
            watchers = self.chain_watchers.get(chain.underlying, {})
            left = watchers.pop(client, 1) - 1
            if left:
                watchers[client] = left
            elif not watchers:
                self.chain_watchers.pop(chain.underlying, None)
        for token in client.tokens:
            _discard(self.by_token, token, client)

    def wanting_whole(self, underlying: str, kind: str, text: str) -> set[TickClient]:
        """The clients that get this message unchanged."""
        found = set(self.by_underlying.get(underlying, ()))
        if kind == "options":
            expiry = chain_expiry(text) if self.by_chain else None
            if expiry is not None:
                found.update(self.by_chain.get(Chain(underlying, expiry), ()))
        elif kind == "underlying":
            found.update(self.chain_watchers.get(underlying, ()))
        return found

    def wanting_tokens(self, tokens: Iterable[int]) -> set[TickClient]:
        found: set[TickClient] = set()
        for token in tokens:
            found.update(self.by_token.get(token, ()))
        return found


def _discard(index: dict, key, client) -> None:
    group = index.get(key)
    if group is not None:
        group.discard(client)
        if not group:
            del index[key]


def published_epoch(timestamp: str | None) -> float | None:
    if not isinstance(timestamp, str):
        return None
    try:
        return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class RealtimeHub:
    def __init__(self, redis_url: str, order_queue_limit: int | None = None,
                 tick_buffer_limit: int | None = None, slow_client_grace_s: float = 2.0) -> None:
        self.redis_url = redis_url
        # Tunables (WS_ORDER_QUEUE_MAX, WS_TICK_BUFFER_MAX, WS_SEND_BUFFER_BYTES, WS_MAX_CLIENTS[_PER_KEY];
        # see app.config).
        settings = get_settings()
        self.order_queue_limit = int(order_queue_limit or settings.ws_order_queue_max)
        self.tick_buffer_limit = int(tick_buffer_limit or settings.ws_tick_buffer_max)
        self.send_buffer_bytes = settings.ws_send_buffer_bytes
        self.max_clients = settings.ws_max_clients
        self.max_clients_per_key = settings.ws_max_clients_per_key
        self.slow_client_grace_s = slow_client_grace_s
        self._lock = threading.Lock()
        self._orders_by_account: dict[str | None, set[OrderClient]] = {}
        self._ticks = TickIndex()
        self._count = 0
        self._count_by_owner: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._pubsub = None
        # Health of the subscription, for /ws/status.
        self.connected = False
        self.connected_since: float | None = None
        self.last_message_at: float | None = None
        self.last_error: str | None = None
        self.reconnects = 0
        self.messages_relayed = 0
        self.slow_disconnects = 0
        self.tick_batches_dropped = 0

    # ---- lifecycle -------------------------------------------------------
    def start(self) -> "RealtimeHub":
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._thread = threading.Thread(target=self._run, name="realtime-hub", daemon=True)
                self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        if self._thread is not None:
            self._thread.join(5)

    def wait_connected(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while not self.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.connected

    # ---- registry --------------------------------------------------------
    def add(self, client: Client) -> None:
        """Register a client; OverCap when its key (`client.owner`) or the process has no room left."""
        with self._lock:
            if client.owner is not None and self._count_by_owner.get(client.owner, 0) >= self.max_clients_per_key:
                raise OverCap(POLICY_VIOLATION, f"too many WebSockets: at most {self.max_clients_per_key} per key "
                                                "(in each web process); close one first")
            if self._count >= self.max_clients:
                raise OverCap(TRY_AGAIN_LATER, f"server busy: at most {self.max_clients} WebSockets per process; "
                                               "retry shortly")
            self._count += 1
            if client.owner is not None:
                self._count_by_owner[client.owner] = self._count_by_owner.get(client.owner, 0) + 1
            if isinstance(client, OrderClient):
                self._orders_by_account.setdefault(client.account_id, set()).add(client)
            elif isinstance(client, TickClient):
                self._ticks.add(client)
        metrics.ACTIVE_CONNECTIONS.labels(client.endpoint).inc()

    def remove(self, client: Client) -> None:
        with self._lock:
            if isinstance(client, OrderClient):
                group = self._orders_by_account.get(client.account_id)
                if group is None or client not in group:
                    return
                group.discard(client)
                if not group:
                    del self._orders_by_account[client.account_id]
            elif isinstance(client, TickClient):
                if client not in self._ticks.clients:
                    return
                self._ticks.remove(client)
            self._count -= 1
            if client.owner is not None:
                left = self._count_by_owner.pop(client.owner) - 1
                if left:
                    self._count_by_owner[client.owner] = left
        client.outbox.close()
        metrics.ACTIVE_CONNECTIONS.labels(client.endpoint).dec()

    def clients(self) -> list[Client]:
        with self._lock:
            found: list[Client] = [c for group in self._orders_by_account.values() for c in group]
            return found + list(self._ticks.clients)

    def resubscribe(self, client: TickClient, action: str, named: Subscription) -> dict:
        """Change a tick client's subscription (TickClient.update: its answer, or SubscriptionError)
        and the indexes with it."""
        with self._lock:
            registered = client in self._ticks.clients
            if registered:
                self._ticks.remove(client)
            try:
                return client.update(action, named)
            finally:
                if registered:
                    self._ticks.add(client)

    # ---- the subscription thread -----------------------------------------
    def _run(self) -> None:
        backoff = 0.2
        while not self._stopping:
            try:
                # RESP2: redis-py's RESP3 parser formats every pub/sub message for a debug log (str() of the
                # whole payload, logged or not): a fifth of the relay's CPU at market scale.
                connection = redis.Redis.from_url(self.redis_url, socket_connect_timeout=2, socket_timeout=10,
                                                  health_check_interval=5, socket_keepalive=True, protocol=2)
                pubsub = connection.pubsub(ignore_subscribe_messages=True)
                pubsub.psubscribe(*PATTERNS)
                self._pubsub = pubsub
                was_down = self.last_error is not None
                self.connected, self.connected_since, backoff = True, time.time(), 0.2
                if was_down:
                    self._tell_order_clients_to_resync("the relay reconnected to Redis; updates may have been missed")
                    log.warning("realtime hub reconnected to Redis")
                self.last_error = None
                next_sweep = next_yield = time.monotonic() + 0.5
                while not self._stopping:
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None:
                        self._dispatch(message)
                        # Under gevent, reading never yields while Redis has more buffered: let the senders
                        # run now and then, or their outboxes only fill and drop. Not after every message:
                        # a hub that falls behind gets its subscription closed by Redis (its output
                        # buffer limit), which loses every client's messages, not one slow client's.
                        if time.monotonic() >= next_yield:
                            time.sleep(0)
                            next_yield = time.monotonic() + YIELD_EVERY_S
                    if time.monotonic() >= next_sweep:
                        self._close_stuck_clients()
                        next_sweep = time.monotonic() + 0.5
                pubsub.close()
                connection.close()
            except Exception as exc:  # Redis down or gone: keep serving sockets, reconnect shortly
                self.connected = False
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.reconnects += 1
                metrics.HUB_RECONNECTS.inc()
                log.warning("realtime hub lost Redis; reconnecting", extra={"error": self.last_error})
                self._close_stuck_clients()
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        self.connected = False

    def _dispatch(self, message: dict) -> None:
        if message.get("type") != "pmessage":
            return
        channel = message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
        data = message["data"]
        self.last_message_at = time.time()
        try:
            if channel.startswith(ORDER_PREFIX):
                self._relay_order_update(channel[len(ORDER_PREFIX):], _text(data))
            elif channel.startswith(TICK_PREFIX):
                self._relay_ticks(channel, data)
        except Exception:  # one malformed message must not stop the relay
            log.warning("unrelayable message", exc_info=True, extra={"channel": channel})

    def _relay_order_update(self, account_id: str, text: str) -> None:
        with self._lock:
            targets = list(self._orders_by_account.get(account_id, ())) + list(self._orders_by_account.get(None, ()))
        if not targets:
            return
        body = json.loads(text)
        item = Outgoing(text=text, account_id=account_id, seq=body.get("seq"),
                        published_at=published_epoch(body.get("timestamp")))
        for client in targets:
            client.outbox.offer(item)
        self.messages_relayed += len(targets)

    def _relay_ticks(self, channel: str, data: bytes | str) -> None:
        parts = channel.split(":")  # ticker:{underlying}:{options|underlying}
        underlying, kind = (parts[1], parts[2]) if len(parts) >= 3 else ("", "")
        head = _text(data[:HEAD_CHARS])  # routing reads the head only
        with self._lock:
            whole = self._ticks.wanting_whole(underlying, kind, head)
            filtering = bool(self._ticks.by_token)
        if not whole and not filtering:
            return  # a chain nobody watches costs no more than this
        text = _text(data)
        sent = 0
        if whole:
            shared = Outgoing(text=text, shared=True)  # one text (and frame) for all: none built per client
            sent += self._offer_ticks(whole, shared)
        if filtering:  # tokens found by a scan, and the ticks parsed only when someone wants one
            tokens = {int(t) for t in _TICK_TOKEN.findall(text)}
            with self._lock:
                filtered = self._ticks.wanting_tokens(tokens) - whole
        else:
            filtered = set()
        if filtered:
            body = json.loads(text)
            ticks = body.get("ticks") or []
            by_filter: dict[frozenset[int], list[TickClient]] = {}  # clients with the same tokens share one frame
            for client in filtered:
                by_filter.setdefault(frozenset(client.tokens), []).append(client)
            for key, clients in by_filter.items():
                mine = [t for t in ticks if t.get("instrument_token") in key]
                if mine:
                    text = json.dumps({**body, "ticks": mine, "count": len(mine)})
                    sent += self._offer_ticks(clients, Outgoing(text=text, shared=len(clients) > 1))
        self.messages_relayed += sent

    def _offer_ticks(self, clients: Iterable[TickClient], item: Outgoing) -> int:
        """Offer one frame to each client; count what slow clients' outboxes dropped for it."""
        offered = lost = 0
        for client in clients:
            outbox = client.outbox
            write_now = client.write_now
            if item.shared and write_now is not None and outbox.offer_now(item, write_now):
                offered += 1  # written already: no wake-up of the client's sender
                continue
            before = outbox.dropped_total
            outbox.offer(item)
            lost += outbox.dropped_total - before
            offered += 1
        if lost:
            self.tick_batches_dropped += lost
            metrics.TICK_BATCHES_DROPPED.inc(lost)
        return offered

    def _tell_order_clients_to_resync(self, reason: str) -> None:
        text = json.dumps({"type": "resync", "reason": reason, "timestamp": iso(datetime.now().astimezone())})
        for client in self.clients():
            if isinstance(client, OrderClient):
                client.outbox.reply(Outgoing(text=text))

    def _close_stuck_clients(self) -> None:
        """A slow client whose sender is stuck in a blocked send cannot close itself: tear its socket down."""
        now = time.monotonic()
        for client in self.clients():
            overflowed_at = client.outbox.overflowed_at
            if overflowed_at is not None and now - overflowed_at > self.slow_client_grace_s:
                client.outbox.overflowed_at = now  # once per grace period
                if client.abort is not None:
                    try:
                        client.abort()
                    except Exception:
                        log.debug("abort failed", exc_info=True)

    def record_slow_disconnect(self) -> None:
        self.slow_disconnects += 1
        metrics.SLOW_CLIENTS_DISCONNECTED.inc()

    # ---- status ----------------------------------------------------------
    def status(self, visible: Iterable[str] | None = None) -> dict:
        """Connections per endpoint and account; `visible` limits the accounts shown (None: all)."""
        allowed = None if visible is None else set(visible)
        by_endpoint: dict[str, int] = {"orders": 0, "orders_all": 0, "ticks": 0}
        with self._lock:  # sizes of the indexes: cheap
            ticks = {"underlyings": len(self._ticks.by_underlying), "chains": len(self._ticks.by_chain),
                     "chain_watchers": sum(len(w) for w in self._ticks.chain_watchers.values()),
                     "tokens": len(self._ticks.by_token)}
        by_account: dict[str, int] = {}
        for client in self.clients():
            if isinstance(client, OrderClient) and client.account_id is not None:
                if allowed is not None and client.account_id not in allowed:
                    continue
                by_account[client.account_id] = by_account.get(client.account_id, 0) + 1
            elif isinstance(client, OrderClient) and allowed is not None:
                continue  # admin connections are shown to admins only
            by_endpoint[client.endpoint] = by_endpoint.get(client.endpoint, 0) + 1
        return {
            "pid": os.getpid(),
            "connections": {"total": sum(by_endpoint.values()), "by_endpoint": by_endpoint,
                            "by_account": by_account},
            "redis": {
                "subscribed": self.connected,
                "patterns": list(PATTERNS),
                "connected_since": _iso_epoch(self.connected_since),
                "last_message_at": _iso_epoch(self.last_message_at),
                "reconnects": self.reconnects,
                "last_error": self.last_error,
            },
            "slow_clients_disconnected": self.slow_disconnects,
            "tick_batches_dropped": self.tick_batches_dropped,
            "tick_subscriptions": ticks,
            "limits": {"order_queue": self.order_queue_limit, "tick_buffer": self.tick_buffer_limit},
        }


def _text(data: bytes | str) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else str(data)


def _iso_epoch(at: float | None) -> str | None:
    return iso(datetime.fromtimestamp(at).astimezone()) if at else None


_hub: RealtimeHub | None = None
_hub_pid: int | None = None
_hub_lock = threading.Lock()


def get_hub(redis_url: str) -> RealtimeHub:
    """This process's hub, started on first use (a forked worker gets its own)."""
    global _hub, _hub_pid
    with _hub_lock:
        if _hub is None or _hub_pid != os.getpid() or _hub.redis_url != redis_url:
            _hub, _hub_pid = RealtimeHub(redis_url), os.getpid()
    return _hub.start()
