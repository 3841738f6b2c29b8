"""What the stream needs to know about instruments: which underlying a token
belongs to, and for options their strike, expiry and side.

The stream process builds an ``InstrumentBook`` from the instrument registry
and swaps in a new one when the registry refreshes (``TickBatcher.instruments``
is read once per flush, so the swap is atomic).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np


@dataclass(frozen=True)
class OptionMeta:
    token: int
    underlying: str  # e.g. "NIFTY"; channels use it lower-cased
    strike: float
    expiry: date
    is_call: bool
    lot_size: int
    tradingsymbol: str


@dataclass(frozen=True)
class UnderlyingTokens:
    """The instruments of one underlying that go to ``ticker:{name}:underlying``."""

    name: str  # e.g. "NIFTY"
    index_token: int | None = None  # the spot index (segment 9), or the equity
    future_tokens: tuple[int, ...] = ()  # its futures, nearest expiry first
    future_expiries: tuple[date, ...] = ()  # their expiries, same order (lets Greeks use forwards)


@dataclass
class InstrumentBook:
    """Token lookups as sorted NumPy arrays, so a whole batch is classified with
    one ``searchsorted`` instead of a dict lookup per tick."""

    options: dict[int, OptionMeta] = field(default_factory=dict)
    underlyings: dict[str, UnderlyingTokens] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Underlying ids index self.names; the same id is used for options and underlyings.
        self.names: list[str] = sorted({u.upper() for u in self.underlyings} | {m.underlying.upper() for m in self.options.values()})
        name_id = {name: i for i, name in enumerate(self.names)}
        opts = sorted(self.options.values(), key=lambda m: m.token)
        self.option_tokens = np.array([m.token for m in opts], dtype=np.int64)
        self.option_underlying = np.array([name_id[m.underlying.upper()] for m in opts], dtype=np.int64)
        self.option_strike = np.array([m.strike for m in opts], dtype=np.float64)
        self.option_expiry = np.array([m.expiry for m in opts], dtype="datetime64[D]")
        self.option_is_call = np.array([m.is_call for m in opts], dtype=bool)
        self.option_meta = opts
        spot, fut = [], []
        for name, u in self.underlyings.items():
            uid = name_id[name.upper()]
            if u.index_token is not None:
                spot.append((u.index_token, uid))
            fut.extend((t, uid) for t in u.future_tokens)
        pairs = sorted(spot + fut)
        self.underlying_tokens = np.array([t for t, _ in pairs], dtype=np.int64)
        self.underlying_ids = np.array([uid for _, uid in pairs], dtype=np.int64)
        self.spot_token_set = np.array(sorted(t for t, _ in spot), dtype=np.int64)
        # Per underlying id: its spot token and its futures as (expiry or None, token), nearest first.
        self.spot_token = {name_id[n.upper()]: u.index_token for n, u in self.underlyings.items()
                           if u.index_token is not None}
        self.futures = {
            name_id[n.upper()]: [(u.future_expiries[i] if i < len(u.future_expiries) else None, tok)
                                 for i, tok in enumerate(u.future_tokens)]
            for n, u in self.underlyings.items() if u.future_tokens
        }

    def classify(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each token: (option index into the option_* arrays or -1,
        underlying id or -1, is-underlying flag)."""
        opt_idx = _lookup(self.option_tokens, tokens)
        und_idx = _lookup(self.underlying_tokens, tokens)
        underlying_id = np.where(opt_idx >= 0, self.option_underlying[np.maximum(opt_idx, 0)] if self.option_tokens.size else -1, -1)
        if self.underlying_tokens.size:
            underlying_id = np.where(und_idx >= 0, self.underlying_ids[np.maximum(und_idx, 0)], underlying_id)
        return opt_idx, underlying_id, und_idx >= 0

    def is_spot(self, tokens: np.ndarray) -> np.ndarray:
        return _lookup(self.spot_token_set, tokens) >= 0


def _lookup(sorted_tokens: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Index of each token in ``sorted_tokens``, or -1."""
    if sorted_tokens.size == 0:
        return np.full(len(tokens), -1, dtype=np.int64)
    pos = np.searchsorted(sorted_tokens, tokens)
    pos = np.minimum(pos, sorted_tokens.size - 1)
    return np.where(sorted_tokens[pos] == tokens, pos, -1)
