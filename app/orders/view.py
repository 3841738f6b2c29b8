"""The JSON shape of an order record (REST answers, WebSocket snapshots and updates)."""
from __future__ import annotations

from decimal import Decimal

from app.core.timestamps import iso
from app.models import Order, OrderEvent



def _num(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None


def event_view(event: OrderEvent) -> dict:
    return {"at": iso(event.at), "from_status": event.from_status, "to_status": event.to_status,
            "attempt": event.attempt, "error": event.error, "detail": event.detail}


def order_view(order: Order, with_events: bool = True) -> dict:
    view = {
        "id": order.id,
        "order_id": order.id,
        "account_id": order.account_id,
        "status": order.status,
        "broker_order_id": order.broker_order_id,
        "broker_status": order.broker_status,
        "status_message": order.status_message,
        "tag": order.tag,
        "attempts": order.attempts,
        "error": order.error,
        "exchange": order.exchange,
        "tradingsymbol": order.tradingsymbol,
        "instrument_token": order.instrument_token,
        "transaction_type": order.transaction_type,
        "quantity": order.quantity,
        "product": order.product,
        "order_type": order.order_type,
        "variety": order.variety,
        "validity": order.validity,
        "price": _num(order.price),
        "trigger_price": _num(order.trigger_price),
        "disclosed_quantity": order.disclosed_quantity,
        "market_protection": order.market_protection,
        "client_tag": order.client_tag,
        "filled_quantity": order.filled_quantity,
        "average_price": _num(order.average_price),
        "batch_id": order.batch_id,
        "leg_index": order.leg_index,
        "role": order.role,
        "created_at": iso(order.created_at),
        "updated_at": iso(order.updated_at),
    }
    if with_events:
        view["events"] = [event_view(e) for e in order.events]
    return view
