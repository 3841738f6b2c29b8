"""The one NUL policy: no database or parser downstream accepts a NUL character in text."""
from __future__ import annotations

from marshmallow import validate

NUL_FREE = validate.Regexp(r"^[^\x00]*$", error="NUL characters are not allowed")


def nul_fields(value, _key: str | None = None) -> dict:
    """Where a JSON document holds a NUL character, as marshmallow-style messages ({} if nowhere).

    `{"legs": [{"tag": "a\\x00"}]}` → `{"legs": {"0": {"tag": ["NUL characters are not allowed"]}}}`.
    """
    message = ["NUL characters are not allowed"]
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
