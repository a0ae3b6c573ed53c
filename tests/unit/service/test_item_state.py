"""The item state machine: the legal path works, every illegal transition is refused."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from server.db.tables import JobItemRow
from server.errors import InvalidState
from server.item_records import StoredInstance
from server.service import item_state
from server.service.item_state import ItemStage
from server.wire_enums import AnalysisState, ItemStatus

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _item(status: ItemStatus = ItemStatus.PENDING, stage: ItemStage = ItemStage.NONE) -> JobItemRow:
    return JobItemRow(
        job_id="j", idx=0, status=status, stage=stage, attempts=0, requeues=0, analysis_state="none", updated_at=NOW
    )


def _uploaded() -> JobItemRow:
    item = _item()
    item_state.accept_upload(item, width=4, height=3, content_type="image/jpeg", sha256="ab", now=NOW)
    return item


def test_the_execute_path_from_upload_to_done() -> None:
    item = _uploaded()
    item_state.queue_execute(item, NOW)
    assert (item.status, item.stage, item.available_at) == ("queued", "execute", NOW)
    leased = item_state.lease_values(item.stage, "w", NOW, NOW)
    item.status = ItemStatus(leased["status"])
    item.lease_owner = leased["lease_owner"]
    assert item_state.holds_lease(item, "w") and not item_state.holds_lease(item, "other")
    item_state.retry(item, "Triton down", available_at=NOW + timedelta(seconds=2), now=NOW)
    assert (item.status, item.lease_owner, item.error) == ("queued", None, "Triton down")
    item_state.finish_done(item, [StoredInstance("Wall", 1, 0.9, (0.0, 0.0, 1.0, 1.0), 1)], NOW)
    assert (item.status, item.stage, item.error, item.analysis_state) == ("done", "none", None, "done")


def test_requeue_gives_a_failed_item_a_new_round() -> None:
    item = _uploaded()
    item_state.queue_execute(item, NOW)
    item_state.finish_failed(item, "gave up", NOW)
    item_state.requeue(item, NOW)
    assert (item.status, item.stage, item.requeues, item.attempts, item.error) == ("queued", "execute", 1, 0, None)


def test_analysis_state_is_stored() -> None:
    item = _uploaded()
    item_state.queue_analysis(item, NOW)
    assert item.analysis_state == AnalysisState.PENDING
    item_state.fail_analysis(item, "Triton down", NOW)
    assert (item.analysis_state, item.stage) == ("failed", "none")
    item_state.queue_analysis(item, NOW)
    item_state.finish_analysis(item, [], ["Wall"], NOW)
    assert (item.analysis_state, item.analyzed_concepts) == ("done", ["Wall"])


def _done() -> JobItemRow:
    item = _uploaded()
    item_state.queue_execute(item, NOW)
    item_state.finish_done(item, [], NOW)
    return item


ILLEGAL: dict[str, tuple[Callable[[], JobItemRow], Callable[[JobItemRow], None]]] = {
    "queue a photo not uploaded yet": (_item, lambda i: item_state.queue_execute(i, NOW)),
    "queue a finished item": (_done, lambda i: item_state.queue_execute(i, NOW)),
    "finish a finished item twice": (_done, lambda i: item_state.finish_done(i, [], NOW)),
    "fail a done item": (_done, lambda i: item_state.finish_failed(i, "late", NOW)),
    "cancel a done item": (_done, lambda i: item_state.cancel(i, "late", NOW)),
    "requeue a done item": (_done, lambda i: item_state.requeue(i, NOW)),
    "requeue a queued item": (
        lambda: _item(ItemStatus.QUEUED, ItemStage.EXECUTE),
        lambda i: item_state.requeue(i, NOW),
    ),
    "accept an upload twice": (
        _uploaded,
        lambda i: item_state.accept_upload(i, width=1, height=1, content_type="image/png", sha256=None, now=NOW),
    ),
    "release an item off the queue": (_done, lambda i: item_state.release(i, NOW)),
    "retry an item off the queue": (_done, lambda i: item_state.retry(i, "x", available_at=NOW, now=NOW)),
    "analyse an item twice at once": (
        lambda: _item(ItemStatus.UPLOADED, ItemStage.ANALYZE),
        lambda i: item_state.queue_analysis(i, NOW),
    ),
    "analyse a queued item": (
        lambda: _item(ItemStatus.QUEUED, ItemStage.EXECUTE),
        lambda i: item_state.queue_analysis(i, NOW),
    ),
    "finish an analysis never queued": (_uploaded, lambda i: item_state.finish_analysis(i, [], [], NOW)),
    "fail an analysis never queued": (_uploaded, lambda i: item_state.fail_analysis(i, "x", NOW)),
}


@pytest.mark.parametrize("case", list(ILLEGAL))
def test_an_illegal_transition_is_refused_and_changes_nothing(case: str) -> None:
    make, move = ILLEGAL[case]
    item = make()
    before = (item.status, item.stage, item.error, item.requeues, item.analysis_state)
    with pytest.raises(InvalidState):
        move(item)
    assert (item.status, item.stage, item.error, item.requeues, item.analysis_state) == before


def test_every_status_has_its_transitions_declared() -> None:
    assert set(item_state.TRANSITIONS) == set(ItemStatus)
    assert all(set(targets) <= set(ItemStatus) for targets in item_state.TRANSITIONS.values())
