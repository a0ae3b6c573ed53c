"""The OpenAPI 3.1 document served at ``GET /openapi.json``, committed as ``gateway_rest/openapi.json``.

``scripts/gen_protos.py`` builds it (``build_document``): the paths and each operation's request and
answer come from the JobService's ``google.api.http`` annotations and message descriptors
(``gateway_rest.openapi_schemas``); what is written here is prose: summaries, the errors each
operation can answer, headers. A test compares the document with the routes, both ways.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any

from gateway_rest.codec import shapes
from gateway_rest.errors import HTTP_STATUS
from gateway_rest.http_rules import RULES
from gateway_rest.openapi_operations import (
    API_PATHS,
    BIND,
    OBJECT_PATHS,
    error_responses,
    keyed,
    path_params,
    success,
)
from gateway_rest.openapi_schemas import Schema, Schemas, job_summary
from gateway_rest.routes import api_endpoints
from protos.s3.v1 import jobs_pb2 as jpb

DOCUMENT_NAME = "openapi.json"


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str], props: dict[str, Schema], *, extra: bool = False) -> Schema:
    schema: Schema = {"type": "object", "properties": props, "required": required}
    if not extra:
        schema["additionalProperties"] = False
    return schema


_STR: Schema = {"type": "string"}
_INT: Schema = {"type": "integer", "format": "int32"}
_NUM: Schema = {"type": "number"}
_BOOL: Schema = {"type": "boolean"}
_TIME: Schema = {"type": "string", "format": "date-time"}
_OPT_STR: Schema = {"type": ["string", "null"]}


def _list(item: Schema) -> Schema:
    return {"type": "array", "items": item}


def _map(value: Schema) -> Schema:
    return {"type": "object", "additionalProperties": value}


HAND_SCHEMAS: dict[str, Schema] = {
    # The envelope and the two answers that are no JobService message.
    "Meta": _obj(["request_id", "timestamp"], {"request_id": _STR, "timestamp": _TIME}),
    "Error": _obj(["code", "message"], {"code": {"enum": sorted(HTTP_STATUS)}, "message": _STR}),
    "SuccessEnvelope": _obj(
        ["success", "data", "error", "meta"],
        {"success": {"const": True}, "data": {}, "error": {"type": "null"}, "meta": _ref("Meta")},
    ),
    "ErrorEnvelope": _obj(
        ["success", "data", "error", "meta"],
        {"success": {"const": False}, "data": {}, "error": _ref("Error"), "meta": _ref("Meta")},
    ),
    "Health": _obj(["ok"], {"ok": _BOOL}),
    "StoredObject": _obj(["key", "size", "content_type"], {"key": _STR, "size": _INT, "content_type": _STR}),
}

_REPLAYED_HEADER = {
    "Idempotent-Replayed": {
        "description": "true when this is the kept answer to an earlier request with the same key",
        "schema": {"const": "true"},
    }
}
_APPLIED_HEADER = {
    "Preference-Applied": {
        "schema": _STR,
        "description": "wait=<seconds waited at most>, when Prefer: wait was honoured",
    }
}


def _bind(paths: dict[str, dict[str, Any]], schemas: Schemas) -> None:
    """Each annotated JobService RPC's request and response schemas into its operation."""
    for method in jpb.DESCRIPTOR.services_by_name["JobService"].methods:
        rule = RULES[method.name]
        path = rule.path
        op = paths[path][rule.method.lower()]
        bind = op.pop(BIND, None)
        if bind is None:
            continue  # written out whole (the event stream)
        in_path = set(re.findall(r"\{(\w+)\}", path))
        request = method.input_type
        if request.full_name == shapes.ITEM_RESULT:
            in_path = set()  # the body may repeat the job id (codec.shapes)
        body_fields = [f for f in shapes.json_fields(request) if f.name not in in_path]
        if rule.has_body and body_fields:
            required = request.full_name in shapes.BODY_REQUIRED or any(shapes.is_required(f) for f in body_fields)
            op["requestBody"] = {
                "required": required,
                "content": {"application/json": {"schema": schemas.message(request, request=True, without=in_path)}},
            }
        elif not rule.has_body:
            declared = {p["name"] for p in op.get("parameters", [])}
            for field in body_fields:
                if field.name not in declared:
                    query = {"name": field.name, "in": "query", "schema": schemas.field(field, request=True)}
                    op.setdefault("parameters", []).append(query)
        data = _ref(bind["data"]) if bind["data"] else schemas.message(method.output_type, request=False)
        if rule.idempotency_key:
            keyed(op, bind)
        headers = {**(_REPLAYED_HEADER if rule.idempotency_key else {}), **(_APPLIED_HEADER if bind["waits"] else {})}
        status = rule.success_status
        answer = success(data, status)
        if headers:
            answer[str(status)]["headers"] = headers
        op["responses"] = {**answer, **op["responses"]}


_INT_HEADER: Schema = {"type": "integer", "minimum": 0}
# The IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers), on every answer while
# limits are on (S3_RATE_LIMITS); they describe the caller's bucket closest to being full.
RATE_LIMIT_HEADERS: dict[str, Schema] = {
    "RateLimit-Limit": {"description": "requests allowed in the window of that bucket", "schema": _INT_HEADER},
    "RateLimit-Remaining": {"description": "requests left in it, this one counted", "schema": _INT_HEADER},
    "RateLimit-Reset": {
        "description": "seconds until it has room again (0: it has room now)",
        "schema": _INT_HEADER,
    },
    "RateLimit-Policy": {"description": "the bucket's limit and window: `<limit>;w=<seconds>`", "schema": _STR},
}
RETRY_AFTER_HEADER: dict[str, Schema] = {
    "Retry-After": {"description": "seconds to wait before trying again (every 429)", "schema": _INT_HEADER}
}

_COMMON_RESPONSES_NOTE = (
    "Every response is the envelope {success, data, error, meta}. An unknown path is 404 NOT_FOUND; "
    "a known path with another method is HTTP 405 with error.code VALIDATION_ERROR and an Allow header. "
    "Unknown fields in a JSON body are rejected with VALIDATION_ERROR naming the field; unknown query "
    "parameters are ignored. Every response carries X-Request-Id (the client's, when printable and at "
    "most 128 characters, else a new uuid4), also in meta.request_id. "
    "Credentials (bearer JWT or X-Callback-Secret) are checked before a request body is read: a refused "
    "request is answered from its head, with Connection: close when it had a body. Each operation's "
    "x-max-body-bytes is the largest body it reads (413 PAYLOAD_TOO_LARGE past it). JSON bodies must not "
    "repeat a key, and numbers must be finite (no NaN, Infinity or 1e999) and integers at most 2^53: "
    "400 VALIDATION_ERROR otherwise. "
    "The operator surface is not part of this document: GET /metrics (Prometheus text) and GET /health "
    "(the GetHealthResponse schema: each component and the model) are served on S3_OPERATOR_HOST:"
    "S3_OPERATOR_PORT, loopback by default. "
    "Rate limits: every request counts against its client address (the socket peer, or what a trusted "
    "proxy says in X-Forwarded-For), a request with a valid token also against its user, and POST "
    "/auth/anon also against tighter sign-up limits per address and for all addresses together. Every "
    "answer carries RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset (and RateLimit-Policy) for the "
    "caller's bucket closest to being full; a full bucket is HTTP 429 RATE_LIMITED. Every 429 (also "
    "CONCURRENCY_LIMIT) carries Retry-After in seconds."
)


def _with_rate_limit_headers(operations: dict[str, Any]) -> None:
    """Every route is limited, /metrics and this document too: each answer names the headers."""
    for op in operations.values():
        op["responses"].setdefault("429", error_responses(("RATE_LIMITED",))["429"])
        for status, response in op["responses"].items():
            headers = {**RATE_LIMIT_HEADERS, **(RETRY_AFTER_HEADER if status == "429" else {})}
            response["headers"] = {**response.get("headers", {}), **headers}


def build_document(comments: Mapping[str, str]) -> dict[str, Any]:
    """The whole document (object routes included, each operation's default body cap), as
    ``scripts/gen_protos.py`` writes it to ``gateway_rest/openapi.json``; ``comments`` are the .proto
    comments by element full name."""
    schemas = Schemas(comments)
    paths = copy.deepcopy({**API_PATHS, **OBJECT_PATHS})
    _bind(paths, schemas)
    job_summary(schemas)
    schemas.message(jpb.GetHealthResponse.DESCRIPTOR, request=False)  # the operator's /health
    body_limits = {
        (method, path): endpoint.body_bytes
        for path, _, endpoints in api_endpoints()
        for method, endpoint in endpoints.items()
        if method in ("POST", "PUT")
    }
    for path, operations in paths.items():
        _with_rate_limit_headers(operations)
        params = path_params(path)
        for method, op in operations.items():
            if params:
                op["parameters"] = [*params, *op.get("parameters", [])]
            limit = body_limits.get((method.upper(), path))
            if limit is not None:
                op["x-max-body-bytes"] = limit
    return {
        "openapi": "3.1.0",
        "info": {"title": "S3 REST API", "version": "1", "description": _COMMON_RESPONSES_NOTE},
        "security": [{"bearerJWT": []}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted({**HAND_SCHEMAS, **schemas.components}.items())),
            "securitySchemes": {
                "bearerJWT": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "callbackSecret": {"type": "apiKey", "in": "header", "name": "X-Callback-Secret"},
            },
        },
    }


def openapi_document(*, with_objects: bool, max_body_bytes: int) -> dict[str, Any]:
    """The committed document as this app serves it: without the object routes when it has none,
    each body cap lowered to the app-wide ``max_body_bytes``."""
    document: dict[str, Any] = json.loads(resources.files("gateway_rest").joinpath(DOCUMENT_NAME).read_text())
    if not with_objects:
        for path in OBJECT_PATHS:
            del document["paths"][path]
    for operations in document["paths"].values():
        for op in operations.values():
            if "x-max-body-bytes" in op:
                op["x-max-body-bytes"] = min(op["x-max-body-bytes"], max_body_bytes)
    return document
