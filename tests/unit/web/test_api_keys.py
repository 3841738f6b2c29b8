"""API keys: the API_KEYS specification parsed into principals, and what each may access."""
from app.web.auth import find_principal, parse_api_keys


def test_parse_api_keys_spec():
    keys = parse_api_keys("k1=primary,secondary; k2=* ;bad;=x")
    assert keys == {"k1": frozenset({"primary", "secondary"}), "k2": frozenset({"*"})}
    assert find_principal("k2", keys).is_admin
    assert find_principal("k1", keys).may_access("secondary")
    assert not find_principal("k1", keys).may_access("other")
    assert find_principal("k3", keys) is None and find_principal("", keys) is None
