"""Item results reported by remote workers (``POST /jobs/{id}/callback``).

The shared secret is compared in constant time. Each idempotency key is answered once: the first
answer is stored in the same transaction as the result, and a replay gets it back unchanged.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select

from server.clock import utcnow
from server.db.engine import Database
from server.db.tables import CallbackReceiptRow, JobItemRow
from server.errors import Forbidden, InvalidState, NotFound, ValidationFailed
from server.item_records import StoredInstance
from server.service import job_state
from server.service.ids import resource_id
from server.service.settle import FINISHED_ITEM_STATES, ItemOutputs, finish_item, lock_job
from server.service.validation import storable
from server.wire_enums import ItemStatus, JobStatus

log = logging.getLogger(__name__)

MAX_KEY_CHARS = 128


@dataclass(frozen=True)
class CallbackResult:
    job_id: str
    idx: int
    item_status: str
    job_status: str
    duplicate: bool = False


@dataclass(frozen=True)
class ItemReport:
    idempotency_key: str
    idx: int
    status: str
    """done | failed"""
    output_key: str = ""
    error: str = ""
    instances: Sequence[StoredInstance] = ()
    protect_check: Mapping[str, Any] | None = None


def check_callback_secret(presented: str | None, secret: str) -> None:
    """:class:`Forbidden` unless ``presented`` is ``secret`` (compared in constant time).

    The REST shim calls it before reading a callback's body; the JobService again before using it.
    """
    if not presented or not hmac.compare_digest(presented.encode(), secret.encode()):
        raise Forbidden("the callback secret is missing or wrong")


class Callbacks:
    def __init__(self, db: Database, secret: str) -> None:
        self._db = db
        self._secret = secret

    def authenticate(self, presented: str | None) -> None:
        check_callback_secret(presented, self._secret)

    def report(self, presented_secret: str | None, job_id: str, report: ItemReport) -> CallbackResult:
        self.authenticate(presented_secret)
        key = report.idempotency_key
        if not key or len(key) > MAX_KEY_CHARS or not key.isprintable():
            raise ValidationFailed(f"idempotency_key: 1..{MAX_KEY_CHARS} printable characters", field="idempotency_key")
        if report.status not in (ItemStatus.DONE, ItemStatus.FAILED):
            raise ValidationFailed("status: must be 'done' or 'failed'", field="status")
        storable(report.protect_check, "protect_check")
        with self._db.write() as s:
            job = lock_job(s, resource_id(job_id, "job"))
            if job is None:
                raise NotFound("job not found")
            receipt = s.get(CallbackReceiptRow, (job.id, key))
            if receipt is not None:
                return CallbackResult(**{**receipt.response, "duplicate": True})
            job_state.require(job, JobStatus.QUEUED, JobStatus.RUNNING, action="report a result for")
            item = s.scalars(
                select(JobItemRow).where(JobItemRow.job_id == job.id, JobItemRow.idx == report.idx).with_for_update()
            ).one_or_none()
            if item is None:
                raise NotFound(f"the job has no item {report.idx}")
            if item.status in FINISHED_ITEM_STATES:
                raise InvalidState(f"item {report.idx} is already {item.status}")
            if report.status == ItemStatus.DONE:
                prefix = f"outputs/{job.user_id}/{job.id}/"
                if not report.output_key.startswith(prefix) or ".." in report.output_key:
                    raise ValidationFailed(f"output_key: must be under {prefix}", field="output_key")
                outputs = ItemOutputs(
                    output_key=report.output_key,
                    instances=report.instances,
                    protect_check=report.protect_check or {},
                )
                finish_item(s, job, item, outputs=outputs)
            else:
                finish_item(s, job, item, outputs=None, error=report.error or "failed on the remote worker")
            result = CallbackResult(job.id, item.idx, item.status, job.status)
            s.add(
                CallbackReceiptRow(
                    job_id=job.id,
                    idempotency_key=key,
                    response={k: v for k, v in asdict(result).items() if k != "duplicate"},
                    created_at=utcnow(),
                )
            )
            log.info("callback %s: job %s item %d %s", key, job.id, item.idx, item.status)
            return result
