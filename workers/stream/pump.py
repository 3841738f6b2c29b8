"""The thread between the WebSocket pool and the batcher.

The pool's reactor callbacks only put raw frames on a queue (the reactor
must never block); this thread decodes them, feeds the batcher and flushes
it when its window closes, also when no new frame arrives.
"""
from __future__ import annotations

import logging
import queue
import threading

from workers.stream import frames, metrics
from workers.stream.batcher import TickBatcher

log = logging.getLogger(__name__)

# Frames decoded in one compiled pass: enough to spread its fixed cost (frames of a market-scale
# connection hold tens of packets), few enough that one batch of rows stays small (packets x 380 B).
DECODE_FRAMES_AT_ONCE = 256


class FramePump:
    def __init__(self, frame_queue: "queue.Queue[tuple[str, bytes, float]]", batcher: TickBatcher,
                 idle_wait_s: float = 0.5) -> None:
        self.frames = frame_queue
        self.batcher = batcher
        self.idle_wait_s = idle_wait_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "FramePump":
        self._thread = threading.Thread(target=self.run, name="stream-frame-pump", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.batcher.flush()

    def run(self) -> None:
        while not self._stop.is_set():
            due = self.batcher.seconds_until_due()
            try:
                item = self.frames.get(timeout=self.idle_wait_s if due is None else max(due, 0.0005))
            except queue.Empty:
                item = None
            try:
                if item is not None:
                    self._decode([item, *self._waiting(DECODE_FRAMES_AT_ONCE - 1)])
                    while len(more := self._waiting(DECODE_FRAMES_AT_ONCE)):
                        self._decode(more)
                        if len(more) < DECODE_FRAMES_AT_ONCE:
                            break
                self.batcher.flush_if_due()
            except Exception:  # keep pumping: one bad batch must not stop the stream
                log.exception("tick pump failed on a batch")

    def _waiting(self, at_most: int) -> list[tuple[str, bytes, float]]:
        """Frames that wait besides, taken before flushing (every one, `at_most` at a time). A flush
        that took longer than the window (a burst, a slow Redis) leaves frames behind; published
        after the next flush they would be a window older than they need be. Taken now, the newest
        tick of each instrument supersedes the waiting ones in this batch: under overload the
        stream publishes each instrument's current state less often instead of falling behind."""
        items = []
        for _ in range(at_most):
            try:
                items.append(self.frames.get_nowait())
            except queue.Empty:
                break
        return items

    def _decode(self, items: list[tuple[str, bytes, float]]) -> None:
        """Decode frames together (one compiled pass) and queue their ticks in the batcher."""
        rows, malformed = frames.decode_frames([payload for _, payload, _ in items])
        if malformed:
            metrics.FRAMES_MALFORMED.inc(malformed)
            log.warning("%d malformed frame(s) skipped", malformed,
                        extra={"accounts": sorted({account for account, _, _ in items})})
        self.batcher.add(rows, arrivals=[received_at for _, _, received_at in items])
