"""Serving one WebSocket: a reader for client messages and a sender that drains the outbox.

Plain module (no Flask): takes a simple_websocket connection and a hub client.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import Callable

from app.realtime import metrics
from app.realtime.clients import Client, Outgoing
from app.realtime.hub import TRY_AGAIN_LATER, RealtimeHub

log = logging.getLogger(__name__)

TOKEN_EXPIRED = 4401  # application range (4000-4999): HTTP 401's number, "reconnect with a fresh token"
IDLE_WAIT_S = 5.0
# Closing a socket with unread data resets the connection, and the peer loses what it has not read
# yet: the close frame (1009 after a message past the size limit). So a socket is closed after
# sending FIN and discarding what still comes, for at most this long and this much.
LINGER_S = 1.0
LINGER_BYTES = 1024 * 1024


class SerialSocket:
    """The connection's socket with every write whole and one at a time.

    simple_websocket writes with ``sock.send`` from two threads (ours and its
    ping/pong thread); a partial or interleaved write (possible under gevent with
    large frames) would corrupt the stream, so writes go through one lock and sendall.

    The hub writes tick frames straight from its own thread when the socket takes them at once
    (``try_send``): no wake-up of the connection's sender per frame. What such a write leaves of a
    frame waits in ``pending`` and goes out before anything else is written.
    """

    def __init__(self, sock) -> None:
        self._sock = sock
        self._lock = threading.Lock()
        self._pending = b""  # the rest of a frame try_send began: written before anything else
        # gevent's socket waits (switching greenlets) on a full buffer unless told timeout=0.
        self._gevent = type(sock).__module__.startswith("gevent")
        self.closing = False  # the server has sent its close frame
        self.sealed = False  # the server is closing: no more frames from try_send

    def send(self, data: bytes) -> int:
        with self._lock:
            if self._pending:
                pending, self._pending = self._pending, b""
                self._write(pending)
            self._write(data)
        return len(data)

    sendall = send

    def _write(self, data: bytes) -> None:
        # send() until all is written, rather than gevent's sendall(), which asks the kernel for
        # the socket's buffer size (a system call) on every write.
        view, sent = memoryview(data), 0
        while sent < len(data):
            sent += self._sock.send(view[sent:])

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def flush(self) -> None:
        """Write (waiting as needed) what try_send left of a frame."""
        self.send(b"")

    def try_send(self, frame: bytes) -> int | None:
        """Write a whole frame without waiting: the bytes of it left in `pending` for flush (0: the
        socket took all of it), or None when nothing was written (the buffer is full, another write
        is under way or left a rest, or the socket is closing or broken: the frame then goes through
        the outbox and the sender, which deals with all of those)."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            if self._pending or self.sealed or self.closing:
                return None
            try:
                if self._gevent:
                    sent = self._sock.send(frame, 0, timeout=0.0)
                elif self._sock.gettimeout() is None:  # blocking: MSG_DONTWAIT keeps this one call from waiting
                    sent = self._sock.send(frame, socket.MSG_DONTWAIT)
                else:  # Python would wait for room (up to the timeout) before sending
                    return None
            except OSError:  # EAGAIN, or a dead socket the sender will meet in its turn
                return None
            if sent < len(frame):
                self._pending = frame[sent:]
            return len(self._pending)
        finally:
            self._lock.release()

    @property
    def writing(self) -> bool:
        """A write is under way: seen from another greenlet, one blocked on a full socket buffer."""
        return self._lock.locked()

    def abort(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def recv(self, size: int) -> bytes:
        # simple_websocket's thread goes on parsing what the client sends after the server's close
        # frame (a flood, say): end its reading instead, and let close() discard the rest unparsed.
        return b"" if self.closing else self._sock.recv(size)

    def close(self) -> None:
        """Close gently (LINGER_S): simple_websocket's thread calls this when the connection ends."""
        try:
            self._sock.shutdown(socket.SHUT_WR)
            deadline, drained = time.monotonic() + LINGER_S, 0
            while drained < LINGER_BYTES and (left := deadline - time.monotonic()) > 0:
                self._sock.settimeout(left)
                chunk = self._sock.recv(64 * 1024)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass
        self._sock.close()

    def __getattr__(self, name):
        return getattr(self._sock, name)


def adopt_socket(ws, send_buffer_bytes: int | None = None) -> SerialSocket:
    if not isinstance(ws.sock, SerialSocket):
        if send_buffer_bytes:
            # A fixed kernel send buffer bounds the memory a stuck client can hold
            # (autotuning lets each grow to megabytes) and reveals it sooner.
            try:
                ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
            except OSError:
                pass
        ws.sock = SerialSocket(ws.sock)
    return ws.sock


def serve(ws, client: Client, hub: RealtimeHub, first: list[str],
          on_text: Callable[[str], list[str]] | None = None,
          skip_through: dict[str, int] | None = None, expires_at: float | None = None) -> None:
    """Run until the client goes away, falls too far behind or its credential expires.

    `first`: frames sent before anything queued (the snapshot). `skip_through`:
    per account, the seq already covered by the snapshot. `on_text`: handles a
    client text message other than ping and returns replies. `expires_at`: epoch
    seconds the bearer token the socket was opened with stops being accepted.
    """
    sock = adopt_socket(ws, hub.send_buffer_bytes)
    client.abort = sock.abort
    reader = threading.Thread(target=_read, args=(ws, client, on_text), daemon=True,
                              name=f"ws-reader-{client.id}")
    reader.start()
    try:
        for text in first:
            ws.send(text)
        _send_loop(ws, client, hub, skip_through or {}, expires_at)
    except OSError:  # the socket died under a send (or the hub aborted a stuck slow client)
        if client.outbox.overflowed:
            hub.record_slow_disconnect()
    finally:
        hub.remove(client)
        # The server closes the socket at once when the route returns: let the gentle close finish first.
        ws.thread.join(LINGER_S + 0.5)


def close(ws, code: int, reason: str) -> None:
    """Send the close frame, and read nothing more of the client's."""
    if isinstance(ws.sock, SerialSocket):
        ws.sock.sealed = True  # the hub writes no frame after it
    ws.close(code, reason)
    if isinstance(ws.sock, SerialSocket):
        ws.sock.closing = True


def _send_loop(ws, client: Client, hub: RealtimeHub, skip_through: dict[str, int],
               expires_at: float | None) -> None:
    outbox = client.outbox
    sock = ws.sock

    def write_now(frame: bytes) -> int | None:  # not after a close frame, the client's or ours
        return sock.try_send(frame) if ws.connected else None

    client.write_now = write_now  # the `first` frames are out: from now on the hub may write
    while True:
        if outbox.overflowed:
            hub.record_slow_disconnect()
            log.warning("closing a slow WebSocket client", extra={"endpoint": client.endpoint, "client": client.id,
                                                                  "account_id": getattr(client, "account_id", None),
                                                                  "reason": outbox.overflow})
            close(ws, TRY_AGAIN_LATER, outbox.overflow)
            return
        left_s = None if expires_at is None else expires_at - time.time()
        if left_s is not None and left_s <= 0:
            close(ws, TOKEN_EXPIRED, "token expired: reconnect with a fresh one")
            return
        items, dropped = outbox.take(IDLE_WAIT_S if left_s is None else min(IDLE_WAIT_S, left_s))
        if outbox.closed or not ws.connected:
            return
        if ws.sock.pending:
            ws.sock.flush()
        if dropped:
            ws.send(json.dumps({"type": "dropped", "count": dropped, "total": outbox.dropped_total}))
        frames: list[bytes] = []  # shared frames, written together: one system call for a backlog
        for item in items:
            if outbox.overflowed:
                break
            if item.seq is not None and item.seq <= skip_through.get(item.account_id, 0):
                continue  # already in the snapshot
            if item.shared:
                # As built once for every client (no per-client encoding or compression: an
                # uncompressed frame is valid with permessage-deflate too, RFC 7692 section 6).
                frames.append(item.frame())
                continue
            _write(ws, frames)
            ws.send(item.text)
            if item.published_at is not None:
                metrics.ORDER_UPDATE_LATENCY.observe(max(0.0, time.time() - item.published_at))
        _write(ws, frames)
        outbox.sent()


def _write(ws, frames: list[bytes]) -> None:
    if frames:
        ws.sock.send(frames[0] if len(frames) == 1 else b"".join(frames))
        frames.clear()


def _read(ws, client: Client, on_text: Callable[[str], list[str]] | None) -> None:
    try:
        while True:
            data = ws.receive()
            if data is None:
                continue
            if client.outbox.overflowed:  # being closed: what the client still sends goes unanswered
                _drop_if_stuck(ws, client)
                continue
            if isinstance(data, bytes):
                data = data.decode(errors="replace")
            if data.strip().lower() == "ping":
                replies = ["pong"]
            elif on_text is not None:
                replies = on_text(data)
            else:
                replies = [json.dumps({"type": "error", "message": "this socket only understands 'ping'"})]
            for reply in replies:
                client.outbox.reply(Outgoing(text=reply))
    except Exception:  # ConnectionClosed or a dead socket: the sender stops too
        pass
    finally:
        client.outbox.close()


def _drop_if_stuck(ws, client: Client) -> None:
    """Replies wait in the outbox's bounded lane; a client that sends without reading overflows it,
    and the sender closes the socket (1013). When the sender is stuck writing to that client, no
    close frame can reach it: drop the connection now rather than go on reading what it sends."""
    if ws.sock.writing and client.abort is not None:
        client.abort()
