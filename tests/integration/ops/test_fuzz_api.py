"""Schemathesis over every operation of the app's own /openapi.json (in-process, WSGI).

Each operation is fuzzed with valid admin auth (schema-valid and schema-violating
inputs), with a key of a non-admin account, and with a missing and an invalid key.
Every answer must be: no 5xx; JSON error shape `{"error": {"code", "message",
"details"}}` for every 4xx; the documented response schema where one is documented;
401 without a valid key on every non-public operation. All failures are collected,
printed with a reproducing request, and fail the test at the end.

Bounded and reproducible: hypothesis derandomized, a few examples per operation and
mode (FUZZ_EXAMPLES scales them), no shrinking, no example database.

`test_hostile_bodies_on_every_json_route` takes the operations with a JSON body and sends valid
bodies (as schemathesis makes them) with one hostile part put in at a drawn place: nesting past the
decoder's depth, lone surrogates (in a value or a key), integers past 64 bits (5,000 digits among
them), floats past double range, NaN and Infinity, NUL; each with a Content-Length or chunked, and
bodies past MAX_CONTENT_LENGTH chunked. Every answer must be a 4xx in the error shape, and
nothing may be stored.
"""
from __future__ import annotations

import io
import json
import os
import time
from collections import Counter
from dataclasses import dataclass

import pytest
import schemathesis
from sqlalchemy import func, select
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core import NotSet
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from app.web.json_input import MAX_DEPTH
from tests.support.accounts import retire

# (name, key role or None for no key / "invalid", generation mode, examples per operation)
SCALE = float(os.environ.get("FUZZ_EXAMPLES", "1"))
MODES = [
    ("admin", "admin", GenerationMode.POSITIVE, 25),
    ("admin-negative", "admin", GenerationMode.NEGATIVE, 15),
    ("account-key", "primary", GenerationMode.POSITIVE, 5),
    ("no-key", None, GenerationMode.POSITIVE, 3),
    ("invalid-key", "invalid", GenerationMode.POSITIVE, 3),
]
# Operations anyone may call (app.PUBLIC_ENDPOINTS, plus those the spec marks `security: []`).
PUBLIC_PATHS = {"/health", "/postback/kite"}
# Paths the fuzzer must not destroy: the accounts other tests of the session trade on.
PINNED_ACCOUNT = "primary"
# Never pinned: the kill switch would halt the account (and flatten it) for the rest of the session.
UNPINNED_OPERATIONS = {"POST /accounts/{account_id}/kill-switch"}
TIME_BUDGET_S = 85.0


@dataclass
class Finding:
    operation: str
    mode: str
    kind: str
    request: str
    status: int
    body: str


def _error_shape_problem(content: bytes) -> str | None:
    try:
        body = json.loads(content or b"")
    except ValueError:
        return "error body is not JSON"
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "no top-level `error` object"
    if not isinstance(error.get("code"), str) or not isinstance(error.get("message"), str):
        return "`error.code` / `error.message` not strings"
    if not isinstance(error.get("details", {}), dict):
        return "`error.details` not an object"
    return None


def _request_text(case, headers: dict) -> str:
    body = None if isinstance(case.body, NotSet) else case.body
    parts = [f"{case.method.upper()} {case.formatted_path}"]
    if case.query:
        parts.append(f"query={case.query!r}")
    sent = {k: v for k, v in {**(case.headers or {}), **headers}.items()}
    if "X-API-Key" in sent:
        sent["X-API-Key"] = "<" + str(sent["X-API-Key"])[:12] + ">"
    if sent:
        parts.append(f"headers={sent!r}")
    if body is not None:
        parts.append(f"body={json.dumps(body, default=str)[:400]}")
    return ascii(" ".join(parts))[1:-1]


@pytest.fixture(autouse=True)
def retire_fuzzed_accounts(db_schema):
    """Accounts the fuzzer made (POST /accounts with any credentials) are retired after it: /health checks
    every active account at the broker, and one with made-up credentials is "down" for the tests after."""
    from app.core.db import session_scope
    from app.models import Account

    def active() -> set[str]:
        with session_scope() as session:
            return set(session.scalars(select(Account.id).where(Account.active.is_(True))))
    before = active()
    yield
    retire(active() - before)


@pytest.fixture(scope="module")
def schema(app, accounts, instruments):
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


def test_fuzz_every_operation(schema, headers, capsys):
    keys = {"admin": headers["admin"]["X-API-Key"], "primary": headers["primary"]["X-API-Key"],
            "invalid": "not-a-valid-key-0000"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 3
    findings: dict[tuple, Finding] = {}
    cases: Counter = Counter()
    statuses: Counter = Counter()
    no_negative: set[str] = set()
    started = time.monotonic()

    def record(op_label, mode, kind, case, sent_headers, response):
        key = (op_label, mode, kind)
        if key not in findings:
            findings[key] = Finding(op_label, mode, kind, _request_text(case, sent_headers),
                                    response.status_code,
                                    ascii(response.content[:300].decode("utf-8", "replace"))[1:-1])

    for operation in operations:
        op_label = f"{operation.method.upper()} {operation.path}"
        public = operation.path in PUBLIC_PATHS or operation.definition.raw.get("security") == []
        for mode, role, generation_mode, examples in MODES:
            strategy = operation.as_strategy(generation_mode=generation_mode)

            @settings(max_examples=max(1, int(examples * SCALE)), derandomize=True, database=None,
                      deadline=None, phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(data=st.data())
            def run(data):
                case = data.draw(strategy)
                if "account_id" in (case.path_parameters or {}) and op_label not in UNPINNED_OPERATIONS \
                        and data.draw(st.booleans(), label="pin account"):
                    case.path_parameters["account_id"] = PINNED_ACCOUNT
                sent = {"X-API-Key": keys[role]} if role else {}
                if case.headers:
                    case.headers = {k: v for k, v in case.headers.items() if k.lower() != "x-api-key"}
                response = case.call(headers=sent)
                if op_label == "PUT /accounts/{account_id}/limits":
                    _remove_risk_limits()  # limits the fuzzer set would refuse other tests' orders (primary's)
                cases[(op_label, mode)] += 1
                statuses[response.status_code // 100] += 1
                if response.status_code >= 500:
                    record(op_label, mode, "5xx", case, sent, response)
                if 400 <= response.status_code < 600:
                    problem = _error_shape_problem(response.content)
                    if problem:
                        record(op_label, mode, f"error shape: {problem}", case, sent, response)
                # A plain GET on a WebSocket route is not a handshake: 400 before auth is fine there.
                not_a_handshake = "/ws/" in operation.path and operation.path != "/ws/status" \
                    and response.status_code == 400
                if role in (None, "invalid") and not public and response.status_code != 401 and not not_a_handshake:
                    record(op_label, mode, f"auth: {response.status_code} without a valid key", case, sent, response)
                try:
                    case.validate_response(response, checks=[response_schema_conformance, content_type_conformance],
                                           headers=sent)
                except (Failure, FailureGroup) as exc:  # schemathesis' Failure / FailureGroup
                    titles = sorted({getattr(f, "title", type(f).__name__)
                                     for f in getattr(exc, "exceptions", [exc])})
                    record(op_label, mode, "schema: " + "; ".join(titles), case, sent, response)
                try:
                    case.validate_response(response, checks=[not_a_server_error], headers=sent)
                except (Failure, FailureGroup):
                    pass  # already recorded as 5xx above (the check also catches it)

            try:
                run()
            except Unsatisfiable:
                # Nothing in the operation can be made schema-invalid (no parameters, no body).
                assert generation_mode is GenerationMode.NEGATIVE, op_label
                no_negative.add(op_label)
    elapsed = time.monotonic() - started

    by_kind = Counter(kind.split(":")[0] for (_, _, kind) in findings)
    with capsys.disabled():
        print(f"\nfuzz: {len(operations)} operations, {sum(cases.values())} cases, "
              f"({len(no_negative)} without schema-invalid inputs), {len(findings)} distinct failures {dict(by_kind)}, "
              f"responses by class {dict(sorted((f'{k}xx', v) for k, v in statuses.items()))}, {elapsed:.1f} s")
        # Error answers that have the service's error shape but contradict the documented error
        # schema (flask-smorest's default `Error`) are one cause: list them compactly.
        error_schema = sorted({f.operation for f in findings.values()
                               if f.kind.startswith("schema") and f.status >= 400 and "error" in f.body[:10]})
        if error_schema:
            print(f"  [schema: error answers contradict the documented error schema] {len(error_schema)} operations: "
                  + ", ".join(error_schema))
        for finding in sorted(findings.values(), key=lambda f: (f.kind != "5xx", f.operation, f.mode)):
            if finding.kind.startswith("schema") and finding.status >= 400 and "error" in finding.body[:10]:
                continue
            print(f"  [{finding.kind}] {finding.operation} ({finding.mode}) -> {finding.status}\n"
                  f"      request: {finding.request}\n      response: {finding.body!r}")
    assert elapsed < TIME_BUDGET_S * max(1.0, SCALE), f"fuzzing took {elapsed:.0f} s"
    assert all(cases[(label, mode)] or (mode == "admin-negative" and label in no_negative)
               for label in (f"{op.method.upper()} {op.path}" for op in operations) for mode, *_ in MODES), \
        "an operation/mode produced no cases"
    assert not findings, f"{len(findings)} distinct fuzzing failures (printed above)"


# --- hostile bodies -----------------------------------------------------------------------------------

# A hostile part, as raw JSON text put in place of a value (HOSTILE_KEYS: as a key).
HOSTILE = {
    "nested a thousand deep": "[" * 1000 + "]" * 1000,
    "objects nested a thousand deep": '{"a":' * 1000 + "0" + "}" * 1000,
    "nested past the limit": "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),
    "lone surrogate": '"\\ud800"',
    "surrogate in text": '"ok\\udfff"',
    "surrogates in a list": '["\\udbff", "x"]',
    "5,000-digit integer": "9" * 5000,
    "integer past 64 bits": str(2**64),
    "negative integer past 64 bits": str(-2**63 - 1),
    "float past double": "1e400",
    "NaN": "NaN",
    "-Infinity": "-Infinity",
    "NUL": '"a\\u0000b"',
}
HOSTILE_KEYS = {"key with a lone surrogate": '"\\ud800"', "key with a NUL": '"k\\u0000"'}
PLACEHOLDER = "__hostile__"
PINNED_PATH_VALUES = {"account_id": PINNED_ACCOUNT}
HOSTILE_EXAMPLES = 40  # per operation (scaled by FUZZ_EXAMPLES)


def _places(value, path=()):
    """Every place in a JSON value a hostile part can go: the value itself and, within it, each member."""
    yield path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from _places(item, (*path, key))


def _at(value, path):
    for step in path:
        value = value[step]
    return value


def _replaced(value, path, new):
    """`value` with what is at `path` replaced by `new` (copies along the path; the rest shared)."""
    if not path:
        return new
    head, *rest = path
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = _replaced(value[head], rest, new)
    return copy


def _hostile_text(body, place, part: str) -> str:
    """`body` as JSON with the hostile part at `place`: as the value there, or for a hostile key, as a
    key of the object there (of an object around the body when what is there is no object)."""
    if part in HOSTILE_KEYS:
        target = _at(body, place)
        document = (_replaced(body, place, {PLACEHOLDER: 1, **target}) if isinstance(target, dict)
                    else {PLACEHOLDER: 1, "body": body})
        return json.dumps(document).replace(f'"{PLACEHOLDER}"', HOSTILE_KEYS[part], 1)
    return json.dumps(_replaced(body, place, PLACEHOLDER)).replace(f'"{PLACEHOLDER}"', HOSTILE[part], 1)


def _send(client, method: str, path: str, raw: bytes, headers: dict, chunked: bool):
    """With a Content-Length, or as a WSGI server passes a chunked body: no length, the stream ended by it."""
    if not chunked:
        return client.open(path, method=method, data=raw, content_type="application/json", headers=headers)
    return client.open(path, method=method, input_stream=io.BytesIO(raw), content_type="application/json",
                       headers={**headers, "Transfer-Encoding": "chunked"},
                       environ_overrides={"wsgi.input_terminated": True})


def _remove_risk_limits() -> None:
    from sqlalchemy import delete

    from app.core.db import session_scope
    from app.models import AccountLimits

    with session_scope() as session:
        session.execute(delete(AccountLimits).where(AccountLimits.account_id == PINNED_ACCOUNT))


def _stored_rows() -> dict:
    """What a request could have stored (not a batch's rollback orders, which a worker may still be placing)."""
    from app.core.db import session_scope
    from app.models import Account, Batch, Order, Subscription, Webhook

    with session_scope() as session:
        counts = {model.__tablename__: session.scalar(select(func.count()).select_from(model))
                  for model in (Account, Batch, Subscription, Webhook)}
        counts["orders"] = session.scalar(select(func.count()).select_from(Order).where(Order.role != "rollback"))
        return counts


def _json_operations(schema):
    operations = [result.ok() for result in schema.get_all_operations()]
    return [op for op in operations if "application/json" in
            (op.definition.raw.get("requestBody") or {}).get("content", {})]


def test_hostile_bodies_on_every_json_route(schema, app, headers, capsys):
    client = app.test_client()
    operations = _json_operations(schema)
    assert len(operations) >= 10, [f"{op.method} {op.path}" for op in operations]
    from app.web.json_input import LARGER_BODIES

    limit = app.config["MAX_CONTENT_LENGTH"]
    findings: dict[tuple, str] = {}
    sent: Counter = Counter()
    before = _stored_rows()
    started = time.monotonic()

    def check(label: str, kind: str, response, expected=range(400, 500)) -> None:
        sent[kind] += 1
        problem = None if response.status_code in expected else f"status {response.status_code}"
        problem = problem or _error_shape_problem(response.get_data())
        if problem and (label, kind) not in findings:
            findings[(label, kind)] = f"{problem}: {ascii(response.get_data()[:200])}"

    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        path = operation.path
        for name in [p.name for p in operation.path_parameters]:
            path = path.replace("{" + name + "}", PINNED_PATH_VALUES.get(name, "0123456789abcdef0123456789abcdef"))
        method = operation.method.upper()
        strategy = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
        bodies = []

        def send_hostile(body, place, part, chunked):
            raw = _hostile_text(body, place, part).encode()
            response = _send(client, method, path, raw, headers["admin"], chunked)
            check(label, f"{part}{' (chunked)' if chunked else ''} at {'.'.join(map(str, place)) or 'the top'}",
                  response)

        @settings(max_examples=max(1, int(HOSTILE_EXAMPLES * SCALE)), derandomize=True, database=None,
                  deadline=None, phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(data=st.data())
        def attack(data):
            case = data.draw(strategy)
            body = None if isinstance(case.body, NotSet) else case.body
            place = data.draw(st.sampled_from(list(_places(body))), label="place")
            part = data.draw(st.sampled_from(sorted({**HOSTILE, **HOSTILE_KEYS})), label="hostile part")
            chunked = data.draw(st.booleans(), label="chunked")
            bodies.append(body)
            send_hostile(body, place, part, chunked)

        attack()
        # Every hostile part, either way framed, at least once: in the first member of a body drawn above.
        body = bodies[0]
        first_member = (next(iter(body)),) if isinstance(body, dict) and body else ()
        for part in [*HOSTILE, *HOSTILE_KEYS]:
            for chunked in (False, True):
                send_hostile(body, () if part in HOSTILE_KEYS else first_member, part, chunked)
        # Past the size limit: blanks after a body, so that a body cut at the limit would still be JSON.
        endpoint, _ = app.url_map.bind("localhost").match(path, method=method)
        allowed = LARGER_BODIES.get(endpoint, limit)  # a route may take more (app/web/json_input.py)
        padded = json.dumps({"padding": True}).encode() + b" " * (allowed + 1)
        check(label, "past MAX_CONTENT_LENGTH (chunked)",
              _send(client, method, path, padded, headers["admin"], chunked=True), expected=(413,))
        check(label, "past MAX_CONTENT_LENGTH",
              _send(client, method, path, padded, headers["admin"], chunked=False), expected=(413,))
    elapsed = time.monotonic() - started

    with capsys.disabled():
        print(f"\nhostile bodies: {len(operations)} JSON operations, {sum(sent.values())} requests, "
              f"{len(findings)} failures, {elapsed:.1f} s")
        for (label, kind), problem in sorted(findings.items()):
            print(f"  [{kind}] {label}: {problem}")
    assert not findings, f"{len(findings)} hostile bodies not refused with a 4xx in the error shape (printed above)"
    assert _stored_rows() == before, "a hostile body stored something"
