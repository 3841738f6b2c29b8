"""Schemathesis over every operation of the app's own /openapi.json (in-process, WSGI).

Each operation is fuzzed with valid admin auth (schema-valid and schema-violating
inputs), with a key of a non-admin account, and with a missing and an invalid key.
Every answer must be: no 5xx; JSON error shape `{"error": {"code", "message",
"details"}}` for every 4xx; the documented response schema where one is documented;
401 without a valid key on every non-public operation. All failures are collected,
printed with a reproducing request, and fail the test at the end.

Bounded and reproducible: hypothesis derandomized, a few examples per operation and
mode (FUZZ_EXAMPLES scales them), no shrinking, no example database.
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core import NotSet
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

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
TIME_BUDGET_S = 85.0


@dataclass
class Finding:
    operation: str
    mode: str
    kind: str
    request: str
    status: int
    body: str


def _error_shape_problem(response) -> str | None:
    try:
        body = json.loads(response.content or b"")
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
                if "account_id" in (case.path_parameters or {}) and data.draw(st.booleans(), label="pin account"):
                    case.path_parameters["account_id"] = PINNED_ACCOUNT
                sent = {"X-API-Key": keys[role]} if role else {}
                if case.headers:
                    case.headers = {k: v for k, v in case.headers.items() if k.lower() != "x-api-key"}
                response = case.call(headers=sent)
                cases[(op_label, mode)] += 1
                statuses[response.status_code // 100] += 1
                if response.status_code >= 500:
                    record(op_label, mode, "5xx", case, sent, response)
                if 400 <= response.status_code < 600:
                    problem = _error_shape_problem(response)
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
