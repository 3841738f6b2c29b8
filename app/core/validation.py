"""The one NUL policy: no database or parser downstream accepts a NUL character in text, so a
request that carries one is refused before it reaches either.

- In the raw request — the path, the query (each parameter's first value), a body sent with
  its Content-Length (a NUL byte or a JSON `\\u0000`): 400 before any route runs
  (`raw_request_has_nul`, from the app's before-request hook).
- In a JSON body streamed without a Content-Length, which only shows once parsed: 422 naming
  the field (`nul_fields`, from the API's body parser); the broker's postback, which has no
  schema, answers 400 naming the field.
- `NUL_FREE` on the text fields of the request schemas says so in the OpenAPI description.
"""
from __future__ import annotations

from marshmallow import validate

NUL_MESSAGE = "NUL characters are not allowed"
NUL_FREE = validate.Regexp(r"^[^\x00]*$", error=NUL_MESSAGE)


def raw_request_has_nul(path: str, query_values, body: bytes) -> bool:
    """A NUL in the path, one of the query values or the body (raw, or escaped in JSON)."""
    return "\x00" in path or any("\x00" in v for v in query_values) or b"\x00" in body or b"\\u0000" in body


def nul_fields(value) -> dict:
    """Where a JSON document holds a NUL character, as marshmallow-style messages ({} if nowhere).

    `{"legs": [{"tag": "a\\x00"}]}` → `{"legs": {"0": {"tag": ["NUL characters are not allowed"]}}}`.
    """
    message = [NUL_MESSAGE]
    if isinstance(value, str):
        return {"_value": message} if "\x00" in value else {}
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        return {}
    errors: dict = {}
    for key, item in items:
        key = str(key)
        if "\x00" in key:
            errors.setdefault("_schema", message)
            continue
        found = nul_fields(item)
        if found:
            errors[key] = found.get("_value", found)
    return errors
