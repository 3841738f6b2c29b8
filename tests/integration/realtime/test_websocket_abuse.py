"""Abuse of the WebSocket relay (issue #21) against gunicorn with a gevent worker, as in production.

Each attack found by probing the service, at a bounded scale: a connection flood from one key and
one past the process's cap, frames past the size limit, pings sent without reading the pongs,
subscribe messages piling up tokens, and malformed frames. Throughout, `/health` on a fresh
connection answers within a second and the worker's memory stays within RSS_GROWTH_BOUND_MB.
"""
from __future__ import annotations

import base64
import json
import os
import random
import socket
import threading
import time
import zlib

import pytest
import redis
import requests
import websocket

from tests.support.environment import API_KEYS
from tests.support.processes import GunicornServer
from tests.support.realtime import BINARY, CLOSE, PING, TEXT, client_frame, close_of
from tests.support.waiting import wait_for

WORKER_CONNECTIONS = 100  # the worker's gevent pool (WEB_WORKER_CONNECTIONS), small so a flood reaches it
PER_PROCESS = WORKER_CONNECTIONS * 9 // 10  # WS_MAX_CLIENTS's default: room is left for plain requests
PER_KEY = 20  # WS_MAX_CLIENTS_PER_KEY's default
MAX_MESSAGE = 128 * 1024  # WS_MAX_MESSAGE_BYTES's default
MAX_TOKENS = 5000  # per /ws/ticks socket
HEALTH_WITHIN_S = 1.0
RSS_GROWTH_BOUND_MB = 64
ADMIN = API_KEYS["admin"]
# One key per attack, so one attack's sockets (closing in the background) never count against another's.
KEYS = {name: f"{name}-{os.urandom(6).hex()}" for name in ("flood", "extra", "size", "pings", "ticks", "fuzz",
                                                           "chains")}
SMALL_RCVBUF = [(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)]


@pytest.fixture(scope="module")
def web(db_schema, tmp_path_factory):
    keys = ";".join(f"{key}=abuse" for key in KEYS.values())
    server = GunicornServer(workers=1, env={
        "WEB_WORKER_CONNECTIONS": str(WORKER_CONNECTIONS),
        "API_KEYS": f"{os.environ['API_KEYS']};{keys}",
        "WS_SEND_BUFFER_BYTES": str(16 * 1024),  # a client that does not read blocks the server's sends soon
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp("metrics")),
    })
    server.start(timeout=60)
    server.ws_url = server.url.replace("http://", "ws://")
    (server.worker,) = server.children()
    # Warm up (the hub's Redis subscription, the database pool, a socket) before the baseline memory.
    attempt(server, "/ws/orders/abuse", KEYS["extra"])[1].close()
    requests.get(f"{server.url}/health", timeout=5)
    server.baseline_rss_mb = rss_mb(server.worker)
    yield server
    server.stop()


@pytest.fixture
def vitals(web):
    """/health on a fresh connection and the worker's RSS, every 0.05 s while the test runs."""
    watch = Vitals(web)
    watch.start()
    yield watch
    watch.stop()


class Vitals(threading.Thread):
    def __init__(self, web) -> None:
        super().__init__(daemon=True, name="vitals")
        self.web = web
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.peak_rss_mb = 0.0
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.is_set():
            started = time.monotonic()
            try:  # requests.get: a new connection every time, as a load balancer's probe
                status = requests.get(f"{self.web.url}/health", timeout=5).status_code
                if status not in (200, 503):
                    self.failures.append(f"status {status}")
            except requests.RequestException as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self.latencies.append(time.monotonic() - started)
            self.peak_rss_mb = max(self.peak_rss_mb, rss_mb(self.web.worker))
            self._stopping.wait(0.05)

    def stop(self) -> None:
        if not self._stopping.is_set():
            self._stopping.set()
            self.join(10)
            print(f"/health: {len(self.latencies)} probes, slowest {max(self.latencies, default=0) * 1000:.0f} ms, "
                  f"{len(self.failures)} failed; worker RSS {self.web.baseline_rss_mb:.0f} MB before the tests, "
                  f"{self.peak_rss_mb:.0f} MB at most")

    def assert_healthy(self) -> None:
        """The attack did not stall the process nor make it hold much memory."""
        self.stop()
        growth = self.peak_rss_mb - self.web.baseline_rss_mb
        slowest = max(self.latencies, default=0.0)
        assert not self.failures, f"/health failed during the attack: {self.failures[:3]}"
        assert self.latencies and slowest < HEALTH_WITHIN_S, f"/health took {slowest:.2f}s"
        assert growth < RSS_GROWTH_BOUND_MB, f"the worker grew by {growth:.0f} MB"


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return kb / 1024


def attempt(web, path: str, key: str, **options) -> tuple[str, object]:
    """Open a socket: ("open", ws) once the relay's first message came; ("closed", (code, reason)) when
    it was refused. Raises when nothing answers within 3 s (a worker with no room left)."""
    ws = websocket.create_connection(f"{web.ws_url}{path}", header=[f"X-API-Key: {key}"], timeout=3, **options)
    opcode, frame = ws.recv_data_frame(True)
    if opcode == websocket.ABNF.OPCODE_CLOSE:
        ws.close()
        return "closed", (int.from_bytes(frame.data[:2], "big"), frame.data[2:].decode())
    return "open", ws


def flood(web, path: str, key: str, count: int) -> tuple[list, list]:
    opened, refused = [], []
    for _ in range(count):
        outcome, value = attempt(web, path, key)
        (opened if outcome == "open" else refused).append(value)
    return opened, refused


def connections(web) -> int:
    return requests.get(f"{web.url}/ws/status", headers={"X-API-Key": ADMIN}, timeout=5).json()["connections"]["total"]


def close_all(web, sockets) -> None:
    for ws in sockets:
        ws.close()
    wait_for(lambda: connections(web), 10, 0.1, "the closed sockets to leave the relay", until=lambda n: n == 0)


# ---- connection caps -------------------------------------------------------------------------------

def test_a_connection_flood_from_one_key_gets_its_cap_and_the_rest_are_refused(web, vitals):
    # More sockets than the worker's pool holds: without caps the pool fills and /health waits (2,000 found).
    opened, refused = flood(web, "/ws/orders/abuse", KEYS["flood"], 3 * WORKER_CONNECTIONS // 2)
    try:
        assert len(opened) == PER_KEY
        assert {code for code, _ in refused} == {1008}
        assert "per key" in refused[0][1] and str(PER_KEY) in refused[0][1]
        outcome, ws = attempt(web, "/ws/orders/abuse", KEYS["extra"])  # another key still gets in
        assert outcome == "open"
        opened.append(ws)
        vitals.assert_healthy()
    finally:
        close_all(web, opened)
    outcome, ws = attempt(web, "/ws/orders/abuse", KEYS["flood"])  # closed sockets leave room again
    assert outcome == "open"
    ws.close()


def test_a_flood_past_the_process_cap_is_refused_and_leaves_room_for_requests(web, vitals):
    close_all(web, [])
    # An admin key has no per-key cap (bench/ws_fanout.py opens a thousand sockets with one): only the process's.
    opened, refused = flood(web, "/ws/ticks", ADMIN, 3 * PER_PROCESS)
    try:
        assert len(opened) == PER_PROCESS
        assert {code for code, _ in refused} == {1013}
        assert "per process" in refused[0][1] and str(PER_PROCESS) in refused[0][1]
        vitals.assert_healthy()
    finally:
        close_all(web, opened)


# ---- message size ------------------------------------------------------------------------------------

def test_a_frame_past_the_size_limit_closes_the_socket_with_1009(web, vitals):
    outcome, ws = attempt(web, "/ws/orders/abuse", KEYS["size"])
    assert outcome == "open"
    ws.send("x" * (2 * MAX_MESSAGE))
    assert close_of(ws, 5)[0] == 1009
    ws.close()

    # Far past it: the relay reads no more than the limit (the worker grew by 470 MB for a 256 MiB frame).
    outcome, ws = attempt(web, "/ws/orders/abuse", KEYS["size"])
    huge = client_frame(TEXT, b"x" * (64 << 20))
    sender = threading.Thread(target=send_quietly, args=(ws.sock, huge), daemon=True)
    sender.start()
    assert close_of(ws, 10)[0] in (1009, None)  # the close frame may be lost to the reset of an unread send
    sender.join(10)
    ws.close()

    # Compressed (permessage-deflate, which the server accepts): 128 MiB of zeros in a frame of 128 KiB.
    sock = deflate_socket(web, "/ws/orders/abuse", KEYS["size"])
    deflate = zlib.compressobj(wbits=-15)
    bomb = deflate.compress(bytes(128 << 20)) + deflate.flush(zlib.Z_SYNC_FLUSH)[:-4]
    send_quietly(sock, client_frame(TEXT, bomb, rsv=0b100))  # RSV1: compressed
    assert (1009).to_bytes(2, "big") + b"Message is too big" in read_all(sock, 5)
    sock.close()
    vitals.assert_healthy()


def deflate_socket(web, path: str, key: str) -> socket.socket:
    """A raw socket after a handshake that agreed on permessage-deflate (websocket-client cannot offer it)."""
    sock = socket.create_connection(("127.0.0.1", web.port), timeout=5)
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n"
                  f"Sec-WebSocket-Extensions: permessage-deflate\r\nX-API-Key: {key}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 101") and b"permessage-deflate" in head.lower(), head
    return sock


def read_all(sock: socket.socket, timeout: float) -> bytes:
    """What the server sends until it closes the connection (or `timeout` passes)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except OSError:
        pass
    return data


def send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:  # the server closed the socket under the send
        pass


# ---- replies to a client that does not read ----------------------------------------------------------

def test_pings_without_reading_the_pongs_get_the_socket_closed(web, vitals):
    # All at once: the replies pile up faster than the relay could send them even to a reader.
    outcome, ws = attempt(web, "/ws/orders/abuse", KEYS["pings"], sockopt=SMALL_RCVBUF)
    assert outcome == "open"
    send_quietly(ws.sock, client_frame(TEXT, b"ping") * 100_000)
    wait_for(lambda: connections(web), 5, 0.1, "the relay to drop the socket", until=lambda n: n == 0)
    code, reason = close_of(ws, 5)
    assert code in (1013, None)  # None: the close frame was lost to the reset of the unread pings
    assert code is None or reason.startswith("client not reading"), reason
    ws.close()

    # Paced, so the relay's writes keep up until the client's buffers are full and they are stuck: no close
    # frame can reach the client then, and the relay drops the connection at once.
    outcome, ws = attempt(web, "/ws/orders/abuse", KEYS["pings"], sockopt=SMALL_RCVBUF)
    ws.sock.settimeout(5)
    for _ in range(400):
        try:
            ws.sock.sendall(client_frame(TEXT, b"ping") * 50)
        except OSError:  # dropped
            break
        time.sleep(0.005)
    wait_for(lambda: connections(web), 5, 0.1, "the relay to drop the socket", until=lambda n: n == 0)
    ws.close()
    vitals.assert_healthy()


# ---- tick subscriptions ------------------------------------------------------------------------------

def test_the_token_cap_holds_for_the_socket_not_each_message(web, vitals):
    outcome, ws = attempt(web, "/ws/ticks", KEYS["ticks"])
    assert outcome == "open"
    messages = [json.dumps({"action": "subscribe", "tokens": list(range(1 + i * MAX_TOKENS, 1 + (i + 1) * MAX_TOKENS))})
                for i in range(60)]
    for text in messages:
        ws.send(text)
    ws.settimeout(10)
    replies = [ws.recv() for _ in messages]
    first, rest = json.loads(replies[0]), [json.loads(r) for r in replies[1:]]
    assert first["type"] == "subscribed" and len(first["tokens"]) == MAX_TOKENS
    assert [r["type"] for r in rest] == ["error"] * len(rest), "a message past the cap must change nothing"
    assert f"at most {MAX_TOKENS} tokens per connection" in rest[0]["message"]
    assert first["total"] == {"tokens": MAX_TOKENS, "underlying": 0, "chains": 0}
    received, sent = sum(map(len, replies)), sum(map(len, messages))
    print(f"{sent / 1e6:.1f} MB of subscribe messages answered with {received / 1e6:.2f} MB")
    assert received <= sent / 10
    ws.close()
    vitals.assert_healthy()


def test_a_chain_watcher_that_stops_reading_gets_every_frame_whole_and_in_order_and_holds_up_no_one(web, vitals):
    # The hub writes chain frames straight to the sockets (gevent: without waiting); a socket with no
    # room takes part of a frame, and the rest must go before anything else: 50 KB frames, a 16 KB send
    # buffer and a 4 KB receive buffer make it happen on nearly every frame to the reader that waits.
    underlying = f"t{os.urandom(4).hex()}"
    path = f"/ws/ticks?chain={underlying.upper()}:2030-01-03"
    (_, slow), (_, fast) = attempt(web, path, KEYS["chains"], sockopt=SMALL_RCVBUF), attempt(web, path, KEYS["chains"])
    publisher = redis.Redis.from_url(os.environ["REDIS_URL"])
    count = 40
    for seq in range(count):
        publisher.publish(f"ticker:{underlying}:options", json.dumps(
            {"type": "ticks", "channel": f"ticker:{underlying}:options", "underlying": underlying.upper(),
             "kind": "options", "expiry": "2030-01-03", "published_at": "2030-01-01T09:15:00.000Z", "count": 1,
             "ticks": [{"instrument_token": 1, "seq": seq, "pad": "x" * 50_000}]}, separators=(",", ":")))

    def seqs(ws) -> list[int]:
        ws.settimeout(10)
        return [json.loads(ws.recv())["ticks"][0]["seq"] for _ in range(count)]

    assert seqs(fast) == list(range(count))  # while the other has not read a byte
    time.sleep(0.5)
    assert seqs(slow) == list(range(count))  # whole (each parses) and in order, none dropped (the outbox holds 50)
    fast.close()
    slow.close()
    vitals.assert_healthy()


# ---- malformed frames ----------------------------------------------------------------------------------

def fuzz_cases(rng: random.Random) -> list[tuple[str, bytes]]:
    junk = lambda n: bytes(rng.getrandbits(8) for _ in range(n))  # noqa: E731
    return [
        ("unknown opcode", client_frame(rng.choice([0x3, 0x4, 0x5, 0xB, 0xF]), b"x")),
        ("reserved bits", client_frame(TEXT, b"ping", rsv=rng.randint(1, 7))),
        ("control frame over 125 bytes", client_frame(PING, b"p" * 200)),
        ("fragmented control frame", client_frame(PING, b"p", fin=False)),
        ("a length of 2**62 and little data", client_frame(TEXT, junk(1000), length=1 << 62)),
        ("fragments past the size limit", client_frame(TEXT, b"x" * 60_000, fin=False)
         + client_frame(0x0, b"x" * 60_000, fin=False) * 3),
        ("continuation with nothing to continue", client_frame(0x0, b"x")),
        ("invalid UTF-8", client_frame(TEXT, b"\xff\xfe" + junk(20))),
        ("binary", client_frame(BINARY, junk(100))),
        ("close with a reserved code", client_frame(CLOSE, (1005).to_bytes(2, "big"))),
        ("unmasked", bytes([0x81, 4]) + b"ping"),
        ("noise", junk(rng.randint(1, 5000))),
        ("a JSON bomb", client_frame(TEXT, b"[" * 60_000 + b"]" * 60_000)),
        ("deep subscription", client_frame(TEXT, json.dumps({"action": "subscribe", "tokens": [[[1]]]}).encode())),
    ]


def test_malformed_frames_and_protocol_ping_floods_leave_the_process_healthy(web, vitals):
    rng = random.Random(21)
    answers = {}
    for _ in range(2):
        for name, data in fuzz_cases(rng):
            outcome, ws = attempt(web, "/ws/ticks", KEYS["fuzz"])
            assert outcome == "open", name
            send_quietly(ws.sock, data)
            ws.sock.settimeout(0.3)
            try:
                answers[name] = ws.sock.recv(65536)  # an error, the close, or nothing (a frame still incomplete)
            except OSError:
                answers[name] = b""
            ws.close()
    assert b'"type": "error"' in answers["a JSON bomb"]  # an answer, not a reader dead of RecursionError
    assert (1009).to_bytes(2, "big") in answers["fragments past the size limit"]
    # Protocol-level pings without reading: the relay's pongs wait for the socket, not in memory.
    outcome, ws = attempt(web, "/ws/ticks", KEYS["fuzz"], sockopt=SMALL_RCVBUF)
    ws.sock.settimeout(1)  # the relay stops reading once its pongs fill the socket: the send times out
    send_quietly(ws.sock, client_frame(PING, b"p" * 125) * 100_000)
    ws.close()
    # Still serving.
    outcome, ws = attempt(web, "/ws/ticks", KEYS["fuzz"])
    assert outcome == "open"
    ws.send("ping")
    ws.settimeout(5)
    assert ws.recv() == "pong"
    ws.close()
    vitals.assert_healthy()
