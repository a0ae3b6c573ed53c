"""The contract's endpoints. Each one is decode → call the JobService → encode, nothing more, and
each unary one is built from its RPC's route (``gateway_rest.http_rules``): the request message it
decodes, where from, whether it takes an ``Idempotency-Key``, its success status. What an endpoint
adds is declared in ``_endpoints``: its credential, body cap and, for a few, how it answers.

One ``Route`` per path with the endpoints of its methods, so a wrong method is answered 405 with an
``Allow`` header listing every method the path has. Each endpoint states the credential it needs and
the largest body it takes (``Endpoint``); both are enforced before the handler reads a byte of the
body, and ``endpoint_limits()`` publishes them for the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway_rest import envelope, prefer
from gateway_rest.body import decode_json
from gateway_rest.codec import decode, decode_query, encode
from gateway_rest.credentials import Credential, EdgeCredentials
from gateway_rest.http_rules import RULES, HttpRule
from gateway_rest.rpc import backend, call_metadata, unary, unary_once
from gateway_rest.sse import EventStreamResponse, job_events
from protos.s3.v1 import jobs_pb2 as jpb
from protos.s3.v1 import types_pb2 as pb

Handler = Callable[[Request], Awaitable[Response | EventStreamResponse]]

KIB = 1024
NO_BODY_BYTES = 1 * KIB
"""Endpoints without fields still accept ``{}`` (and an honest client's whitespace)."""


@dataclass(frozen=True)
class Endpoint:
    """How a JobService RPC is served: who may call it, how large a body it reads, and how it answers.
    Every unary RPC's handler is built from its route (``_unary_endpoint``); ``stream`` is a handler
    of its own, for the one streaming RPC."""

    credential: Credential = Credential.BEARER
    body_bytes: int = NO_BODY_BYTES
    """The largest body this endpoint reads (capped again by the app's ``max_body_bytes``)."""
    answer: Answer | None = None
    """How the answer is written where it is not the encoded response (default ``_encoded``)."""
    stream: Handler | None = None


M = TypeVar("M", bound=Message)


async def _decode(request: Request, message_type: type[M]) -> M:
    """The request message from the body (read within the endpoint's cap, ``gateway_rest.body``) and
    the path parameters, which name fields of the message."""
    limit: int = request.state.body_limit
    path = dict(request.path_params)
    return await decode_json(request, limit, lambda body: decode(message_type, body, path=path))


def _read(request: Request, message_type: type[M]) -> M:
    """The request message of a route without a body: path parameters and query string."""
    return decode_query(message_type, request.query_params, path=dict(request.path_params))


Answer = Callable[[Request, HttpRule, Any, Any, Mapping[str, str]], Awaitable[Response]]
"""How an endpoint answers: from its route, the request message, the RPC's answer and the headers of
the call."""


async def _encoded(
    request: Request, rule: HttpRule, _sent: Message, answer: Message, headers: Mapping[str, str]
) -> Response:
    """The default answer: the RPC's response, encoded, with the route's success status."""
    return envelope.success(request, encode(answer), status_code=rule.success_status, headers=dict(headers))


def health_failure_code(report: jpb.GetHealthResponse) -> str:
    """INFERENCE_UNAVAILABLE when only inference is down (clients wait and retry), else INTERNAL."""
    down = [c.name for c in report.components if not c.ok]
    return "INFERENCE_UNAVAILABLE" if down == ["inference"] else "INTERNAL"


async def _health(
    request: Request, _rule: HttpRule, _sent: Message, report: jpb.GetHealthResponse, _h: Mapping[str, str]
) -> Response:
    """Ok or not ok, nothing more: which component is down and why is for operators
    (``gateway_rest.operator``), not for anyone on the public port."""
    if report.ok:
        return envelope.success(request, {"ok": True})
    code = health_failure_code(report)
    return envelope.failure(request, code=code, message="not ready", status_code=503, data={"ok": False})


async def _job(request: Request, _rule: HttpRule, _sent: Message, job: pb.Job, headers: Mapping[str, str]) -> Response:
    """The job, after waiting for it to end when the client sent ``Prefer: wait=N``."""
    wait_s = prefer.requested_wait_s(request.headers.get("prefer"), max_s=request.app.state.prefer_wait_max_s)
    if wait_s is None:
        return envelope.success(request, encode(job), headers=dict(headers))
    ref = jpb.JobRef(job_id=job.job_id)

    async def read() -> pb.Job:
        return await unary(request, backend(request).stub.GetJob, ref)

    job = await prefer.until_ended(job, read, wait_s=wait_s, poll_s=request.app.state.prefer_poll_s)
    response = envelope.success(request, encode(job), headers=dict(headers))
    response.headers[prefer.PREFERENCE_APPLIED] = f"wait={wait_s}"
    return response


async def _stream_token(
    request: Request, rule: HttpRule, ref: jpb.JobRef, issued: jpb.StreamToken, _h: Mapping[str, str]
) -> Response:
    """The token, and the path of the event stream it opens (the one field not in the message)."""
    events_url = f"/jobs/{quote(ref.job_id, safe='')}/events?{urlencode({'token': issued.token})}"
    return envelope.success(request, {**encode(issued), "events_url": events_url}, status_code=rule.success_status)


def _unary_endpoint(rule: HttpRule, credential: Credential, answer: Answer) -> Handler:
    """An RPC's whole endpoint from its route: its request message from the body (or the query) and
    the path, the call (under the client's ``Idempotency-Key`` where the RPC takes one), the answer."""

    async def handler(request: Request) -> Response:
        if rule.has_body:
            message = await _decode(request, rule.request_type)
        else:
            message = _read(request, rule.request_type)
        method = getattr(backend(request).stub, rule.rpc)
        if rule.idempotency_key:
            response, headers = await unary_once(request, method, message)
        else:
            response = await unary(request, method, message, callback_secret=credential is Credential.CALLBACK)
            headers = {}
        return await answer(request, rule, message, response, headers)

    return handler


async def job_events_stream(request: Request) -> Response | EventStreamResponse:
    metadata = call_metadata(request, stream_token=True)
    call = backend(request).stub.WatchJob(_read(request, jpb.JobRef), metadata=metadata)
    events = call.__aiter__()
    try:
        # Read the first event before answering: a missing job or a bad token must still be an
        # envelope with its status, which is impossible once a 200 event stream has started.
        first = await events.__anext__()
    except StopAsyncIteration:
        call.cancel()
        raise RuntimeError("WatchJob ended without sending the job's current state") from None
    except BaseException:
        call.cancel()
        raise
    keepalive_s: float = request.app.state.sse_keepalive_s
    return EventStreamResponse(job_events(call, events, first, keepalive_s=keepalive_s))


def _path(path: str, name: str, served: Mapping[str, tuple[Endpoint, Handler]]) -> Route:
    async def dispatch(request: Request) -> Any:
        endpoint, handler = served["GET" if request.method == "HEAD" else request.method]
        credentials: EdgeCredentials | None = request.app.state.credentials
        if credentials is not None:
            credentials.check(request, endpoint.credential)
        request.state.body_limit = min(endpoint.body_bytes, request.app.state.max_body_bytes)
        return await handler(request)

    return Route(path, dispatch, methods=list(served), name=name)


EndpointTable = list[tuple[str, str, dict[str, Endpoint]]]
"""``(path, route name, {method: endpoint})``."""


def _endpoints() -> dict[str, Endpoint]:
    """Each JobService RPC's credential, body cap and answer. Body caps: a small JSON route gets a
    small cap; execute and callback bodies grow with a job's items and instances."""
    public, worker = Credential.NONE, Credential.CALLBACK
    return {
        "GetHealth": Endpoint(public, answer=_health),
        "CreateAnonUser": Endpoint(public, 1 * KIB),
        "RefreshSession": Endpoint(public, 8 * KIB),
        "GetMe": Endpoint(),
        "ListPresets": Endpoint(),
        "GetPreset": Endpoint(),
        "ListRules": Endpoint(),
        "CreateRule": Endpoint(body_bytes=64 * KIB),
        "UpdateRule": Endpoint(body_bytes=64 * KIB),
        "DeleteRule": Endpoint(),
        "ListJobs": Endpoint(),
        "CreateJob": Endpoint(body_bytes=16 * KIB),
        "GetJob": Endpoint(answer=_job),
        "ConfirmUpload": Endpoint(),
        "AnalyzeJob": Endpoint(body_bytes=16 * KIB),
        "ExecuteJob": Endpoint(body_bytes=256 * KIB, answer=_job),
        "ReportItemResult": Endpoint(worker, 1024 * KIB),
        "CancelJob": Endpoint(),
        "WatchJob": Endpoint(Credential.BEARER_OR_STREAM_TOKEN, stream=job_events_stream),
        "ListWebhookDeliveries": Endpoint(),
        "CreateStreamToken": Endpoint(answer=_stream_token),
    }


def _handler(rule: HttpRule, endpoint: Endpoint) -> Handler:
    if endpoint.stream is not None:
        return endpoint.stream
    return _unary_endpoint(rule, endpoint.credential, endpoint.answer or _encoded)


def api_endpoints() -> EndpointTable:
    """Exactly the contract's paths (no prefix): each RPC's route from its ``google.api.http``
    annotation, the RPCs of one path together (so a wrong method is a 405 listing them all)."""
    endpoints = _endpoints()
    if set(endpoints) != set(RULES):
        raise ValueError(f"RPCs without a handler or handlers without an RPC: {set(endpoints) ^ set(RULES)}")
    by_path: dict[str, dict[str, Endpoint]] = {}
    for rule in RULES.values():
        by_path.setdefault(rule.path, {})[rule.method] = endpoints[rule.rpc]
    return [(path, _route_name(path), methods) for path, methods in by_path.items()]


def _route_name(path: str) -> str:
    return "_".join(part.strip("{}").replace("-", "_") for part in path.strip("/").split("/"))


def api_routes() -> list[Route]:
    rules = {(rule.method, rule.path): rule for rule in RULES.values()}
    return [
        _path(path, name, {method: (e, _handler(rules[method, path], e)) for method, e in endpoints.items()})
        for path, name, endpoints in api_endpoints()
    ]
