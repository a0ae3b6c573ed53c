"""The item state machine: the only place an item's status, stage, lease and analysis state change.

Status (what the client sees)::

    pending -> uploaded                    confirm-upload accepted the photo
    pending -> failed                      confirm-upload rejected it (refunded)
    uploaded -> queued                     execute queued it
    queued -> running                      a worker leased it
    running -> queued                      lease released (shutdown) or retry after a backoff
    queued | running -> done | failed      finished (spent) or dead-lettered (refunded)
    failed -> queued                       an operator's requeue (reserved again)
    any unfinished -> canceled             the job was canceled (refunded)

Stage (what the queue should do with it): ``none``, ``analyze`` (an analysis pass, status stays
``uploaded``) or ``execute``. The analysis state is stored beside them (``none``, ``pending``,
``done``, ``failed``), not read back from an error message.

Every operation checks its starting state and raises ``InvalidState`` otherwise, so a path that
would move an item the wrong way fails loudly instead of corrupting the queue. An operation that
makes an item claimable flags the session (``WORK_READY``) so that idle workers are woken when the
transaction commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from sqlalchemy.orm import Session, object_session

from server.db.notify import WORK_READY
from server.db.tables import JobItemRow
from server.errors import InvalidState
from server.item_records import StoredInstance
from server.wire_enums import AnalysisState, ItemStatus


class ItemStage(StrEnum):
    NONE = "none"
    ANALYZE = "analyze"
    EXECUTE = "execute"


S = ItemStatus
FINISHED: frozenset[str] = frozenset({S.DONE, S.FAILED, S.CANCELED})
CLAIMABLE_STAGES: tuple[str, ...] = (ItemStage.ANALYZE, ItemStage.EXECUTE)
ANALYSIS_FAILED_PREFIX = "analysis failed: "

TRANSITIONS: MappingProxyType[str, frozenset[str]] = MappingProxyType(
    {
        S.PENDING: frozenset({S.UPLOADED, S.FAILED, S.CANCELED}),
        S.UPLOADED: frozenset({S.QUEUED, S.CANCELED}),
        S.QUEUED: frozenset({S.RUNNING, S.DONE, S.FAILED, S.CANCELED}),
        S.RUNNING: frozenset({S.QUEUED, S.DONE, S.FAILED, S.CANCELED}),
        S.DONE: frozenset(),
        S.FAILED: frozenset({S.QUEUED}),
        S.CANCELED: frozenset(),
    }
)


def _move(item: JobItemRow, to: ItemStatus, now: datetime) -> None:
    if to not in TRANSITIONS[item.status]:
        raise InvalidState(f"item {item.idx} cannot go from {item.status} to {to}")
    item.status = to
    item.updated_at = now


def _require_stage(item: JobItemRow, stage: ItemStage, action: str) -> None:
    if item.stage != stage:
        raise InvalidState(f"cannot {action} item {item.idx}: its stage is {item.stage}, not {stage}")


def _work_ready(item: JobItemRow) -> None:
    session = object_session(item)
    if session is not None:
        mark_work_ready(session)


def mark_work_ready(session: Session) -> None:
    session.info[WORK_READY] = True


def _off_queue(item: JobItemRow, now: datetime) -> None:
    item.stage = ItemStage.NONE
    item.available_at = None
    item.lease_owner = None
    item.lease_expires_at = None
    item.updated_at = now


# -- upload -----------------------------------------------------------------------------------------
def accept_upload(
    item: JobItemRow, *, width: int, height: int, content_type: str, sha256: str | None, now: datetime
) -> None:
    _move(item, S.UPLOADED, now)
    item.width, item.height = width, height
    item.content_type = content_type
    item.input_sha256 = sha256


# -- queueing ---------------------------------------------------------------------------------------
def queue_execute(item: JobItemRow, now: datetime) -> None:
    """uploaded -> queued, on the execute stage, claimable now."""
    _move(item, S.QUEUED, now)
    item.stage = ItemStage.EXECUTE
    item.available_at = now
    item.attempts = 0
    _work_ready(item)


def queue_analysis(item: JobItemRow, now: datetime) -> None:
    """An uploaded item joins an analysis pass (its status stays uploaded)."""
    if item.status != S.UPLOADED or item.stage != ItemStage.NONE:
        raise InvalidState(f"item {item.idx} cannot be analysed while {item.status}/{item.stage}")
    item.stage = ItemStage.ANALYZE
    item.analysis_state = AnalysisState.PENDING
    item.available_at = now
    item.attempts = 0
    item.updated_at = now
    _work_ready(item)


def requeue(item: JobItemRow, now: datetime) -> None:
    """failed -> queued (an operator's requeue): a fresh round of attempts."""
    _move(item, S.QUEUED, now)
    item.requeues += 1
    item.stage = ItemStage.EXECUTE
    item.attempts = 0
    item.error = None
    item.available_at = now
    item.lease_owner = None
    item.lease_expires_at = None
    _work_ready(item)


# -- leases -----------------------------------------------------------------------------------------
def lease_values(stage: str, owner: Any, until: Any, now: Any) -> Mapping[str, Any]:
    """The columns a claim sets, for the queue's set-based claim statement (one per batch): one
    attempt more, the lease, and for execute queued -> running. The values may be SQL parameters
    (the statement is built once and bound per claim)."""
    values: dict[str, Any] = {"lease_owner": owner, "lease_expires_at": until, "updated_at": now}
    if stage == ItemStage.EXECUTE:
        values["status"] = S.RUNNING
    return values


def extend_lease(item: JobItemRow, until: datetime) -> None:
    item.lease_expires_at = until


def holds_lease(item: JobItemRow, owner: str) -> bool:
    return item.lease_owner == owner and item.status not in FINISHED and item.stage != ItemStage.NONE


def release(item: JobItemRow, now: datetime) -> None:
    """Leased work given back untouched: claimable at once, the attempt not counted."""
    _back_to_queue(item, now, available_at=now)
    item.attempts = max(item.attempts - 1, 0)


def retry(item: JobItemRow, error: str, *, available_at: datetime, now: datetime) -> None:
    """A failed attempt waits out its backoff, then is claimable again."""
    _back_to_queue(item, now, available_at=available_at)
    item.error = error


def _back_to_queue(item: JobItemRow, now: datetime, *, available_at: datetime) -> None:
    if item.stage == ItemStage.EXECUTE:
        _move(item, S.QUEUED, now)
    elif item.stage != ItemStage.ANALYZE:
        raise InvalidState(f"item {item.idx} is not on the queue")
    item.available_at = available_at
    item.lease_owner = None
    item.lease_expires_at = None
    item.updated_at = now
    _work_ready(item)


# -- endings ----------------------------------------------------------------------------------------
def finish_done(item: JobItemRow, instances: Sequence[StoredInstance], now: datetime) -> None:
    """-> done (the caller records the other outputs and spends the credits); instances the
    execute found count as the item's analysis."""
    _move(item, S.DONE, now)
    if instances:
        item.instances = list(instances)
        item.analysis_state = AnalysisState.DONE
    item.error = None
    _off_queue(item, now)


def finish_failed(item: JobItemRow, error: str, now: datetime) -> None:
    """-> failed: dead-lettered or rejected (the caller refunds)."""
    _move(item, S.FAILED, now)
    item.error = error
    _off_queue(item, now)


def cancel(item: JobItemRow, reason: str, now: datetime) -> None:
    _move(item, S.CANCELED, now)
    item.error = reason
    if item.stage == ItemStage.ANALYZE:
        item.analysis_state = _earlier_analysis(item)
    _off_queue(item, now)


def finish_analysis(
    item: JobItemRow, instances: Sequence[StoredInstance], concepts: Iterable[str], now: datetime
) -> None:
    """An analysed item: its instances stored, its analysed concepts grown; off the queue."""
    _require_stage(item, ItemStage.ANALYZE, "finish the analysis of")
    item.instances = list(instances)
    item.analyzed_concepts = list(dict.fromkeys([*(item.analyzed_concepts or []), *concepts]))
    item.analysis_state = AnalysisState.DONE
    item.error = None
    _off_queue(item, now)


def fail_analysis(item: JobItemRow, error: str, now: datetime) -> None:
    """A given-up analysis leaves the item usable (execute segments it again); not paid for."""
    _require_stage(item, ItemStage.ANALYZE, "fail the analysis of")
    earlier = _earlier_analysis(item)
    item.analysis_state = AnalysisState.FAILED if earlier == AnalysisState.NONE else earlier
    item.error = ANALYSIS_FAILED_PREFIX + error
    _off_queue(item, now)


def _earlier_analysis(item: JobItemRow) -> AnalysisState:
    """What an interrupted pass leaves: the instances of an earlier pass still stand."""
    return AnalysisState.DONE if item.instances is not None else AnalysisState.NONE
