"""Runtime fault settings (`POST/DELETE /_sim/faults`, CLI flags) and what they have consumed.

Counters (`reject_next`, `error_next`, `accept_then_timeout_next`) count down as
they fire; `drop_ws` is one-shot; the rest stay until changed or cleared.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, dataclass, field, fields


@dataclass
class FaultSettings:
    latency_ms: float = 0.0              # added to every Kite REST call
    jitter_ms: float = 0.0               # plus uniform 0..jitter_ms
    reject_next: int = 0                 # next N placed orders end REJECTED
    reject_symbols: list = field(default_factory=list)  # orders for these tradingsymbols are REJECTED
    error_next: int = 0                  # next N Kite REST calls fail with error_status
    error_rate: float = 0.0              # each Kite REST call fails with this probability
    error_status: int = 503              # 429 answers "Too many requests" like Kite's limiter
    accept_then_timeout_next: int = 0    # next N placements are created, response held for timeout_s
    timeout_s: float = 10.0
    fill_delay_ms: float = 0.0           # delay before a marketable order fills (0: at once)
    drop_ws: bool = False                # abort every ticker connection once (client sees 1006)
    pause_ticks: bool = False            # stop market-data frames (heartbeats continue)
    silence_ws: bool = False             # stop everything on the ticker, heartbeats too (a dead link)
    refuse_ws_next: int = 0              # next N ticker handshakes answered 403


FAULT_NAMES = {f.name for f in fields(FaultSettings)}


class Faults:
    def __init__(self, seed: int = 0):
        self.settings = FaultSettings()
        self.consumed: Counter = Counter()
        self._random = random.Random(seed)

    def merge(self, changes: dict) -> None:
        unknown = set(changes) - FAULT_NAMES
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        for name, value in changes.items():
            default = getattr(FaultSettings(), name)
            if isinstance(default, bool):
                value = bool(value)
            elif isinstance(default, int):
                value = int(value)
            elif isinstance(default, float):
                value = float(value)
            elif isinstance(default, list):
                value = [str(v) for v in (value or [])]
            setattr(self.settings, name, value)

    def clear(self) -> None:
        self.settings = FaultSettings()

    def as_dict(self) -> dict:
        return asdict(self.settings)

    def _take(self, name: str) -> bool:
        if getattr(self.settings, name) > 0:
            setattr(self.settings, name, getattr(self.settings, name) - 1)
            self.consumed[name] += 1
            return True
        return False

    def latency_s(self) -> float:
        s = self.settings
        if not (s.latency_ms or s.jitter_ms):
            return 0.0
        return (s.latency_ms + self._random.uniform(0, s.jitter_ms)) / 1000.0

    def call_error_status(self) -> int | None:
        """The HTTP status to fail this REST call with, if a fault says so."""
        if self._take("error_next"):
            return self.settings.error_status
        if self.settings.error_rate and self._random.random() < self.settings.error_rate:
            self.consumed["error_rate"] += 1
            return self.settings.error_status
        return None

    def rejection(self, tradingsymbol: str) -> str | None:
        """A status_message if this order must be rejected."""
        if tradingsymbol in self.settings.reject_symbols:
            self.consumed["reject_symbols"] += 1
            return f"RMS:Blocked for trading in {tradingsymbol} (paper broker fault)"
        if self._take("reject_next"):
            return "RMS:Margin Exceeds, Required:0, Available:0 (paper broker fault)"
        return None

    def take_accept_then_timeout(self) -> bool:
        return self._take("accept_then_timeout_next")

    def take_refuse_ws(self) -> bool:
        return self._take("refuse_ws_next")

    def take_drop_ws(self) -> bool:
        if self.settings.drop_ws:
            self.settings.drop_ws = False
            self.consumed["drop_ws"] += 1
            return True
        return False
