"""The one NUL policy: no database or parser downstream accepts a NUL character in text, so a
request that carries one is refused before it reaches either.

- In the raw request — the path, the query (each parameter's first value), the body however it
  is framed (Content-Length or chunked; a NUL byte or a JSON `\\u0000`): 400 before any route runs
  (`raw_request_has_nul`, from the app's before-request hook, which reads the body whole).
- Should one reach a JSON body's decoding all the same, the decoder refuses it with 422 naming the
  field, as it does every text no database stores (app.web.json_input).
- `NUL_FREE` on the text fields of the request schemas says so in the OpenAPI description.
"""
from __future__ import annotations

from marshmallow import validate

NUL_MESSAGE = "NUL characters are not allowed"
NUL_FREE = validate.Regexp(r"^[^\x00]*$", error=NUL_MESSAGE)


def raw_request_has_nul(path: str, query_values, body: bytes) -> bool:
    """A NUL in the path, one of the query values or the body (raw, or escaped in JSON)."""
    return "\x00" in path or any("\x00" in v for v in query_values) or b"\x00" in body or b"\\u0000" in body
