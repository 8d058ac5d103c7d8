"""Fuzz the served OpenAPI schema with schemathesis (issue 2 §12, DESIGN §3: the schema is the contract).

Every operation of the schema gets a bounded, derandomized set of generated requests (valid
and invalid), sent over HTTP to the real server with a valid key of a fresh org. Each response
must not be a 5xx, must use a status code the schema documents, and must match the documented
body schema.

Schemathesis builds its pytest parametrization at collection time, before the session's server
exists (and its lazy `from_fixture` loader does not work with pytest 9), so the schema is taken
from the app object; `test_fuzzed_schema_is_the_served_one` checks it is exactly what
GET /openapi.json serves.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from runyard.config import Settings
from runyard.server.app import create_app



def error_envelope(ctx, response, case) -> None:
    """DESIGN invariant 8: every 4xx carries `{"error": {"code": str, "message": str}}`."""
    if 400 <= response.status_code < 500:
        error = response.json().get("error")
        assert isinstance(error, dict), f"4xx without the error envelope: {response.text[:200]}"
        assert isinstance(error.get("code"), str) and isinstance(error.get("message"), str), response.text[:200]


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          error_envelope]

OPENAPI = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:", api_key="unused")).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)


@pytest.fixture(scope="module")
def fuzz_headers(server) -> dict[str, str]:
    return server.headers(server.create_key(f"fuzz-{uuid.uuid4().hex[:8]}"))


def test_fuzzed_schema_is_the_served_one(server):
    served = httpx.get(f"{server.base_url}/openapi.json")
    assert served.status_code == 200
    assert served.json() == OPENAPI


def _resolve(ref_or_schema: dict) -> dict:
    ref = ref_or_schema.get("$ref")
    return OPENAPI["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else ref_or_schema


def test_schema_documents_auth_and_error_responses():
    """The contract tells clients about the bearer key, the 401/404 answers and the error body."""
    schemes = OPENAPI.get("components", {}).get("securitySchemes", {})
    assert any(s.get("type") == "http" and s.get("scheme", "").lower() == "bearer" for s in schemes.values()), schemes
    for path, item in OPENAPI["paths"].items():
        if not path.startswith("/v1"):
            continue
        for method, op in item.items():
            where = f"{method.upper()} {path}"
            assert "401" in op["responses"], where
            if "{" in path:
                assert "404" in op["responses"], where
            body = op["responses"]["422"]["content"]["application/json"]["schema"]
            assert "error" in _resolve(body).get("properties", {}), f"{where}: 422 is documented as {body}"


@settings(
    max_examples=15,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@schema.parametrize()
def test_api_conforms_to_its_schema(case, server, fuzz_headers):
    if isinstance(case.body, dict) and case.body.get("stream") is True:
        case.body["stream"] = False  # an SSE response would stream until the run ends
    case.call_and_validate(base_url=server.base_url, headers=fuzz_headers, checks=CHECKS, timeout=10)
