"""Webhook signatures (app/webhooks/signing.py): HMAC-SHA256 of "timestamp.body" with the webhook's
secret, checked against an independent computation; any change to body, time or secret fails."""
from __future__ import annotations

import hashlib
import hmac

import pytest

from app.webhooks.signing import delivery_headers, signature, verify

SECRET, TIMESTAMP = "s3cret", "1767225600"
BODY = b'{"event":"order_completed","account_id":"primary","data":{"order_id":"o1"}}'


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body():
    expected = hmac.new(SECRET.encode(), f"{TIMESTAMP}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert signature(SECRET, TIMESTAMP, BODY) == f"sha256={expected}"


def test_a_receiver_verifies_the_exact_bytes():
    presented = signature(SECRET, TIMESTAMP, BODY)
    assert verify(SECRET, TIMESTAMP, BODY, presented)


@pytest.mark.parametrize("secret, timestamp, body", [
    ("other", TIMESTAMP, BODY),  # another webhook's secret
    (SECRET, "1767225601", BODY),  # a replay with a new timestamp
    (SECRET, TIMESTAMP, BODY + b" "),  # one byte more
    (SECRET, TIMESTAMP, BODY.replace(b"o1", b"o2")),
])
def test_anything_changed_does_not_verify(secret, timestamp, body):
    assert not verify(secret, timestamp, body, signature(SECRET, TIMESTAMP, BODY))


@pytest.mark.parametrize("presented", [None, "", "sha256=", signature(SECRET, TIMESTAMP, BODY).upper(),
                                       signature(SECRET, TIMESTAMP, BODY).removeprefix("sha256=")])
def test_a_missing_or_malformed_signature_does_not_verify(presented):
    assert not verify(SECRET, TIMESTAMP, BODY, presented)


def test_delivery_headers_sign_and_never_carry_the_secret():
    headers = delivery_headers("d-1", SECRET, TIMESTAMP, BODY)
    assert headers == {
        "Content-Type": "application/json",
        "User-Agent": "ticker-service-webhooks/1.0",
        "X-Webhook-Id": "d-1",  # the delivery id, stable across retries
        "X-Webhook-Timestamp": TIMESTAMP,
        "X-Webhook-Signature": signature(SECRET, TIMESTAMP, BODY),
    }
    assert not any(SECRET in value for value in headers.values())


def test_a_legacy_webhook_also_gets_the_secret_header():
    headers = delivery_headers("d-1", SECRET, TIMESTAMP, BODY, legacy_secret_header=True)
    assert headers == {**delivery_headers("d-1", SECRET, TIMESTAMP, BODY),
                       "X-Webhook-Secret": SECRET}  # what the old ticker service's clients compare
