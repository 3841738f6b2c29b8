"""Series from the start, the parts that need no deployment: the stream process's fixed series
at 0 in a fresh interpreter, and the label values of tests/support/metric_series.py checked
against the code that produces them (the web's series on a fresh deployment:
tests/integration/ops/test_metrics_series.py)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.metric_series import (BATCH_STATUSES, MARGIN_CHECK_REFUSAL_REASONS, MARGIN_CHECK_REQUESTS,
                                         ORDER_REJECTION_REASONS, POSTBACK_VERIFICATION_OUTCOMES,
                                         STREAM_DROP_REASONS, STREAM_PUBLISHED_KINDS, WEBHOOK_OUTCOMES,
                                         WEBSOCKET_ENDPOINTS, assert_at_zero)

ROOT = Path(__file__).resolve().parents[3]


STREAM_SCRAPE = """
import sys
import workers.stream.metrics
from prometheus_client import generate_latest
sys.stdout.write(generate_latest().decode())
"""


def test_fresh_stream_metrics_have_their_fixed_series_at_zero():
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    result = subprocess.run([sys.executable, "-c", STREAM_SCRAPE], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = [("stream_ticks_published_total", {"kind": k}) for k in STREAM_PUBLISHED_KINDS]
    expected += [("stream_ticks_dropped_total", {"reason": r}) for r in STREAM_DROP_REASONS]
    assert_at_zero(result.stdout, expected)


# --- the label values are the ones the code produces ------------------------------------------

def _source(relative: str) -> str:
    return (ROOT / relative).read_text()


def test_websocket_endpoints_are_the_routes_endpoint_labels():
    source = _source("app/realtime/routes.py")
    used = set(re.findall(r'_serve_orders\([^)]*"(\w+)"\)', source)) | set(re.findall(r'endpoint="(\w+)"', source))
    assert used == WEBSOCKET_ENDPOINTS


def test_batch_statuses_are_the_final_statuses():
    from app.batches.service import FINAL_BATCH

    assert set(FINAL_BATCH) == BATCH_STATUSES


def test_webhook_outcomes_are_the_ones_counted():
    assert set(re.findall(r'DELIVERIES\.inc\(status="(\w+)"\)', _source("app/webhooks/delivery.py"))) == WEBHOOK_OUTCOMES


def test_margin_check_refusal_labels_are_the_ones_counted():
    from app.broker.margin_check import REASONS, REQUESTS

    # The request label is the first string the intake passes to the pre-trade checks.
    requests = {*re.findall(r'check_before_storing\(.*?"(\w+)"', _source("app/batches/service.py"), re.DOTALL),
                *re.findall(r'check_before_storing\(.*?"(\w+)"', _source("app/orders/service.py"), re.DOTALL)}
    reasons = set(re.findall(r'margin_check_refusals_total\.inc\(request=request, reason="(\w+)"\)',
                             _source("app/broker/margin_check.py")))
    assert requests == set(REQUESTS) == MARGIN_CHECK_REQUESTS
    assert reasons == set(REASONS) == MARGIN_CHECK_REFUSAL_REASONS


def test_order_rejection_reasons_are_the_ones_counted():
    from app.orders.rejections import REJECTION_REASONS, rejection_reason

    assert set(REJECTION_REASONS) == ORDER_REJECTION_REASONS
    assert {rejection_reason(text) for text in ("RMS:Margin Exceeds", "Check freeze quantity",
                                                "Markets are closed right now.", "")} == ORDER_REJECTION_REASONS


def test_postback_verification_outcomes_are_the_ones_counted():
    from app.orders.postback_verification import OUTCOMES

    counted = set(re.findall(r'postback_verifications_total\.inc\(outcome="(\w+)"\)',
                             _source("app/orders/postback_verification.py")))
    assert counted == set(OUTCOMES) == POSTBACK_VERIFICATION_OUTCOMES


def test_stream_label_values_are_the_ones_counted():
    from workers.stream.publisher import PublishResult

    kinds = set(re.findall(r'TICKS_PUBLISHED\.labels\(kind="(\w+)"\)', _source("workers/stream/batcher.py")))
    assert kinds == STREAM_PUBLISHED_KINDS
    queue = set(re.findall(r'TICKS_DROPPED\.labels\(reason="(\w+)"\)', _source("workers/stream/pool.py")))
    assert {r.value for r in PublishResult if r is not PublishResult.PUBLISHED} | queue == STREAM_DROP_REASONS
