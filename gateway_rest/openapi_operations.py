"""The prose of each REST operation for the OpenAPI document: summary, description, the errors it
can answer, its headers and success status. Bodies are not written here: ``gateway_rest.openapi``
adds them from the RPC each route calls (``_bind``)."""

from __future__ import annotations

from typing import Any

from gateway_rest.errors import HTTP_STATUS
from gateway_rest.openapi_schemas import Schema, ref
from server.config.sections import RateLimitsConfig, WebhookConfig
from server.service.webhook_signature import TOLERANCE_S

BIND = "x-bind"
"""What ``_op`` leaves for the binding step: success status, idempotency, Prefer: wait, hand data."""

_STR: Schema = {"type": "string"}
_INT: Schema = {"type": "integer", "format": "int32"}


def success(data: Schema, status: int = 200, description: str = "OK") -> dict[str, Any]:
    schema = {"allOf": [ref("SuccessEnvelope"), {"properties": {"data": data}}]}
    return {str(status): {"description": description, "content": {"application/json": {"schema": schema}}}}


# Every route can fail with these: a body that is no JSON object, a full rate-limit bucket, an
# unexpected fault, a JobService that does not answer (503).
_ALWAYS = ("VALIDATION_ERROR", "RATE_LIMITED", "INTERNAL")
_AUTH = ("AUTH_REQUIRED", "INVALID_TOKEN")
_PATH_PARAM = {"job_id": "job", "rule_id": "rule", "preset_id": "preset", "key": "object key"}


def error_responses(codes: tuple[str, ...]) -> dict[str, Any]:
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys((*codes, *_ALWAYS)):
        by_status.setdefault(HTTP_STATUS[code], []).append(code)
    by_status.setdefault(503, []).append("INTERNAL (the job service is unavailable)")
    return {
        str(status): {
            "description": "error.code: " + " | ".join(names),
            "content": {"application/json": {"schema": ref("ErrorEnvelope")}},
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


def keyed(op: dict[str, Any], bind: dict[str, Any]) -> None:
    """The ``Idempotency-Key`` header of an RPC that takes one, and the errors a key may bring."""
    op["responses"] = error_responses((*bind["errors"], *_IDEMPOTENT_ERRORS))
    op.setdefault("parameters", []).append(_IDEMPOTENCY_KEY_PARAM)


def _op(
    summary: str,
    *,
    errors: tuple[str, ...] = (),
    auth: bool = True,
    params: tuple[dict[str, Any], ...] = (),
    data: str | None = None,
) -> dict[str, Any]:
    """The prose and the errors of one operation; ``_bind`` adds its bodies from the RPC it calls, and
    the ``Idempotency-Key`` header with its errors where the RPC takes one (``keyed``).

    ``data``: a hand schema's name, for the answers that are no message of the RPC."""
    codes = (*_AUTH, *errors) if auth else errors
    op: dict[str, Any] = {
        "summary": summary,
        "responses": error_responses(codes),
        BIND: {"errors": codes, "data": data, "waits": False},
    }
    if not auth:
        op["security"] = []
    if params:
        op["parameters"] = list(params)
    return op


def path_params(path: str) -> list[dict[str, Any]]:
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


_WEBHOOK_DEFAULTS = WebhookConfig()
WEBHOOKS_DESCRIPTION = (
    "Each event is POSTed as JSON {type, timestamp, data} with the Standard Webhooks headers "
    "webhook-id (msg_..., the same on every retry: deduplicate by it), webhook-timestamp (Unix seconds) and "
    "webhook-signature: v1,<base64 HMAC-SHA256 over '{webhook-id}.{webhook-timestamp}.{raw body}' keyed "
    "with the base64-decoded part of the secret after whsec_>. Verify it in constant time and refuse "
    f"timestamps more than {TOLERANCE_S // 60} minutes from now. Any 2xx acknowledges the event; anything else, or no answer "
    f"within {_WEBHOOK_DEFAULTS.timeout_s:g} s (S3_WEBHOOK_TIMEOUT_S), is retried with exponential "
    f"backoff from {_WEBHOOK_DEFAULTS.backoff_s:g} s (at most 1 h), "
    f"{_WEBHOOK_DEFAULTS.max_attempts} attempts in all (S3_WEBHOOK_MAX_ATTEMPTS). Events of one job "
    "are sent in order: the next waits until the previous is acknowledged or given up. "
    "Events: item.done, item.failed (data: job_id, idx, status, error), job.done, job.failed, job.canceled "
    "(data: job_id, status, total_items, done_items, failed_items, error)."
)
_JOB_NOT_FOUND = ("NOT_FOUND",)
_SIGNUP, _SIGNUP_ALL = RateLimitsConfig.signup_address, RateLimitsConfig.signup_global
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
    op[BIND]["waits"] = True
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
            errors=("RULE_SLOT_LIMIT", "NOT_FOUND", *_PAYLOAD),
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
            errors=(
                "BATCH_LIMIT",
                "CONCURRENCY_LIMIT",
                "INSUFFICIENT_CREDITS",
                "QUOTA_EXCEEDED",
                "NOT_FOUND",
                *_PAYLOAD,
            ),
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
        )
    },
    "/jobs/{job_id}/execute": {
        "post": _waits(
            _op(
                "Apply rules to the album; uploaded → queued",
                errors=(*_JOB_NOT_FOUND, "INVALID_STATE", *_PAYLOAD),
            )
        )
    },
    "/jobs/{job_id}/stream-token": {
        "post": _op(
            "A short-lived token that opens this job's event stream without an Authorization header",
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
                **error_responses((*_AUTH, *_JOB_NOT_FOUND, "STREAM_LIMIT")),
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
            "responses": {**success(ref("StoredObject")), **error_responses(("FORBIDDEN", *_PAYLOAD))},
        },
        "get": {
            "summary": "Download an object from a presigned URL of the local store",
            "security": [],
            "responses": {
                "200": {"description": "the object's bytes", "content": {"application/octet-stream": {}}},
                **error_responses(("FORBIDDEN", "NOT_FOUND")),
            },
        },
    }
}
