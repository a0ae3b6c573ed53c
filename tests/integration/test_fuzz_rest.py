"""Schema fuzzing of the REST API from its own OpenAPI document (schemathesis), against the real
stack: uvicorn + the gateway + the gRPC JobService on SQLite, authenticated with a real token.

Every operation of ``/openapi.json`` gets schema-valid requests (positive mode) and schema-violating
ones (negative mode), once with generated path ids and once with the ids of a real job and rule of
the caller. Whatever arrives, the answer must be the contract envelope with a contract code whose
HTTP status matches the error table, never a 5xx, and the server must be healthy afterwards with the
credit invariant intact.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from schemathesis.generation.case import Case
from schemathesis.schemas import APIOperation

from tests.support.invariants import check_invariants
from tests.support.live_rest import LiveRest, check_envelope, live_rest, ok, sign_up
from tests.support.stack import jpeg_bytes

pytestmark = pytest.mark.integration

Operation = APIOperation[Any, Any, Any, Any]

EXAMPLES_PER_MODE = 12
"""Per operation, per generation mode, per id source: 21 operations x 2 x 2 x 12 ~ 1000 requests."""

# Served forever while the job is open: only its refusal paths are fuzzed (generated ids).
STREAMING = {("GET", "/jobs/{job_id}/events")}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRest]:
    root = tmp_path_factory.mktemp("fuzz-rest")
    # Generated requests may carry `Prefer: wait=N`: a short cap keeps each answer within the
    # client's timeout (waiting itself is tested in test_prefer_wait.py).
    with live_rest(f"sqlite:///{root / 's3.db'}", root / "data", app_options={"prefer_wait_max_s": 1}) as live:
        yield live


def _operations(live: LiveRest) -> list[Operation]:
    document = httpx.get(f"{live.base_url}/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(document)
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    # The document itself is the one answer that is not an envelope.
    return [op for op in operations if op.path != "/openapi.json"]


def _real_ids(live: LiveRest, auth: dict[str, str]) -> dict[str, str]:
    """A job with its photos uploaded and a saved rule of the fuzzing user, so positive requests
    reach the service's state checks instead of stopping at NOT_FOUND."""
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        created = ok(http.post("/jobs", json={"preset": "interior", "item_count": 2}, headers=auth), 201)
        for target in created["upload_urls"]:
            ok(http.put(target["url"], content=jpeg_bytes(seed=target["idx"]), headers=target["headers"]))
        rule = ok(
            http.post(
                "/rules",
                json={"name": "r", "preset_id": "interior", "concepts": {"Wall": {"action": "blur"}}},
                headers=auth,
            ),
            201,
        )
    return {"job_id": created["job_id"], "rule_id": rule["rule_id"], "preset_id": "interior"}


def _fuzz(
    operation: Operation,
    mode: GenerationMode,
    base_url: str,
    auth: dict[str, str],
    path_ids: dict[str, str] | None,
    tally: Counter[str],
) -> None:
    names = {p["name"] for p in operation.definition.raw.get("parameters", []) if p.get("in") == "path"}
    fixed = {k: v for k, v in (path_ids or {}).items() if k in names} or None
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed)

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES_PER_MODE,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Case[Any]) -> None:
        if mode is GenerationMode.POSITIVE:
            # The caller's real token, so valid requests reach the service; negative mode keeps the
            # credentials schemathesis made up (missing, malformed, forged).
            case.headers = case.headers or {}  # type: ignore[assignment]
            case.headers.update(auth)
        try:
            response = case.call(base_url=base_url, timeout=10)
        except (requests.exceptions.InvalidHeader, UnicodeEncodeError, ValueError):
            tally["refused by the HTTP client"] += 1  # never left this process
            return
        tally["sent"] += 1
        assert response.status_code < 500, (case.method, case.formatted_path, response.status_code, response.text[:500])
        body = check_envelope(httpx.Response(response.status_code, content=response.content))
        tally[f"{response.status_code} {body['error']['code'] if body['error'] else 'ok'}"] += 1

    try:
        run()
    except Unsatisfiable:
        # Nothing in this operation can be made invalid (no parameters, no body): negative mode is empty.
        assert mode is GenerationMode.NEGATIVE, operation.label
        tally["operation modes with no possible case"] += 1


def test_every_operation_answers_the_envelope_and_never_5xx(served: LiveRest) -> None:
    with httpx.Client(base_url=served.base_url, timeout=30) as http:
        auth, _ = sign_up(http)
    ids = _real_ids(served, auth)
    tally: Counter[str] = Counter()
    operations = _operations(served)
    assert len(operations) >= 19
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, served.base_url, auth, None, tally)
            if (operation.method.upper(), operation.path) not in STREAMING:
                _fuzz(operation, mode, served.base_url, auth, ids, tally)
    print("REST fuzz:", json.dumps(dict(sorted(tally.items()))))
    assert tally["sent"] >= 500, tally
    # Both outcomes were reached: the fuzzer did not only bounce off validation.
    assert any(k.endswith(" ok") for k in tally) and tally["sent"] > sum(v for k, v in tally.items() if " ok" in k)

    with httpx.Client(base_url=served.base_url, timeout=30) as http:
        health: Any = ok(http.get("/health"))
        assert health["ok"] is True
        ok(http.get("/me", headers=auth))
    check_invariants(served.stack.db)
