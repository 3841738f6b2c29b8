"""The per-process fan-out hub: ONE Redis pattern subscription shared by every WebSocket.

A background thread (a greenlet under gunicorn's gevent worker) pattern-subscribes
``orders:*`` and ``ticker:*``, parses each message once, and offers it to the
outboxes of the clients that want it. It never blocks on a client. When Redis
goes away it reconnects by itself with a capped backoff, and tells order clients
to resync because updates published meanwhile were missed.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import datetime
from typing import Iterable

import redis

from app.core.config import get_settings
from app.core.timestamps import iso
from app.realtime import metrics
from app.realtime.clients import Client, OrderClient, Outgoing, TickClient

log = logging.getLogger(__name__)

PATTERNS = ("orders:*", "ticker:*")
ORDER_PREFIX = "orders:"
TICK_PREFIX = "ticker:"
POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013


class OverCap(Exception):
    """No room for another socket under the connection caps: close it with `code` and `reason`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


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
        self._tick_clients: set[TickClient] = set()
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
                self._tick_clients.add(client)
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
                if client not in self._tick_clients:
                    return
                self._tick_clients.discard(client)
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
            return found + list(self._tick_clients)

    # ---- the subscription thread -----------------------------------------
    def _run(self) -> None:
        backoff = 0.2
        while not self._stopping:
            try:
                connection = redis.Redis.from_url(self.redis_url, socket_connect_timeout=2, socket_timeout=10,
                                                  health_check_interval=5, socket_keepalive=True)
                pubsub = connection.pubsub(ignore_subscribe_messages=True)
                pubsub.psubscribe(*PATTERNS)
                self._pubsub = pubsub
                was_down = self.last_error is not None
                self.connected, self.connected_since, backoff = True, time.time(), 0.2
                if was_down:
                    self._tell_order_clients_to_resync("the relay reconnected to Redis; updates may have been missed")
                    log.warning("realtime hub reconnected to Redis")
                self.last_error = None
                next_sweep = time.monotonic() + 0.5
                while not self._stopping:
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None:
                        self._dispatch(message)
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
        text = data.decode() if isinstance(data, bytes) else str(data)
        self.last_message_at = time.time()
        try:
            if channel.startswith(ORDER_PREFIX):
                self._relay_order_update(channel[len(ORDER_PREFIX):], text)
            elif channel.startswith(TICK_PREFIX):
                self._relay_ticks(channel, text)
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

    def _relay_ticks(self, channel: str, text: str) -> None:
        parts = channel.split(":")
        underlying = parts[1] if len(parts) >= 3 else ""
        with self._lock:
            clients = list(self._tick_clients)
        whole, filtered = [], []
        for client in clients:
            if client.wants_channel(underlying):
                whole.append(client)
            elif client.tokens:
                filtered.append(client)
        if not whole and not filtered:
            return
        sent = 0
        for client in whole:
            sent += self._offer_tick(client, Outgoing(text=text))
        if filtered:
            body = json.loads(text)
            ticks = body.get("ticks") or []
            by_filter: dict[frozenset[int], str | None] = {}  # clients with the same tokens share one frame
            for client in filtered:
                key = frozenset(client.tokens)
                if key not in by_filter:
                    mine = [t for t in ticks if t.get("instrument_token") in key]
                    by_filter[key] = json.dumps({**body, "ticks": mine, "count": len(mine)}) if mine else None
                if by_filter[key] is not None:
                    sent += self._offer_tick(client, Outgoing(text=by_filter[key]))
        self.messages_relayed += sent

    def _offer_tick(self, client: TickClient, item: Outgoing) -> int:
        before = client.outbox.dropped_total
        client.outbox.offer(item)
        lost = client.outbox.dropped_total - before
        if lost:
            self.tick_batches_dropped += lost
            metrics.TICK_BATCHES_DROPPED.inc(lost)
        return 1

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
            "limits": {"order_queue": self.order_queue_limit, "tick_buffer": self.tick_buffer_limit},
        }


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
