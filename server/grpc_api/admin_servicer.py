"""The AdminService servicer: check the admin token, decode, call ``server.service.admin``, encode.

Errors are ``server.errors`` raised by the service and translated by
``interceptors.DomainErrorInterceptor``, as for the JobService.
"""

from __future__ import annotations

import grpc

from protos.s3.v1 import admin_pb2 as apb
from protos.s3.v1 import admin_pb2_grpc
from server.grpc_api import admin_convert, convert
from server.grpc_api.interceptors import metadata_value
from server.grpc_api.metadata_keys import ADMIN_TOKEN_KEY
from server.service.admin import REQUEUEABLE_JOB_STATES, Admin, clean_actor
from server.service.jobs import Jobs

__all__ = ["ADMIN_ACTOR_KEY", "ADMIN_TOKEN_KEY", "AdminService"]
ADMIN_ACTOR_KEY = "x-admin-actor"


class AdminService(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, admin: Admin, jobs: Jobs) -> None:
        self._admin = admin
        self._jobs = jobs  # presigned download URLs of a job's objects

    def _operator(self, context: grpc.ServicerContext) -> str:
        """The caller's actor name, once the admin token is checked (the token first: an invalid
        actor name must not tell an unauthenticated caller anything)."""
        self._admin.authorize(metadata_value(context, ADMIN_TOKEN_KEY))
        return clean_actor(metadata_value(context, ADMIN_ACTOR_KEY))

    def GetUser(self, request: apb.GetUserRequest, context: grpc.ServicerContext) -> apb.AdminUser:
        self._operator(context)
        return admin_convert.admin_user(self._admin.user(request.user_id, events_limit=request.events_limit))

    def GetJob(self, request: apb.AdminJobRef, context: grpc.ServicerContext) -> apb.AdminJob:
        self._operator(context)
        return admin_convert.admin_job(self._admin.job(request.job_id), self._jobs.download_url)

    def GrantCredits(self, request: apb.GrantCreditsRequest, context: grpc.ServicerContext) -> apb.GrantCreditsResponse:
        actor = self._operator(context)
        result = self._admin.grant(actor, request.user_id, request.amount, request.reason, request.idempotency_key)
        return apb.GrantCreditsResponse(user=admin_convert.admin_user(result.user), duplicate=result.duplicate)

    def SetPlan(self, request: apb.SetPlanRequest, context: grpc.ServicerContext) -> apb.AdminUser:
        actor = self._operator(context)
        return admin_convert.admin_user(self._admin.set_plan(actor, request.user_id, request.plan, request.reason))

    def ListDeadLetters(
        self, request: apb.ListDeadLettersRequest, context: grpc.ServicerContext
    ) -> apb.ListDeadLettersResponse:
        self._operator(context)
        page = self._admin.dead_letters(
            page_size=request.page_size, page_token=request.page_token, job_id=request.job_id
        )
        return apb.ListDeadLettersResponse(
            items=[
                admin_convert.dead_letter(d, requeueable=d.job_status in REQUEUEABLE_JOB_STATES) for d in page.items
            ],
            next_page_token=page.next_page_token,
        )

    def RequeueItem(self, request: apb.RequeueItemRequest, context: grpc.ServicerContext) -> apb.AdminJob:
        actor = self._operator(context)
        view = self._admin.requeue(actor, request.job_id, request.idx, request.reason)
        return admin_convert.admin_job(view, self._jobs.download_url)

    def CancelJob(self, request: apb.AdminCancelJobRequest, context: grpc.ServicerContext) -> apb.AdminJob:
        actor = self._operator(context)
        return admin_convert.admin_job(
            self._admin.cancel(actor, request.job_id, request.reason), self._jobs.download_url
        )

    def ListWebhookDeliveries(
        self, request: apb.AdminJobRef, context: grpc.ServicerContext
    ) -> apb.AdminWebhookDeliveries:
        self._operator(context)
        url, found = self._admin.webhook_deliveries(request.job_id)
        return apb.AdminWebhookDeliveries(
            job_id=request.job_id, webhook_url=url or "", deliveries=[convert.webhook_delivery(d) for d in found]
        )
