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

from google.api import annotations_pb2

from gateway_rest.codec import shapes
from gateway_rest.errors import HTTP_STATUS
from gateway_rest.openapi_schemas import Schema, Schemas, job_summary
from gateway_rest.routes import api_endpoints
from protos.s3.v1 import jobs_pb2 as jpb
from server.config import Settings
from server.service.webhook_signature import TOLERANCE_S

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


_CONCEPT_ACTIONS = {
    **_map(_ref("ConceptAction")),
    "description": 'concept → action, e.g. {"Wall": {"action": "recolor", "value": "white"}}',
}
_TEMPLATE = _obj(
    ["id", "width", "height", "fit", "format", "quality", "background"],
    {
        "id": _STR,
        "width": _INT,
        "height": _INT,
        "fit": {"enum": ["fit", "fill", "pad"]},
        "format": {"enum": ["jpeg", "png", "webp"]},
        "quality": _INT,
        "background": _STR,
    },
)
_JOB_FIELDS: dict[str, Schema] = {
    "job_id": _STR,
    "status": {"enum": ["created", "uploaded", "queued", "running", "done", "failed", "canceled"]},
    "preset": _STR,
    "total_items": _INT,
    "done_items": _INT,
    "failed_items": _INT,
    "progress": {"type": "number", "minimum": 0, "maximum": 1},
    "set_url": _OPT_STR,
    "rule_id": _OPT_STR,
    "cost_per_item": _INT,
    "credits_reserved": _INT,
    "credits_spent": _INT,
    "analyzed": _BOOL,
    "error": _OPT_STR,
    "created_at": _TIME,
    "updated_at": _TIME,
    "upload_expires_at": {"type": ["string", "null"], "format": "date-time"},
    "webhook": {
        "oneOf": [
            {"type": "null"},
            _obj(
                ["url", "events"],
                {
                    "url": _STR,
                    "events": _list(_STR),
                    "secret": _STR | {"description": "whsec_...: only in the answer to execute"},
                },
            ),
        ]
    },
    "urls_expire_at": {
        "type": ["string", "null"],
        "format": "date-time",
        "description": "every download URL in this job (inputs, outputs, previews, renditions, masks, set) "
        "works until then; GET /jobs/{id} again for fresh ones. Downloads carry a Content-Disposition "
        "file name (attachment for the set's zip, inline for images).",
    },
}

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

# Every route can fail with these: a body that is no JSON object, a full rate-limit bucket, an
# unexpected fault, a JobService that does not answer (503).
_ALWAYS = ("VALIDATION_ERROR", "RATE_LIMITED", "INTERNAL")
_AUTH = ("AUTH_REQUIRED", "INVALID_TOKEN")
_PATH_PARAM = {"job_id": "job", "rule_id": "rule", "preset_id": "preset", "key": "object key"}


def _success(data: Schema, status: int = 200, description: str = "OK") -> dict[str, Any]:
    schema = {"allOf": [_ref("SuccessEnvelope"), {"properties": {"data": data}}]}
    return {str(status): {"description": description, "content": {"application/json": {"schema": schema}}}}


def _errors(codes: tuple[str, ...]) -> dict[str, Any]:
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys((*codes, *_ALWAYS)):
        by_status.setdefault(HTTP_STATUS[code], []).append(code)
    by_status.setdefault(503, []).append("INTERNAL (the job service is unavailable)")
    return {
        str(status): {
            "description": "error.code: " + " | ".join(names),
            "content": {"application/json": {"schema": _ref("ErrorEnvelope")}},
        }
        for status, names in sorted(by_status.items())
    }


_IDEMPOTENCY_KEY_PARAM = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "Optional, 1 to 255 printable ASCII characters, scoped to the caller (e.g. a uuid4 per "
    "user action, reused on retries). The first successful answer is kept at least 24 hours: the same key "
    "with the same body answers it again (status and data) with Idempotent-Replayed: true, doing nothing; "
    "the same key with another body, or on another endpoint, is 422 IDEMPOTENCY_MISMATCH; while the first "
    "request still runs, 409 INVALID_STATE. An error answer is not kept: a retry runs again. A replayed "
    "answer is the first one as it was, presigned URLs included (they may have expired: GET the job for "
    "fresh ones).",
}
_IDEMPOTENT_ERRORS = ("IDEMPOTENCY_MISMATCH", "INVALID_STATE")


def _op(
    summary: str,
    *,
    errors: tuple[str, ...] = (),
    status: int = 200,
    auth: bool = True,
    params: tuple[dict[str, Any], ...] = (),
    idempotent: bool = False,
    data: str | None = None,
) -> dict[str, Any]:
    """The prose and the errors of one operation; ``_bind`` adds its bodies from the RPC it calls.

    ``data``: a hand schema's name, for the answers that are no message of the RPC."""
    if idempotent:
        errors = (*errors, *_IDEMPOTENT_ERRORS)
        params = (*params, _IDEMPOTENCY_KEY_PARAM)
    op: dict[str, Any] = {
        "summary": summary,
        "responses": _errors((*_AUTH, *errors) if auth else errors),
        _BIND: {"status": status, "idempotent": idempotent, "data": data, "waits": False},
    }
    if not auth:
        op["security"] = []
    if params:
        op["parameters"] = list(params)
    return op


_BIND = "x-bind"
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
        rule = method.GetOptions().Extensions[annotations_pb2.http]
        verb = rule.WhichOneof("pattern")
        path = getattr(rule, verb)
        op = paths[path][verb]
        bind = op.pop(_BIND, None)
        if bind is None:
            continue  # written out whole (the event stream)
        in_path = set(re.findall(r"\{(\w+)\}", path))
        request = method.input_type
        if request.full_name == shapes.ITEM_RESULT:
            in_path = set()  # the body may repeat the job id (codec.shapes)
        body_fields = [f for f in shapes.json_fields(request) if f.name not in in_path]
        if rule.body and body_fields:
            required = request.full_name in shapes.BODY_REQUIRED or any(shapes.is_required(f) for f in body_fields)
            op["requestBody"] = {
                "required": required,
                "content": {"application/json": {"schema": schemas.message(request, request=True, without=in_path)}},
            }
        elif not rule.body:
            declared = {p["name"] for p in op.get("parameters", [])}
            for field in body_fields:
                if field.name not in declared:
                    query = {"name": field.name, "in": "query", "schema": schemas.field(field, request=True)}
                    op.setdefault("parameters", []).append(query)
        data = _ref(bind["data"]) if bind["data"] else schemas.message(method.output_type, request=False)
        headers = {**(_REPLAYED_HEADER if bind["idempotent"] else {}), **(_APPLIED_HEADER if bind["waits"] else {})}
        success = _success(data, bind["status"])
        if headers:
            success[str(bind["status"])]["headers"] = headers
        op["responses"] = {**success, **op["responses"]}


def _path_params(path: str) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": _STR,
            "description": f"the {label}'s id" if name != "key" else "the object key",
        }
        for name, label in _PATH_PARAM.items()
        if "{" + name + "}" in path
    ]


_WEBHOOK_DEFAULTS = Settings()
WEBHOOKS_DESCRIPTION = (
    "Each event is POSTed as JSON {type, timestamp, data} with the Standard Webhooks headers "
    "webhook-id (msg_..., the same on every retry: deduplicate by it), webhook-timestamp (Unix seconds) and "
    "webhook-signature: v1,<base64 HMAC-SHA256 over '{webhook-id}.{webhook-timestamp}.{raw body}' keyed "
    "with the base64-decoded part of the secret after whsec_>. Verify it in constant time and refuse "
    f"timestamps more than {TOLERANCE_S // 60} minutes from now. Any 2xx acknowledges the event; anything else, or no answer "
    f"within {_WEBHOOK_DEFAULTS.webhook_timeout_s:g} s (S3_WEBHOOK_TIMEOUT_S), is retried with exponential "
    f"backoff from {_WEBHOOK_DEFAULTS.webhook_backoff_s:g} s (at most 1 h), "
    f"{_WEBHOOK_DEFAULTS.webhook_max_attempts} attempts in all (S3_WEBHOOK_MAX_ATTEMPTS). Events of one job "
    "are sent in order: the next waits until the previous is acknowledged or given up. "
    "Events: item.done, item.failed (data: job_id, idx, status, error), job.done, job.failed, job.canceled "
    "(data: job_id, status, total_items, done_items, failed_items, error)."
)
_JOB_NOT_FOUND = ("NOT_FOUND",)
_SIGNUP, _SIGNUP_ALL = Settings().rate_limit_signup_address, Settings().rate_limit_signup_global
_PAYLOAD = ("PAYLOAD_TOO_LARGE",)
_PREFER_WAIT = {
    "name": "Prefer",
    "in": "header",
    "required": False,
    "schema": _STR,
    "example": "wait=30",
    "description": "RFC 7240 `wait=N`: answer once the job is done, failed or canceled, or after N seconds "
    "with the job as it is then (N capped by S3_PREFER_WAIT_MAX_S, default 60). The answer carries "
    "`Preference-Applied: wait=<N used>`; a malformed preference is ignored.",
}


def _waits(op: dict[str, Any]) -> dict[str, Any]:
    """An operation that honours ``Prefer: wait``: the header in, ``Preference-Applied`` out."""
    op.setdefault("parameters", []).append(_PREFER_WAIT)
    op[_BIND]["waits"] = True
    return op


API_PATHS: dict[str, dict[str, Any]] = {
    "/health": {
        "get": _op("Ready or not: {ok} only", auth=False, data="Health")
        | {
            "description": "HTTP 503 with success=false, error.code INTERNAL (or INFERENCE_UNAVAILABLE "
            "when only inference is down) and data {ok: false} when a component is down. Which one, "
            "and the model in use, are on the operator address (see the document's description)."
        }
    },
    "/auth/anon": {
        "post": _op(
            "Create an anonymous user on the free plan; returns its access and refresh tokens",
            status=201,
            auth=False,
            errors=_PAYLOAD,
        )
        | {
            "description": "Sign-ups have limits of their own, tighter than other routes': per client "
            f"address (default {_SIGNUP.requests} per {_SIGNUP.window_s} s) and for all addresses together "
            f"(default {_SIGNUP_ALL.requests} per {_SIGNUP_ALL.window_s} s); past either, 429 RATE_LIMITED "
            "with Retry-After.",
        }
    },
    "/auth/refresh": {
        "post": _op(
            "Spend a refresh token for a new access token and refresh token",
            auth=False,
            errors=("INVALID_TOKEN", *_PAYLOAD),
        )
        | {
            "description": "Needs no Authorization (the access token may have expired). Each refresh token "
            "works once; a spent one sent again revokes its whole session (that token, the newer ones and "
            "the session's future): INVALID_TOKEN, sign up again. Unused refresh tokens expire after "
            "S3_REFRESH_TTL_S (60 days), so an app that opens within that time stays signed in."
        }
    },
    "/me": {"get": _op("The caller's plan, credits and limits")},
    "/presets": {"get": _op("Every domain preset")},
    "/presets/{preset_id}": {"get": _op("One preset", errors=("NOT_FOUND",))},
    "/rules": {
        "get": _op("The caller's rules and rule slots"),
        "post": _op(
            "Save a rule (uses a rule slot)",
            status=201,
            errors=("RULE_SLOT_LIMIT", "NOT_FOUND", *_PAYLOAD),
            idempotent=True,
        ),
    },
    "/rules/{rule_id}": {
        "put": _op("Update a rule of the caller", errors=("NOT_FOUND", *_PAYLOAD)),
        "delete": _op("Delete a rule of the caller (frees its slot)", errors=("NOT_FOUND",)),
    },
    "/jobs": {
        "get": _op(
            "The caller's jobs, newest first",
            params=(
                {"name": "page_size", "in": "query", "schema": {**_INT, "minimum": 1, "maximum": 100}},
                {"name": "page_token", "in": "query", "schema": _STR},
            ),
        ),
        "post": _op(
            "Create a job, reserve its credits, get presigned upload URLs (507 QUOTA_EXCEEDED when the "
            "plan's stored bytes or live jobs would be exceeded; nothing is reserved then)",
            status=201,
            errors=(
                "BATCH_LIMIT",
                "CONCURRENCY_LIMIT",
                "INSUFFICIENT_CREDITS",
                "QUOTA_EXCEEDED",
                "NOT_FOUND",
                *_PAYLOAD,
            ),
            idempotent=True,
        ),
    },
    "/jobs/{job_id}": {"get": _waits(_op("A job with its items and download URLs", errors=_JOB_NOT_FOUND))},
    "/jobs/{job_id}/confirm-upload": {
        "post": _op(
            "Check every uploaded photo; created → uploaded. Every object is looked up before any is "
            "read; on success each photo is pinned by its sha256 and its upload URL closed",
            errors=(*_JOB_NOT_FOUND, "INVALID_STATE", *_PAYLOAD),
        )
    },
    "/jobs/{job_id}/analyze": {
        "post": _op(
            "Segment only: store every instance of the concepts. Costs one credit per started group "
            "of /me's analyze_items_per_credit photos that lack one of the concepts (photos holding them "
            "all are skipped, free); reserved now, spent as photos are analysed, the rest refunded, also "
            "on cancel. At most S3_MAX_ANALYSES_PER_JOB analyses per job (507 QUOTA_EXCEEDED)",
            errors=(
                *_JOB_NOT_FOUND,
                "INVALID_STATE",
                "INSUFFICIENT_CREDITS",
                "QUOTA_EXCEEDED",
                "INFERENCE_UNAVAILABLE",
                *_PAYLOAD,
            ),
            idempotent=True,
        )
    },
    "/jobs/{job_id}/execute": {
        "post": _waits(
            _op(
                "Apply rules to the album; uploaded → queued",
                errors=(*_JOB_NOT_FOUND, "INVALID_STATE", *_PAYLOAD),
                idempotent=True,
            )
        )
    },
    "/jobs/{job_id}/stream-token": {
        "post": _op(
            "A short-lived token that opens this job's event stream without an Authorization header",
            status=201,
            errors=(*_JOB_NOT_FOUND, *_PAYLOAD),
        )
        | {
            "description": "For browsers, whose EventSource cannot send headers: open "
            "`new EventSource(base + events_url)`. The token opens GET /jobs/{id}/events?token=... of this job "
            "only, until expires_at (S3_STREAM_TOKEN_TTL_S, default 5 minutes); it is refused as a bearer token "
            "anywhere else. Request a new one to reconnect after it expired."
        }
    },
    "/jobs/{job_id}/webhooks": {
        "get": _op(
            "The job's webhook deliveries in event order, each with its attempts",
            errors=_JOB_NOT_FOUND,
        )
        | {"description": WEBHOOKS_DESCRIPTION}
    },
    "/jobs/{job_id}/callback": {
        "post": _op(
            "An item result from a remote worker (idempotent by idempotency_key)",
            auth=False,
            errors=("FORBIDDEN", *_JOB_NOT_FOUND, "INVALID_STATE", *_PAYLOAD),
        )
        | {"security": [{"callbackSecret": []}]}
    },
    "/jobs/{job_id}/cancel": {
        "post": _op(
            "Cancel a non-terminal job; refunds credits of items not done",
            errors=(*_JOB_NOT_FOUND, "INVALID_STATE", *_PAYLOAD),
            idempotent=True,
        )
    },
    "/jobs/{job_id}/events": {
        "get": {
            "summary": "Job progress as Server-Sent Events",
            "description": "`event: job` with the Job JSON (items without instances) per update; "
            "after a terminal state `event: end` with {job_id, status}, then the stream closes; "
            "`event: error` with {code, message} if the job service fails mid-stream; "
            "`: keep-alive` comments while nothing happens. Errors before the stream starts are "
            "envelopes. A user holds at most `S3_MAX_STREAMS_PER_USER` open streams per JobService "
            "process (one more: 429 STREAM_LIMIT with `Retry-After`). A stream lasts at most "
            "`S3_STREAM_MAX_LIFETIME_S`, then closes without `event: end` (reconnect); when its "
            "token expires it sends `event: error` with INVALID_TOKEN and closes (sign in, reconnect).",
            "parameters": [
                {
                    "name": "token",
                    "in": "query",
                    "required": False,
                    "schema": _STR,
                    "description": "a stream token from POST /jobs/{id}/stream-token, instead of Authorization",
                }
            ],
            "responses": {
                "200": {"description": "event stream", "content": {"text/event-stream": {"schema": _STR}}},
                **_errors((*_AUTH, *_JOB_NOT_FOUND, "STREAM_LIMIT")),
            },
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}},
        }
    },
}

OBJECT_PATHS: dict[str, dict[str, Any]] = {
    "/objects/{key}": {
        "put": {
            "summary": "Upload an object to a presigned URL of the local store",
            "security": [],
            "description": "The URL's query carries its signature; the Content-Type must be the signed one.",
            "requestBody": {"required": True, "content": {"application/octet-stream": {}}},
            "responses": {**_success(_ref("StoredObject")), **_errors(("FORBIDDEN", *_PAYLOAD))},
        },
        "get": {
            "summary": "Download an object from a presigned URL of the local store",
            "security": [],
            "responses": {
                "200": {"description": "the object's bytes", "content": {"application/octet-stream": {}}},
                **_errors(("FORBIDDEN", "NOT_FOUND")),
            },
        },
    }
}

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
        op["responses"].setdefault("429", _errors(("RATE_LIMITED",))["429"])
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
        params = _path_params(path)
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
