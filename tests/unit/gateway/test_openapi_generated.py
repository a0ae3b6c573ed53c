"""The committed OpenAPI document: valid by a third-party validator, fresh, and true to the codec."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from applier import templates
from gateway_rest.codec import encode
from gateway_rest.openapi import openapi_document
from protos.s3.v1 import jobs_pb2 as jpb
from protos.s3.v1 import types_pb2 as pb
from server.contract import CONTENT_TYPES
from server.plans import PLANS
from server.service.webhooks import EVENT_TYPES
from server.wire_enums import WebhookDeliveryState

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "gateway_rest" / "openapi.json"


def _document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(COMMITTED.read_text())
    return document


def test_the_committed_and_the_served_documents_are_valid_openapi() -> None:
    validate(_document())
    validate(openapi_document(with_objects=False, max_body_bytes=4096))


def _validator(document: dict[str, Any], name: str) -> OAS31Validator:
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:doc", resource)
    return OAS31Validator({"$ref": f"urn:doc#/components/schemas/{name}"}, registry=registry)


def _examples() -> list[tuple[str, Any]]:
    """Answers with every optional field empty and with it filled, as the codec sends them."""
    item = pb.JobItem(idx=0, status="done", output_url="u", renditions=[pb.Rendition(template_id="t")])
    return [
        ("CreateAnonUserResponse", encode(jpb.CreateAnonUserResponse(token="t", plan="free"))),
        (
            "CreateAnonUserResponse",
            encode(jpb.CreateAnonUserResponse(token="t", plan="free", expires_at="2026-01-01T00:00:00Z")),
        ),
        ("RefreshSessionResponse", encode(jpb.RefreshSessionResponse())),
        ("Job", encode(pb.Job(job_id="j", status="created", items=[item, pb.JobItem(status="pending")]))),
        ("Job", encode(pb.Job(job_id="j", status="queued", webhook_url="https://x", webhook_secret="whsec_x"))),
        ("ListJobsResponse", encode(jpb.ListJobsResponse(jobs=[pb.Job(job_id="j", status="done")]))),
        (
            "ListWebhookDeliveriesResponse",
            # A delivery always names its event and state (the enums' empty value is never sent).
            encode(
                jpb.ListWebhookDeliveriesResponse(deliveries=[pb.WebhookDelivery(event="job.done", state="pending")])
            ),
        ),
        ("ListPresetsResponse", encode(jpb.ListPresetsResponse(presets=[pb.Preset()], model=jpb.SegmentationModel()))),
        ("UserState", encode(pb.UserState(plan="pro"))),
        ("GetHealthResponse", encode(jpb.GetHealthResponse(components=[jpb.ComponentHealth(name="database")]))),
    ]


@pytest.mark.parametrize(("schema", "value"), _examples())
def test_what_the_codec_sends_is_what_the_document_says(schema: str, value: Any) -> None:
    _validator(_document(), schema).validate(value)


def test_a_null_where_the_document_says_string_is_caught() -> None:
    """The guard above can fail: a non-nullable field given null is refused."""
    document = _document()
    document["components"]["schemas"]["CreateAnonUserResponse"]["properties"]["expires_at"] = {"type": "string"}
    answer = encode(jpb.CreateAnonUserResponse(plan="free"))
    errors = list(_validator(document, "CreateAnonUserResponse").iter_errors(answer))
    assert errors


CONSTRAINTS: list[tuple[tuple[str | int, ...], str, object]] = [
    (("Template", "properties", "fit"), "enum", list(get_args(templates.Fit))),
    (("Template", "properties", "format"), "enum", list(get_args(templates.Format))),
    (("UserState", "properties", "plan"), "enum", list(PLANS)),
    (("CreateAnonUserResponse", "properties", "plan"), "enum", list(PLANS)),
    (("ExecuteJobRequestBody", "properties", "webhook_events", "items"), "enum", list(EVENT_TYPES)),
    (("Job", "properties", "webhook", "oneOf", 1, "properties", "events", "items"), "enum", list(EVENT_TYPES)),
    (("CreateJobRequest", "properties", "item_count"), "minimum", 1),
    (("CreateJobRequest", "properties", "content_types", "items"), "enum", list(CONTENT_TYPES)),
    (("WebhookDelivery", "properties", "event"), "enum", list(EVENT_TYPES)),
    (("WebhookDelivery", "properties", "state"), "enum", [str(s) for s in WebhookDeliveryState]),
    (("Job", "properties", "progress"), "minimum", 0),
    (("Job", "properties", "progress"), "maximum", 1),
]
"""Where the document states what the service accepts and sends, and the service's own tables."""


@pytest.mark.parametrize("served", [False, True], ids=["committed", "served"])
@pytest.mark.parametrize(("path", "keyword", "expected"), CONSTRAINTS, ids=lambda v: str(v))
def test_the_document_keeps_the_value_constraints(
    served: bool, path: tuple[str | int, ...], keyword: str, expected: object
) -> None:
    document = openapi_document(with_objects=False, max_body_bytes=4096) if served else _document()
    schema: Any = document["components"]["schemas"]
    for step in path:
        schema = schema[step]
    assert schema.get(keyword) == expected, (path, keyword, schema)


def _copy_of_the_sources(target: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        if name.startswith(("protos/", "scripts/", "gateway_rest/", "server/", "docs/contract.md")):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / name, target / name)


def _check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "scripts/gen_protos.py", "--check"], cwd=root, capture_output=True, text=True, check=False
    )


def test_a_stale_committed_document_fails_the_check(tmp_path: Path) -> None:
    _copy_of_the_sources(tmp_path)
    assert _check(tmp_path).returncode == 0
    openapi = tmp_path / "gateway_rest" / "openapi.json"
    openapi.write_text(openapi.read_text().replace('"S3 REST API"', '"S3 REST API, edited"'))
    result = _check(tmp_path)
    assert result.returncode == 1 and "gateway_rest/openapi.json" in result.stderr
    shutil.copyfile(COMMITTED, openapi)
    contract = tmp_path / "docs" / "contract.md"
    contract.write_text(contract.read_text().replace("| 403 |", "| 401 |"))
    result = _check(tmp_path)
    assert result.returncode == 1 and "docs/contract.md" in result.stderr
