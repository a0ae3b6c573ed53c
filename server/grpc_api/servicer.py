"""The JobService servicer: decode the request, call the service, encode the answer.

Authentication is read from metadata here (the REST shim forwards ``authorization``); errors are
raised as ``server.errors`` and translated by ``interceptors.DomainErrorInterceptor``.

The server is ``grpc.aio``: these plain methods run in its bounded thread pool; ``WatchJob`` is an
async generator on the event loop (``watch.JobWatch``), so an open stream holds no thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from protos.s3.v1 import jobs_pb2 as jpb
from protos.s3.v1 import jobs_pb2_grpc
from protos.s3.v1 import types_pb2 as pb
from server.clock import rfc3339
from server.errors import NotFound
from server.grpc_api import convert, metadata_keys
from server.grpc_api.interceptors import metadata_value
from server.grpc_api.metadata_keys import AUTHORIZATION_KEY, CALLBACK_SECRET_KEY, STREAM_TOKEN_KEY
from server.grpc_api.watch import JobWatch
from server.presets import PRESETS
from server.service import job_views
from server.service.bundle import Services
from server.service.callbacks import ItemReport
from server.service.idempotency import Claim, Record, Replay
from server.service.jobs import CreatedJob
from server.service.sessions import IssuedSession
from server.service.views import JobView

ResponseT = TypeVar("ResponseT", bound=Message)


class JobService(jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, services: Services, watch: JobWatch) -> None:
        self._s = services
        self._watch = watch

    def _user(self, context: grpc.ServicerContext) -> str:
        return self._s.tokens.user_from_authorization(metadata_value(context, AUTHORIZATION_KEY))

    def _once(
        self,
        context: grpc.ServicerContext,
        user_id: str,
        rpc: str,
        request: Message,
        parse: Callable[[bytes], ResponseT],
        call: Callable[[Claim | None], ResponseT],
    ) -> ResponseT:
        """``call`` under the request's idempotency key, when it has one (see server.service.idempotency).

        ``call`` gets the claim to pass to the service as ``record``; with one, the answer is the stored
        bytes, so the first answer and every replay of it are the same message.
        """
        if rpc not in metadata_keys.KEYED_RPCS:
            raise RuntimeError(f"{rpc} is not marked (idempotency_key) in jobs.proto: its clients send no key")
        key = metadata_value(context, metadata_keys.IDEMPOTENCY_KEY)
        if key is None:
            return call(None)
        started = self._s.idempotency.begin(
            user_id, key, operation=rpc, request=request.SerializeToString(deterministic=True)
        )
        if isinstance(started, Replay):
            context.send_initial_metadata(((metadata_keys.REPLAYED, "true"),))
            return parse(started.response)
        try:
            call(started)
        except BaseException:
            self._s.idempotency.release(started)
            raise
        assert started.response is not None, "the service did not record its answer"
        return parse(started.response)

    def GetHealth(self, request: jpb.GetHealthRequest, context: grpc.ServicerContext) -> jpb.GetHealthResponse:
        report = self._s.health.report()
        return jpb.GetHealthResponse(
            ok=report.ok,
            components=[jpb.ComponentHealth(name=c.name, ok=c.ok, detail=c.detail) for c in report.components],
            model=report.model,
            model_meaningful=report.model_meaningful,
        )

    def CreateAnonUser(
        self, request: jpb.CreateAnonUserRequest, context: grpc.ServicerContext
    ) -> jpb.CreateAnonUserResponse:
        created = self._s.accounts.create_anonymous(request.device_hash or None)
        return jpb.CreateAnonUserResponse(
            token=created.token.token,
            user_id=created.user.user_id,
            plan=created.user.plan,
            credits=created.user.credits_available,
            expires_at=rfc3339(created.token.expires_at),
            refresh_token=created.refresh.token,
            refresh_expires_at=rfc3339(created.refresh.expires_at),
            signup_credits=created.signup_credits,
        )

    def RefreshSession(
        self, request: jpb.RefreshSessionRequest, context: grpc.ServicerContext
    ) -> jpb.RefreshSessionResponse:
        renewed: IssuedSession = self._s.sessions.refresh(request.refresh_token)
        return jpb.RefreshSessionResponse(
            token=renewed.access.token,
            user_id=renewed.user_id,
            expires_at=rfc3339(renewed.access.expires_at),
            refresh_token=renewed.refresh.token,
            refresh_expires_at=rfc3339(renewed.refresh.expires_at),
        )

    def GetMe(self, request: jpb.GetMeRequest, context: grpc.ServicerContext) -> pb.UserState:
        return convert.user_state(self._s.accounts.me(self._user(context)))

    def ListPresets(self, request: jpb.ListPresetsRequest, context: grpc.ServicerContext) -> jpb.ListPresetsResponse:
        self._user(context)
        name, meaningful = self._s.health.model
        return jpb.ListPresetsResponse(
            presets=[convert.preset(p) for p in PRESETS.values()],
            model=jpb.SegmentationModel(name=name, meaningful=meaningful),
        )

    def GetPreset(self, request: jpb.GetPresetRequest, context: grpc.ServicerContext) -> pb.Preset:
        self._user(context)
        spec = PRESETS.get(request.preset_id)
        if spec is None:
            raise NotFound(f"preset {request.preset_id!r} not found")
        return convert.preset(spec)

    def CreateRule(self, request: jpb.CreateRuleRequest, context: grpc.ServicerContext) -> pb.Rule:
        user_id = self._user(context)

        def call(claim: Claim | None) -> pb.Rule:
            view = self._s.rules.create(
                user_id,
                name=request.name,
                preset_id=request.preset_id,
                concepts=convert.concept_actions_from_pb(request.concepts),
                protect=list(request.protect),
                record=claim.recorder(lambda v: convert.rule(v).SerializeToString()) if claim else None,
            )
            return convert.rule(view)

        return self._once(context, user_id, "CreateRule", request, pb.Rule.FromString, call)

    def ListRules(self, request: jpb.ListRulesRequest, context: grpc.ServicerContext) -> jpb.ListRulesResponse:
        user_id = self._user(context)
        rules = self._s.rules.list(user_id)
        used, slots = self._s.rules.slots(user_id)
        return jpb.ListRulesResponse(rules=[convert.rule(r) for r in rules], rule_slots_used=used, rule_slots_max=slots)

    def UpdateRule(self, request: jpb.UpdateRuleRequest, context: grpc.ServicerContext) -> pb.Rule:
        view = self._s.rules.update(
            self._user(context),
            request.rule_id,
            name=request.name if request.HasField("name") else None,
            preset_id=request.preset_id if request.HasField("preset_id") else None,
            concepts=convert.concept_actions_from_pb(request.concepts) if request.replace_concepts else None,
            protect=list(request.protect) if request.replace_protect else None,
        )
        return convert.rule(view)

    def DeleteRule(self, request: jpb.DeleteRuleRequest, context: grpc.ServicerContext) -> jpb.DeleteRuleResponse:
        self._s.rules.delete(self._user(context), request.rule_id)
        return jpb.DeleteRuleResponse(rule_id=request.rule_id, deleted=True)

    def ListJobs(self, request: jpb.ListJobsRequest, context: grpc.ServicerContext) -> jpb.ListJobsResponse:
        page = job_views.list_jobs(
            self._s.db, self._user(context), page_size=request.page_size, page_token=request.page_token
        )
        return jpb.ListJobsResponse(
            jobs=[convert.job(j, urls=None) for j in page.jobs], next_page_token=page.next_page_token
        )

    def CreateJob(self, request: jpb.CreateJobRequest, context: grpc.ServicerContext) -> jpb.CreateJobResponse:
        user_id = self._user(context)

        def call(claim: Claim | None) -> jpb.CreateJobResponse:
            created = self._s.jobs.create(
                user_id,
                preset_id=request.preset,
                item_count=request.item_count,
                content_types=list(request.content_types),
                record=claim.recorder(lambda c: _created_job(c).SerializeToString()) if claim else None,
            )
            return _created_job(created)

        return self._once(context, user_id, "CreateJob", request, jpb.CreateJobResponse.FromString, call)

    def ConfirmUpload(self, request: jpb.JobRef, context: grpc.ServicerContext) -> pb.Job:
        return self._job(self._s.jobs.confirm_upload(self._user(context), request.job_id))

    def _job_once(
        self,
        context: grpc.ServicerContext,
        rpc: str,
        request: Message,
        call: Callable[[str, Record[JobView] | None], JobView],
    ) -> pb.Job:
        """A job-moving RPC under its idempotency key: ``call(user_id, record)`` runs the service."""
        user_id = self._user(context)

        def encode(view: JobView) -> bytes:
            return self._job(view).SerializeToString()

        def run(claim: Claim | None) -> pb.Job:
            return self._job(call(user_id, claim.recorder(encode) if claim else None))

        return self._once(context, user_id, rpc, request, pb.Job.FromString, run)

    def AnalyzeJob(self, request: jpb.AnalyzeJobRequest, context: grpc.ServicerContext) -> pb.Job:
        return self._job_once(
            context,
            "AnalyzeJob",
            request,
            lambda user_id, record: self._s.jobs.analyze(
                user_id, request.job_id, list(request.concepts), record=record
            ),
        )

    def ExecuteJob(self, request: jpb.ExecuteJobRequest, context: grpc.ServicerContext) -> pb.Job:
        return self._job_once(
            context,
            "ExecuteJob",
            request,
            lambda user_id, record: self._s.jobs.execute(
                user_id,
                request.job_id,
                concepts=convert.concept_actions_from_pb(request.concepts),
                protect=list(request.protect) if request.protect else None,
                rule_id=request.rule_id or None,
                instances=convert.instance_choices_from_pb(request.instances),
                output_set=request.output_set or None,
                webhook_url=request.webhook_url or None,
                webhook_events=list(request.webhook_events),
                record=record,
            ),
        )

    def GetJob(self, request: jpb.JobRef, context: grpc.ServicerContext) -> pb.Job:
        return self._job(self._s.jobs.get(self._user(context), request.job_id))

    def ReportItemResult(
        self, request: jpb.ReportItemResultRequest, context: grpc.ServicerContext
    ) -> jpb.ReportItemResultResponse:
        # The secret was checked before the message was decoded (``guards``); decoding the
        # instances here cannot answer an unauthenticated caller.
        result = self._s.callbacks.report(
            metadata_value(context, CALLBACK_SECRET_KEY),
            request.job_id,
            ItemReport(
                idempotency_key=request.idempotency_key,
                idx=request.idx,
                status=request.status,
                output_key=request.output_key,
                error=request.error,
                instances=convert.instances_from_pb(request.instances),
                protect_check=convert.from_struct(request.protect_check, field="protect_check")
                if request.HasField("protect_check")
                else None,
            ),
        )
        return jpb.ReportItemResultResponse(
            job_id=result.job_id,
            idx=result.idx,
            item_status=result.item_status,
            job_status=result.job_status,
            duplicate=result.duplicate,
        )

    def CancelJob(self, request: jpb.JobRef, context: grpc.ServicerContext) -> pb.Job:
        return self._job_once(
            context,
            "CancelJob",
            request,
            lambda user_id, record: self._s.jobs.cancel(user_id, request.job_id, record=record),
        )

    def CreateStreamToken(self, request: jpb.JobRef, context: grpc.ServicerContext) -> jpb.StreamToken:
        user_id = self._user(context)
        job = self._s.jobs.get(user_id, request.job_id)  # NOT_FOUND for another user's job
        issued = self._s.tokens.issue_stream(user_id, job.job_id)
        return jpb.StreamToken(token=issued.token, expires_at=rfc3339(issued.expires_at))

    async def WatchJob(
        self, request: jpb.JobRef, context: grpc.aio.ServicerContext[jpb.JobRef, jpb.JobEvent]
    ) -> AsyncIterator[jpb.JobEvent]:
        """Sends the job now, whenever its progress changes, and a final event when it ends. Opened
        with the user's bearer token, or with a stream token for this job (browsers' EventSource)."""
        authorization = metadata_value(context, AUTHORIZATION_KEY)
        stream_token = metadata_value(context, STREAM_TOKEN_KEY)
        async for event in self._watch.events(authorization, stream_token, request.job_id):
            yield event

    def ListWebhookDeliveries(
        self, request: jpb.JobRef, context: grpc.ServicerContext
    ) -> jpb.ListWebhookDeliveriesResponse:
        found = self._s.jobs.webhook_deliveries(self._user(context), request.job_id)
        return jpb.ListWebhookDeliveriesResponse(deliveries=[convert.webhook_delivery(d) for d in found])

    def _job(self, view: JobView) -> pb.Job:
        links = self._s.jobs.download_links()
        return convert.job(view, links.url, urls_expire_at=links.expires_at)


def _created_job(created: CreatedJob) -> jpb.CreateJobResponse:
    return jpb.CreateJobResponse(
        job_id=created.job.job_id,
        status=created.job.status,
        upload_urls=[
            pb.UploadUrl(
                idx=u.idx,
                key=u.key,
                url=u.request.url,
                method=u.request.method,
                headers=u.request.headers,
                expires_at=rfc3339(u.request.expires_at),
            )
            for u in created.uploads
        ],
        expires_at=rfc3339(created.expires_at),
        credits_reserved=created.job.credits_reserved,
    )
