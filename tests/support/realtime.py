"""WebSocket clients and order records for the relay and webhook tests (real sockets, real database)."""
from __future__ import annotations

import json
import secrets
import time

import websocket

from tests.support.waiting import WaitTimeout


class Socket:
    """A websocket-client connection with JSON helpers."""

    def __init__(self, url: str, key: str | None, timeout: float = 5.0) -> None:
        header = [f"X-API-Key: {key}"] if key else []
        self.ws = websocket.create_connection(url, header=header, timeout=timeout)

    def next_json(self, timeout: float = 5.0) -> dict:
        self.ws.settimeout(timeout)
        return json.loads(self.ws.recv())

    def wait_for(self, predicate, timeout: float = 8.0) -> dict:
        """The first JSON message matching `predicate` (others, e.g. other sessions' traffic, are
        skipped); WaitTimeout (as `tests.support.waiting.wait_for`) when none comes in time."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(f"no matching message within {timeout}s")
            self.ws.settimeout(remaining)
            try:
                text = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                raise WaitTimeout(f"no matching message within {timeout}s") from None
            if text in ("pong",):
                continue
            message = json.loads(text)
            if predicate(message):
                return message

    def collect(self, seconds: float) -> list[dict]:
        """Every JSON message that arrives within `seconds`."""
        found, deadline = [], time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self.ws.settimeout(remaining)
            try:
                text = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                break
            if text != "pong":
                found.append(json.loads(text))
        return found

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass


def new_order(account_id: str, status: str = "OPEN"):
    """An order record stored directly (no request, no task)."""
    from app.core.db import session_scope
    from app.models import Order

    with session_scope() as session:
        order = Order(account_id=account_id, status=status, tag=f"t{secrets.token_hex(8)}", exchange="NFO",
                      tradingsymbol="NIFTY25NOV19500CE", instrument_token=12345, transaction_type="BUY",
                      quantity=50, product="NRML", order_type="MARKET", broker_order_id=secrets.token_hex(6))
        session.add(order)
    return order


def transition(order_id: str, status: str, **changes):
    """Commit a status change and publish it as the order worker does."""
    from app.core.db import session_scope
    from app.models import Order
    from app.orders import updates as order_updates

    with session_scope() as session:
        order = session.get(Order, order_id)
        order.status = status
        for name, value in changes.items():
            setattr(order, name, value)
    order_updates.order_changed(order)
    return order


# ---- raw frames, for the abuse tests ----------------------------------------------------------

TEXT, BINARY, CLOSE, PING = 0x1, 0x2, 0x8, 0x9


def client_frame(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, length: int | None = None) -> bytes:
    """One client frame as bytes, any of its fields wrong if asked (`length`: the length to claim).

    The mask key is zero, so the payload goes as it is: a legal key that keeps large frames cheap to build.
    """
    claimed = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv & 0x7) << 4 | (opcode & 0xF)])
    if claimed < 126:
        head += bytes([0x80 | claimed])
    elif claimed < 1 << 16:
        head += bytes([0x80 | 126]) + claimed.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + claimed.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


def close_of(ws: websocket.WebSocket, timeout: float) -> tuple[int | None, str]:
    """Read until the server ends the socket: (close code, reason); (None, "") when it just went away.
    Other frames are skipped; WaitTimeout when the socket is still open after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        ws.settimeout(remaining)
        try:
            opcode, frame = ws.recv_data_frame(True)
        except websocket.WebSocketTimeoutException:
            break
        except (websocket.WebSocketConnectionClosedException, OSError):
            return None, ""
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            data = frame.data or b""
            return (int.from_bytes(data[:2], "big") if len(data) >= 2 else None), data[2:].decode(errors="replace")
    raise WaitTimeout(f"the socket is still open after {timeout}s")
