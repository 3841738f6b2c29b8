"""The hub writes a shared tick frame straight to a socket that takes it (SerialSocket.try_send via
Outbox.offer_now), and never out of order: not past frames waiting in the outbox or being written,
not after the server's close frame; a frame the socket took only in part is finished first."""
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.realtime.clients import Outbox, Outgoing
from app.realtime.connection import SerialSocket


@pytest.fixture
def pair():
    """A TCP connection on loopback with small buffers (TCP takes part of a big frame, as in life)."""
    listener = socket.create_server(("127.0.0.1", 0))
    ours = socket.create_connection(listener.getsockname())
    theirs, _ = listener.accept()
    listener.close()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    yield SerialSocket(ours), theirs
    ours.close()
    theirs.close()


def read_all(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += sock.recv(size - len(data))
    return data


def test_a_frame_the_socket_has_room_for_is_written_whole_at_once(pair):
    ours, theirs = pair
    frame = Outgoing(text="x" * 300, shared=True).frame()
    assert ours.try_send(frame) == 0 and not ours.pending
    assert read_all(theirs, len(frame)) == frame


def test_a_frame_the_socket_takes_in_part_is_finished_before_the_next_write(pair):
    ours, theirs = pair
    big = Outgoing(text="b" * 1_000_000, shared=True).frame()
    left = ours.try_send(big)
    assert 0 < left < len(big) and ours.pending  # the rest waits in the socket wrapper
    assert ours.try_send(Outgoing(text="next", shared=True).frame()) is None  # never past the rest
    theirs.settimeout(10)
    reader = ThreadPoolExecutor(1).submit(read_all, theirs, len(big) + 5)
    ours.send(b"after")  # any write (the sender's, a pong, a close frame): the rest first, waiting for room
    assert reader.result(timeout=20) == big + b"after" and not ours.pending


def test_no_frame_is_written_past_the_close_or_while_another_write_holds_the_socket(pair):
    ours, theirs = pair
    frame = Outgoing(text="tick", shared=True).frame()
    with ours._lock:  # the sender (or simple_websocket's thread) in a write
        assert ours.try_send(frame) is None
    ours.settimeout(1)  # Python would wait for room before a send on such a socket: left to the sender
    assert ours.try_send(frame) is None
    ours.settimeout(None)
    ours.sealed = True
    assert ours.try_send(frame) is None
    theirs.setblocking(False)
    with pytest.raises(BlockingIOError):
        theirs.recv(10)


def test_the_outbox_lets_the_hub_write_only_when_nothing_waits_or_is_being_written():
    outbox = Outbox(10, drop_oldest=True)
    written = []

    def write(frame):
        written.append(frame)
        return 0

    first, second = Outgoing(text="1", shared=True), Outgoing(text="2", shared=True)
    outbox.offer(first)
    assert not outbox.offer_now(second, write)  # behind a waiting frame: queued instead
    items, _ = outbox.take(0)
    assert items == [first]
    assert not outbox.offer_now(second, write)  # the sender has not written what it took
    outbox.sent()
    assert outbox.offer_now(second, write) and written == [second.frame()] and len(outbox) == 0
    outbox.close()
    assert not outbox.offer_now(second, write)


def test_a_frame_begun_but_not_finished_wakes_the_sender():
    outbox = Outbox(10, drop_oldest=True)
    assert outbox.offer_now(Outgoing(text="t", shared=True), lambda frame: 0)
    assert not outbox._ready.is_set()  # written whole: the sender is not woken
    assert outbox.offer_now(Outgoing(text="t", shared=True), lambda frame: 3)
    assert outbox._ready.is_set()  # 3 bytes of it left: the sender flushes them
