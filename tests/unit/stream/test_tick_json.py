"""The compiled tick writer (tick_json) and orjson's floats (json_numbers) give the text json.dumps gives."""
import json
import math
import random

import numpy as np
import pytest

from tests.support.stream_frames import NFO, NSE, frame, full_packet, quote_packet, random_packet, token
from workers.stream import frames, tick_json
from workers.stream.json_numbers import float_texts


def dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


@pytest.mark.parametrize("kind", ["quote", "full"])
@pytest.mark.parametrize("segment", [NFO, NSE])
def test_compiled_texts_equal_json_dumps(kind, segment):
    rng = random.Random(f"{kind}{segment}")
    rows = frames.decode_frame(frame([random_packet(rng, kind, segment) for _ in range(400)]))
    length = 184 if kind == "full" else 44
    texts = tick_json.texts(rows, length, frames._stamp_text)
    assert texts is not None  # paise prices: the compiled path, not the fallback
    assert texts == [dumps(t)[:-1] for t in frames.to_json_ticks(rows)]


def test_edge_prices_and_quantities():
    """Zero, one paisa, whole rupees, ten paise, the largest u32 values; a change in repr's exponent range."""
    prices = [0, 1, 5, 10, 100, 12345, 2**32 - 1, 10_000_000_05]
    closes = [100_000_00, 2, 5, 11, 1, 12340, 2**32 - 2, 10_000_000_00]  # the last: change 5e-07 (exponent form)
    packets = []
    for i, (price, close) in enumerate(zip(prices, closes)):
        quote = quote_packet(token(1000 + i, NFO), price, 2**32 - 1, price, 0, 7, 2**32 - 1, price, price, price,
                             close)
        packets.append(full_packet(quote, 1_900_000_000, 0, 2**32 - 1, 3, 1_900_000_001,
                                   [(q, price, q % 2**16) for q in range(10)]))
    rows = frames.decode_frame(frame(packets))
    assert tick_json.texts(rows, 184, frames._stamp_text) == [dumps(t)[:-1] for t in frames.to_json_ticks(rows)]


def test_prices_off_the_paise_grid_take_the_general_path():
    rows = frames.decode_frame(frame([random_packet(random.Random(1), "full", NFO) for _ in range(3)]))
    rows["last_price"][1] += 1e-7
    assert tick_json.texts(rows, 184, frames._stamp_text) is None
    assert frames.to_json_texts(rows) == [dumps(t) for t in frames.to_json_ticks(rows)]


def test_float_texts_are_repr_and_null():
    rng = np.random.default_rng(7)
    values = np.concatenate([rng.normal(0, 1, 2000), rng.uniform(0, 1, 2000) * 10.0 ** rng.integers(-12, 20, 2000),
                             [0.0, -0.0, 1.0, 1e-4, 9.99e-5, 1e16, 1e15, -2.5e-7]])
    assert float_texts(values) == [repr(x) for x in values.tolist()]
    odd = np.array([math.nan, math.inf, -math.inf, 1.5])
    assert float_texts(odd) == ["null", "null", "null", "1.5"]
    assert float_texts(odd, nonfinite_as_json=True) == ["null", "Infinity", "-Infinity", "1.5"]
    assert float_texts(np.zeros(0)) == []
