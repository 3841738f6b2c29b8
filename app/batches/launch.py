"""Starting a stored batch's chord, by task name (the web process never imports the tasks).

    chord(group(place_leg × legs), settle_batch)                      execution "parallel"
    chord(group(place_leg × BUY legs), place_sell_legs) → chord(...)  execution "buy_first"
"""
from __future__ import annotations

from celery import chord, group

from app.core.task_client import celery_client

PLACE_LEG = "workers.tasks.batches.place_leg"
PLACE_SELL_LEGS = "workers.tasks.batches.place_sell_legs"
SETTLE_BATCH = "workers.tasks.batches.settle_batch"


def launch(batch) -> None:
    """Start the chord of a stored batch (its legs loaded)."""
    client = celery_client()
    legs = sorted((o for o in batch.legs if o.role == "leg"), key=lambda o: o.leg_index)
    buys = [o.id for o in legs if o.transaction_type == "BUY"]
    sells = [o.id for o in legs if o.transaction_type == "SELL"]
    if batch.execution == "buy_first" and buys and sells:
        chord(group(client.signature(PLACE_LEG, args=(i, batch.account_id)) for i in buys),
              client.signature(PLACE_SELL_LEGS, args=(batch.id, sells, batch.account_id))).delay()
    else:
        chord(group(client.signature(PLACE_LEG, args=(o.id, batch.account_id)) for o in legs),
              client.signature(SETTLE_BATCH, args=(batch.id,))).delay()
