"""The contract's endpoints. Each one is decode → call the JobService → encode, nothing more.

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
from gateway_rest.http_rules import RULES
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
    handler: Handler
    credential: Credential = Credential.BEARER
    body_bytes: int = NO_BODY_BYTES
    """The largest body this endpoint reads (capped again by the app's ``max_body_bytes``)."""


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


def _stream_token(job_id: str, m: jpb.StreamToken) -> dict[str, Any]:
    """The token, and the path of the event stream it opens (the one field not in the message)."""
    events_url = f"/jobs/{quote(job_id, safe='')}/events?{urlencode({'token': m.token})}"
    return {**encode(m), "events_url": events_url}


def health_failure_code(report: jpb.GetHealthResponse) -> str:
    """INFERENCE_UNAVAILABLE when only inference is down (clients wait and retry), else INTERNAL."""
    down = [c.name for c in report.components if not c.ok]
    return "INFERENCE_UNAVAILABLE" if down == ["inference"] else "INTERNAL"


async def health(request: Request) -> Response:
    """Ok or not ok, nothing more: which component is down and why is for operators
    (``gateway_rest.operator``), not for anyone on the public port."""
    report = await unary(request, backend(request).stub.GetHealth, jpb.GetHealthRequest())
    if report.ok:
        return envelope.success(request, {"ok": True})
    code = health_failure_code(report)
    return envelope.failure(request, code=code, message="not ready", status_code=503, data={"ok": False})


async def create_anon_user(request: Request) -> Response:
    message = await _decode(request, jpb.CreateAnonUserRequest)
    created = await unary(request, backend(request).stub.CreateAnonUser, message)
    return envelope.success(request, encode(created), status_code=RULES["CreateAnonUser"].success_status)


async def refresh_session(request: Request) -> Response:
    message = await _decode(request, jpb.RefreshSessionRequest)
    renewed = await unary(request, backend(request).stub.RefreshSession, message)
    return envelope.success(request, encode(renewed))


async def get_me(request: Request) -> Response:
    state = await unary(request, backend(request).stub.GetMe, jpb.GetMeRequest())
    return envelope.success(request, encode(state))


async def list_presets(request: Request) -> Response:
    presets = await unary(request, backend(request).stub.ListPresets, jpb.ListPresetsRequest())
    return envelope.success(request, encode(presets))


async def get_preset(request: Request) -> Response:
    message = _read(request, jpb.GetPresetRequest)
    preset = await unary(request, backend(request).stub.GetPreset, message)
    return envelope.success(request, encode(preset))


async def create_rule(request: Request) -> Response:
    message = await _decode(request, jpb.CreateRuleRequest)
    rule, headers = await unary_once(request, backend(request).stub.CreateRule, message)
    return envelope.success(request, encode(rule), status_code=RULES["CreateRule"].success_status, headers=headers)


async def list_rules(request: Request) -> Response:
    rules = await unary(request, backend(request).stub.ListRules, jpb.ListRulesRequest())
    return envelope.success(request, encode(rules))


async def update_rule(request: Request) -> Response:
    message = await _decode(request, jpb.UpdateRuleRequest)
    rule = await unary(request, backend(request).stub.UpdateRule, message)
    return envelope.success(request, encode(rule))


async def delete_rule(request: Request) -> Response:
    message = _read(request, jpb.DeleteRuleRequest)
    deleted = await unary(request, backend(request).stub.DeleteRule, message)
    return envelope.success(request, encode(deleted))


async def list_jobs(request: Request) -> Response:
    message = _read(request, jpb.ListJobsRequest)
    jobs = await unary(request, backend(request).stub.ListJobs, message)
    return envelope.success(request, encode(jobs))


async def create_job(request: Request) -> Response:
    message = await _decode(request, jpb.CreateJobRequest)
    created, headers = await unary_once(request, backend(request).stub.CreateJob, message)
    return envelope.success(request, encode(created), status_code=RULES["CreateJob"].success_status, headers=headers)


async def _answer_job(request: Request, job: pb.Job, headers: Mapping[str, str] | None = None) -> Response:
    """The job, after waiting for it to end when the client sent ``Prefer: wait=N``."""
    wait_s = prefer.requested_wait_s(request.headers.get("prefer"), max_s=request.app.state.prefer_wait_max_s)
    if wait_s is None:
        return envelope.success(request, encode(job), headers=headers)
    ref = jpb.JobRef(job_id=job.job_id)

    async def read() -> pb.Job:
        return await unary(request, backend(request).stub.GetJob, ref)

    job = await prefer.until_ended(job, read, wait_s=wait_s, poll_s=request.app.state.prefer_poll_s)
    response = envelope.success(request, encode(job), headers=headers)
    response.headers[prefer.PREFERENCE_APPLIED] = f"wait={wait_s}"
    return response


async def get_job(request: Request) -> Response:
    job = await unary(request, backend(request).stub.GetJob, _read(request, jpb.JobRef))
    return await _answer_job(request, job)


async def confirm_upload(request: Request) -> Response:
    ref = await _decode(request, jpb.JobRef)
    job = await unary(request, backend(request).stub.ConfirmUpload, ref)
    return envelope.success(request, encode(job))


async def analyze_job(request: Request) -> Response:
    message = await _decode(request, jpb.AnalyzeJobRequest)
    job, headers = await unary_once(request, backend(request).stub.AnalyzeJob, message)
    return envelope.success(request, encode(job), headers=headers)


async def execute_job(request: Request) -> Response:
    message = await _decode(request, jpb.ExecuteJobRequest)
    job, headers = await unary_once(request, backend(request).stub.ExecuteJob, message)
    return await _answer_job(request, job, headers)


async def cancel_job(request: Request) -> Response:
    ref = await _decode(request, jpb.JobRef)
    job, headers = await unary_once(request, backend(request).stub.CancelJob, ref)
    return envelope.success(request, encode(job), headers=headers)


async def create_stream_token(request: Request) -> Response:
    ref = await _decode(request, jpb.JobRef)
    issued = await unary(request, backend(request).stub.CreateStreamToken, ref)
    return envelope.success(
        request, _stream_token(ref.job_id, issued), status_code=RULES["CreateStreamToken"].success_status
    )


async def list_webhook_deliveries(request: Request) -> Response:
    ref = _read(request, jpb.JobRef)
    found = await unary(request, backend(request).stub.ListWebhookDeliveries, ref)
    return envelope.success(request, encode(found))


async def report_item_result(request: Request) -> Response:
    message = await _decode(request, jpb.ReportItemResultRequest)
    result = await unary(request, backend(request).stub.ReportItemResult, message, callback_secret=True)
    return envelope.success(request, encode(result))


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


def _path(path: str, name: str, endpoints: Mapping[str, Endpoint]) -> Route:
    async def dispatch(request: Request) -> Any:
        endpoint = endpoints["GET" if request.method == "HEAD" else request.method]
        credentials: EdgeCredentials | None = request.app.state.credentials
        if credentials is not None:
            credentials.check(request, endpoint.credential)
        request.state.body_limit = min(endpoint.body_bytes, request.app.state.max_body_bytes)
        return await endpoint.handler(request)

    return Route(path, dispatch, methods=list(endpoints), name=name)


EndpointTable = list[tuple[str, str, dict[str, Endpoint]]]
"""``(path, route name, {method: endpoint})``."""


def _endpoints() -> dict[str, Endpoint]:
    """The handler of each JobService RPC, with its credential and body cap. Body caps: a small JSON
    route gets a small cap; execute and callback bodies grow with a job's items and instances."""
    public, worker = Credential.NONE, Credential.CALLBACK
    return {
        "GetHealth": Endpoint(health, public),
        "CreateAnonUser": Endpoint(create_anon_user, public, 1 * KIB),
        "RefreshSession": Endpoint(refresh_session, public, 8 * KIB),
        "GetMe": Endpoint(get_me),
        "ListPresets": Endpoint(list_presets),
        "GetPreset": Endpoint(get_preset),
        "ListRules": Endpoint(list_rules),
        "CreateRule": Endpoint(create_rule, body_bytes=64 * KIB),
        "UpdateRule": Endpoint(update_rule, body_bytes=64 * KIB),
        "DeleteRule": Endpoint(delete_rule),
        "ListJobs": Endpoint(list_jobs),
        "CreateJob": Endpoint(create_job, body_bytes=16 * KIB),
        "GetJob": Endpoint(get_job),
        "ConfirmUpload": Endpoint(confirm_upload),
        "AnalyzeJob": Endpoint(analyze_job, body_bytes=16 * KIB),
        "ExecuteJob": Endpoint(execute_job, body_bytes=256 * KIB),
        "ReportItemResult": Endpoint(report_item_result, worker, 1024 * KIB),
        "CancelJob": Endpoint(cancel_job),
        "WatchJob": Endpoint(job_events_stream, Credential.BEARER_OR_STREAM_TOKEN),
        "ListWebhookDeliveries": Endpoint(list_webhook_deliveries),
        "CreateStreamToken": Endpoint(create_stream_token),
    }


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
    return [_path(path, name, endpoints) for path, name, endpoints in api_endpoints()]
