"""The job lifecycle a user drives: create, confirm upload, analyze, execute, read, cancel.

Every state change is one transaction holding the user's and the job's row locks, so limits,
credits and statuses never disagree, whichever process or request got there first.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from server.clock import utcnow
from server.config import Settings
from server.contract import CONTENT_TYPES
from server.db.engine import Database
from server.db.tables import JobItemRow, JobRow
from server.errors import (
    BatchLimit,
    ConcurrencyLimit,
    InvalidState,
    NotFound,
    QuotaExceeded,
    ValidationFailed,
)
from server.plans import limits_for
from server.service import item_state, job_state, ledger, quotas, validation, webhooks
from server.service.concept_action import ConceptAction, ConceptActions, actions_from_stored
from server.service.idempotency import Record
from server.service.ids import resource_id
from server.service.instance_choices import ChoiceRequest, instance_choices
from server.service.item_state import ItemStage
from server.service.job_views import job_view, load_items
from server.service.locking import count_active_jobs, lock_user
from server.service.rules import owned_rule
from server.service.seals import seal_inputs
from server.service.settle import cancel_open_items, finish_item, lock_job
from server.service.upload_checks import UploadChecker
from server.service.views import JobView
from server.service.webhook_targets import AddressPolicy
from server.storage import keys
from server.storage.port import ObjectStore, PresignedRequest
from server.wire_enums import ItemStatus, JobStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadTarget:
    idx: int
    key: str
    request: PresignedRequest


@dataclass(frozen=True)
class DownloadLinks:
    """Download URLs signed together, and when the first of them stops working."""

    url: Callable[[str], str]
    expires_at: datetime


@dataclass(frozen=True)
class CreatedJob:
    job: JobView
    uploads: list[UploadTarget]
    expires_at: datetime


def owned_job(session: Session, user_id: str, job_id: str, *, lock: bool = False) -> JobRow:
    """The user's job; another user's job is reported missing, never forbidden."""
    jid = resource_id(job_id, "job")
    row = lock_job(session, jid) if lock else session.get(JobRow, jid)
    if row is None or row.user_id != user_id:
        raise NotFound("job not found")
    return row


class Jobs:
    def __init__(self, db: Database, store: ObjectStore, settings: Settings) -> None:
        self._db = db
        self._store = store
        self._settings = settings
        self._uploads = UploadChecker(store, settings.photos)
        self._webhook_policy = AddressPolicy.from_cidrs(settings.webhooks.allow_networks)

    # -- create ---------------------------------------------------------------------------------
    def create(
        self,
        user_id: str,
        *,
        preset_id: str,
        item_count: int,
        content_types: Sequence[str] = (),
        record: Record[CreatedJob] | None = None,
    ) -> CreatedJob:
        """created, credits reserved. ``record`` (an idempotency key's) stores the answer in the same
        transaction; so the answer, presigned URLs included, is made before the commit."""
        preset = validation.preset_by_id(preset_id, field="preset")
        if item_count < 1:
            raise ValidationFailed("item_count: must be a positive integer", field="item_count")
        if content_types and len(content_types) != item_count:
            raise ValidationFailed("content_types: one per item when given", field="content_types")
        for i, ct in enumerate(content_types):
            if ct not in CONTENT_TYPES:
                raise ValidationFailed(
                    f"content_types[{i}]: must be one of {', '.join(CONTENT_TYPES)}",
                    field=f"content_types[{i}]",
                )
        now = utcnow()
        job_id = str(uuid.uuid4())
        with self._db.write() as s:
            user = lock_user(s, user_id)
            limits = limits_for(user.plan)
            if item_count > limits.max_batch:
                raise BatchLimit(f"the {user.plan} plan allows {limits.max_batch} items per job, got {item_count}")
            active = count_active_jobs(s, user_id)
            if active >= limits.max_concurrency:
                raise ConcurrencyLimit(
                    f"the {user.plan} plan allows {limits.max_concurrency} active job(s); finish or cancel one first"
                )
            allowance = quotas.upload_allowance(item_count, self._settings.photos.max_upload_bytes)
            quotas.check_new_job(s, user, allowance_bytes=allowance)
            cost = item_count * self._settings.credits.credits_per_item
            ledger.reserve(s, user, job_id, cost)
            job = JobRow(
                id=job_id,
                user_id=user_id,
                status=JobStatus.CREATED,
                preset_id=preset.id,
                total_items=item_count,
                done_items=0,
                failed_items=0,
                cost_per_item=self._settings.credits.credits_per_item,
                credits_reserved=cost,
                credits_spent=0,
                package_state="none",
                package_attempts=0,
                created_at=now,
                updated_at=now,
                upload_deadline_at=now + timedelta(seconds=self._settings.jobs.upload_deadline_s),
                stored_bytes=allowance,
            )
            s.add(job)
            s.flush()  # the job row must exist before its items reference it (PostgreSQL checks at once)
            items = [
                JobItemRow(
                    job_id=job_id,
                    idx=idx,
                    status=ItemStatus.PENDING,
                    stage=ItemStage.NONE,
                    input_key=keys.input_key(user_id, job_id, idx),
                    content_type=content_types[idx] if content_types else "image/jpeg",
                    attempts=0,
                    updated_at=now,
                )
                for idx in range(item_count)
            ]
            s.add_all(items)
            s.flush()
            created = CreatedJob(job_view(job, items), *self._upload_targets(items, now))
            if record is not None:
                record(s, created)
        log.info("job %s created: %d items, %d credits reserved", job_id, item_count, cost)
        return created

    def _upload_targets(self, items: Sequence[JobItemRow], now: datetime) -> tuple[list[UploadTarget], datetime]:
        """Presigned PUTs (signed locally, no network) and when the first of them expires."""
        ttl = min(self._settings.storage.upload_url_ttl_s, self._settings.jobs.upload_deadline_s)
        uploads = [
            UploadTarget(
                item.idx,
                item.input_key,
                self._store.presign_put(item.input_key, content_type=item.content_type or "image/jpeg", expires_s=ttl),
            )
            for item in items
        ]
        return uploads, min((u.request.expires_at for u in uploads), default=now + timedelta(seconds=ttl))

    # -- confirm upload -------------------------------------------------------------------------
    def confirm_upload(self, user_id: str, job_id: str) -> JobView:
        """created -> uploaded once every object is there and every photo decodes within limits.

        A missing object fails the call and changes nothing (the upload may still be under way);
        every object is looked up before any is read, so such a call decodes nothing. An object that
        is there but unusable (not an image, truncated, too large, too many pixels) fails that item
        only, refunded; the rest of the album goes on. If no item is usable the call fails and the
        job stays ``created`` so the photos can be uploaded again. On success each photo's sha256 is
        pinned (a worker processes those bytes or none) and its upload URL is sealed.
        """
        with self._db.read() as s:
            job = owned_job(s, user_id, job_id)
            job_state.require(job, JobStatus.CREATED, action="confirm the upload of")
            items = [i for i in load_items(s, job.id) if i.status == ItemStatus.PENDING]
        checks = self._uploads.check(items)
        now = utcnow()
        with self._db.write() as s:
            job = owned_job(s, user_id, job_id, lock=True)
            job_state.require(job, JobStatus.CREATED, action="confirm the upload of")
            by_idx = {i.idx: i for i in load_items(s, job.id)}
            for check in checks:
                item = by_idx[check.idx]
                item.input_bytes = check.size
                if check.error is not None:
                    finish_item(s, job, item, outputs=None, error=f"{check.error.code}: {check.error.message}")
                else:
                    item_state.accept_upload(
                        item,
                        width=check.width,
                        height=check.height,
                        content_type=check.content_type,
                        sha256=check.sha256,
                        now=now,
                    )
            # From here the job holds what was uploaded, no longer the upload allowance.
            job.stored_bytes = sum(c.size for c in checks)
            job_state.move(job, JobStatus.UPLOADED)
            s.flush()
            rows = load_items(s, job.id)
            view = job_view(job, rows)
        seal_inputs(self._store, job_id, [i.input_key for i in rows])
        return view

    # -- analyze --------------------------------------------------------------------------------
    def analyze(
        self, user_id: str, job_id: str, concepts: Sequence[str], *, record: Record[JobView] | None = None
    ) -> JobView:
        """Queue segmentation only: every instance of the concepts is stored for the Instances stage.

        Priced like execute, at a fraction: ``ledger.analysis_price`` over the items that lack one of
        the concepts, reserved now and spent as the items are analysed. Items that already hold every
        requested concept are left alone and cost nothing, so asking again is free. At most
        ``max_analyses_per_job`` analyses per job (``QUOTA_EXCEEDED``)."""
        with self._db.write() as s:
            job = owned_job(s, user_id, job_id, lock=True)
            job_state.require(job, JobStatus.UPLOADED, action="analyze")
            preset = validation.preset_by_id(job.preset_id)
            wanted = validation.analysis_concepts(preset, concepts)
            items = load_items(s, job.id)
            if any(i.stage == ItemStage.ANALYZE for i in items):
                raise ValidationFailed("concepts: an analysis of this job is still running", field="concepts")
            targets = [
                i
                for i in items
                if i.status == ItemStatus.UPLOADED and not set(wanted) <= set(i.analyzed_concepts or [])
            ]
            if not targets:
                return job_view(job, items)  # every item already holds these concepts: nothing to do
            bound = self._settings.jobs.max_analyses_per_job
            if job.analysis_passes >= bound:
                raise QuotaExceeded(f"a job may be analysed {bound} times; this one has been")
            price = ledger.analysis_price(len(targets), self._settings.credits.analyze_items_per_credit)
            job.analysis_passes += 1
            ledger.reserve_analysis(s, lock_user(s, user_id), job, price, items=len(targets))
            now = utcnow()
            for item in targets:
                item_state.queue_analysis(item, now)
            job.analyzed_concepts = wanted
            job.updated_at = now
            s.flush()
            log.info(
                "job %s: analysis %d of %d items, %d credits reserved", job.id, job.analysis_passes, len(targets), price
            )
            return _recorded(s, job_view(job, items), record)

    # -- execute --------------------------------------------------------------------------------
    def execute(
        self,
        user_id: str,
        job_id: str,
        *,
        concepts: ConceptActions | None,
        protect: Sequence[str] | None = None,
        rule_id: str | None = None,
        instances: ChoiceRequest | None = None,
        output_set: str | None = None,
        webhook_url: str | None = None,
        webhook_events: Sequence[str] | None = None,
        record: Record[JobView] | None = None,
    ) -> JobView:
        """uploaded -> queued with the rule. With ``webhook_url`` the job's events are posted there;
        the answer (only this one) carries the signing secret."""
        hook = webhooks.subscription(self._webhook_policy, webhook_url, webhook_events)
        with self._db.write() as s:
            job = owned_job(s, user_id, job_id, lock=True)
            job_state.require(job, JobStatus.UPLOADED, action="execute")
            preset = validation.preset_by_id(job.preset_id)
            items = load_items(s, job.id)
            if any(i.stage == ItemStage.ANALYZE for i in items):
                raise InvalidState("an analysis of this job is still running; wait for it to finish")
            base_concepts: dict[str, ConceptAction] = {}
            base_protect: list[str] | None = None
            if rule_id:
                rule = owned_rule(s, user_id, rule_id)
                if rule.preset_id != preset.id:
                    raise ValidationFailed(
                        f"rule_id: the rule is for preset {rule.preset_id!r}, the job for {preset.id!r}",
                        field="rule_id",
                    )
                base_concepts, base_protect = actions_from_stored(rule.concepts), list(rule.protect)
            merged = {**base_concepts, **(concepts or {})}
            if not merged:
                raise ValidationFailed("concepts: give at least one concept action, or a rule_id", field="concepts")
            clean_concepts = validation.concept_actions(preset, merged)
            chosen_protect: Sequence[str] = (
                protect
                if protect is not None
                else (base_protect if base_protect is not None else preset.protect_defaults)
            )
            clean_protect = validation.protect_layers(preset, chosen_protect)
            validation.no_conflicts(clean_concepts, clean_protect)
            choices = instance_choices(instances or {}, items, preset.concept_ids)
            set_spec = preset.output_set(output_set)
            if set_spec is None:
                known = ", ".join(o.id for o in preset.output_sets)
                raise ValidationFailed(f"output_set: unknown set {output_set!r}; known: {known}", field="output_set")
            now = utcnow()
            job.rule_id = rule_id or None
            job.concepts = clean_concepts
            job.protect = clean_protect
            job.instance_choices = choices
            job.output_set = set_spec.id
            webhooks.subscribe(job, hook)
            for item in items:
                if item.status == ItemStatus.UPLOADED:
                    item_state.queue_execute(item, now)
            job_state.move(job, JobStatus.QUEUED)
            s.flush()
            log.info("job %s queued with %d concept actions", job.id, len(clean_concepts))
            view = job_view(job, items)
            view = replace(view, webhook_secret=hook.secret) if hook else view
            return _recorded(s, view, record)

    # -- read -----------------------------------------------------------------------------------
    def get(self, user_id: str, job_id: str) -> JobView:
        with self._db.read() as s:
            job = owned_job(s, user_id, job_id)
            return job_view(job, load_items(s, job.id))

    def download_url(self, key: str) -> str:
        return self._store.presign_get(
            key, expires_s=self._settings.storage.download_url_ttl_s, filename=keys.download_filename(key)
        )

    def download_links(self) -> DownloadLinks:
        """Sign download URLs now; all of them work at least until ``expires_at``."""
        # Whole seconds, rounded down: each store signs from its own "now" (a moment later), so
        # the stated instant is never after the real one.
        now = utcnow().replace(microsecond=0)
        return DownloadLinks(self.download_url, now + timedelta(seconds=self._settings.storage.download_url_ttl_s))

    def webhook_deliveries(self, user_id: str, job_id: str) -> list[webhooks.DeliveryView]:
        with self._db.read() as s:
            job = owned_job(s, user_id, job_id)
            return webhooks.deliveries(s, job.id)

    # -- cancel ---------------------------------------------------------------------------------
    def cancel(self, user_id: str, job_id: str, *, record: Record[JobView] | None = None) -> JobView:
        """Any non-terminal job -> canceled; items not finished are refunded. Results of items still
        running are dropped when they arrive (their lease is gone), so nothing is charged twice."""
        with self._db.write() as s:
            job = owned_job(s, user_id, job_id, lock=True)
            if job.status in job_state.TERMINAL:
                raise InvalidState(f"the job is already {job.status}")
            cancel_open_items(s, job, "canceled by the user")
            job_state.move(job, JobStatus.CANCELED)
            s.flush()
            log.info("job %s canceled, %d credits left reserved", job.id, job.credits_reserved)
            rows = load_items(s, job.id)
            view = _recorded(s, job_view(job, rows), record)
        seal_inputs(self._store, job.id, [i.input_key for i in rows])
        return view


def _recorded(session: Session, view: JobView, record: Record[JobView] | None) -> JobView:
    if record is not None:
        record(session, view)
    return view
