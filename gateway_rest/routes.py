"""The contract's endpoints. Each one is decode → call the JobService → encode, nothing more.

One ``Route`` per path with the handlers of its methods, so a wrong method is answered 405 with an
``Allow`` header listing every method the path has.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway_rest import convert, envelope, prefer
from gateway_rest.body import read_json
from gateway_rest.rpc import backend, call_metadata, unary
from gateway_rest.sse import EventStreamResponse, job_events
from protos.s3.v1 import jobs_pb2 as jpb
from protos.s3.v1 import types_pb2 as pb

Handler = Callable[[Request], Awaitable[Response | EventStreamResponse]]


async def _body(request: Request) -> Any:
    limit: int = request.app.state.max_body_bytes
    return await read_json(request, limit)


def _job_id(request: Request) -> str:
    job_id: str = request.path_params["job_id"]
    return job_id


async def health(request: Request) -> Response:
    report = await unary(request, backend(request).stub.GetHealth, jpb.GetHealthRequest())
    data = convert.health_json(report)
    if report.ok:
        return envelope.success(request, data)
    down = [c.name for c in report.components if not c.ok]
    code = "INFERENCE_UNAVAILABLE" if down == ["inference"] else "INTERNAL"
    message = f"not ready: {', '.join(down)} down" if down else "not ready"
    # The one error envelope that carries data: monitors need to see which component is down.
    return envelope.failure(request, code=code, message=message, status_code=503, data=data)


async def create_anon_user(request: Request) -> Response:
    message = convert.anon_user_request(await _body(request))
    created = await unary(request, backend(request).stub.CreateAnonUser, message)
    return envelope.success(request, convert.anon_user_json(created), status_code=201)


async def get_me(request: Request) -> Response:
    state = await unary(request, backend(request).stub.GetMe, jpb.GetMeRequest())
    return envelope.success(request, convert.user_state_json(state))


async def list_presets(request: Request) -> Response:
    presets = await unary(request, backend(request).stub.ListPresets, jpb.ListPresetsRequest())
    return envelope.success(request, convert.presets_json(presets))


async def get_preset(request: Request) -> Response:
    message = jpb.GetPresetRequest(preset_id=request.path_params["preset_id"])
    preset = await unary(request, backend(request).stub.GetPreset, message)
    return envelope.success(request, convert.preset_json(preset))


async def create_rule(request: Request) -> Response:
    message = convert.create_rule_request(await _body(request))
    rule = await unary(request, backend(request).stub.CreateRule, message)
    return envelope.success(request, convert.rule_json(rule), status_code=201)


async def list_rules(request: Request) -> Response:
    rules = await unary(request, backend(request).stub.ListRules, jpb.ListRulesRequest())
    return envelope.success(request, convert.rules_json(rules))


async def update_rule(request: Request) -> Response:
    message = convert.update_rule_request(request.path_params["rule_id"], await _body(request))
    rule = await unary(request, backend(request).stub.UpdateRule, message)
    return envelope.success(request, convert.rule_json(rule))


async def delete_rule(request: Request) -> Response:
    message = jpb.DeleteRuleRequest(rule_id=request.path_params["rule_id"])
    deleted = await unary(request, backend(request).stub.DeleteRule, message)
    return envelope.success(request, convert.deleted_rule_json(deleted))


async def list_jobs(request: Request) -> Response:
    message = convert.list_jobs_request(request.query_params)
    jobs = await unary(request, backend(request).stub.ListJobs, message)
    return envelope.success(request, convert.jobs_json(jobs))


async def create_job(request: Request) -> Response:
    message = convert.create_job_request(await _body(request))
    created = await unary(request, backend(request).stub.CreateJob, message)
    return envelope.success(request, convert.created_job_json(created), status_code=201)


async def _answer_job(request: Request, job: pb.Job) -> Response:
    """The job, after waiting for it to end when the client sent ``Prefer: wait=N``."""
    wait_s = prefer.requested_wait_s(request.headers.get("prefer"), max_s=request.app.state.prefer_wait_max_s)
    if wait_s is None:
        return envelope.success(request, convert.job_json(job))
    ref = jpb.JobRef(job_id=job.job_id)

    async def read() -> pb.Job:
        return await unary(request, backend(request).stub.GetJob, ref)

    job = await prefer.until_ended(job, read, wait_s=wait_s, poll_s=request.app.state.prefer_poll_s)
    response = envelope.success(request, convert.job_json(job))
    response.headers[prefer.PREFERENCE_APPLIED] = f"wait={wait_s}"
    return response


async def get_job(request: Request) -> Response:
    job = await unary(request, backend(request).stub.GetJob, jpb.JobRef(job_id=_job_id(request)))
    return await _answer_job(request, job)


async def confirm_upload(request: Request) -> Response:
    convert.no_fields(await _body(request))
    job = await unary(request, backend(request).stub.ConfirmUpload, jpb.JobRef(job_id=_job_id(request)))
    return envelope.success(request, convert.job_json(job))


async def analyze_job(request: Request) -> Response:
    message = convert.analyze_request(_job_id(request), await _body(request))
    job = await unary(request, backend(request).stub.AnalyzeJob, message)
    return envelope.success(request, convert.job_json(job))


async def execute_job(request: Request) -> Response:
    message = convert.execute_request(_job_id(request), await _body(request))
    job = await unary(request, backend(request).stub.ExecuteJob, message)
    return await _answer_job(request, job)


async def cancel_job(request: Request) -> Response:
    convert.no_fields(await _body(request))
    job = await unary(request, backend(request).stub.CancelJob, jpb.JobRef(job_id=_job_id(request)))
    return envelope.success(request, convert.job_json(job))


async def create_stream_token(request: Request) -> Response:
    convert.no_fields(await _body(request))
    issued = await unary(request, backend(request).stub.CreateStreamToken, jpb.JobRef(job_id=_job_id(request)))
    return envelope.success(request, convert.stream_token_json(_job_id(request), issued), status_code=201)


async def list_webhook_deliveries(request: Request) -> Response:
    ref = jpb.JobRef(job_id=_job_id(request))
    found = await unary(request, backend(request).stub.ListWebhookDeliveries, ref)
    return envelope.success(request, convert.webhook_deliveries_json(found))


async def report_item_result(request: Request) -> Response:
    message = convert.item_result_request(_job_id(request), await _body(request))
    result = await unary(request, backend(request).stub.ReportItemResult, message, callback_secret=True)
    return envelope.success(request, convert.item_result_json(result))


async def job_events_stream(request: Request) -> Response | EventStreamResponse:
    metadata = call_metadata(request, stream_token=True)
    call = backend(request).stub.WatchJob(jpb.JobRef(job_id=_job_id(request)), metadata=metadata)
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


def _path(path: str, name: str, handlers: Mapping[str, Handler]) -> Route:
    async def dispatch(request: Request) -> Any:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return Route(path, dispatch, methods=list(handlers), name=name)


def api_routes() -> list[Route]:
    """Exactly the contract's paths (no prefix)."""
    return [
        _path("/health", "health", {"GET": health}),
        _path("/auth/anon", "auth_anon", {"POST": create_anon_user}),
        _path("/me", "me", {"GET": get_me}),
        _path("/presets", "presets", {"GET": list_presets}),
        _path("/presets/{preset_id}", "preset", {"GET": get_preset}),
        _path("/rules", "rules", {"GET": list_rules, "POST": create_rule}),
        _path("/rules/{rule_id}", "rule", {"PUT": update_rule, "DELETE": delete_rule}),
        _path("/jobs", "jobs", {"GET": list_jobs, "POST": create_job}),
        _path("/jobs/{job_id}", "job", {"GET": get_job}),
        _path("/jobs/{job_id}/confirm-upload", "job_confirm_upload", {"POST": confirm_upload}),
        _path("/jobs/{job_id}/analyze", "job_analyze", {"POST": analyze_job}),
        _path("/jobs/{job_id}/execute", "job_execute", {"POST": execute_job}),
        _path("/jobs/{job_id}/callback", "job_callback", {"POST": report_item_result}),
        _path("/jobs/{job_id}/cancel", "job_cancel", {"POST": cancel_job}),
        _path("/jobs/{job_id}/events", "job_events", {"GET": job_events_stream}),
        _path("/jobs/{job_id}/webhooks", "job_webhooks", {"GET": list_webhook_deliveries}),
        _path("/jobs/{job_id}/stream-token", "job_stream_token", {"POST": create_stream_token}),
    ]
