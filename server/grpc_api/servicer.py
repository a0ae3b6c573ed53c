"""The JobService servicer: decode the request, call the service, encode the answer.

Authentication is read from metadata here (the REST shim forwards ``authorization``); errors are
raised as ``server.errors`` and translated by ``interceptors.DomainErrorInterceptor``.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from protos.s3.v1 import jobs_pb2 as jpb
from protos.s3.v1 import jobs_pb2_grpc
from protos.s3.v1 import types_pb2 as pb
from server.clock import rfc3339
from server.errors import NotFound
from server.grpc_api import convert
from server.presets import PRESETS
from server.service import job_views
from server.service.bundle import Services


def _metadata(context: grpc.ServicerContext, key: str) -> str | None:
    for k, v in context.invocation_metadata() or ():
        if k == key and isinstance(v, str):
            return v
    return None


class JobService(jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, services: Services) -> None:
        self._s = services

    def _user(self, context: grpc.ServicerContext) -> str:
        return self._s.tokens.user_from_authorization(_metadata(context, "authorization"))

    def GetHealth(
        self, request: jpb.GetHealthRequest, context: grpc.ServicerContext
    ) -> jpb.GetHealthResponse:
        report = self._s.health.report()
        return jpb.GetHealthResponse(
            ok=report.ok,
            components=[
                jpb.ComponentHealth(name=c.name, ok=c.ok, detail=c.detail) for c in report.components
            ],
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
        )

    def GetMe(self, request: jpb.GetMeRequest, context: grpc.ServicerContext) -> pb.UserState:
        return convert.user_state(self._s.accounts.me(self._user(context)))

    def ListPresets(
        self, request: jpb.ListPresetsRequest, context: grpc.ServicerContext
    ) -> jpb.ListPresetsResponse:
        self._user(context)
        return jpb.ListPresetsResponse(presets=[convert.preset(p) for p in PRESETS.values()])

    def GetPreset(self, request: jpb.GetPresetRequest, context: grpc.ServicerContext) -> pb.Preset:
        self._user(context)
        spec = PRESETS.get(request.preset_id)
        if spec is None:
            raise NotFound(f"preset {request.preset_id!r} not found")
        return convert.preset(spec)

    def CreateRule(self, request: jpb.CreateRuleRequest, context: grpc.ServicerContext) -> pb.Rule:
        view = self._s.rules.create(
            self._user(context),
            name=request.name,
            preset_id=request.preset_id,
            concepts=convert.concept_actions_from_pb(request.concepts),
            protect=list(request.protect),
        )
        return convert.rule(view)

    def ListRules(
        self, request: jpb.ListRulesRequest, context: grpc.ServicerContext
    ) -> jpb.ListRulesResponse:
        user_id = self._user(context)
        rules = self._s.rules.list(user_id)
        used, slots = self._s.rules.slots(user_id)
        return jpb.ListRulesResponse(
            rules=[convert.rule(r) for r in rules], rule_slots_used=used, rule_slots_max=slots
        )

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

    def DeleteRule(
        self, request: jpb.DeleteRuleRequest, context: grpc.ServicerContext
    ) -> jpb.DeleteRuleResponse:
        self._s.rules.delete(self._user(context), request.rule_id)
        return jpb.DeleteRuleResponse(rule_id=request.rule_id, deleted=True)

    def ListJobs(self, request: jpb.ListJobsRequest, context: grpc.ServicerContext) -> jpb.ListJobsResponse:
        page = job_views.list_jobs(
            self._s.db, self._user(context), page_size=request.page_size, page_token=request.page_token
        )
        return jpb.ListJobsResponse(
            jobs=[convert.job(j, urls=None) for j in page.jobs], next_page_token=page.next_page_token
        )

    def WatchJob(self, request: jpb.JobRef, context: grpc.ServicerContext) -> Iterator[jpb.JobEvent]:
        raise NotImplementedError
