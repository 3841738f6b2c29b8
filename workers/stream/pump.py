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
                    self._decode(*item)
                self.batcher.flush_if_due()
            except Exception:  # keep pumping: one bad batch must not stop the stream
                log.exception("tick pump failed on a batch")

    def _decode(self, account_id: str, payload: bytes, received_at: float) -> None:
        try:
            rows = frames.decode_frame(payload)
        except frames.MalformedFrame as exc:
            metrics.FRAMES_MALFORMED.inc()
            log.warning("malformed frame from %s: %s", account_id, exc)
            return
        self.batcher.add(rows, received_at)
