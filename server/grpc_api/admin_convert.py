"""Operator views to AdminService messages."""

from __future__ import annotations

from protos.s3.v1 import admin_pb2 as apb
from server.clock import rfc3339
from server.grpc_api import convert
from server.service.admin_views import AdminJobView, AdminUserView, DeadLetterView


def admin_user(view: AdminUserView) -> apb.AdminUser:
    return apb.AdminUser(
        state=convert.user_state(view.state),
        credits_granted=view.credits_granted,
        auth_provider=view.auth_provider,
        created_at=rfc3339(view.created_at),
        recent_events=[
            apb.BillingEvent(
                id=e.id,
                job_id=e.job_id or "",
                type=e.type,
                amount=e.amount,
                ref=e.ref,
                created_at=rfc3339(e.created_at),
            )
            for e in view.recent_events
        ],
    )


def admin_job(view: AdminJobView, urls: convert.UrlFor | None) -> apb.AdminJob:
    return apb.AdminJob(
        job=convert.job(view.job, urls),
        user_id=view.job.user_id,
        queue=[
            apb.ItemQueueState(
                idx=q.idx,
                stage=q.stage,
                available_at=rfc3339(q.available_at),
                lease_owner=q.lease_owner or "",
                lease_expires_at=rfc3339(q.lease_expires_at),
                requeues=q.requeues,
                dead_lettered=q.dead_lettered,
            )
            for q in view.queue
        ],
        package_state=view.package_state,
        package_attempts=view.package_attempts,
        package_lease_owner=view.package_lease_owner or "",
        error=view.error or "",
        finished_at=rfc3339(view.finished_at),
        max_attempts=view.max_attempts,
    )


def dead_letter(view: DeadLetterView, *, requeueable: bool) -> apb.DeadLetter:
    return apb.DeadLetter(
        job_id=view.job_id,
        user_id=view.user_id,
        idx=view.idx,
        attempts=view.attempts,
        error=view.error or "",
        failed_at=rfc3339(view.failed_at),
        job_status=view.job_status,
        requeueable=requeueable,
    )
