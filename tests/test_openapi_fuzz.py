"""Every route of /openapi.json under requests generated from the document itself (schemathesis), valid and
invalid, sent to the real API (PostgreSQL, Kafka) with a site key and the admin token, and with no credentials:
no server error, and every answer (status, content type, body) is one the document declares.

``NOTIFY_FUZZ_EXAMPLES`` bounds the examples per route and credential set (``scripts/test.sh``: a few dozen;
``task fuzz``: many more)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from functions.api.openapi import openapi_document
from tests.conftest import ADMIN_HEADERS, register

EXAMPLES = int(os.environ.get("NOTIFY_FUZZ_EXAMPLES", "30"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]

# A request the document forbids must be refused with one of the API's 4xx (413 included: too large is a refusal).
REFUSALS = [400, 401, 403, 404, 405, 409, 413, 415, 422, 429]
# Credentials are the test's (a live site key, the admin token, or none), not generated.
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}},
        "generation": {"with-security-parameters": False},
    }
)
# /bulk validates each item on its own: an invalid item is rejected in a 202's results, by design (its tests:
# tests/test_accepting.py), so only the other checks hold it.
PER_ITEM = {"/api/v1/notifications/bulk"}
schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)


class Credentials:
    """A registered site's key (kept current: a generated call may rotate it) and the admin token."""

    def __init__(self, site: dict[str, Any]) -> None:
        self.site_key = site["api_key"]

    def headers(self) -> dict[str, str]:
        return {"X-Site-Key": self.site_key, **ADMIN_HEADERS}

    def follow(self, path: str, response: requests.Response) -> None:
        if path == "/api/v1/site/rotate-key" and response.status_code == 200:
            self.site_key = response.json()["api_key"]


@pytest.fixture(scope="module")
def credentials(api_url: str) -> Credentials:
    with httpx.Client(base_url=api_url, timeout=30) as client:
        return Credentials(register(client))


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        yield http


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_generated_requests_get_documented_answers(
    case: Any, api_url: str, credentials: Credentials, session: requests.Session
) -> None:
    checks = [c for c in CHECKS if not (c is negative_data_rejection and case.operation.path in PER_ITEM)]
    with_both = case.call(base_url=api_url, session=session, headers=credentials.headers(), timeout=30)
    case.validate_response(with_both, checks=checks)
    credentials.follow(case.operation.path, with_both)
    without = case.call(base_url=api_url, session=session, timeout=30)
    case.validate_response(without, checks=checks)
