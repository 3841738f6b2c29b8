"""Which broker connection carries which instrument.

Each account may open ``max_connections`` WebSockets (Kite: 3 per api key)
of ``per_connection`` instruments (Kite: 3,000). The plan keeps an instrument
on its connection once placed (moving it would cost a gap in its ticks) and
puts new instruments on the least loaded connection, spreading over
accounts first, then over an account's connections. Instruments whose account
went away are re-placed on the others; what does not fit waits, unassigned,
until capacity returns. ``rebalance`` (the pool calls it when an account joins
or comes back) moves the fewest instruments that even the load out again.

Pure bookkeeping, no I/O: ``TickerPool`` owns one and applies its changes.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Iterable, Mapping

MODES = ("ltp", "quote", "full")

Slot = tuple[str, int]  # (account_id, connection index)


class CapacityExceeded(Exception):
    def __init__(self, requested: int, capacity: int) -> None:
        super().__init__(f"{requested} instruments requested, capacity is {capacity}")
        self.requested = requested
        self.capacity = capacity


@dataclass(frozen=True)
class Capacity:
    total: int  # instruments all held accounts can carry
    used: int  # instruments subscribed (assigned or waiting)
    free: int
    accounts: int
    connections_per_account: int
    instruments_per_connection: int


class SubscriptionPlan:
    def __init__(self, max_connections: int = 3, per_connection: int = 3000) -> None:
        self.max_connections = max_connections
        self.per_connection = per_connection
        self.accounts: list[str] = []
        self.desired: dict[int, str] = {}  # token -> mode
        self.slot_of: dict[int, Slot] = {}
        self.slots: dict[Slot, dict[int, str]] = {}

    # -- queries -----------------------------------------------------------
    def capacity(self) -> Capacity:
        total = len(self.accounts) * self.max_connections * self.per_connection
        used = len(self.desired)
        return Capacity(total, used, max(0, total - used), len(self.accounts), self.max_connections, self.per_connection)

    def unassigned(self) -> list[int]:
        return [t for t in self.desired if t not in self.slot_of]

    def load(self) -> dict[Slot, int]:
        return {slot: len(tokens) for slot, tokens in self.slots.items()}

    # -- changes (each returns the slots whose token set or modes changed) --
    def set_accounts(self, accounts: Iterable[str]) -> set[Slot]:
        accounts = list(dict.fromkeys(accounts))
        changed: set[Slot] = set()
        for gone in [a for a in self.accounts if a not in accounts]:
            for index in range(self.max_connections):
                tokens = self.slots.pop((gone, index), {})
                if tokens:
                    changed.add((gone, index))
                for token in tokens:
                    del self.slot_of[token]
        for new in [a for a in accounts if a not in self.accounts]:
            for index in range(self.max_connections):
                self.slots[(new, index)] = {}
        self.accounts = accounts
        return changed | self._place(self.unassigned())

    def set_desired(self, desired: Mapping[int, str]) -> set[Slot]:
        """Replace the whole subscription set. Raises CapacityExceeded (and
        changes nothing) when it does not fit."""
        desired = {int(t): _mode(m) for t, m in desired.items()}
        # Growing past capacity is refused; shrinking is always allowed (capacity
        # may have dropped under the current set when an account went away).
        if len(desired) > self.capacity().total and len(desired) > len(self.desired):
            raise CapacityExceeded(len(desired), self.capacity().total)
        changed: set[Slot] = set()
        for token in [t for t in self.desired if t not in desired]:
            changed |= self._drop(token)
        for token, mode in desired.items():
            slot = self.slot_of.get(token)
            if slot is not None and self.slots[slot][token] != mode:
                self.slots[slot][token] = mode
                changed.add(slot)
        self.desired = desired
        return changed | self._place(self.unassigned())

    def subscribe(self, tokens: Iterable[int], mode: str = "quote") -> set[Slot]:
        merged = dict(self.desired)
        merged.update({int(t): _mode(mode) for t in tokens})
        return self.set_desired(merged)

    def unsubscribe(self, tokens: Iterable[int]) -> set[Slot]:
        drop = {int(t) for t in tokens}
        return self.set_desired({t: m for t, m in self.desired.items() if t not in drop})

    def set_mode(self, tokens: Iterable[int], mode: str) -> set[Slot]:
        """Change the mode of already subscribed tokens (others are ignored)."""
        merged = dict(self.desired)
        merged.update({int(t): _mode(mode) for t in tokens if int(t) in merged})
        return self.set_desired(merged)

    def rebalance(self) -> set[Slot]:
        """Even the load out: move instruments from the fullest connections to the emptiest until
        every connection carries within one instrument of every other, so accounts differ by at
        most one per connection. Moves as few as possible: each move costs that instrument a gap.
        (Placement alone leaves an account that joins with only what was waiting.)"""
        if not self.slots:
            return set()
        order = {a: i for i, a in enumerate(self.accounts)}
        # Fullest first; the `extra` fullest connections may keep one more than the rest, which
        # makes the moves exactly their surplus over those targets: no fewer can even it out.
        slots = sorted(self.slots, key=lambda s: (-len(self.slots[s]), s[1], order[s[0]]))
        even, extra = divmod(len(self.slot_of), len(slots))
        target = {slot: even + (i < extra) for i, slot in enumerate(slots)}
        movers = [(slot, token) for slot in slots
                  for token in sorted(self.slots[slot])[target[slot]:]]  # lowest tokens stay put
        changed: set[Slot] = set()
        for slot in reversed(slots):  # emptiest first
            while len(self.slots[slot]) < target[slot]:
                source, token = movers.pop()
                self.slots[slot][token] = self.slots[source].pop(token)
                self.slot_of[token] = slot
                changed |= {source, slot}
        return changed

    # -- internals ---------------------------------------------------------
    def _drop(self, token: int) -> set[Slot]:
        slot = self.slot_of.pop(token, None)
        if slot is None:
            return set()
        del self.slots[slot][token]
        return {slot}

    def _place(self, tokens: list[int]) -> set[Slot]:
        if not tokens:
            return set()
        # Least loaded first; ties go to the lower connection index, then to
        # account order, so load spreads across accounts before connections.
        order = {a: i for i, a in enumerate(self.accounts)}
        heap = [(len(t), index, order[acct], acct) for (acct, index), t in self.slots.items()
                if len(t) < self.per_connection]
        heapq.heapify(heap)
        changed: set[Slot] = set()
        for token in sorted(tokens):
            if not heap:
                break  # waits unassigned until an account comes back
            load, index, rank, acct = heapq.heappop(heap)
            slot = (acct, index)
            self.slots[slot][token] = self.desired[token]
            self.slot_of[token] = slot
            changed.add(slot)
            if load + 1 < self.per_connection:
                heapq.heappush(heap, (load + 1, index, rank, acct))
        return changed


def _mode(mode: str) -> str:
    mode = str(mode).lower()
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    return mode
