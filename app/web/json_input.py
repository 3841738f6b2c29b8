"""Request bodies as the API reads them: whole, bounded, and decoded into JSON the service can store.

- `read_body`: the body read once, however it is framed. werkzeug refuses a Content-Length above
  MAX_CONTENT_LENGTH but cuts a chunked body at the limit and carries on with what it read; here
  a chunked body past the limit is a 413 as well.
- `decode` (and `json_body`, for routes without a schema): JSON refused before it can hurt —
  400 for nesting deeper than MAX_DEPTH (checked before parsing: the parser recurses, and a
  thousand levels exhaust Python's stack); 422, naming the field, for text no database stores
  (NUL, a lone surrogate such as "\\ud800") and numbers no column holds (an integer beyond 64
  bits, a float beyond double range, NaN, Infinity). Plain syntax errors stay
  json.JSONDecodeError, for the caller to answer (webargs: 400).
"""
from __future__ import annotations

import json
import math
import re
from itertools import accumulate

from werkzeug.exceptions import RequestEntityTooLarge

from app.core.validation import NUL_MESSAGE
from app.web.errors import ApiError

MAX_DEPTH = 64
INTEGER_RANGE = (-2**63, 2**63 - 1)   # a BIGINT column's
INTEGER_DIGITS = 19                   # the most digits that range has
SURROGATE_MESSAGE = "lone UTF-16 surrogates (\\ud800-\\udfff) are not text"
INTEGER_MESSAGE = "integer out of range (64-bit signed)"
FLOAT_MESSAGE = "number out of range"
CONSTANT_MESSAGE = "NaN and Infinity are not JSON numbers"

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)  # brackets inside a string are text
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_NESTING = {"[": 1, "{": 1, "]": -1, "}": -1}
_SURROGATE = re.compile("[\ud800-\udfff]")  # json joins escaped pairs, so any left is alone
_SUSPECT_TEXT = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")  # only escapes can carry NUL or surrogates


# Routes allowed more than MAX_CONTENT_LENGTH (endpoint → bytes), set by the route's module: a bulk
# subscription of three accounts' whole capacity (27,000 tokens) is ~270 kB of JSON.
LARGER_BODIES: dict[str, int] = {}


def read_body(request) -> bytes:
    """The whole body (cached on the request); RequestEntityTooLarge past MAX_CONTENT_LENGTH (or the
    route's LARGER_BODIES allowance)."""
    larger = LARGER_BODIES.get(request.endpoint)
    if larger and request.max_content_length is not None and larger > request.max_content_length:
        request.max_content_length = larger
    limit = request.max_content_length
    streamed = request.content_length is None
    if limit is not None and streamed:
        # One byte past the limit tells a chunked body that fills it from one that goes beyond.
        request.max_content_length = limit + 1
    try:
        body = request.get_data(cache=True)
    finally:
        if limit is not None and streamed:
            request.max_content_length = limit
    if limit is not None and len(body) > limit:
        raise RequestEntityTooLarge()
    return body


def json_body(request, force: bool = False):
    """The request's JSON body, or None when it has none: not declared JSON (unless `force`), empty,
    or not JSON at all. What `decode` refuses is an ApiError."""
    if not (force or request.is_json):
        return None
    try:
        return decode(read_body(request))
    except json.JSONDecodeError:
        return None


def decode(raw: bytes | str):
    """A JSON body → its value; ApiError for what the service refuses, json.JSONDecodeError for what
    is not JSON (`doc` is "" for an empty body, as json and webargs expect)."""
    text = _text(raw)
    if _deeper_than(text, MAX_DEPTH):
        raise ApiError(400, f"JSON nested deeper than {MAX_DEPTH} levels",
                       details={"_schema": [f"at most {MAX_DEPTH} levels of arrays and objects"]})
    numbers = _NumberHooks()
    value = json.loads(text, parse_int=numbers.integer, parse_float=numbers.float, parse_constant=numbers.constant)
    if numbers.refused or _SUSPECT_TEXT.search(text):
        problems = unusable_fields(value)
        if problems:
            raise ApiError(422, _summary(problems), details=problems)
    return value


def _text(raw: bytes | str) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")  # strict: encoded surrogates and stray bytes are not UTF-8
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError(f"not UTF-8: {exc.reason}", raw.decode("latin-1"), exc.start) from None


def _deeper_than(text: str, limit: int) -> bool:
    if text.count("[") + text.count("{") <= limit:  # most bodies: too few brackets to nest that deep
        return False
    brackets = _NOT_BRACKETS.sub("", _STRING.sub("", text))
    return max(accumulate(map(_NESTING.__getitem__, brackets)), default=0) > limit  # in C, no Python loop


class _Unusable:
    """A number the service cannot hold, left in its place so the check can name its field."""

    def __init__(self, message: str) -> None:
        self.message = message


class _NumberHooks:
    """json.loads' number hooks: a number no column holds becomes an _Unusable in its place."""

    def __init__(self) -> None:
        self.refused = False

    def _refuse(self, message: str) -> _Unusable:
        self.refused = True
        return _Unusable(message)

    def integer(self, digits: str):
        if len(digits.lstrip("-")) > INTEGER_DIGITS:  # before int(): it refuses 4,300 digits with a ValueError
            return self._refuse(INTEGER_MESSAGE)
        value = int(digits)
        return value if INTEGER_RANGE[0] <= value <= INTEGER_RANGE[1] else self._refuse(INTEGER_MESSAGE)

    def float(self, digits: str):
        value = float(digits)
        return self._refuse(FLOAT_MESSAGE) if math.isinf(value) else value

    def constant(self, _name: str):
        return self._refuse(CONSTANT_MESSAGE)


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return NUL_MESSAGE
    if _SURROGATE.search(text):
        return SURROGATE_MESSAGE
    return None


def unusable_fields(value) -> dict:
    """Where a decoded document holds what the service cannot store, as marshmallow-style messages
    ({} if nowhere): `{"legs": [{"tag": "\\ud800"}]}` → `{"legs": {"0": {"tag": [SURROGATE_MESSAGE]}}}`.
    A bad key is reported under `_schema`: it cannot be echoed back."""
    if isinstance(value, _Unusable):
        return {"_value": [value.message]}
    if isinstance(value, str):
        problem = _text_problem(value)
        return {"_value": [problem]} if problem else {}
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((str(index), item) for index, item in enumerate(value))
    else:
        return {}
    problems: dict = {}
    for key, item in items:
        key_problem = _text_problem(key)
        if key_problem:
            problems.setdefault("_schema", [key_problem])
            continue
        found = unusable_fields(item)
        if found:
            problems[key] = found.get("_value", found)
    return problems


def _summary(problems: dict, path: str = "") -> str:
    """The first problem, after its field's dotted path: `legs.0.tag: lone UTF-16 surrogates …`."""
    field, found = next(iter(problems.items()))
    if field not in ("_value", "_schema"):
        path = f"{path}.{field}" if path else field
    if isinstance(found, dict):
        return _summary(found, path)
    return f"{path}: {found[0]}" if path else found[0]
