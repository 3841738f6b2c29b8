"""The one NUL policy (app/core/validation.py): a NUL anywhere in the raw request, and the schemas' validator.
(A NUL that reaches JSON decoding is named by its field: tests/unit/web/test_json_input.py.)"""
from __future__ import annotations

import pytest
from marshmallow import ValidationError

from app.core.validation import NUL_FREE, raw_request_has_nul


@pytest.mark.parametrize("path, query, body", [
    ("/orders/a\x00", [], b""),
    ("/orders", ["ok", "b\x00"], b""),
    ("/orders", [], b'{"tag": "a\x00"}'),
    ("/orders", [], b'{"tag": "a\\u0000"}'),
])
def test_a_nul_anywhere_in_the_raw_request(path, query, body):
    assert raw_request_has_nul(path, query, body)


def test_a_request_without_nul():
    assert not raw_request_has_nul("/orders", ["a", "b"], b'{"tag": "a\\u0041"}')


def test_the_field_validator_refuses_nul():
    assert NUL_FREE("plain text") == "plain text"
    with pytest.raises(ValidationError, match="NUL characters are not allowed"):
        NUL_FREE("a\x00b")
