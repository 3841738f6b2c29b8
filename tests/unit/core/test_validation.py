"""The one NUL policy (app/core/validation.py): where a JSON document holds a NUL, as field messages."""
from __future__ import annotations

import pytest
from marshmallow import ValidationError

from app.core.validation import NUL_FREE, nul_fields

MESSAGE = ["NUL characters are not allowed"]


@pytest.mark.parametrize("value", ["", "plain", 0, 1.5, None, True, [], {}, ["a", {"b": "c"}], {"a": [1, "x"]}])
def test_documents_without_nul_have_no_messages(value):
    assert nul_fields(value) == {}


def test_a_nul_in_a_string():
    assert nul_fields("a\x00b") == {"_value": MESSAGE}


def test_nul_in_fields_are_named_where_they_are():
    assert nul_fields({"tag": "a\x00", "quantity": 1}) == {"tag": MESSAGE}
    assert nul_fields({"legs": [{"tag": "ok"}, {"tag": "a\x00"}]}) == {"legs": {"1": {"tag": MESSAGE}}}
    assert nul_fields(["x", "\x00"]) == {"1": MESSAGE}
    assert nul_fields({"a": {"b": {"c": "\x00"}}, "d": "\x00"}) == {"a": {"b": {"c": MESSAGE}}, "d": MESSAGE}


def test_a_nul_in_a_key_is_a_schema_message():
    assert nul_fields({"ta\x00g": "x"}) == {"_schema": MESSAGE}
    assert nul_fields({"ok": "\x00", "k\x00": 1}) == {"ok": MESSAGE, "_schema": MESSAGE}


def test_the_field_validator_refuses_nul():
    assert NUL_FREE("plain text") == "plain text"
    with pytest.raises(ValidationError, match="NUL characters are not allowed"):
        NUL_FREE("a\x00b")
