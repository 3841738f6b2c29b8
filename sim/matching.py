"""How much of an order the displayed book can fill, and at what price.

MARKET orders (and triggered SL-M) fill in full at the touch. A LIMIT order takes the depth levels on
the other side that are at or better than its price, up to their quantities, each at its level's
price; what the book does not hold stays open (a partial fill). Each order sees the displayed depth
once per book refresh (a market step or a price jump), so the rest fills as the market comes to it.
"""
from __future__ import annotations


def fill_at_book(market, index: int, buy: bool, order_type: str, limit: float, quantity: int
                 ) -> tuple[int, float]:
    """(quantity filled, average price) for `quantity` against the book of instrument `index`."""
    prices = market.ask_px[index] if buy else market.bid_px[index]
    sizes = market.ask_qty[index] if buy else market.bid_qty[index]
    touch = float(prices[0])
    if touch <= 0:
        return 0, 0.0
    if order_type in ("MARKET", "SL-M"):
        return quantity, touch
    filled, value = 0, 0.0
    for price, size in zip(prices, sizes):
        price, size = float(price), int(size)
        if price <= 0 or (price > limit + 1e-9 if buy else price < limit - 1e-9):
            break
        take = min(size, quantity - filled)
        filled += take
        value += take * price
        if filled == quantity:
            break
    return filled, (value / filled if filled else 0.0)
