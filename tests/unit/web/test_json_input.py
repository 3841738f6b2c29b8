"""Bounded JSON decoding (app/web/json_input.py): nesting, text no database stores, numbers no column
holds, and a chunked body's size."""
from __future__ import annotations

import io
import json

import pytest
from flask import Flask, request
from werkzeug.exceptions import RequestEntityTooLarge

from app.core.validation import NUL_MESSAGE
from app.web.errors import ApiError
from app.web.json_input import (CONSTANT_MESSAGE, FLOAT_MESSAGE, INTEGER_MESSAGE, MAX_DEPTH, SURROGATE_MESSAGE,
                                decode, read_body, unusable_fields)


def refusal(raw) -> ApiError:
    with pytest.raises(ApiError) as caught:
        decode(raw)
    return caught.value


@pytest.mark.parametrize("raw", ['{"a": [1, 2.5, "x", null, true]}', '[]', '"\\ud83d\\ude00"', '{"k": "[[[[["}',
                                 str(2**63 - 1), str(-2**63), "1e-320", '"\\\\u0000"'])
def test_ordinary_json_decodes_as_json_does(raw):
    assert decode(raw) == json.loads(raw)
    assert decode(raw.encode()) == json.loads(raw)


@pytest.mark.parametrize("opening, closing", [("[", "]"), ('{"a":', "}")])
def test_nesting_is_bounded_before_parsing(opening, closing):
    assert decode(opening * MAX_DEPTH + "1" + closing * MAX_DEPTH) is not None
    for depth in (MAX_DEPTH + 1, 1000, 100_000):  # 1,000 levels is past Python's recursion limit
        error = refusal(opening * depth + "1" + closing * depth)
        assert error.status == 400 and str(MAX_DEPTH) in error.message


def test_many_brackets_side_by_side_are_no_depth():
    assert len(decode("[" + "[{}]," * 10_000 + "[]]")) == 10_001


def test_brackets_inside_strings_are_text():
    deep_text = json.dumps({"a": "[" * 1000, "b": 'q\\"[' * 10})
    assert decode(deep_text)["a"] == "[" * 1000


@pytest.mark.parametrize("body, details", [
    ({"tag": "\ud800"}, {"tag": [SURROGATE_MESSAGE]}),
    ({"legs": [{"tag": "ok"}, {"tag": "x\udfff"}]}, {"legs": {"1": {"tag": [SURROGATE_MESSAGE]}}}),
    ({"secret": "a\x00b", "url": "\udc00"}, {"secret": [NUL_MESSAGE], "url": [SURROGATE_MESSAGE]}),
    (["\ud800"], {"0": [SURROGATE_MESSAGE]}),
])
def test_text_no_database_stores_is_named_by_its_field(body, details):
    error = refusal(json.dumps(body))  # json.dumps escapes them: \ud800, \u0000
    assert (error.status, error.details) == (422, details)


def test_a_bad_key_is_a_schema_message():
    assert refusal('{"ta\\ud800g": 1}').details == {"_schema": [SURROGATE_MESSAGE]}
    assert unusable_fields({"ok": "\x00", "k\x00": 1}) == {"ok": [NUL_MESSAGE], "_schema": [NUL_MESSAGE]}


def test_the_message_says_where():
    assert refusal('{"legs": [{"tag": "\\ud800"}]}').message == f"legs.0.tag: {SURROGATE_MESSAGE}"


@pytest.mark.parametrize("number, message", [
    ("9" * 5000, INTEGER_MESSAGE),   # past int()'s 4,300 digits: a ValueError from json itself
    ("-" + "9" * 20, INTEGER_MESSAGE),
    (str(2**63), INTEGER_MESSAGE),
    (str(-2**63 - 1), INTEGER_MESSAGE),
    ("1e400", FLOAT_MESSAGE),
    ("-1" + "0" * 400 + ".5", FLOAT_MESSAGE),
    ("NaN", CONSTANT_MESSAGE),
    ("-Infinity", CONSTANT_MESSAGE),
])
def test_numbers_no_column_holds(number, message):
    error = refusal('{"instrument_token": %s}' % number)
    assert (error.status, error.details) == (422, {"instrument_token": [message]})


@pytest.mark.parametrize("raw", [b"", b"{", b"[1,]", b'{"a": "\xed\xa0\x80"}', b"\xff"])
def test_what_is_not_json_stays_a_json_error(raw):
    """For the caller to answer as not JSON (webargs: 400); an empty body has doc "" (no body)."""
    with pytest.raises(json.JSONDecodeError) as caught:
        decode(raw)
    assert (caught.value.doc == "") == (raw == b"")


# --- read_body ---------------------------------------------------------------------------------

LIMIT = 1000
app = Flask(__name__)
app.config["MAX_CONTENT_LENGTH"] = LIMIT


def body_of(data: bytes, chunked: bool) -> bytes:
    """read_body of a request as the WSGI servers pass a chunked one (no Content-Length, the stream
    terminated by the server) or one with its Content-Length."""
    environ = {"wsgi.input_terminated": True} if chunked else {}
    headers = {"Transfer-Encoding": "chunked"} if chunked else {}
    builder = {"input_stream": io.BytesIO(data)} if chunked else {"data": data}
    with app.test_request_context("/", method="POST", headers=headers, environ_overrides=environ, **builder):
        if chunked:
            assert request.content_length is None
        return read_body(request)


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_up_to_the_limit_is_read_whole(chunked):
    assert body_of(b"x" * LIMIT, chunked) == b"x" * LIMIT
    assert body_of(b"", chunked) == b""


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("size", [LIMIT + 1, 4 * LIMIT])
def test_a_body_past_the_limit_is_too_large_however_it_is_framed(chunked, size):
    with pytest.raises(RequestEntityTooLarge):
        body_of(b"x" * size, chunked)
