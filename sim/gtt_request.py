"""GTT place/modify requests checked the way Kite checks them: any problem is an InputException (HTTP 400).

Form fields (as `kiteconnect.place_gtt` / `modify_gtt` send them): `type` (`single` | `two-leg`),
`condition` (JSON: exchange, tradingsymbol, trigger_values, last_price) and `orders` (JSON array of
exchange, tradingsymbol, transaction_type, quantity, order_type, product, price). Each order is
checked as a `regular` order would be (lot and tick multiples, product for F&O), and must be LIMIT.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

from .errors import input_error
from .orders import parse_order_request
from .universe import Instrument

SINGLE, TWO_LEG = "single", "two-leg"
ORDER_FIELDS = ("exchange", "tradingsymbol", "transaction_type", "quantity", "order_type", "product", "price")


@dataclass
class GttRequest:
    type: str
    instrument: Instrument
    trigger_values: list[float]   # single: [value]; two-leg: [lower, upper]
    last_price: float             # the caller's view of the price: a single GTT fires on crossing from this side
    orders: list[dict]            # normalised ORDER_FIELDS; two-leg: [stop-loss (lower), target (upper)]


def parse_gtt_request(params: dict, market) -> GttRequest:
    kind = params.get("type")
    if kind not in (SINGLE, TWO_LEG):
        raise input_error("Invalid `type`. Use `single` or `two-leg`.")
    condition = _json_field(params, "condition", dict)
    orders = _json_field(params, "orders", list)
    exchange = str(condition.get("exchange") or "").upper()
    symbol = str(condition.get("tradingsymbol") or "")
    instrument = market.instrument(exchange, symbol)
    if instrument is None:
        raise input_error(f"Invalid `tradingsymbol`: {exchange}:{symbol} is not a known instrument.")
    if instrument.is_index:
        raise input_error("GTT is not allowed on indices: they are not tradable.")
    values = _trigger_values(condition.get("trigger_values"), kind)
    last_price = _positive(condition.get("last_price"), "last_price")
    _check_against_last_price(kind, values, last_price)
    wanted = 1 if kind == SINGLE else 2
    if len(orders) != wanted:
        raise input_error("Invalid `orders`: a single GTT takes exactly one order." if kind == SINGLE else
                          "Invalid `orders`: a two-leg GTT takes exactly two orders (stop-loss, then target).")
    return GttRequest(kind, instrument, values, last_price, [_order(o, instrument, market) for o in orders])


def _json_field(params: dict, name: str, kind: type):
    try:
        value = json.loads(params.get(name) or "")
    except (TypeError, ValueError):
        raise input_error(f"Invalid `{name}`: expected JSON.")
    if not isinstance(value, kind):
        raise input_error(f"Invalid `{name}`: expected a JSON {'object' if kind is dict else 'array'}.")
    return value


def _positive(raw, name: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw) or raw <= 0:
        raise input_error(f"Invalid `{name}`: expected a positive number.")
    return float(raw)


def _trigger_values(raw, kind: str) -> list[float]:
    if not isinstance(raw, list):
        raise input_error("Invalid `trigger_values`: expected a JSON array.")
    values = [_positive(v, "trigger_values") for v in raw]
    if kind == SINGLE and len(values) != 1:
        raise input_error("Invalid `trigger_values`: a single GTT takes exactly one trigger value.")
    if kind == TWO_LEG and len(values) != 2:
        raise input_error("Invalid `trigger_values`: a two-leg GTT takes exactly two trigger values (lower, upper).")
    return values


def _check_against_last_price(kind: str, values: list[float], last_price: float) -> None:
    if kind == SINGLE:
        if math.isclose(values[0], last_price, abs_tol=1e-9):
            raise input_error("Invalid `trigger_values`: the trigger value must differ from the last price.")
        return
    lower, upper = values
    if lower >= upper:
        raise input_error("Invalid `trigger_values`: the lower trigger must be below the upper trigger.")
    if not lower < last_price < upper:
        # One leg would fire at once: a two-leg GTT is a stop-loss below and a target above the price.
        raise input_error("Invalid `trigger_values`: the last price must lie between the lower and upper "
                          "triggers of a two-leg GTT.")


def _order(raw, instrument: Instrument, market) -> dict:
    if not isinstance(raw, dict):
        raise input_error("Invalid `orders`: each order must be a JSON object.")
    exchange = str(raw.get("exchange") or "").upper()
    symbol = str(raw.get("tradingsymbol") or "")
    if (exchange, symbol) != (instrument.exchange, instrument.tradingsymbol):
        raise input_error(f"Invalid `orders`: every order must be for the condition's instrument "
                          f"{instrument.exchange}:{instrument.tradingsymbol}.")
    if str(raw.get("order_type") or "").upper() != "LIMIT":
        raise input_error("Invalid `order_type`: GTT orders must be LIMIT orders.")
    # The same checks as a regular order (transaction type, product, lot and tick multiples).
    as_form = {name: "" if raw.get(name) is None else str(raw.get(name)) for name in ORDER_FIELDS}
    checked = parse_order_request("regular", as_form, market)
    return {"exchange": instrument.exchange, "tradingsymbol": instrument.tradingsymbol,
            "transaction_type": checked.transaction_type, "quantity": checked.quantity,
            "order_type": checked.order_type, "product": checked.product, "price": checked.price}
