"""Why the broker rejected an order, as one of a few reasons, counted in `order_rejections_total{reason}`.

Kite explains an order it rejects after accepting it (its RMS check) in two texts:
`status_message` for people ("Insufficient funds. Required margin is …") and
`status_message_raw`, the RMS's own ("RMS:Margin Exceeds,Required:…, Available:… for entity …").
An order refused at placement (HTTP 400) has only the error of the refused call. The reason is
read from whichever texts the order has and is one of REJECTION_REASONS, so the metric's series
stay few and known in advance whatever the broker writes (its texts name accounts and amounts).

Workers, the stream and the web process all see rejections: the counter lives in Redis
(app.core.cluster_metrics) and the web process exports it.
"""
from __future__ import annotations

from app.core.cluster_metrics import ClusterCounter

REJECTION_REASONS = ("margin", "freeze", "market_closed", "other")

# Lower-case fragments of Kite's texts (kite-rules-2026 §1.1, §1.5; the market-hours refusal), by reason.
_FRAGMENTS = (
    ("margin", ("rms:margin exceeds", "insufficient funds")),
    ("freeze", ("freeze quantity", "allowed by the exchanges")),
    ("market_closed", ("markets are closed",)),
)

REJECTIONS = ClusterCounter("order_rejections_total", "Orders the broker rejected, by reason", ("reason",),
                            series=[(reason,) for reason in REJECTION_REASONS])


def rejection_reason(*texts: str | None) -> str:
    """The reason a rejection's texts (raw first, then the others) stand for; `other` if none matches."""
    for text in texts:
        lowered = (text or "").lower()
        for reason, fragments in _FRAGMENTS:
            if any(fragment in lowered for fragment in fragments):
                return reason
    return "other"


def count_rejection(order) -> str:
    """Count a REJECTED order under its reason (never raises: a metric must not fail an order)."""
    reason = rejection_reason(order.status_message_raw, order.status_message, order.error)
    REJECTIONS.inc(reason=reason)
    return reason
